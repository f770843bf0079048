"""Augmentation drawn afresh for every sample served, replayable from ``(seed, draw)``.

The trainer numbers every sample it draws (``draw = step * batch_size + position``), so the same
slice gets a new flip each time it comes round, and a resumed run draws exactly what the
uninterrupted run would have. Random flips are built in; any torchio transform can be named in
the recipe::

    dataset: {name: paired_slices, transforms: [{name: RandomAffine, degrees: 10, p: 0.5},
                                                {name: RandomGamma, log_gamma: 0.2}]}

Intensity transforms act on the source (``real_a``) only, so a target's HU are never altered;
spatial transforms move images and masks together (masks with nearest-neighbour interpolation).
torchio works on ``(C, W, H, D)``; a 2D slice is handed over as a one-voxel-thick volume.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import TranslateError

MASK_KEYS = ("body_mask", "valid_mask", "labels", "body_mask_a", "body_mask_b", "labels_a", "labels_b")


def draw_rng(seed: int, draw: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one served sample."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(draw), int(stream)]))


def draw_seed(seed: int, draw: int, stream: int = 0) -> int:
    return int(draw_rng(seed, draw, stream).integers(2**62))


def random_flips(arrays: Dict[str, np.ndarray], rng: np.random.Generator, axes: Sequence[int]) -> Dict[str, np.ndarray]:
    """Flip every array of a sample along the same randomly chosen spatial ``axes`` (each p = 0.5).

    Axes count from the end: ``-1`` is the last spatial axis, for ``(C, *S)`` arrays.
    """
    chosen = tuple(axis for axis in axes if rng.uniform() < 0.5)
    if not chosen:
        return arrays
    return {key: np.flip(value, chosen) for key, value in arrays.items()}


def build_transforms(specs: Sequence[Mapping[str, Any]], where: str = "data.dataset.transforms"):
    """``[{name: RandomAffine, ...}]`` -> one ``torchio.Compose``, or None for an empty list."""
    if not specs:
        return None
    import torchio as tio

    built = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise TranslateError(f"{where}[{i}]: expected {{name: <torchio transform>, ...}}, got {spec!r}")
        kwargs = dict(spec)
        name = kwargs.pop("name")
        cls = getattr(tio, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, tio.Transform)):
            raise TranslateError(f"{where}[{i}]: {name!r} is not a torchio transform (e.g. RandomAffine, "
                                 f"RandomElasticDeformation, RandomGamma, RandomNoise, RandomBiasField)")
        if issubclass(cls, tio.IntensityTransform) and "include" not in kwargs and "exclude" not in kwargs:
            kwargs["include"] = ["real_a"]
        try:
            built.append(cls(**kwargs))
        except (TypeError, ValueError) as err:
            raise TranslateError(f"{where}[{i}] ({name}): {err}") from None
    return tio.Compose(built)


def apply_transforms(transform, arrays: Dict[str, np.ndarray], seed: int, spatial_dims: int) -> Dict[str, np.ndarray]:
    """Run a torchio transform on a sample with torch's RNG seeded by ``seed`` (global state untouched)."""
    if transform is None:
        return arrays
    import torchio as tio

    images = {}
    for key, value in arrays.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        tensor = tensor[..., None] if spatial_dims == 2 else tensor
        kind = tio.LabelMap if key in MASK_KEYS else tio.ScalarImage
        images[key] = kind(tensor=tensor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = transform(tio.Subject(**images))
    result = {}
    for key in arrays:
        data = out[key].data.numpy()
        result[key] = data[..., 0] if spatial_dims == 2 else data
    return result


def augment(arrays: Dict[str, np.ndarray], *, seed: int, draw: Optional[int], flip_axes: Sequence[int],
            transform, spatial_dims: int) -> Dict[str, np.ndarray]:
    """Flips then named transforms for draw ``draw``; ``draw=None`` leaves the sample as it is."""
    if draw is None:
        return arrays
    arrays = random_flips(arrays, draw_rng(seed, draw, 1), flip_axes)
    return apply_transforms(transform, arrays, draw_seed(seed, draw, 2), spatial_dims)


def as_tensors(arrays: Mapping[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for key, value in arrays.items()}


def unpack_item(item: Any, length: int) -> tuple[int, Optional[int]]:
    """``index`` or ``(index, draw)`` as the trainer's sampler yields -> ``(index, draw)``."""
    index, draw = (item if isinstance(item, tuple) else (item, None))
    index = int(index)
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for {length} samples")
    return index % length, (None if draw is None else int(draw))


def parse_flip_axes(axes: Sequence[int] | bool, spatial_dims: int, where: str) -> List[int]:
    """Recipe flip axes (spatial, 0-based in ``(D, H, W)``/``(H, W)`` order) -> negative array axes."""
    if axes is True:
        axes = list(range(spatial_dims))[-2:]
    if axes is False or axes is None:
        return []
    out = []
    for axis in axes:
        if not isinstance(axis, int) or not 0 <= axis < spatial_dims:
            raise TranslateError(f"{where}: flip axis {axis!r}: expected an integer in [0, {spatial_dims - 1}]")
        out.append(axis - spatial_dims)
    return out
