"""2D and 2.5D slice datasets: paired (same subjects, same grid) and unpaired (independent draws).

Every item is a dict of float32 tensors: ``real_a`` ``(C_a (1 + 2k), H, W)`` (the source slice and
its ``k = context_slices`` neighbours each side as channels, edge slices replicated), ``real_b``
``(C_b, H, W)``, ``body_mask`` and ``valid_mask`` ``(1, H, W)``, plus ``subject`` and ``slice``.
Slices of every subject are padded (centred, with each domain's background) to one size that is a
multiple of the model's size multiple, so subjects of any in-plane size train together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..errors import TranslateError
from .augment import as_tensors, augment, build_transforms, draw_rng, parse_flip_axes, unpack_item
from .domains import Domain
from .datasets import DATASETS
from .subjects import held_out_block, load_volumes, normalise, pad_to, round_up, subjects_from_folder


def context_stack(volume: np.ndarray, index: int, k: int) -> np.ndarray:
    """``(C, N, H, W)`` -> ``(C (2k + 1), H, W)``: slice ``index`` and ``k`` neighbours each side."""
    n = volume.shape[1]
    neighbours = np.clip(np.arange(index - k, index + k + 1), 0, n - 1)
    picked = volume[:, neighbours]
    return picked.reshape(-1, *picked.shape[2:])


class _SliceVolumes:
    """Normalised volumes of a list of subjects, moved so the slicing axis is first, padded to one size."""

    def __init__(self, subjects, domains: Mapping[str, Domain], *, axis: int, valid_key: Optional[str],
                 same_grid: bool = True, fill: Sequence[str] = (), body_only: bool = False,
                 extra: Sequence[str] = ()):
        self.items = []
        self.extra = tuple(extra)  # integer volumes served as they are (e.g. labels), padded with 0
        for subject in subjects:
            arrays = load_volumes(subject, domains, valid_key=valid_key, same_grid=same_grid, extra=self.extra)
            normalised = normalise(arrays, domains, fill=fill)
            if body_only:
                arrays["valid_mask"] = arrays["valid_mask"] & arrays["body_mask"]
            volume = {name: np.moveaxis(normalised[name], axis + 1, 1) for name in domains}
            for mask in ("body_mask", "valid_mask") + self.extra:
                volume[mask] = np.moveaxis(arrays[mask], axis, 0)[None].astype(np.float32)
            volume["id"] = str(subject["id"])
            self.items.append(volume)

    def pad(self, shape: tuple, domains: Mapping[str, Domain]) -> None:
        for volume in self.items:
            for name, domain in domains.items():
                volume[name] = pad_to(volume[name], shape, domain.intensity.pad_values(volume[name]))
            for mask in ("body_mask", "valid_mask") + self.extra:
                volume[mask] = pad_to(volume[mask], shape, [0.0])


def _plane_size(shapes: Sequence[tuple], multiple: int, pad: bool, where: str) -> tuple:
    biggest = tuple(max(s[i] for s in shapes) for i in range(2))
    if pad:
        return tuple(round_up(size, multiple) for size in biggest)
    odd = [s for s in shapes if s != biggest or any(size % multiple for size in s)]
    if odd:
        raise TranslateError(f"{where}: pad is false but slices of {odd[0][0]} x {odd[0][1]} are not all one size "
                             f"and a multiple of {multiple} (the generator's size multiple); set pad: true")
    return biggest


def _crop_size(crop_size: Optional[Sequence[int]], size_multiple: int) -> Optional[tuple]:
    """``data.dataset.crop_size`` checked: ``(H, W)``, each a positive multiple of the generator's size multiple."""
    if crop_size is None:
        return None
    crop = tuple(int(c) for c in crop_size)
    if len(crop) != 2 or any(c < 1 or c % size_multiple for c in crop):
        raise TranslateError(f"data.dataset.crop_size: expected [H, W], each a multiple of {size_multiple} "
                             f"(the generator's size multiple), got {list(crop_size)}")
    return crop


