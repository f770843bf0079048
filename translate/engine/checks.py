"""Checks at recipe load: each problem is one line naming the key, before any data is read.

They cover what used to fail deep inside training: a dataset that cannot serve the model's
``spatial_dims``, a device this machine lacks, a discriminator without a discriminator-side
objective (or the reverse), an adversarial generator term with no discriminator, validation with
no validation subjects, an unknown role, option, intensity spec or inferer.
"""

from __future__ import annotations

import re

import torch

from ..errors import TranslateError
from ..recipe import Recipe

#: generator-side tensors that only a discriminator produces
DISCRIMINATOR_TENSORS = ("d_fake", "d_fake_features", "d_real_features", "d_fake_a", "d_fake_b")
#: validation metric -> True when lower is better
METRICS = {"val_mae_hu": True, "val_psnr": False, "val_ssim": False, "val_dice": False}


def check_device(device: str, where: str = "trainer.device") -> None:
    """One line when ``device`` is malformed or absent on this machine (``gpu``, ``cuda:x``, ``cuda`` without CUDA)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", device):
        raise TranslateError(f"{where}: {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TranslateError(f"{where}: {device!r}, but this machine has no CUDA device; use auto or cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise TranslateError(f"{where}: {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TranslateError(f"{where}: 'mps', but this machine has no Apple GPU; use auto or cpu")


def default_best_metric(recipe: Recipe) -> str:
    """``val_mae_hu`` for a CT output, ``val_dice`` for labels, ``val_psnr`` for MR."""
    from ..data.domains import build_intensity

    kind = build_intensity(recipe.data.domains["b"].intensity).kind
    return {"ct": "val_mae_hu", "labels": "val_dice"}.get(kind, "val_psnr")


def _objective_needs(objective) -> set:
    needs: set = set()
    for term in objective.terms:
        needs.update(term.needs())
    return needs


def check_recipe(recipe: Recipe, source: str = "recipe", *, check_data: bool = True) -> None:
    """Raise a one-line :class:`TranslateError` (prefixed with ``source``) for the first problem found."""
    try:
        _check(recipe, check_data)
    except TranslateError as err:
        text = str(err)
        raise TranslateError(text if text.startswith(source) else f"{source}: {text}") from None


def _check(recipe: Recipe, check_data: bool) -> None:
    from ..data.datasets import DATASETS
    from ..models import MODELS
    from .build import build_domains, build_objectives, role_problems
    from .inferer import INFERERS

    model_cls = MODELS.get(recipe.model.name)
    problem = role_problems(recipe)
    if problem:
        raise TranslateError(problem)
    domains = build_domains(recipe)
    for direction, (src, dst) in model_cls.directions.items():
        for name in (src, dst):
            if name not in domains:
                raise TranslateError(f"data.domains: model {recipe.model.name!r} translates {direction} and needs domain {name!r}")
    dataset = DATASETS.get(recipe.data.dataset.name)
    dims = getattr(dataset, "spatial_dims", None)
    if dims is not None and dims != recipe.model.spatial_dims:
        raise TranslateError(f"model.spatial_dims: {recipe.model.spatial_dims}, but dataset "
                             f"{recipe.data.dataset.name!r} serves {dims}D samples")
    if getattr(model_cls, "pairing", "paired") == "paired" and getattr(dataset, "pairing", "paired") != "paired":
        raise TranslateError(f"data.dataset: model {recipe.model.name!r} needs paired samples, but "
                             f"{recipe.data.dataset.name!r} serves unpaired ones")
    inferer = recipe.inference.name
    if inferer is not None:
        INFERERS.get(inferer)
    check_device(recipe.trainer.device)

    g_objective, d_objective = build_objectives(recipe)
    _check_window_terms(g_objective, domains)
    _check_networks_build(recipe, domains)
    roles = model_cls.roles
    discriminators = [r for r in recipe.model.networks if roles[r].group == "discriminator"]
    if discriminators and not len(d_objective):
        raise TranslateError(f"objective.discriminator: model.networks.{discriminators[0]} is set but no "
                             f"discriminator-side loss trains it (add e.g. {{name: adversarial, side: discriminator}})")
    if len(d_objective) and not discriminators:
        raise TranslateError("objective.discriminator: terms are given but the model has no discriminator network "
                             "(add model.networks.discriminator)")
    wants = sorted(_objective_needs(g_objective) & set(DISCRIMINATOR_TENSORS))
    if wants and not discriminators:
        raise TranslateError(f"objective.generator: a term needs {wants[0]!r}, which only a discriminator produces; "
                             f"add model.networks.discriminator or remove the term")

    best = recipe.trainer.best_metric
    if best is not None and best not in METRICS:
        raise TranslateError(f"trainer.best_metric: {best!r}; expected one of {sorted(METRICS)}")
    if check_data and recipe.trainer.val_every:
        from ..data.subjects import read_split

        splits = read_split(recipe.data.root)
        if not splits.get(recipe.data.val_split) and recipe.data.val_block:
            if recipe.data.dataset.name not in ("paired_slices",):
                raise TranslateError(f"data.val_block: holding out slices needs the paired_slices dataset, "
                                     f"not {recipe.data.dataset.name!r}; give a {recipe.data.val_split!r} split instead")
        elif not splits.get(recipe.data.val_split):
            have = "is empty" if recipe.data.val_split in splits else "is missing"
            raise TranslateError(f"trainer.val_every: {recipe.trainer.val_every}, but split "
                                 f"{recipe.data.val_split!r} of {recipe.data.root / 'split.json'} {have}; "
                                 f"set trainer.val_every=0, data.val_split, or data.val_block to hold out slices")


def _check_window_terms(objective, domains) -> None:
    """A window_pixel term reads HU through its target domain's ct_hu window: the two must agree."""
    from ..losses.window import WindowPixel

    for term in objective.terms:
        if not isinstance(term, WindowPixel):
            continue
        key = term.target.rsplit("_", 1)[-1]
        spec = domains[key].intensity.to_dict() if key in domains else {}
        window = [float(v) for v in spec.get("window", [])] if spec.get("name") == "ct_hu" else None
        if window != list(term.space):
            raise TranslateError(f"objective.generator ({term.name}): space {list(term.space)} must be the ct_hu window "
                                 f"of data.domains.{key}, which is {window if window else spec.get('name', 'missing')}")


def _check_networks_build(recipe: Recipe, domains) -> None:
    """Construct the networks on the meta device (no memory, no initialisation), so a misspelt or
    wrong keyword argument is refused at load, naming the recipe and the key."""
    from .build import build_model

    try:
        with torch.device("meta"):
            build_model(recipe, domains, initialise=False)
    except TranslateError:
        raise
    except Exception:  # a network that cannot be built on the meta device: the real build reports its errors
        pass


def lower_is_better(metric: str) -> bool:
    return METRICS.get(metric, True)


