"""Subjects on disk and their volumes in network space.

A data folder holds one sub-folder per subject (``<root>/<id>/<key>.nii.gz`` for each domain's
file key, e.g. ``mr``, ``ct``, ``labels``, ``valid``) and a ``split.json`` =
``{"train": [ids], "val": [ids], "test": [ids]}``; the built-in phantom
(:func:`translate.data.phantom.write_phantom`) writes exactly this layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import numpy as np

from ..errors import TranslateError
from .domains import Domain
from .io import check_same_grid, image_to_array, read_volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def read_split(root: Path) -> dict:
    """``split.json`` of ``root`` as ``{name: [ids]}``; one-line errors for a missing or malformed file."""
    root = Path(root)
    if not root.is_dir():
        raise TranslateError(f"data.root {root}: folder not found")
    split_file = root / "split.json"
    if not split_file.is_file():
        raise TranslateError(f'data.root {root}: no split.json (expected {{"train": [ids], "val": [ids], "test": [ids]}})')
    try:
        splits = json.loads(split_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TranslateError(f"{split_file}: invalid JSON ({err})") from None
    except RecursionError:
        raise TranslateError(f"{split_file}: invalid JSON (nested too deeply)") from None
    if not isinstance(splits, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in splits.values()):
        raise TranslateError(f"{split_file}: expected an object mapping split names to lists of subject folder names")
    return splits


def find_image(folder: Path, key: str) -> Optional[Path]:
    found = [folder / f"{key}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{key}{suffix}").is_file()]
    return found[0] if found else None


def subjects_from_folder(root: Path, split: str, keys: Iterable[str] = ("mr", "ct"),
                         optional: Iterable[str] = ()) -> list[dict]:
    """Subjects of one split: ``[{"id": str, key: Path, ...}]`` in the order split.json lists them.

    Each ``key`` is looked up as ``<root>/<id>/<key>`` with one of :data:`IMAGE_SUFFIXES`; keys in
    ``optional`` are added when present. Raises TranslateError (one line) for a missing root, a
    missing or malformed split.json, an unknown or empty split, a missing folder or image.
    """
    root = Path(root)
    splits = read_split(root)
    if split not in splits:
        raise TranslateError(f"{root / 'split.json'}: no split {split!r}; it has {sorted(splits)}")
    if not splits[split]:
        raise TranslateError(f"data.root {root}: split {split!r} lists no subjects")
    subjects = []
    for subject_id in splits[split]:
        folder = root / subject_id
        if not folder.is_dir():
            raise TranslateError(f"data.root {root}: subject {subject_id!r} of split {split!r} has no folder")
        subject: dict = {"id": subject_id}
        for key in keys:
            path = find_image(folder, key)
            if path is None:
                looked = ", ".join(f"{key}{suffix}" for suffix in IMAGE_SUFFIXES)
                raise TranslateError(f"{folder}: no {key!r} image (looked for {looked})")
            subject[key] = path
        for key in optional:
            path = find_image(folder, key)
            if path is not None:
                subject[key] = path
        subjects.append(subject)
    return subjects


def load_volumes(subject: Mapping, domains: Mapping[str, Domain], *, valid_key: Optional[str] = None,
                 same_grid: bool = True, extra: Iterable[str] = ()) -> Dict[str, np.ndarray]:
    """One subject's volumes: native ``(Z, Y, X)`` arrays by domain name, plus masks.

    Returns ``{domain: array, ..., "body_mask": bool, "valid_mask": bool, extra key: array}``.
    ``body_mask`` comes from the last CT domain (CT > -500 HU, holes filled), else from the first
    domain's own rule; ``valid_mask`` is the ``valid_key`` volume
    (voxels where every domain has data, as ``translate data pair`` writes it), or all voxels.
    """
    subject_id = str(subject.get("id", "subject"))
    images, paths = {}, {}
    for name, domain in domains.items():
        if domain.key not in subject:
            raise TranslateError(f"subject {subject_id!r}: no {domain.key!r} image for domain {name!r}")
        paths[name] = Path(subject[domain.key])
        images[name] = read_volume(paths[name], what=f"{domain.key} of subject {subject_id}")
    for key in [k for k in (valid_key, *extra) if k]:
        if key not in subject:
            raise TranslateError(f"subject {subject_id!r}: no {key!r} image")
        paths[key] = Path(subject[key])
        images[key] = read_volume(paths[key], what=f"{key} of subject {subject_id}")
    names = list(images)
    if same_grid:
        for name in names[1:]:
            check_same_grid(images[names[0]], images[name], str(paths[names[0]]), str(paths[name]))
    arrays = {name: image_to_array(image) for name, image in images.items()}
    shape = arrays[next(iter(domains))].shape
    ct = [n for n, d in domains.items() if d.intensity.kind == "ct"]
    first = ct[-1] if ct else next(iter(domains))
    arrays["body_mask"] = domains[first].intensity.body_mask(arrays[first])
    arrays["valid_mask"] = arrays.pop(valid_key) > 0 if valid_key else np.ones(shape, dtype=bool)
    return arrays


def fill_outside(volume: np.ndarray, valid: Optional[np.ndarray]) -> np.ndarray:
    """``volume`` with every voxel outside ``valid`` set to its nearest valid voxel's value.

    Where an MR's field of view ends inside the body, the resampled MR drops to 0 and looks like
    air next to tissue, i.e. like skin; a network cannot tell that truncation from a real body
    outline and predicts air inside the body near it. Continuing the tissue across the edge
    removes the false outline (the filled voxels are outside ``valid`` and never scored).
    """
    if valid is None or valid.all() or not valid.any():
        return volume
    from scipy import ndimage

    nearest = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return volume[tuple(nearest)]


def normalise_volume(volume: np.ndarray, spec, valid: Optional[np.ndarray] = None, fill: bool = False) -> np.ndarray:
    """One native ``(Z, Y, X)`` volume -> network space ``(C, Z, Y, X)``: the spec fitted inside
    ``valid`` (when it leaves voxels out) and, with ``fill``, the volume first continued outside it.
    Datasets and inference both come through here, so they cannot drift apart."""
    partial = valid is not None and not np.all(valid)
    params = spec.fit(volume, valid if partial else None)
    if partial and fill:
        volume = fill_outside(volume, np.asarray(valid, dtype=bool))
    return spec.forward(volume, params)


def normalise(arrays: Mapping[str, np.ndarray], domains: Mapping[str, Domain],
              fill: Iterable[str] = ()) -> Dict[str, np.ndarray]:
    """Each domain's native volume -> network space ``(C, Z, Y, X)`` (:func:`normalise_volume`), fitted
    inside the valid mask; domains named in ``fill`` are first continued outside it."""
    valid = arrays.get("valid_mask")
    return {name: normalise_volume(arrays[name], domain.intensity, valid, fill=name in fill)
            for name, domain in domains.items()}


def held_out_block(length: int, fraction: float, context: int) -> tuple[int, int]:
    """``(first validation slice, first slice training may not use)`` of a volume of ``length`` slices:
    the last ``fraction`` of the slices (at least one) are validation, and the ``context`` slices
    before them are dropped from training too, so no training input overlaps them."""
    start = max(1, length - max(1, int(round(length * fraction))))
    return start, max(0, start - context)


def pad_to(array: np.ndarray, shape: tuple, values: list | float, centre: bool = True) -> np.ndarray:
    """Pad the trailing dims of ``(C, *S)`` (or a mask ``(*S)``) up to ``shape`` with per-channel ``values``."""
    spatial = array.shape[-len(shape):]
    if tuple(spatial) == tuple(shape):
        return array
    widths = []
    for have, want in zip(spatial, shape):
        extra = max(want - have, 0)
        before = extra // 2 if centre else 0
        widths.append((before, extra - before))
    lead = [(0, 0)] * (array.ndim - len(shape))
    if np.isscalar(values) or array.ndim == len(shape):
        return np.pad(array, lead + widths, constant_values=values if np.isscalar(values) else 0)
    return np.stack([np.pad(channel, lead[1:] + widths, constant_values=value) for channel, value in zip(array, values)])


def round_up(size: int, multiple: int) -> int:
    return -(-int(size) // multiple) * multiple
