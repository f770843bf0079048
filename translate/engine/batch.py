"""``translate infer CKPT IN_DIR OUT_DIR``: every volume of a folder, one progress bar, failures skipped.

A folder's volumes are its NIfTI / NRRD / MHA files and its sub-folders holding a DICOM series
(not searched deeper). The model is loaded once; each volume is read, translated and written on
its own grid; one that cannot be read or written is reported in one line and skipped, the others
are still written. The summary says how many failed, and the command's exit code is 1 when any did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..data.io import is_dicom_folder, read_volume, volume_suffix
from ..errors import TranslateError
from .inferer import OUTPUT_FORMATS, load_translator, translate_image, write_translated

#: detached-header formats are written as their single-file twin (atomic replacement needs one file)
SINGLE_FILE = {".nhdr": ".nrrd", ".mhd": ".mha"}


def list_volumes(folder: Path, exclude: Optional[Path] = None) -> Tuple[List[Path], List[Path]]:
    """``(volumes, ignored)``: files with a volume extension and DICOM-series sub-folders, sorted by
    name; everything else (other files, sub-folders without a series, hidden entries) is ignored.

    A sub-folder that holds no DICOM series is listed as a volume when it holds files (it may be a
    damaged series: reading it then reports why), ignored when it is empty."""
    volumes, ignored = [], []
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or (exclude is not None and entry.resolve() == exclude):
            continue
        if entry.is_dir():
            (volumes if is_dicom_folder(entry) or any(p.is_file() for p in entry.iterdir()) else ignored).append(entry)
        elif volume_suffix(entry):
            volumes.append(entry)
        else:
            ignored.append(entry)
    return volumes, ignored


def output_name(source: Path, out_dir: Path, output_format: str) -> Tuple[Path, bool]:
    """Where ``source``'s translation goes in ``out_dir`` and whether it is a DICOM series.

    ``auto`` keeps the input's format (a DICOM series gives a DICOM series); other formats replace
    the extension: ``ct.nrrd`` -> ``ct.nii.gz``, or the folder ``ct`` for ``dicom``."""
    suffix = volume_suffix(source)
    stem = source.name[: -len(suffix)] if suffix else source.name
    if output_format == "dicom" or (output_format == "auto" and source.is_dir()):
        return out_dir / stem, True
    if output_format == "auto":
        return out_dir / (stem + SINGLE_FILE.get(suffix, source.name[len(stem):])), False
    return out_dir / f"{stem}.{output_format}", False


def infer_folder(checkpoint: str | Path, in_dir: str | Path, out_dir: str | Path, *, direction: str = "a2b",
                 axis: Optional[int] = None, batch_size: Optional[int] = None, device: str = "auto",
                 progress: bool = True, output_format: str = "auto",
                 report: Callable[[str], None] = print, tta: str = "none") -> Dict[str, Any]:
    """Translate every volume of ``in_dir`` into ``out_dir``; returns ``{"written": [...], "failed": [...]}``.

    Raises:
        TranslateError: before any work, for a bad checkpoint, ``out_dir`` equal to ``in_dir``, an
            unknown format, a folder with no volume, or two inputs that would write one output.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if output_format not in OUTPUT_FORMATS:
        raise TranslateError(f"--format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    if not in_dir.is_dir():
        raise TranslateError(f"input folder not found: {in_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise TranslateError(f"output {out_dir} is a file; with an input folder the output is a folder")
    if out_dir.exists() and out_dir.resolve() == in_dir.resolve():
        raise TranslateError(f"output folder {out_dir} is the input folder; choose another one (inputs would be overwritten)")
    volumes, ignored = list_volumes(in_dir, exclude=out_dir.resolve())
    if not volumes:
        raise TranslateError(f"input folder {in_dir} holds no volume (NIfTI, NRRD, MHA files or DICOM series folders)")
    targets = [output_name(v, out_dir, output_format) for v in volumes]
    seen: Dict[Path, Path] = {}
    for volume, (target, _) in zip(volumes, targets):
        if target in seen:
            raise TranslateError(f"{seen[target].name} and {volume.name} would both be written to {target}; "
                                 f"rename one or choose another --format")
        seen[target] = volume
    translator = load_translator(checkpoint, direction=direction, axis=axis, batch_size=batch_size, device=device,
                                 tta=tta)
    if ignored:
        names = ", ".join(p.name for p in ignored[:3]) + (" ..." if len(ignored) > 3 else "")
        report(f"infer: ignoring {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} that are not volumes: {names}")
    written: List[Dict[str, Any]] = []
    failed: List[Dict[str, str]] = []

    def run(advance: Callable[[float], None]) -> None:
        for volume, (target, dicom) in zip(volumes, targets):
            done = 0.0
            try:
                image = read_volume(volume, what="input")
                steps = max(translator.inferer.steps(list(image.GetSize())[::-1]) * len(translator.shift_sets()), 1)

                def step(k: int) -> None:
                    nonlocal done
                    done += k / steps
                    advance(k / steps)

                result = translate_image(translator, image, on_progress=step)
                write_translated(translator, result, target, dicom=dicom, source=volume, checkpoint=checkpoint)
                written.append({"input": str(volume), "output": str(target), "shape": list(image.GetSize())[::-1]})
            except TranslateError as err:
                failed.append({"input": str(volume), "error": str(err)})
                report(f"infer: skipped {volume.name}: {err}")
            except (RuntimeError, ValueError, OSError, MemoryError) as err:  # one bad volume must not stop the batch
                text = " ".join(str(err).split())[:200]
                failed.append({"input": str(volume), "error": f"{type(err).__name__}: {text}"})
                report(f"infer: skipped {volume.name}: {type(err).__name__}: {text}")
            advance(1.0 - done)

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"infer {len(volumes)} volumes", total=len(volumes))
            run(lambda k: bar.advance(task, k))
    else:
        run(lambda k: None)
    return {"written": written, "failed": failed, "ignored": [str(p) for p in ignored], "out_dir": str(out_dir)}
