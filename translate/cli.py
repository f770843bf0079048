"""The ``translate`` command. Heavy imports live inside commands so ``--help`` is instant."""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Medical image-to-image translation with adversarial networks.")
data_app = typer.Typer(no_args_is_help=True, help="Built-in data.")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"translate {version('translate-medical')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
            typer.echo("translate (not installed)")
        raise typer.Exit(0)


@app.callback()
def main_options(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                                   help="print the version and exit")) -> None:
    """Medical image-to-image translation with adversarial networks."""


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
        except Exception as err:  # a stop requested by SIGINT / SIGTERM, with its checkpoint written
            from .engine.trainer import TrainingInterrupted

            if not isinstance(err, TrainingInterrupted):
                raise
            typer.echo(f"stopped: {err}", err=True)
            raise typer.Exit(128 + err.signum)

    return wrapper


@app.command()
@user_errors
def fit(recipe: Path = typer.Argument(..., help="YAML recipe, e.g. recipes/mr2ct.yaml"),
        overrides: Optional[List[str]] = typer.Argument(None, help="dotted overrides: trainer.steps=200 data.root=DIR"),
        resume: bool = typer.Option(False, "--resume", help="continue from trainer.out_dir/checkpoints/last.pt"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace the run in trainer.out_dir (its checkpoints, logs, images)"),
        stop_after: Optional[int] = typer.Option(None, "--stop-after", min=1,
                                                 help="stop after this step (the schedule still spans trainer.steps)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Train a model from a recipe."""
    from .engine.run import fit_recipe
    from .recipe import load_recipe

    spec = load_recipe(recipe, overrides or [])
    fit_recipe(spec, resume=resume, stop_after=stop_after, show_progress=not quiet, overwrite=overwrite,
               announce=lambda text: typer.echo(text, err=True))


@app.command()
@user_errors
def infer(checkpoint: Path = typer.Argument(..., help="checkpoint written by `translate fit`"),
          source: Path = typer.Argument(..., help="input volume: NIfTI, NRRD, MHA or a DICOM series folder; "
                                                  "or a folder of them (every volume is translated)"),
          output: Path = typer.Argument(..., help="output volume: .nii.gz, .nii, .nrrd or .mha, or a folder name "
                                                  "for a DICOM series; with an input folder, the output folder"),
          direction: str = typer.Option("a2b", help="a2b or b2a (models that translate both ways)"),
          axis: Optional[int] = typer.Option(None, help="slicing axis in (z, y, x) order; default: the recipe's (2D models)"),
          batch_size: Optional[int] = typer.Option(None, min=1, help="slices per forward pass (2D models; default 16)"),
          device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
          output_format: str = typer.Option("auto", "--format", help="auto (OUTPUT's extension; with an input folder, "
                                            "each input's own format), nii.gz, nii, nrrd, mha or dicom"),
          tta: str = typer.Option("none", help="test-time augmentation: none; flips (the mean over every "
                                  "combination of the flips the model was trained with); shifts (the mean over the "
                                  "input moved by 0 or 1 voxel along each axis the network strides over: 4 passes "
                                  "for 2D models, 8 for 3D); or flips+shifts")):
    """Translate a whole volume; the output lies on the input's grid, in the output domain's units (HU for CT)."""
    from .data.io import is_dicom_folder
    from .engine.checks import check_device
    from .engine.inferer import infer_volume

    if device != "auto":
        check_device(device, "--device")
    if source.is_dir() and not is_dicom_folder(source):  # a folder of volumes
        from .engine.batch import infer_folder

        summary = infer_folder(checkpoint, source, output, direction=direction, axis=axis, batch_size=batch_size,
                               device=device, progress=not quiet, output_format=output_format,
                               report=lambda text: typer.echo(text, err=True), tta=tta)
        typer.echo(f"infer: {len(summary['written'])} written, {len(summary['failed'])} failed -> {output}")
        raise typer.Exit(1 if summary["failed"] else 0)
    result = infer_volume(checkpoint, source, output, direction=direction, axis=axis, batch_size=batch_size,
                          device=device, progress=not quiet, output_format=output_format, tta=tta)
    typer.echo(f"infer: {result['direction']} {'x'.join(map(str, result['shape']))} -> {result['output']}")


@app.command()
@user_errors
def evaluate(prediction: Path = typer.Argument(..., help="synthetic CT (HU)"),
             target: Path = typer.Argument(..., help="real CT (HU) on the same grid"),
             mask: Optional[Path] = typer.Option(None, help="evaluation mask (nonzero = inside); default: body from target CT > -500 HU"),
             region: Optional[List[str]] = typer.Option(None, help="NAME=MASK: also the MAE inside this mask (e.g. tumour=tumour.nii.gz)"),
             out: Optional[Path] = typer.Option(None, help="JSON output; default: PREDICTION's name + .metrics.json"),
             denoise: bool = typer.Option(False, "--denoise", help="also PSNR/SSIM in the [-160, 240] HU window (range 400) "
                                                                   "and the full range, and the noise std in each --region")):
    """MAE (HU), PSNR and SSIM with the SynthRAD convention, as a table and JSON."""
    from rich.console import Console
    from rich.table import Table

    from .errors import TranslateError
    from .metrics.paired import evaluate_volumes

    regions = {}
    for text in region or []:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise TranslateError(f"--region {text!r}: expected NAME=MASK, e.g. tumour=tumour.nii.gz")
        regions[name] = Path(path)
    result = evaluate_volumes(prediction, target, mask, regions)
    if denoise:
        from .metrics.denoise import evaluate_denoising

        result.update(evaluate_denoising(prediction, target, mask, regions))
    table = Table(title=f"{prediction.name} vs {target.name}")
    for column in ("metric", "value"):
        table.add_column(column)
    labels = {"mae_hu": "MAE (HU)", "psnr": "PSNR (dB)", "ssim": "SSIM", "mae_soft": "MAE soft tissue (HU)",
              "mae_bone": "MAE bone > 300 HU", "mae_air": "MAE air < -400 HU", "bias_hu": "bias (HU)",
              "bias_soft": "bias soft tissue (HU)", "bias_bone": "bias bone > 300 HU", "bias_air": "bias air < -400 HU",
              **{f"{kind}_{name}": f"{kind.upper() if kind == 'mae' else kind} in {name} (HU)"
                 for name in regions for kind in ("mae", "bias")}}
    if denoise:
        labels.update({"psnr_window": "PSNR [-160, 240] (dB)", "ssim_window": "SSIM [-160, 240]", "psnr_full":
                       "PSNR [-1024, 3000] (dB)", "ssim_full": "SSIM [-1024, 3000] (2D)", "rmse_hu": "RMSE (HU)",
                       **{f"noise_{name}": f"noise std in {name} (HU)" for name in regions}})
    for key, label in labels.items():
        if key in result:
            table.add_row(label, f"{result[key]:.4f}" if key.startswith("ssim") else f"{result[key]:.2f}")
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
    from .atomic import write_text_atomic

    # strict JSON: an infinite PSNR (identical images) is written as null, never as Infinity
    record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    write_text_atomic(out, json.dumps(record, indent=2, default=str, allow_nan=False) + "\n")
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
                 seed: int = typer.Option(0, help="same seed -> identical bytes"),
                 t2: bool = typer.Option(False, "--t2", help="also write t2.nii.gz, a T2-weighted MR of the same anatomy"),
                 unpaired: bool = typer.Option(False, "--unpaired", help="also t2, and split.json gains train_a / train_b: "
                                                                         "disjoint training subjects for domains A and B")):
    """Write the built-in paired MR/CT/label phantom."""
    from .data.phantom import write_phantom

    root = write_phantom(out_dir, subjects=subjects, seed=seed, t2=t2, unpaired=unpaired)
    typer.echo(f"phantom: {subjects} subjects -> {root}" + (" (unpaired halves train_a / train_b)" if unpaired else ""))


@data_app.command("slabs")
@user_errors
def data_slabs(image: Path = typer.Argument(..., help="the image volume, e.g. a CT"),
               labels: Path = typer.Argument(..., help="its label map on the same grid"),
               out_dir: Path = typer.Argument(..., help="folder for the slab subjects, split.json and labels.json"),
               group: Optional[List[str]] = typer.Option(
                   None, "--group", help="NAME=IDS: a class made of these source ids, e.g. liver=5, vertebrae=26-50 "
                                         "(repeatable, numbered 1, 2, ... in order; other ids become background); "
                                         "default: every id kept"),
               names: Optional[Path] = typer.Option(None, "--names", help="JSON id -> name (TotalSegmentator's "
                                                                             "labels.json: its 'total' map)"),
               axis: int = typer.Option(0, help="slab axis in (z, y, x) order"),
               test: float = typer.Option(0.2, help="fraction of the slices in the test slab"),
               val: float = typer.Option(0.15, help="fraction in the validation slab (0: none)"),
               gap: int = typer.Option(1, help="slices left out on each side of a held-out slab"),
               centre: float = typer.Option(0.5, help="where the test slab's centre lies along the axis (fraction)"),
               image_key: str = typer.Option("ct", help="file name of the image in each subject folder"),
               labels_key: str = typer.Option("labels", help="file name of the labels")):
    """Cut one labelled volume into train / val / test slabs with gaps (a spatial split for segmentation)."""
    from .data.slabs import parse_group, write_label_slabs
    from .errors import TranslateError

    groups = dict(parse_group(text) for text in group or [])
    legend = None
    if names is not None:
        try:
            table = json.loads(Path(names).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise TranslateError(f"--names {names}: cannot read JSON ({err})") from None
        table = table.get("total", table) if isinstance(table, dict) else {}
        legend = {int(k): str(v) for k, v in table.items() if str(k).isdigit()}
    summary = write_label_slabs(image, labels, out_dir, groups=groups or None, names=legend, axis=axis, test=test,
                                val=val, gap=gap, centre=centre, image_key=image_key, labels_key=labels_key)
    slabs = ", ".join(f"{name} {lo}-{hi - 1}" for name, (lo, hi) in sorted(summary["slabs"].items(), key=lambda x: x[1][0]))
    typer.echo(f"slabs: {slabs} -> {out_dir}; label values {summary['values']}")


@data_app.command("pair")
@user_errors
def data_pair(target: Path = typer.Argument(..., help="target volume whose grid is kept, e.g. the CT"),
              source: Path = typer.Argument(..., help="source volume resampled onto it, e.g. the MR"),
              out_dir: Path = typer.Argument(..., help="folder for ct.nii.gz, mr.nii.gz, valid.nii.gz and the extras"),
              transform: Optional[Path] = typer.Option(
                  None, "--transform", help="SimpleITK .tfm mapping target points to source points, "
                                            "e.g. from `translate data register`; default: identity"),
              extra: Optional[List[str]] = typer.Option(
                  None, "--extra", help="NAME=PATH mask already on the target grid, copied as NAME.nii.gz (repeatable)"),
              source_name: str = typer.Option("mr", help="output name of the resampled source"),
              target_name: str = typer.Option("ct", help="output name of the target")):
    """Resample SOURCE onto TARGET's grid and write both with a mask of the voxels where both exist."""
    from .data.pairing import pair_volumes
    from .errors import TranslateError

    masks = {}
    for item in extra or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise TranslateError(f"--extra {item!r}: expected NAME=PATH, e.g. tumour=tumour.nii.gz")
        masks[name] = Path(path)
    summary = pair_volumes(target, source, out_dir, transform=transform, extra=masks,
                           source_name=source_name, target_name=target_name)
    typer.echo(f"pair: {len(summary['files'])} volumes -> {out_dir}; valid {summary['valid_voxels']:,} voxels "
               f"({100 * summary['valid_fraction']:.1f} % of the target box)")


@data_app.command("register")
@user_errors
def data_register(moving: Path = typer.Argument(..., help="volume that moves, e.g. the MR"),
                  fixed: Path = typer.Argument(..., help="volume whose grid is kept, e.g. the CT"),
                  out: Path = typer.Argument(..., help="MOVING resampled on FIXED's grid (.nii.gz, .nii, .nrrd, .mha)"),
                  transform_out: Optional[Path] = typer.Option(
                      None, "--transform-out", help="where to write the transform (.tfm); default: OUT's name + .tfm"),
                  kind: str = typer.Option("rigid", help="rigid or affine"),
                  metric: str = typer.Option("mattes", help="mattes (mutual information), correlation or meansquares"),
                  iterations: int = typer.Option(200, min=1, help="optimiser iterations per resolution level"),
                  initial: str = typer.Option("geometry", help="geometry (centre the boxes) or identity "
                                                               "(volumes already in one frame of reference)"),
                  ignore_zero: bool = typer.Option(False, "--ignore-zero",
                                                   help="leave MOVING's exact zeros (outside its data) out of the metric"),
                  seed: int = typer.Option(0, help="metric sampling seed; same seed, same transform")):
    """Register MOVING to FIXED (SimpleITK, mutual information) and write the moved volume and the transform."""
    from .atomic import atomic_path
    from .data.io import volume_suffix, write_volume
    from .data.registration import register_volumes, transform_motion
    from .errors import TranslateError

    if transform_out is None:
        suffix = volume_suffix(out)
        transform_out = out.with_name((out.name[: -len(suffix)] if suffix else out.name) + ".tfm")
    transform, moved = register_volumes(moving, fixed, kind=kind, metric=metric, iterations=iterations,
                                      seed=seed, initial=initial, ignore_zero=ignore_zero)
    write_volume(moved, out)
    import SimpleITK as sitk

    try:
        with atomic_path(transform_out, suffix=transform_out.suffix or ".tfm") as tmp:
            sitk.WriteTransform(transform, str(tmp))
    except (RuntimeError, OSError) as err:
        raise TranslateError(f"cannot write transform {transform_out}: {' '.join(str(err).split())[-200:]}") from None
    motion = transform_motion(transform, moved)  # moved lies on FIXED's grid: no second read
    typer.echo(f"register: {kind} {moving.name} -> {fixed.name}; moved volume {out}, transform {transform_out}")
    typer.echo(f"register: the transform moves {fixed.name}'s box by up to {motion['max_mm']:.1f} mm "
               f"(mean {motion['mean_mm']:.1f} mm) and rotates it by {motion['rotation_degrees']:.1f} degrees")


@app.command()
@user_errors
def synthesize(checkpoint: Path = typer.Argument(..., help="checkpoint of a spade or joint_gan model (`translate fit`)"),
               out: Path = typer.Argument(..., help="empty folder: written as a data root (subject folders + split.json)"),
               masks: Optional[Path] = typer.Option(None, "--masks", help="label volume or folder of them (spade); "
                                                    "default: the training masks of the checkpoint's data.root"),
               n: int = typer.Option(1, "--n", min=1, help="spade: images per mask (random styles); joint: pairs"),
               seed: int = typer.Option(0, "--seed", help="same seed, same files"),
               device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N"),
               quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Synthetic image + mask pairs (NIfTI): from given label maps (SPADE) or from noise (joint generators)."""
    from .engine.checks import check_device
    from .synthesis import synthesize as run_synthesis

    if device != "auto":
        check_device(device, "--device")
    run_synthesis(checkpoint, out, masks=masks, n=n, seed=seed, device=device, progress=not quiet,
                  announce=lambda text: typer.echo(text))


benchmark_app = typer.Typer(no_args_is_help=True, help="Benchmarks that train through recipes.")
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("synthesis")
@user_errors
def benchmark_synthesis(generators: List[str] = typer.Argument(..., help="RECIPE or LABEL=RECIPE[,key=value,...] per generator, "
                                                                        "e.g. spade=recipes/spade-ct.yaml"),
                        out: Path = typer.Option(Path("runs/fid_dice"), "--out", help="folder for runs, samples and results"),
                        data_root: Optional[Path] = typer.Option(None, "--data-root", help="real data root (default: a 64 x 64 phantom)"),
                        gan_steps: int = typer.Option(600, min=1, help="training steps of every generator"),
                        unet_steps: int = typer.Option(400, min=1, help="training steps of every segmenter"),
                        n_samples: int = typer.Option(512, min=1, help="synthetic 2D pairs per generator"),
                        extractor: Optional[List[str]] = typer.Option(None, "--extractor", help="segmenter (default) and/or inception"),
                        inception_weights: Optional[Path] = typer.Option(None, help="torchvision Inception-v3 state dict (local file)"),
                        segmenter_recipe: Optional[Path] = typer.Option(None, help="default: recipes/segmenter-unet.yaml"),
                        seed: int = typer.Option(0), device: str = typer.Option("cpu"),
                        mix: str = typer.Option("concat", "--mix", help="real + synthetic rows: concat (every slice once) "
                                                                       "or balanced (half real, half synthetic)"),
                        augmented_copies: int = typer.Option(0, "--augmented-copies", min=0,
                                                             help="classic augmentation drawn online (0) or N copies drawn once"),
                        unet_seeds: int = typer.Option(1, "--unet-seeds", min=1,
                                                       help="train every segmenter row with K seeds: Dice mean and sd, paired by seed"),
                        quiet: bool = typer.Option(False, "--quiet", help="no progress bars")):
    """Seed 003's FID/Dice study: train generators, sample pairs, train one U-Net on each data set, score on real test data."""
    from .evaluation.synthesis import Budget, parse_generator, run_pipeline

    run_pipeline([parse_generator(text) for text in generators], out, data_root=data_root,
                 budget=Budget(gan_steps=gan_steps, unet_steps=unet_steps, n_samples=n_samples),
                 extractors=extractor or ["segmenter"], inception_weights=inception_weights,
                 segmenter_recipe=segmenter_recipe, seed=seed, device=device, progress=not quiet,
                 mix=mix, augmented_copies=augmented_copies,
                 unet_seeds=unet_seeds,
                 announce=lambda text: typer.echo(text, err=True))


@data_app.command("lowdose")
@user_errors
def data_lowdose(source: Path = typer.Argument(..., help="routine-dose CT in HU: NIfTI, NRRD, MHA or a DICOM series folder"),
                 output: Path = typer.Argument(..., help="simulated low-dose CT (.nii.gz, .nii, .nrrd or .mha), int16 HU"),
                 dose: float = typer.Option(0.25, help="fraction of the routine dose, e.g. 0.25 for quarter dose"),
                 seed: int = typer.Option(0, help="same seed -> identical volume"),
                 i0: float = typer.Option(1.0e5, "--i0", help="photons per detector bin and view at full dose"),
                 electronic_noise: float = typer.Option(0.0, "--electronic-noise",
                                                        help="Gaussian electronic noise, std in counts"),
                 filter_name: str = typer.Option("ramp", "--filter", help="FBP filter: ramp, shepp-logan, cosine, hamming, hann"),
                 reference: str = typer.Option("routine", help="routine: the input already carries the noise of i0, only "
                                                               "the difference is added; ideal: the input is noise-free"),
                 views: Optional[int] = typer.Option(None, help="projection angles over 180 degrees; default pi/2 x slice size"),
                 quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Simulate a reduced-dose CT: Poisson noise in the projections of every slice, reconstructed by FBP."""
    from .data.lowdose import simulate_file

    result = simulate_file(source, output, dose, seed=seed, i0=i0, electronic_noise=electronic_noise,
                           filter_name=filter_name, reference=reference, views=views, progress=not quiet)
    typer.echo(f"lowdose: dose {dose:g} ({reference}), {'x'.join(map(str, result['shape']))}, "
               f"{result['views']} views -> {result['output']}")


@data_app.command("denoise-pairs")
@user_errors
def data_denoise_pairs(out_dir: Path = typer.Argument(..., help="folder for <name>-<split>/{low,ct}.nii.gz, split.json and lowdose.json"),
                       sources: List[Path] = typer.Argument(..., help="routine-dose CTs (files or DICOM series folders)"),
                       dose: float = typer.Option(0.25, help="fraction of the routine dose"),
                       seed: int = typer.Option(0, help="same seed -> identical data"),
                       val: float = typer.Option(0.15, help="fraction of each volume's slices for validation"),
                       test: float = typer.Option(0.2, help="fraction of each volume's slices for testing (the last ones)"),
                       gap: int = typer.Option(2, help="slices left out between train, val and test slabs"),
                       i0: float = typer.Option(1.0e5, "--i0", help="photons per detector bin and view at full dose"),
                       electronic_noise: float = typer.Option(0.0, "--electronic-noise", help="std in counts"),
                       filter_name: str = typer.Option("ramp", "--filter", help="FBP filter"),
                       quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Paired low-dose -> routine-dose data for a denoising recipe, split into slabs along Z."""
    from .data.lowdose import write_denoise_pairs

    result = write_denoise_pairs(sources, out_dir, dose, seed=seed, val_fraction=val, test_fraction=test, gap=gap,
                                 i0=i0, electronic_noise=electronic_noise, filter_name=filter_name, progress=not quiet)
    counts = ", ".join(f"{k} {len(v)}" for k, v in result["split"].items())
    typer.echo(f"denoise-pairs: dose {dose:g}, subjects {counts} -> {out_dir}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
