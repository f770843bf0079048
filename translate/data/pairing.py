"""Pair a source volume (MR) with a target volume (CT) that lie on different grids.

Real MR and CT of one patient usually share a frame of reference (or are made to, by
:func:`translate.data.registration.register_volumes`) but not a grid: different boxes, spacing
and orientation, and the MR often covers only part of the CT. :func:`pair_volumes` resamples
the source onto the target's grid and keeps a ``valid`` mask of the voxels where both exist, so
that training and scoring use only those. :func:`pair_folder` does it for every subject and
writes the ``split.json`` the toolkit trains from (one folder per subject, see
:func:`translate.data.datasets.subjects_from_folder`).

Output of one pair, all on the target's exact grid (size, spacing, origin, direction)::

    <out_dir>/ct.nii.gz     the target, voxels and pixel type unchanged
    <out_dir>/mr.nii.gz     the source resampled (linear, 0 outside), float32
    <out_dir>/valid.nii.gz  uint8, 1 where both exist
    <out_dir>/<name>.nii.gz each ``extra`` mask, already on the target grid, copied

Arrays are ``(Z, Y, X)`` (SimpleITK order), as everywhere in :mod:`translate.data.io`.

Example:
    >>> pair_volumes("STS_001/ct.nii.gz", "STS_001/mr_t1.nii.gz", "paired/STS_001",
    ...              extra={"tumour": "STS_001/tumour.nii.gz"})            # doctest: +SKIP
    {'valid_fraction': 0.41, ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..atomic import write_text_atomic
from ..errors import TranslateError
from .io import READ_EXTENSIONS, array_to_image, check_same_grid, image_to_array, read_volume, write_volume

SPLIT_NAMES = ("train", "val", "test")


def read_transform(path: str | Path) -> sitk.Transform:
    """A SimpleITK transform file (``.tfm``, ``.txt``, ``.h5``) as written by ``sitk.WriteTransform``.

    Raises:
        TranslateError: missing or unreadable file (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise TranslateError(f"transform file not found: {path}")
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as err:
        reason = " ".join(str(err).split())[-200:]
        raise TranslateError(f"cannot read transform {path}: {reason}") from None


def _valid_mask(inside: np.ndarray, resampled: np.ndarray, zero_is_outside: bool) -> np.ndarray:
    """Inside the source's extent (and non-zero), eroded by one voxel in each axial plane.

    The erosion treats the target box's own border as inside (``border_value=1``): only the
    edges of the source's data, where linear interpolation mixes in the 0 background, are cut.
    """
    from scipy import ndimage

    valid = inside.astype(bool)
    if zero_is_outside:
        valid &= resampled != 0
    structure = np.ones((1, 3, 3), dtype=bool)  # in-plane only: slices are thick, (Z, Y, X)
    return ndimage.binary_erosion(valid, structure=structure, border_value=1)


def pair_volumes(target: str | Path, source: str | Path, out_dir: str | Path, *,
                 transform: str | Path | sitk.Transform | None = None,
                 extra: Optional[Mapping[str, str | Path]] = None,
                 source_name: str = "mr", target_name: str = "ct",
                 zero_is_outside: bool = True) -> Dict[str, object]:
    """Resample ``source`` onto ``target``'s grid and write the pair with its ``valid`` mask.

    Args:
        target: the volume whose grid is kept (the CT); written back unchanged.
        source: the volume resampled onto it (the MR), linear interpolation, 0 outside.
        out_dir: folder for ``<target_name>.nii.gz``, ``<source_name>.nii.gz``, ``valid.nii.gz``
            and the ``extra`` masks; created if needed. Every file is written atomically.
        transform: maps target points to source points (ITK's resampling convention), as a
            ``.tfm`` path or a ``SimpleITK.Transform``; ``None`` is the identity (same frame of
            reference). ``translate data register SOURCE TARGET OUT --transform-out T.tfm``
            writes such a file.
        extra: ``{name: path}`` masks already on the target grid (e.g. ``{"tumour": ...}``),
            written as ``<name>.nii.gz``.
        source_name, target_name: file names (without extension) of the outputs.
        zero_is_outside: treat source voxels that are exactly 0 as "no data" (the IBSI MR is 0
            outside its field of view); turn off for a source where 0 is a real value.

    Returns:
        A JSON-able summary: the files written, the target size, ``valid_voxels``,
        ``valid_fraction`` (of the target box), ``source_coverage`` (fraction of the target box
        inside the source's extent, before the zero test and the erosion).

    Raises:
        TranslateError: a missing or unreadable file, an ``extra`` mask on another grid, a bad
            name, or volumes that do not overlap ("no overlap", naming both files).
    """
    names = [target_name, source_name, "valid", *(extra or {})]
    for name in names:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise TranslateError(f"pair: bad output name {name!r}; expected a plain file name such as 'tumour'")
    if len(set(names)) != len(names):
        raise TranslateError(f"pair: output names must differ; got {', '.join(names)}")

    target_image = read_volume(target, what="target")
    source_image = read_volume(source, what="source")
    masks = {}
    for name, path in (extra or {}).items():
        masks[name] = read_volume(path, what=f"{name} mask")
        check_same_grid(target_image, masks[name], f"target {target}", f"{name} mask {path}")
    described = "identity" if transform is None else str(transform) if not isinstance(transform, sitk.Transform) \
        else transform.GetName()
    if transform is None:
        transform = sitk.Transform(3, sitk.sitkIdentity)
    elif not isinstance(transform, sitk.Transform):
        transform = read_transform(transform)

    resampled = sitk.Resample(sitk.Cast(source_image, sitk.sitkFloat32), target_image, transform,
                              sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    ones = sitk.Image(source_image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(source_image)
    inside = image_to_array(sitk.Resample(ones, target_image, transform, sitk.sitkNearestNeighbor, 0,
                                          sitk.sitkUInt8))
    if not inside.any():
        raise TranslateError(f"no overlap: source {source} and target {target} share no voxel "
                             "(different frames of reference? give --transform)")
    valid = _valid_mask(inside, image_to_array(resampled), zero_is_outside)
    if not valid.any():
        raise TranslateError(f"no overlap: source {source} has no non-zero data inside target {target} "
                             "beyond a one-voxel edge")

    out_dir = Path(out_dir)
    files = {target_name: write_volume(target_image, out_dir / f"{target_name}.nii.gz"),
             source_name: write_volume(resampled, out_dir / f"{source_name}.nii.gz"),
             "valid": write_volume(array_to_image(valid, target_image, np.uint8), out_dir / "valid.nii.gz")}
    for name, mask in masks.items():
        files[name] = write_volume(mask, out_dir / f"{name}.nii.gz")
    total = int(valid.size)
    return {"target": str(target), "source": str(source),
            "transform": described,
            "files": {name: str(path) for name, path in files.items()},
            "size": [int(n) for n in target_image.GetSize()],
            "valid_voxels": int(valid.sum()), "valid_fraction": float(valid.sum() / total),
            "source_coverage": float(np.count_nonzero(inside) / total)}


def _find_image(folder: Path, key: str) -> Path:
    for suffix in READ_EXTENSIONS:
        if (folder / f"{key}{suffix}").is_file():
            return folder / f"{key}{suffix}"
    raise TranslateError(f"{folder}: no {key!r} image (looked for {', '.join(key + s for s in READ_EXTENSIONS)})")


def _check_split(split: Mapping[str, Sequence[str]], subjects: Sequence[str]) -> Dict[str, list]:
    if not isinstance(split, Mapping) or not split:
        raise TranslateError("pair_folder: split must map split names (train, val, test) to lists of subject ids")
    seen: Dict[str, str] = {}
    for name, ids in split.items():
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise TranslateError(f"pair_folder: split {name!r} must be a list of subject ids")
        for subject in ids:
            if subject in seen:
                raise TranslateError(f"pair_folder: subject {subject!r} is in both {seen[subject]!r} and {name!r}")
            seen[subject] = name
    missing = [s for s in seen if s not in set(subjects)]
    if missing:
        raise TranslateError(f"pair_folder: split lists subjects that are not paired: {', '.join(missing)}")
    return {name: list(ids) for name, ids in split.items()}


def pair_folder(src_root: str | Path, out_root: str | Path, subjects: Optional[Iterable[str]] = None, *,
                split: Mapping[str, Sequence[str]], target: str = "ct", source: str = "mr_t1",
                extra: Sequence[str] = ("tumour",), source_name: str = "mr", target_name: str = "ct",
                transform: str | Path | None = None) -> Dict[str, dict]:
    """Pair every ``<src_root>/<subject>/`` into ``<out_root>/<subject>/`` and write ``split.json``.

    Args:
        src_root: one folder per subject holding ``<target>``, ``<source>`` and each ``<extra>``
            image (any extension :func:`translate.data.io.read_volume` reads).
        out_root: the training layout: ``<out_root>/<subject>/{ct,mr,valid,<extra>}.nii.gz``
            and ``<out_root>/split.json``; also ``pairing.json``, the per-subject summaries.
        subjects: subject folder names; ``None``: every subject the split lists.
        split: ``{"train": [...], "val": [...], "test": [...]}``; every id must be paired and
            appear once.
        target, source, extra: file names (without extension) in each subject folder.
        source_name, target_name: output names of the pair (the toolkit's keys are ``mr``/``ct``).
        transform: one transform file for every subject (``None``: identity).

    Returns:
        ``{subject: summary}`` as :func:`pair_volumes` returns.
    """
    src_root, out_root = Path(src_root), Path(out_root)
    if not src_root.is_dir():
        raise TranslateError(f"pair_folder: source folder not found: {src_root}")
    subjects = list(subjects) if subjects is not None else [s for ids in split.values() for s in ids]
    if not subjects:
        raise TranslateError("pair_folder: no subjects to pair")
    splits = _check_split(split, subjects)
    summaries = {}
    for subject in subjects:
        folder = src_root / subject
        if not folder.is_dir():
            raise TranslateError(f"pair_folder: subject folder not found: {folder}")
        summaries[subject] = pair_volumes(
            _find_image(folder, target), _find_image(folder, source), out_root / subject,
            transform=transform, extra={name: _find_image(folder, name) for name in extra},
            source_name=source_name, target_name=target_name)
    write_text_atomic(out_root / "pairing.json", json.dumps(summaries, indent=2) + "\n")
    write_text_atomic(out_root / "split.json", json.dumps(splits, indent=2) + "\n")
    return summaries