def _crop(arrays: Dict[str, np.ndarray], inside: np.ndarray, crop: tuple, seed: int,
          draw: Optional[int]) -> Dict[str, np.ndarray]:
    """The same ``crop`` window of every ``(C, H, W)`` array: centred on a random voxel of ``inside`` drawn from
    ``(seed, draw)`` (the plane's centre when ``inside`` is empty), or the centre crop when ``draw`` is None."""
    (h, w), (ch, cw) = inside.shape, crop
    if draw is None:
        top, left = (h - ch) // 2, (w - cw) // 2
    else:
        voxels = np.argwhere(inside)
        rng = draw_rng(seed, draw, 5)
        y, x = voxels[rng.integers(len(voxels))] if len(voxels) else (h // 2, w // 2)
        top = int(np.clip(y - ch // 2, 0, h - ch))
        left = int(np.clip(x - cw // 2, 0, w - cw))
    return {key: value[..., top:top + ch, left:left + cw] for key, value in arrays.items()}


@DATASETS.register("paired_slices")
class PairedSlices(Dataset):
    """Slices of registered pairs, for Pix2pix-style training (2D, or 2.5D with ``context_slices``).

    Args:
        root, split: data folder and the ``split.json`` key of the training subjects.
        domains: ``{"a": Domain, "b": Domain}``: source and target.
        context_slices: neighbours ``k`` each side as extra input channels (2.5D).
        axis: array axis to slice along in ``(z, y, x)`` order (0 = axial).
        flips: spatial axes of the slice to flip at random (``[0, 1]``; ``[]`` for none).
        transforms: torchio transforms by name (see :mod:`translate.data.augment`).
        augment: False disables flips and transforms.
        pad: pad slices to a common size that is a multiple of ``size_multiple``.
        crop_size: ``[H, W]`` random crops for training (centred on a random voxel inside the valid
            body, drawn afresh each time; the centre crop when not augmenting); None trains on
            whole slices. Inference is always on whole slices (the networks are fully convolutional).
        skip_empty: drop slices with no valid voxel (a partial MR coverage, ``valid_key``).
        valid_key: file key of a mask of voxels where both domains have data.
        fill_outside_valid: continue the source outside ``valid`` by its nearest valid voxel
            (:func:`~translate.data.subjects.fill_outside`), as inference does.
        body_only: ``valid_mask`` (what masked losses and a masked discriminator see) is also
            restricted to the target's body mask, the region every score is computed in.
        val_block: hold out the last fraction of every volume's slices (and the ``context_slices``
            before them) for validation (:func:`translate.data.subjects.held_out_block`).
        size_multiple: from the model (e.g. 32 for a 5-level U-Net); seed: the run's seed.
    """

    spatial_dims, pairing = 2, "paired"

    def __init__(self, *, root: Path, split: str, domains: Mapping[str, Domain], context_slices: int = 0,
                 axis: int = 0, flips: Sequence[int] | bool = True, transforms: Sequence[Mapping[str, Any]] = (),
                 augment: bool = True, pad: bool = True, crop_size: Optional[Sequence[int]] = None,
                 skip_empty: bool = True, valid_key: Optional[str] = None, fill_outside_valid: bool = True,
                 body_only: bool = False, val_block: float = 0.0, size_multiple: int = 1, seed: int = 0):
        self.crop = _crop_size(crop_size, size_multiple)
        if int(context_slices) != context_slices or not 0 <= context_slices <= 8:
            raise TranslateError(f"data.dataset.context_slices: expected an integer in [0, 8], got {context_slices!r}")
        if axis not in (0, 1, 2):
            raise TranslateError(f"data.dataset.axis: expected 0, 1 or 2, got {axis!r}")
        self.domains = {name: domains[name] for name in ("a", "b")}
        self.context, self.axis, self.seed = int(context_slices), axis, seed
        self.flip_axes = parse_flip_axes(flips, 2, "data.dataset.flips") if augment else []
        self.transform = build_transforms(transforms) if augment else None
        keys = [d.key for d in self.domains.values()] + ([valid_key] if valid_key else [])
        subjects = subjects_from_folder(root, split, keys=keys)
        self.volumes = _SliceVolumes(subjects, self.domains, axis=axis, valid_key=valid_key,
                                     fill=("a",) if fill_outside_valid else (), body_only=body_only)
        shapes = [v["body_mask"].shape[2:] for v in self.volumes.items]
        self.plane = _plane_size(shapes, size_multiple, pad, "data.dataset")
        if self.crop is not None:
            self.plane = tuple(max(p, c) for p, c in zip(self.plane, self.crop))
        self.volumes.pad(self.plane, self.domains)

        def usable(volume) -> int:
            slices = volume["body_mask"].shape[1]
            return held_out_block(slices, val_block, self.context)[1] if val_block else slices

        self.index = [(i, s) for i, v in enumerate(self.volumes.items) for s in range(usable(v))
                      if not (skip_empty and valid_key and not v["valid_mask"][0, s].any())]

    @classmethod
    def served_channels(cls, domains: Mapping[str, Domain], context_slices: int = 0, **_: Any) -> Dict[str, int]:
        return {"a": domains["a"].channels * (1 + 2 * int(context_slices)), "b": domains["b"].channels}

    def _cropped(self, arrays: Dict[str, np.ndarray], draw: Optional[int]) -> Dict[str, np.ndarray]:
        inside = (arrays["valid_mask"][0] > 0) & (arrays["body_mask"][0] > 0)
        return _crop(arrays, inside, self.crop, self.seed, draw)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item) -> dict:
        index, draw = unpack_item(item, len(self))
        subject, s = self.index[index]
        volume = self.volumes.items[subject]
        arrays = {"real_a": context_stack(volume["a"], s, self.context), "real_b": volume["b"][:, s],
                  "body_mask": volume["body_mask"][:, s], "valid_mask": volume["valid_mask"][:, s]}
        if self.crop is not None:
            arrays = self._cropped(arrays, draw)
        arrays = augment(arrays, seed=self.seed, draw=draw, flip_axes=self.flip_axes, transform=self.transform,
                         spatial_dims=2)
        return {**as_tensors(arrays), "subject": volume["id"], "slice": s}


@DATASETS.register("unpaired_slices")
class UnpairedSlices(Dataset):
    """Slices of domain A and domain B drawn independently, from separate subject lists (CycleGAN-style).

    Item ``i`` is A's slice ``i`` with a B slice drawn from ``(seed, draw)``; A and B need not share
    subjects, grids or sizes (both are padded to one plane size).

    Args:
        split_b: ``split.json`` key of domain B's subjects (default: ``split``).
        labels_key: file key of a label map of every subject (e.g. ``labels``), served as
            ``labels_a`` / ``labels_b`` beside each side's image (shape consistency).
        crop_size: ``[H, W]`` random crops for training, drawn for each side on its own, centred on a
            random voxel of that side's body (and, for A, inside ``valid``); the centre crop when not
            augmenting. Inference translates whole slices in windows of this size.
        valid_key: file key of a mask of domain A's subjects where the source has data (a partial MR
            coverage resampled onto a CT grid, as ``translate data pair`` writes it): A slices with
            no valid voxel are dropped (``skip_empty``), crops are centred inside it and, with
            ``fill_outside_valid``, the source is continued outside it as inference does.
            Domain B's subjects need no such file.
        Others as :class:`PairedSlices`.
    """

    spatial_dims, pairing = 2, "unpaired"

    def __init__(self, *, root: Path, split: str, domains: Mapping[str, Domain], split_b: Optional[str] = None,
                 context_slices: int = 0, axis: int = 0, flips: Sequence[int] | bool = True,
                 transforms: Sequence[Mapping[str, Any]] = (), augment: bool = True, pad: bool = True,
                 valid_key: Optional[str] = None, labels_key: Optional[str] = None, size_multiple: int = 1,
                 crop_size: Optional[Sequence[int]] = None, skip_empty: bool = True, fill_outside_valid: bool = True,
                 seed: int = 0):
        if int(context_slices) != context_slices or not 0 <= context_slices <= 8:
            raise TranslateError(f"data.dataset.context_slices: expected an integer in [0, 8], got {context_slices!r}")
        self.crop = _crop_size(crop_size, size_multiple)
        self.context, self.seed = int(context_slices), seed
        self.labels_key = labels_key
        self.flip_axes = parse_flip_axes(flips, 2, "data.dataset.flips") if augment else []
        self.transform = build_transforms(transforms) if augment else None
        self.sides = {}
        for name, which in (("a", split), ("b", split_b or split)):
            domain = {name: domains[name]}
            valid = valid_key if name == "a" else None
            keys = [domains[name].key] + [k for k in (labels_key, valid) if k]
            subjects = subjects_from_folder(root, which, keys=keys)
            self.sides[name] = _SliceVolumes(subjects, domain, axis=axis, valid_key=valid, same_grid=False,
                                             fill=("a",) if valid and fill_outside_valid else (),
                                             extra=[labels_key] if labels_key else [])
        shapes = [v["body_mask"].shape[2:] for side in self.sides.values() for v in side.items]
        self.plane = _plane_size(shapes, size_multiple, pad, "data.dataset")
        if self.crop is not None:
            self.plane = tuple(max(p, c) for p, c in zip(self.plane, self.crop))
        self.index = {}
        for name, side in self.sides.items():
            side.pad(self.plane, {name: domains[name]})
            self.index[name] = [(i, s) for i, v in enumerate(side.items) for s in range(v["body_mask"].shape[1])
                                if not (skip_empty and name == "a" and valid_key and not v["valid_mask"][0, s].any())]
            if not self.index[name]:
                raise TranslateError(f"data.dataset: no slice of domain {name!r} has data inside {valid_key!r}")

    @classmethod
    def served_channels(cls, domains: Mapping[str, Domain], context_slices: int = 0, **_: Any) -> Dict[str, int]:
        k = 1 + 2 * int(context_slices)
        return {"a": domains["a"].channels * k, "b": domains["b"].channels * k}

    def __len__(self) -> int:
        return len(self.index["a"])

    def __getitem__(self, item) -> dict:
        index, draw = unpack_item(item, len(self))
        pick_b = draw_rng(self.seed, index if draw is None else draw, 3).integers(len(self.index["b"]))
        out: Dict[str, Any] = {}
        arrays = {}
        for name, position in (("a", index), ("b", int(pick_b))):
            subject, s = self.index[name][position]
            volume = self.sides[name].items[subject]
            side = {f"real_{name}": context_stack(volume[name], s, self.context),
                    f"body_mask_{name}": volume["body_mask"][:, s]}
            if self.labels_key:
                side[f"labels_{name}"] = volume[self.labels_key][:, s]
            if self.crop is not None:
                inside = (volume["body_mask"][0, s] > 0) & (volume["valid_mask"][0, s] > 0)
                side = _crop(side, inside, self.crop, self.seed + (name == "b"), draw)
            arrays.update(side)
            out[f"subject_{name}"], out[f"slice_{name}"] = volume["id"], s
        # A and B come from different subjects: each gets its own flips
        for name in ("a", "b"):
            keys = (f"real_{name}", f"body_mask_{name}") + ((f"labels_{name}",) if self.labels_key else ())
            part = augment({k: arrays[k] for k in keys}, seed=self.seed + (name == "b"), draw=draw,
                           flip_axes=self.flip_axes, transform=self.transform if name == "a" else None,
                           spatial_dims=2)
            arrays.update(part)
        arrays["body_mask"] = arrays["body_mask_b"]
        return {**as_tensors(arrays), **out}
