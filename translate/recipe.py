"""Recipes: YAML + dotted command-line overrides -> a validated, typed schema.

This is the only module that reads configuration. Everything downstream receives plain typed
keyword arguments. A recipe names registered components (``unet``, ``patchgan``, ``pixel`` ...)
or dotted paths to a user's own classes, plus their keyword arguments::

    translate fit recipes/mr2ct.yaml trainer.steps=200 data.root=/data/phantom
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import TranslateError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Component(BaseModel):
    """A registered name (or dotted path to your own class) plus its constructor keyword arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    def kwargs(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


class NetworkSpec(Component):
    """One network role: registry name + keyword arguments, its init, or weights to load.

    ``init`` (``normal``, ``xavier``, ``kaiming``, ``orthogonal``, ``none``) defaults to the
    model's choice for registered networks and to ``none`` for your own (dotted-path) classes;
    it is never applied when ``weights`` names a state-dict file to load. ``input_windows`` (networks
    that read one domain's images, e.g. CycleGAN's ``d_b`` and ``g_ba`` on CT): ``[[lower, upper], ...]`` in the domain's native units
    (HU), each shown to the critic as an extra clipped input channel (:class:`translate.nn.windows.WindowedInput`).
    """

    init: Optional[Literal["normal", "xavier", "kaiming", "orthogonal", "none"]] = None
    init_gain: Optional[float] = Field(None, gt=0)
    weights: Optional[Path] = None
    input_windows: Optional[List[Tuple[float, float]]] = None

    @field_validator("input_windows")
    @classmethod
    def _windows(cls, windows):
        for lower, upper in windows or ():
            if not lower < upper:
                raise ValueError(f"expected [lower, upper] pairs with lower < upper, got {[lower, upper]}")
        if windows is not None and not windows:
            raise ValueError("expected at least one [lower, upper] pair (or leave it out)")
        return windows

    def kwargs(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


class DomainConfig(_Strict):
    """A data domain: the file stem of its volumes in each subject folder, and its intensity spec."""

    key: str
    intensity: Union[str, Dict[str, Any]] = Field(description="ct_hu | mr_percentile | mr_robust | mr_zscore | labels")


class DataConfig(_Strict):
    root: Path = Field(description="folder with subject folders and split.json")
    domains: Dict[str, DomainConfig]
    dataset: Component = Component(name="paired_slices")
    train_split: str = "train"
    val_split: str = "val"
    valid_key: Optional[str] = Field(None, description="file key of a mask of voxels where both domains have data")
    fill_outside_valid: bool = Field(True, description="continue the source outside the valid mask by its nearest valid voxel")
    body_only: bool = Field(False, description="valid_mask also restricted to the target's body mask")
    val_block: float = Field(0.0, ge=0.0, le=0.5, description="when the split has no val_split: hold out this "
                             "fraction of every training volume's last slices for validation")
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, domains: Dict[str, DomainConfig]) -> Dict[str, DomainConfig]:
        unknown = sorted(set(domains) - {"a", "b", "labels"})
        if unknown:
            raise ValueError(f"unknown domain {unknown[0]!r}; expected a, b and optionally labels")
        missing = [name for name in ("a", "b") if name not in domains]
        if missing:
            raise ValueError(f"domain {missing[0]!r} is missing; a recipe names domains a and b")
        return domains


class ModelConfig(_Strict):
    name: str = "pix2pix"
    spatial_dims: Literal[2, 3] = 2
    networks: Dict[str, NetworkSpec]
    options: Dict[str, Any] = {}


class ObjectiveConfig(_Strict):
    generator: List[Dict[str, Any]]
    discriminator: List[Dict[str, Any]] = []

    @field_validator("generator", "discriminator")
    @classmethod
    def _named(cls, terms: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        for i, term in enumerate(terms):
            if "name" not in term:
                raise ValueError(f"entry {i} has no 'name' (a loss term; see `translate losses`)")
        return terms


class OptimizerConfig(_Strict):
    lr: float = Field(2e-4, gt=0)
    betas: Tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(0.0, ge=0)


class ScheduleConfig(_Strict):
    """Constant learning rate, then linear decay to zero (pix2pix). Fractions of trainer.steps."""

    constant_fraction: float = Field(0.5, ge=0, le=1)


class OptimConfig(_Strict):
    generator: OptimizerConfig = OptimizerConfig()
    discriminator: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()


class TrainerConfig(_Strict):
    steps: int = Field(1000, ge=1)
    epochs: Optional[int] = Field(None, ge=1, description="when set, replaces steps: epochs x batches per epoch")
    seed: int = 0
    device: str = "auto"
    out_dir: Path = Path("runs/experiment")
    checkpoint_every: int = Field(500, ge=1)
    image_every: int = Field(250, ge=1)
    val_every: int = Field(0, ge=0, description="steps between validations on data.val_split (0 = never)")
    log_every: int = Field(10, ge=1)
    best_metric: Optional[str] = Field(None, description="validation metric that picks best.pt; default by output domain")
    amp: bool = Field(False, description="mixed precision (CUDA only; ignored on CPU)")
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads; default: torch's choice")
    on_nan: Literal["stop", "skip"] = Field("stop", description="a non-finite loss or gradient: stop with one line "
                                            "naming the term, or skip that step's update and count it")
    max_nan_skips: int = Field(10, ge=0, description="on_nan=skip: the run stops at the first non-finite step beyond this many")
    ema: Optional[float] = Field(None, gt=0.0, lt=1.0, description="decay of an exponential moving average of the "
                                 "generator's weights (e.g. 0.999), kept beside them in every checkpoint and used "
                                 "for validation and inference; None = off")
    rewind_factor: Optional[float] = Field(None, gt=1.0, description="a validation worse than this factor times the "
                                           "best so far sends the run back to best.pt, on a fresh random stream "
                                           "(e.g. 1.5; needs val_every); None = off")
    max_rewinds: int = Field(2, ge=0, description="rewind_factor: at most this many rewinds per run")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", value):
            raise ValueError(f"expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")
        return value


class InferenceConfig(Component):
    """How whole volumes are translated: ``slices`` (2D/2.5D) or ``sliding_window`` (3D)."""

    name: Optional[str] = None  # default: slices for spatial_dims 2, sliding_window for 3


class Recipe(_Strict):
    model: ModelConfig
    data: DataConfig
    objective: ObjectiveConfig
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    inference: InferenceConfig = InferenceConfig()


#: keys of the first, Pix2pix-shaped recipe format -> where they live now
MOVED = {
    ("model", "generator"): "model.networks.generator",
    ("model", "discriminator"): "model.networks.discriminator",
    ("model", "init_gain"): "model.networks.<role>.init_gain",
    ("data", "source"): "data.domains.a.key",
    ("data", "target"): "data.domains.b.key",
    ("data", "hu_window"): "data.domains.b.intensity: {name: ct_hu, window: [...]}",
    ("data", "source_norm"): "data.domains.a.intensity: {name: mr_percentile | mr_zscore | mr_robust}",
    ("data", "source_percentiles"): "data.domains.a.intensity: {name: mr_percentile, lower: .., upper: ..}",
    ("data", "context_slices"): "data.dataset.context_slices",
    ("data", "axis"): "data.dataset.axis",
    ("data", "augment"): "data.dataset.augment",
}


def _check_moved(tree: Dict[str, Any], source: str) -> None:
    for (section, key), where in MOVED.items():
        if isinstance(tree.get(section), dict) and key in tree[section]:
            raise TranslateError(f"{source}: key '{section}.{key}' has moved to {where} (recipe format of 2026-12)")


# ----------------------------------------------------------------------------- loading
def parse_override(text: str) -> Tuple[List[str], Any]:
    """``trainer.steps=200`` -> (["trainer", "steps"], 200); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise TranslateError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. trainer.steps=200")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(tree: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = tree
        for part in path[:-1]:
            if isinstance(node, list):  # a list entry by index: objective.generator.0.mode=hinge
                node = _list_entry(node, part, text)
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, (dict, list)):
                raise TranslateError(f"override {text!r}: {part!r} is not a section")
            node = child
        if isinstance(node, list):
            raise TranslateError(f"override {text!r}: a list entry is replaced key by key, e.g. objective.generator.0.mode=hinge")
        node[path[-1]] = value
    return tree


def _list_entry(node: list, part: str, text: str) -> Dict[str, Any]:
    if not part.isdigit() or int(part) >= len(node):
        raise TranslateError(f"override {text!r}: {part!r} is not an index of a list of {len(node)} entries")
    if not isinstance(node[int(part)], dict):
        raise TranslateError(f"override {text!r}: entry {part} is not a section")
    return node[int(part)]


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key {key!r}"
    if kind == "missing":
        return f"{source}: missing required key {key!r}"
    got = first.get("input")
    got_text = f", got {got!r}" if not isinstance(got, (dict, list)) else ""
    return f"{source}: key {key!r}: {first['msg']}{got_text}"


def load_recipe(path: str | Path | None = None, overrides: List[str] | None = None,
                tree: Dict[str, Any] | None = None, check_paths: bool = True) -> Recipe:
    """Read a YAML recipe (or take ``tree``), apply overrides, validate, check paths exist."""
    source = str(path) if path is not None else "recipe"
    if tree is None:
        if path is None:
            raise TranslateError("no recipe given")
        path = Path(path)
        if not path.is_file():
            raise TranslateError(f"recipe file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise TranslateError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML recipe") from None
        except RecursionError:
            raise TranslateError(f"{path}: nested too deeply to be a recipe; expected a YAML mapping of sections") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise TranslateError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
        if not isinstance(tree, dict):
            raise TranslateError(f"{path}: expected a mapping of sections (model, data, objective, ...)")
    try:
        tree = apply_overrides(dict(tree), overrides or [])
    except TranslateError as err:  # e.g. the recipe's `trainer:` is not a section
        raise TranslateError(f"{source}: {err}") from None
    _check_moved(tree, source)
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as err:
        raise TranslateError(_format_error(source, err)) from None
    if check_paths:
        if not recipe.data.root.is_dir():
            raise TranslateError(f"{source}: data.root: folder not found: {recipe.data.root}")
        if not (recipe.data.root / "split.json").is_file():
            raise TranslateError(
                f"{source}: data.root: {recipe.data.root} has no split.json "
                f"(create one, or generate data with `translate data phantom {recipe.data.root}`)"
            )
    from .engine.checks import check_recipe

    check_recipe(recipe, source, check_data=check_paths)
    return recipe


def recipe_to_dict(recipe: Recipe) -> Dict[str, Any]:
    """JSON/YAML-safe plain dict (paths as strings), as stored in run folders and checkpoints."""
    return recipe.model_dump(mode="json")
