"""3D patches of paired volumes on torchio: a uniform or label-weighted sampler, replayable per draw.

torchio's ``Queue`` shuffles patches with its own background workers, which cannot be replayed
from a step number; here each draw builds the subject's ``torchio.Subject`` and asks torchio's
``UniformSampler`` / ``LabelSampler`` for one patch with torch's RNG seeded by ``(seed, draw)``, so
``--resume`` draws exactly the patches an uninterrupted run would. Items are float32 tensors
``real_a (C_a, D, H, W)``, ``real_b (C_b, D, H, W)``, ``body_mask``/``valid_mask (1, D, H, W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import TranslateError
from .augment import as_tensors, augment, build_transforms, draw_seed, parse_flip_axes, unpack_item
from .datasets import DATASETS
from .domains import Domain
from .subjects import load_volumes, normalise, pad_to, subjects_from_folder

SAMPLERS = ("uniform", "label")


def check_patch_options(patch_size: Sequence[int], size_multiple: int, sampler: str, samplers: Sequence[str],
                        samples_per_volume: int) -> list:
    """The options every 3D patch dataset shares, checked in one-line errors; returns the patch size."""
    patch = [int(p) for p in patch_size]
    if len(patch) != 3 or min(patch) < 1:
        raise TranslateError(f"data.dataset.patch_size: expected [D, H, W] positive integers, got {list(patch_size)}")
    if any(p % size_multiple for p in patch):
        raise TranslateError(f"data.dataset.patch_size {patch}: every size must be a multiple of {size_multiple} "
                             f"(the generator's size multiple)")
    if sampler not in samplers:
        raise TranslateError(f"data.dataset.sampler: expected one of {list(samplers)}, got {sampler!r}")
    if int(samples_per_volume) < 1:
        raise TranslateError(f"data.dataset.samples_per_volume: expected >= 1, got {samples_per_volume!r}")
    return patch


@DATASETS.register("paired_patches")
class PairedPatches(Dataset):
    """Random 3D patches of registered pairs (3D Pix2pix).

    Args:
        root, split, domains: as :class:`~translate.data.slices.PairedSlices`.
        patch_size: ``[D, H, W]`` voxels, each a multiple of the model's size multiple.
        samples_per_volume: patches per subject in one pass (the dataset's length is
            ``samples_per_volume x subjects``).
        sampler: ``uniform`` or ``label`` (centres drawn from ``label_key``'s classes with
            ``label_probabilities``, e.g. ``{0: 0.2, 1: 0.8}``; default: the body mask, inside 0.9).
        label_key: file key of the label volume the label sampler reads (default: the body mask).
        flips, transforms, augment, valid_key, size_multiple, seed: as for slices.
    """

    spatial_dims, pairing = 3, "paired"

    def __init__(self, *, root: Path, split: str, domains: Mapping[str, Domain], patch_size: Sequence[int],
                 samples_per_volume: int = 16, sampler: str = "uniform", label_key: Optional[str] = None,
                 label_probabilities: Optional[Mapping[int, float]] = None, flips: Sequence[int] | bool = True,
                 transforms: Sequence[Mapping[str, Any]] = (), augment: bool = True, valid_key: Optional[str] = None,
                 fill_outside_valid: bool = True, body_only: bool = False, size_multiple: int = 1, seed: int = 0):
        import torchio as tio

        patch = check_patch_options(patch_size, size_multiple, sampler, SAMPLERS, samples_per_volume)
        self.domains = {name: domains[name] for name in ("a", "b")}
        self.patch, self.samples_per_volume, self.seed = tuple(patch), int(samples_per_volume), seed
        self.flip_axes = parse_flip_axes(flips, 3, "data.dataset.flips") if augment else []
        self.transform = build_transforms(transforms) if augment else None
        keys = [d.key for d in self.domains.values()] + [k for k in (valid_key, label_key) if k]
        subjects = subjects_from_folder(root, split, keys=keys)
        self.subjects = []
        for subject in subjects:
            arrays = load_volumes(subject, self.domains, valid_key=valid_key,
                                  extra=[label_key] if label_key else [])
            normalised = normalise(arrays, self.domains, fill=("a",) if fill_outside_valid else ())
            if body_only:
                arrays["valid_mask"] = arrays["valid_mask"] & arrays["body_mask"]
            shape = tuple(max(s, p) for s, p in zip(arrays["body_mask"].shape, self.patch))
            item = {f"real_{n}": pad_to(normalised[n], shape, d.intensity.pad_values(normalised[n]))
                    for n, d in self.domains.items()}
            for mask in ("body_mask", "valid_mask"):
                item[mask] = pad_to(arrays[mask][None].astype(np.float32), shape, [0.0])
            labels = arrays[label_key] if label_key else arrays["body_mask"]
            item["sampling"] = pad_to(np.asarray(labels, dtype=np.int16)[None], shape, [0])
            self.subjects.append((str(subject["id"]), {k: torch.from_numpy(np.ascontiguousarray(v))
                                                       for k, v in item.items()}))
        if sampler == "uniform":
            self.sampler = tio.data.UniformSampler(self.patch)
        else:
            probabilities = dict(label_probabilities or {0: 0.1, 1: 0.9})
            self.sampler = tio.data.LabelSampler(self.patch, label_name="sampling",
                                                 label_probabilities={int(k): float(v) for k, v in probabilities.items()})

    @classmethod
    def served_channels(cls, domains: Mapping[str, Domain], **_: Any) -> Dict[str, int]:
        return {"a": domains["a"].channels, "b": domains["b"].channels}

    def __len__(self) -> int:
        return self.samples_per_volume * len(self.subjects)

    def _patch(self, subject_index: int, seed: int) -> Dict[str, np.ndarray]:
        import torchio as tio

        subject_id, tensors = self.subjects[subject_index]
        images = {k: (tio.LabelMap if k in ("sampling", "body_mask", "valid_mask") else tio.ScalarImage)(tensor=v)
                  for k, v in tensors.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            patch = next(iter(self.sampler(tio.Subject(**images), num_patches=1)))
        return {k: patch[k].data.numpy() for k in tensors if k != "sampling"}

    def __getitem__(self, item) -> dict:
        index, draw = unpack_item(item, len(self))
        subject_index = index % len(self.subjects)
        arrays = self._patch(subject_index, draw_seed(self.seed, index if draw is None else draw, 4))
        arrays = augment(arrays, seed=self.seed, draw=draw, flip_axes=self.flip_axes, transform=self.transform,
                         spatial_dims=3)
        return {**as_tensors(arrays), "subject": self.subjects[subject_index][0]}
