"""Recipes: YAML + dotted command-line overrides -> a validated, typed schema.

This is the only module that reads configuration. Everything downstream receives plain typed
keyword arguments. A recipe names registered components (``unet``, ``patchgan``, ``pixel`` ...)
or dotted paths to a user's own classes, plus their keyword arguments::

    translate fit recipes/mr2ct.yaml trainer.steps=200 data.root=/data/phantom
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import TranslateError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NetworkSpec(BaseModel):
    """A registered network name plus its constructor keyword arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    def kwargs(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


class DataConfig(_Strict):
    root: Path = Field(description="folder with subject folders and split.json")
    source: str = "mr"
    target: str = "ct"
    train_split: str = "train"
    val_split: str = "val"
    context_slices: int = Field(0, ge=0, le=8, description="2.5D: neighbouring slices each side as input channels")
    axis: int = Field(0, ge=0, le=2, description="slicing axis in (z, y, x) array order; 0 = axial")
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    augment: bool = True
    hu_window: Tuple[float, float] = (-1024.0, 2000.0)
    source_norm: Literal["percentile", "zscore"] = "percentile"
    source_percentiles: Tuple[float, float] = (0.5, 99.5)

    @field_validator("hu_window", "source_percentiles")
    @classmethod
    def _increasing(cls, value: Tuple[float, float]) -> Tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"expected [low, high] with low < high, got {list(value)}")
        return value


class ModelConfig(_Strict):
    name: str = "pix2pix"
    spatial_dims: Literal[2, 3] = 2
    generator: NetworkSpec
    discriminator: Optional[NetworkSpec] = None
    init_gain: float = Field(0.02, gt=0)


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
    amp: bool = Field(False, description="mixed precision (CUDA only; ignored on CPU)")
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads; default: torch's choice")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value != "auto" and not (value == "cpu" or value.startswith("cuda") or value == "mps"):
            raise ValueError(f"expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")
        return value


class Recipe(_Strict):
    model: ModelConfig
    data: DataConfig
    objective: ObjectiveConfig
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()

    @model_validator(mode="after")
    def _needs_discriminator(self) -> "Recipe":
        if self.objective.discriminator and self.model.discriminator is None:
            raise ValueError("objective.discriminator is set but model.discriminator is missing")
        return self


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
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TranslateError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return tree


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
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise TranslateError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
        if not isinstance(tree, dict):
            raise TranslateError(f"{path}: expected a mapping of sections (model, data, objective, ...)")
    tree = apply_overrides(dict(tree), overrides or [])
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
    return recipe


def recipe_to_dict(recipe: Recipe) -> Dict[str, Any]:
    """JSON/YAML-safe plain dict (paths as strings), as stored in run folders and checkpoints."""
    return recipe.model_dump(mode="json")
