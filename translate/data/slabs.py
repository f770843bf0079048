"""One labelled volume -> train / val / test slabs along an axis, with gaps, in the layout ``translate fit`` reads.

With a single labelled scan (``example_ct_sm.nii.gz`` + ``example_seg.nii.gz``) the only honest split
is spatial: the test slab and the validation slab are contiguous blocks of slices, and ``gap``
slices on each side of them are left out of every split, so no training slice is a test slice or
its neighbour (a 2.5D input with ``context_slices <= gap`` never sees a held-out slice either).
Label ids can be grouped and renumbered (``vertebrae=26-50`` -> one class); ``labels.json`` in the
output root names the new ids, and ``values`` gives the recipe's ``labels`` intensity spec.

Layout written::

    OUT/train_lo/{ct,labels}.nii.gz   slices [0, test_start - gap)
    OUT/test/...                       the test slab, centred at ``centre`` (a fraction of the axis)
    OUT/val/...                        after the test slab and a gap
    OUT/train_hi/...                   after the val slab and a gap (when any slices remain)
    OUT/split.json, OUT/labels.json
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..atomic import write_text_atomic
from ..errors import TranslateError
from .io import check_same_grid, image_to_array, read_volume, write_volume


def parse_group(text: str) -> tuple[str, List[int]]:
    """``vertebrae=26-50`` or ``kidneys=2,3`` or ``liver=5`` -> ``("vertebrae", [26, ..., 50])``."""
    name, sep, ids = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_\-]+", name or "") or not ids:
        raise TranslateError(f"--group {text!r}: expected NAME=IDS, e.g. liver=5, kidneys=2,3 or vertebrae=26-50")
    values: List[int] = []
    for part in ids.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise TranslateError(f"--group {text!r}: {part!r} is not an id or a range such as 26-50")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise TranslateError(f"--group {text!r}: range {part!r} runs backwards")
        values.extend(range(lo, hi + 1))
    return name, values


def remap_labels(labels: np.ndarray, groups: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Group ``k`` (in order) -> id ``k + 1``; every other id -> 0 (background)."""
    out = np.zeros(labels.shape, dtype=np.int16)
    claimed: Dict[int, str] = {}
    for k, (name, ids) in enumerate(groups.items(), start=1):
        for value in ids:
            if value in claimed:
                raise TranslateError(f"--group {name}: id {value} is already in group {claimed[value]!r}")
            claimed[value] = name
        out[np.isin(labels, list(ids))] = k
    return out


def slab_bounds(length: int, test: float, val: float, gap: int, centre: float) -> Dict[str, tuple[int, int]]:
    """Half-open slice ranges of each slab; each held-out slab has at least two slices."""
    n_test, n_val = max(2, int(round(length * test))), max(2, int(round(length * val))) if val > 0 else 0
    start = int(round(centre * length - n_test / 2))
    start = min(max(start, 0), length - n_test)
    bounds = {"test": (start, start + n_test)}
    after = start + n_test + gap
    if n_val:
        if after + n_val <= length:
            bounds["val"] = (after, after + n_val)
            after = after + n_val + gap
        elif start - gap - n_val >= 0:  # no room after the test slab: before it
            bounds["val"] = (start - gap - n_val, start - gap)
        else:
            raise TranslateError(f"{length} slices cannot hold a test slab of {n_test}, a val slab of {n_val} "
                                 f"and gaps of {gap}; lower --test, --val or --gap")
    first_held = min(lo for lo, _ in bounds.values())
    lo_end = first_held - gap
    if lo_end >= 2:
        bounds["train_lo"] = (0, lo_end)
    if length - after >= 2:
        bounds["train_hi"] = (after, length)
    if not any(name.startswith("train") for name in bounds):
        raise TranslateError(f"{length} slices leave no training slab of two slices or more; lower --test, --val or --gap")
    return bounds


def _cut(image: sitk.Image, axis: int, lo: int, hi: int) -> sitk.Image:
    index = [slice(None)] * 3
    index[2 - axis] = slice(lo, hi)  # SimpleITK indexes (x, y, z); ``axis`` counts in (z, y, x)
    return image[tuple(index)]


def write_label_slabs(image_path: str | Path, labels_path: str | Path, out_dir: str | Path, *,
                      groups: Optional[Mapping[str, Sequence[int]]] = None, names: Optional[Mapping[int, str]] = None,
                      axis: int = 0, test: float = 0.2, val: float = 0.15, gap: int = 1, centre: float = 0.5,
                      image_key: str = "ct", labels_key: str = "labels") -> Dict[str, object]:
    """Cut a labelled volume into slabs (see the module notes); returns the summary written to ``labels.json``.

    Args:
        groups: new label name -> source ids (in order: ids 1, 2, ...); None keeps the source ids.
        names: source id -> name, used to name ids when ``groups`` is None.
        axis: slicing axis in (z, y, x) order.
        test, val: fractions of the slices in the test and validation slabs (val 0: no val slab).
        gap: slices left out on each side of a held-out slab.
        centre: where the test slab's centre lies, as a fraction of the axis.
    """
    if axis not in (0, 1, 2):
        raise TranslateError(f"--axis: expected 0, 1 or 2, got {axis}")
    if not 0 < test < 1 or not 0 <= val < 1 or gap < 0 or not 0 <= centre <= 1:
        raise TranslateError(f"--test {test}, --val {val}, --gap {gap}, --centre {centre}: expected fractions in "
                             f"(0, 1), [0, 1), a gap >= 0 and a centre in [0, 1]")
    image = read_volume(image_path, what="image")
    labels = read_volume(labels_path, what="labels")
    check_same_grid(image, labels, str(image_path), str(labels_path))
    ids = image_to_array(labels)
    if groups:
        remapped = remap_labels(ids, groups)
        legend = {"0": "background", **{str(k): name for k, name in enumerate(groups, start=1)}}
        sources = {name: list(map(int, values)) for name, values in groups.items()}
    else:
        remapped = ids.astype(np.int16)
        present = sorted(int(v) for v in np.unique(ids))
        legend = {str(v): ("background" if v == 0 else (names or {}).get(v, f"label_{v}")) for v in present}
        sources = {legend[str(v)]: [v] for v in present if v != 0}
    label_image = sitk.GetImageFromArray(remapped)
    label_image.CopyInformation(labels)
    length = int(ids.shape[axis])
    bounds = slab_bounds(length, test, val, gap, centre)
    out_dir = Path(out_dir)
    counts = {}
    for name, (lo, hi) in sorted(bounds.items(), key=lambda item: item[1][0]):
        write_volume(_cut(image, axis, lo, hi), out_dir / name / f"{image_key}.nii.gz")
        piece = _cut(label_image, axis, lo, hi)
        write_volume(piece, out_dir / name / f"{labels_key}.nii.gz")
        values = sitk.GetArrayViewFromImage(piece)
        counts[name] = {legend[k]: int(np.count_nonzero(values == int(k))) for k in legend if k != "0"}
    split = {"train": [n for n in ("train_lo", "train_hi") if n in bounds], "val": ["val"] if "val" in bounds else [],
             "test": ["test"]}
    write_text_atomic(out_dir / "split.json", json.dumps(split, indent=2) + "\n")
    summary = {"labels": legend, "values": [int(k) for k in legend], "source_ids": sources, "axis": axis, "gap": gap,
               "slabs": {name: list(b) for name, b in bounds.items()}, "voxels": counts,
               "image": str(image_path), "label_map": str(labels_path)}
    write_text_atomic(out_dir / "labels.json", json.dumps(summary, indent=2) + "\n")
    return summary
