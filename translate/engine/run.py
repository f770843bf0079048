"""One training run from a validated recipe: the body of ``translate fit``, usable from Python."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import yaml

from ..atomic import write_text_atomic
from ..errors import TranslateError
from ..recipe import Recipe, recipe_to_dict
from .build import build_domains, build_model, build_objectives, build_train_dataset, count_parameters, domain_state
from .checks import default_best_metric, lower_is_better
from .trainer import Trainer, resolve_device
from .validation import build_validator


#: what a run writes into trainer.out_dir (and all that --overwrite removes)
RUN_ARTIFACTS = ("checkpoints", "images", "tensorboard", "metrics.jsonl", "recipe.yaml")
#: trainer keys a --resume may change (e.g. to skip the non-finite step a run stopped at)
RESUME_MAY_CHANGE = ("on_nan", "max_nan_skips")


def _check_same_recipe(recipe: Recipe, out_dir: Path) -> None:
    """``--resume`` continues the run it finds: a changed recipe key is refused, naming the key."""
    stored_path = out_dir / "recipe.yaml"
    if not stored_path.is_file():
        return
    stored = yaml.safe_load(stored_path.read_text(encoding="utf-8")) or {}
    current = recipe_to_dict(recipe)
    for tree in (stored, current):  # keys that change what happens after a fault, never a result
        if isinstance(tree, dict) and isinstance(tree.get("trainer"), dict):
            for key in RESUME_MAY_CHANGE:
                tree["trainer"].pop(key, None)

    def first_difference(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
                if found:
                    return found
            return None
        return prefix.rstrip(".") if a != b else None

    key = first_difference(stored, current)
    if key:
        raise TranslateError(f"--resume: recipe key {key!r} differs from the run's {stored_path}; "
                             f"resume with the same recipe, or start a new trainer.out_dir")


def _is_run_folder(out_dir: Path) -> bool:
    """True when ``out_dir/recipe.yaml`` is the recipe a run wrote there (what ``--overwrite`` may replace):
    a recipe whose ``trainer.out_dir`` is this folder (or one of the same name: a run folder moved), not a
    user's own recipe that happens to lie in the folder."""
    try:
        stored = yaml.safe_load((out_dir / "recipe.yaml").read_text(encoding="utf-8"))
        written_to = Path(stored["trainer"]["out_dir"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, TypeError, KeyError):
        return False
    return ({"model", "data", "objective", "trainer"} <= set(stored)
            and (written_to.resolve() == out_dir.resolve() or written_to.name == out_dir.resolve().name))


def check_out_dir(out_dir: Path, *, overwrite: bool) -> list:
    """What a run may touch in ``trainer.out_dir``: one line for a folder it must not write into or
    delete from. Returns the run artifacts present (what ``--overwrite`` removes)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TranslateError(f"trainer.out_dir {out_dir} is a file; expected a folder for the run")
    resolved = out_dir.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise TranslateError(f"trainer.out_dir {out_dir} is {resolved}, the filesystem root or your home folder; "
                             f"give the run a folder of its own, e.g. trainer.out_dir=runs/experiment")
    artifacts = [out_dir / name for name in RUN_ARTIFACTS if (out_dir / name).exists() or (out_dir / name).is_symlink()]
    for path in artifacts:  # a link would make the run write (or --overwrite delete) outside trainer.out_dir
        if path.is_symlink():
            raise TranslateError(f"trainer.out_dir {out_dir}: {path.name} is a symbolic link to {os.readlink(path)}; "
                                 f"a run writes and deletes only inside its folder: replace the link by a real "
                                 f"{'file' if '.' in path.name else 'folder'}, or link trainer.out_dir itself")
    if overwrite and artifacts and not _is_run_folder(out_dir):
        names = ", ".join(path.name for path in artifacts)
        raise TranslateError(f"--overwrite: trainer.out_dir {out_dir} holds {names} but no recipe.yaml of a "
                             f"translate run, so it is not a run folder; nothing was removed: move them away "
                             f"or choose another trainer.out_dir")
    return artifacts


def fit_recipe(recipe: Recipe, *, resume: bool = False, stop_after: Optional[int] = None,
               show_progress: bool = True, announce: Callable[[str], None] = print,
               overwrite: bool = False) -> Dict[str, Any]:
    """Build everything the recipe names and train; returns the trainer's summary."""
    out_dir = recipe.trainer.out_dir
    artifacts = check_out_dir(out_dir, overwrite=overwrite and not resume)
    last = out_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise TranslateError(f"--resume: no checkpoint at {last} (trainer.out_dir={out_dir})")
    if not resume and artifacts and not overwrite:
        raise TranslateError(f"trainer.out_dir {out_dir} already holds a run; pass --resume to continue it, "
                             f"--overwrite to replace it, or choose another trainer.out_dir=...")
    if resume:
        _check_same_recipe(recipe, out_dir)
        for leftover in (out_dir / "checkpoints").glob(".*.tmp-*"):  # a write cut short by a kill
            leftover.unlink(missing_ok=True)
    elif overwrite:
        for path in artifacts:  # only what a run writes: nothing else in the folder is touched
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if recipe.trainer.threads:
        torch.set_num_threads(recipe.trainer.threads)
    resolved = recipe_to_dict(recipe)
    device = resolve_device(recipe.trainer.device)
    torch.manual_seed(recipe.trainer.seed)
    domains = build_domains(recipe)
    model = build_model(recipe, domains)
    dataset = build_train_dataset(recipe, model, domains)
    if len(dataset) < recipe.data.batch_size:
        raise TranslateError(f"data.batch_size={recipe.data.batch_size}: split {recipe.data.train_split!r} of "
                             f"{recipe.data.root} holds only {len(dataset)} samples; expected at least one batch")
    g_objective, d_objective = build_objectives(recipe)
    validator = build_validator(recipe, domains)
    best_metric = recipe.trainer.best_metric or default_best_metric(recipe)
    steps = recipe.trainer.steps
    if recipe.trainer.epochs is not None:
        steps = recipe.trainer.epochs * max(len(dataset) // recipe.data.batch_size, 1)
    trainer = Trainer(
        model=model, generator_objective=g_objective, discriminator_objective=d_objective, dataset=dataset,
        batch_size=recipe.data.batch_size, num_workers=recipe.data.num_workers,
        optimizers={"generator": recipe.optim.generator.model_dump(),
                    "discriminator": recipe.optim.discriminator.model_dump()},
        constant_fraction=recipe.optim.schedule.constant_fraction, steps=steps, out_dir=out_dir,
        model_name=recipe.model.name, device=device, seed=recipe.trainer.seed,
        checkpoint_every=recipe.trainer.checkpoint_every, image_every=recipe.trainer.image_every,
        log_every=recipe.trainer.log_every, amp=recipe.trainer.amp,
        extra_state={"recipe": resolved, "domains": domain_state(domains)}, stop_after=stop_after,
        show_progress=show_progress, validate=validator, val_every=recipe.trainer.val_every,
        best_metric=best_metric, lower_is_better=lower_is_better(best_metric),
        on_nan=recipe.trainer.on_nan, max_nan_skips=recipe.trainer.max_nan_skips, ema=recipe.trainer.ema,
        rewind_factor=recipe.trainer.rewind_factor, max_rewinds=recipe.trainer.max_rewinds)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))
    sizes = ", ".join(f"{role} {count_parameters(net):,}" for role, net in model.networks().items())
    announce(f"fit: {recipe.model.name} on {len(dataset)} samples ({recipe.data.dataset.name}), parameters: {sizes}; "
             f"device {device}, {steps} steps -> {out_dir}")
    summary = trainer.fit(resume_from=last if resume else None)
    announce(f"fit: step {summary['step']} in {summary['seconds']:.1f} s ({summary['steps_per_second']:.2f} it/s); "
             f"checkpoint {summary['checkpoint']}")
    return summary
