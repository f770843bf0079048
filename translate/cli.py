"""The ``translate`` command. Heavy imports live inside commands so ``--help`` is instant."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Medical image-to-image translation with adversarial networks.")
data_app = typer.Typer(no_args_is_help=True, help="Built-in data.")
app.add_typer(data_app, name="data")


def user_errors(func):
    """Turn :class:`TranslateError` into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .errors import TranslateError

        try:
            return func(*args, **kwargs)
        except TranslateError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def _write_text_atomic(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
@user_errors
def fit(recipe: Path = typer.Argument(..., help="YAML recipe, e.g. recipes/mr2ct.yaml"),
        overrides: Optional[List[str]] = typer.Argument(None, help="dotted overrides: trainer.steps=200 data.root=DIR"),
        resume: bool = typer.Option(False, "--resume", help="continue from trainer.out_dir/checkpoints/last.pt"),
        stop_after: Optional[int] = typer.Option(None, "--stop-after", min=1,
                                                 help="stop after this step (the schedule still spans trainer.steps)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Train a model from a recipe."""
    import yaml

    from .errors import TranslateError
    from .recipe import load_recipe, recipe_to_dict

    spec = load_recipe(recipe, overrides or [])
    import torch

    from .engine.build import build_model, build_objectives, build_train_dataset, count_parameters, intensity_state
    from .engine.trainer import Trainer, resolve_device

    out_dir = spec.trainer.out_dir
    last = out_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise TranslateError(f"--resume: no checkpoint at {last} (trainer.out_dir={out_dir})")
    if not resume and last.is_file():
        raise TranslateError(f"trainer.out_dir {out_dir} already holds a run; pass --resume to continue it "
                             f"or choose another trainer.out_dir=...")
    if spec.trainer.threads:
        torch.set_num_threads(spec.trainer.threads)
    resolved = recipe_to_dict(spec)
    device = resolve_device(spec.trainer.device)
    torch.manual_seed(spec.trainer.seed)
    dataset = build_train_dataset(spec)
    model = build_model(spec)
    g_objective, d_objective = build_objectives(spec)
    trainer = Trainer(
        model=model, generator_objective=g_objective, discriminator_objective=d_objective, dataset=dataset,
        batch_size=spec.data.batch_size, num_workers=spec.data.num_workers,
        optimizers={"generator": spec.optim.generator.model_dump(), "discriminator": spec.optim.discriminator.model_dump()},
        constant_fraction=spec.optim.schedule.constant_fraction, steps=spec.trainer.steps, out_dir=out_dir,
        model_name=spec.model.name, device=device, seed=spec.trainer.seed, checkpoint_every=spec.trainer.checkpoint_every,
        image_every=spec.trainer.image_every, log_every=spec.trainer.log_every, amp=spec.trainer.amp,
        extra_state={"recipe": resolved, "intensity": intensity_state(spec)}, stop_after=stop_after,
        show_progress=not quiet)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(out_dir / "recipe.yaml", yaml.safe_dump(resolved, sort_keys=False))
    typer.echo(f"fit: {spec.model.name} on {len(dataset)} slices, {count_parameters(model.generator):,} generator "
               f"parameters, device {device}, {spec.trainer.steps} steps -> {out_dir}", err=True)
    summary = trainer.fit(resume_from=last if resume else None)
    typer.echo(f"fit: step {summary['step']} in {summary['seconds']:.1f} s ({summary['steps_per_second']:.2f} it/s); "
               f"checkpoint {summary['checkpoint']}", err=True)


@app.command()
@user_errors
def infer(checkpoint: Path = typer.Argument(..., help="checkpoint written by `translate fit`"),
          source: Path = typer.Argument(..., help="input volume: NIfTI, NRRD, MHA or a DICOM series folder"),
          output: Path = typer.Argument(..., help="output volume: .nii.gz, .nii, .nrrd or .mha"),
          axis: Optional[int] = typer.Option(None, help="slicing axis in (z, y, x) order; default: the recipe's"),
          batch_size: int = typer.Option(16, min=1, help="slices per forward pass"),
          device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Translate a whole volume; the output lies on the input's grid, in HU."""
    from .engine.inferer import infer_volume

    result = infer_volume(checkpoint, source, output, axis=axis, batch_size=batch_size, device=device,
                          progress=not quiet)
    typer.echo(f"infer: {result['slices']} slices -> {result['output']}")


@app.command()
@user_errors
def evaluate(prediction: Path = typer.Argument(..., help="synthetic CT (HU)"),
             target: Path = typer.Argument(..., help="real CT (HU) on the same grid"),
             mask: Optional[Path] = typer.Option(None, help="evaluation mask (nonzero = inside); default: body from target CT > -500 HU"),
             out: Optional[Path] = typer.Option(None, help="JSON output; default: PREDICTION's name + .metrics.json")):
    """MAE (HU), PSNR and SSIM with the SynthRAD convention, as a table and JSON."""
    from rich.console import Console
    from rich.table import Table

    from .metrics.paired import evaluate_volumes

    result = evaluate_volumes(prediction, target, mask)
    table = Table(title=f"{prediction.name} vs {target.name}")
    for column in ("metric", "value"):
        table.add_column(column)
    labels = {"mae_hu": "MAE (HU)", "psnr": "PSNR (dB)", "ssim": "SSIM"}
    for key, label in labels.items():
        table.add_row(label, f"{result[key]:.4f}" if key == "ssim" else f"{result[key]:.2f}")
    table.add_row("voxels in mask", f"{int(result.get('voxels', 0)):,}")
    table.add_row("mask", str(result.get("mask", "")))
    Console().print(table)
    if out is None:
        name = prediction.name
        for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        out = prediction.parent / f"{name}.metrics.json"
    record = {"prediction": str(prediction), "target": str(target), **{k: v for k, v in result.items()}}
    _write_text_atomic(out, json.dumps(record, indent=2, default=str) + "\n")
    typer.echo(f"evaluate: metrics written to {out}")


@app.command()
@user_errors
def losses(markdown: bool = typer.Option(False, "--markdown", help="print the README's markdown table")):
    """List the loss catalogue: name, parameters, requirement, meaning."""
    from .losses.catalogue import catalogue, catalogue_markdown

    if markdown:
        typer.echo(catalogue_markdown())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="translate loss catalogue", show_lines=True)
    for column in ("name", "parameters", "requires", "meaning"):
        table.add_column(column, overflow="fold")
    for entry in catalogue():
        params = entry.get("parameters", {})
        text = ", ".join(f"{k}={v!r}" for k, v in params.items()) if isinstance(params, dict) else str(params)
        table.add_row(entry["name"], text, str(entry.get("requirement", "-")), str(entry.get("meaning", "")))
    Console(width=160).print(table)


@data_app.command("phantom")
@user_errors
def data_phantom(out_dir: Path = typer.Argument(..., help="folder to write subjects, split.json and labels.json"),
                 subjects: int = typer.Option(12, min=1, help="number of subjects"),
                 seed: int = typer.Option(0, help="same seed -> identical bytes")):
    """Write the built-in paired MR/CT/label phantom."""
    from .data.phantom import write_phantom

    root = write_phantom(out_dir, subjects=subjects, seed=seed)
    typer.echo(f"phantom: {subjects} subjects -> {root}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
