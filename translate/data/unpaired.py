"""3D unpaired patches: domain A and domain B patches drawn independently from separate subject lists.

The 3D counterpart of :class:`~translate.data.slices.UnpairedSlices` for CycleGAN / UNIT on volumes.
Item ``i`` is a patch of A's subject ``i mod n_A`` and a patch of a B subject drawn from
``(seed, draw)``; each patch is cut by torchio's ``UniformSampler`` (or ``LabelSampler`` on the
body mask) with torch's RNG seeded by ``(seed, draw)``, so ``--resume`` replays the same patches.
Items: ``real_a (C_a, D, H, W)``, ``real_b (C_b, D, H, W)``, ``body_mask_a`` / ``body_mask_b``
``(1, D, H, W)``, ``body_mask`` (B's), and with ``labels_key`` ``labels_a`` / ``labels_b``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import TranslateError
from .augment import as_tensors, augment, build_transforms, draw_rng, draw_seed, parse_flip_axes, unpack_item
from .datasets import DATASETS
from .domains import Domain
from .patches import check_patch_options
from .subjects import load_volumes, normalise, pad_to, subjects_from_folder

SAMPLERS = ("uniform", "body")


@DATASETS.register("unpaired_patches")
class UnpairedPatches(Dataset):
    """Random 3D patches of domain A and domain B from separate subjects (3D CycleGAN / UNIT).

    Args:
        root, domains: as :class:`~translate.data.patches.PairedPatches`.
        split: ``split.json`` key of domain A's subjects; ``split_b``: domain B's (default: ``split``).
        patch_size: ``[D, H, W]`` voxels, each a multiple of the model's size multiple.
        samples_per_volume: A patches per A subject in one pass (the dataset's length).
        sampler: ``uniform``, or ``body``: patch centres inside each side's body mask with
            probability ``body_probability`` (torchio ``LabelSampler``).
        labels_key: file key of a label map of every subject, served as ``labels_a`` / ``labels_b``.
        flips, transforms, augment, size_multiple, seed: as for slices (transforms act on A only).
    """

    spatial_dims, pairing = 3, "unpaired"

    def __init__(self, *, root: Path, split: str, domains: Mapping[str, Domain], patch_size: Sequence[int],
                 split_b: Optional[str] = None, samples_per_volume: int = 16, sampler: str = "uniform",
                 body_probability: float = 0.9, labels_key: Optional[str] = None,
                 flips: Sequence[int] | bool = True, transforms: Sequence[Mapping[str, Any]] = (),
                 augment: bool = True, size_multiple: int = 1, seed: int = 0):
        import torchio as tio

        patch = check_patch_options(patch_size, size_multiple, sampler, SAMPLERS, samples_per_volume)
        if not 0.0 <= float(body_probability) <= 1.0:
            raise TranslateError(f"data.dataset.body_probability: expected a fraction in [0, 1], got {body_probability!r}")
        self.patch, self.samples_per_volume, self.seed = tuple(patch), int(samples_per_volume), seed
        self.labels_key = labels_key
        self.flip_axes = parse_flip_axes(flips, 3, "data.dataset.flips") if augment else []
        self.transform = build_transforms(transforms) if augment else None
        self.sides: Dict[str, list] = {}
        for name, which in (("a", split), ("b", split_b or split)):
            domain = {name: domains[name]}
            keys = [domains[name].key] + ([labels_key] if labels_key else [])
            self.sides[name] = []
            for subject in subjects_from_folder(root, which, keys=keys):
                arrays = load_volumes(subject, domain, extra=[labels_key] if labels_key else [])
                normalised = normalise(arrays, domain)
                shape = tuple(max(s, p) for s, p in zip(arrays["body_mask"].shape, self.patch))
                item = {f"real_{name}": pad_to(normalised[name], shape, domain[name].intensity.pad_values(normalised[name])),
                        f"body_mask_{name}": pad_to(arrays["body_mask"][None].astype(np.float32), shape, [0.0])}
                if labels_key:
                    item[f"labels_{name}"] = pad_to(np.asarray(arrays[labels_key], np.float32)[None], shape, [0.0])
                self.sides[name].append((str(subject["id"]), {k: torch.from_numpy(np.ascontiguousarray(v))
                                                              for k, v in item.items()}))
        if sampler == "uniform":
            self.samplers = {name: tio.data.UniformSampler(self.patch) for name in self.sides}
        else:
            p = float(body_probability)
            self.samplers = {name: tio.data.LabelSampler(self.patch, label_name=f"body_mask_{name}",
                                                         label_probabilities={0: 1.0 - p, 1: p})
                             for name in self.sides}

    @classmethod
    def served_channels(cls, domains: Mapping[str, Domain], **_: Any) -> Dict[str, int]:
        return {"a": domains["a"].channels, "b": domains["b"].channels}

    def __len__(self) -> int:
        return self.samples_per_volume * len(self.sides["a"])

    def _patch(self, name: str, subject_index: int, seed: int) -> Dict[str, np.ndarray]:
        import torchio as tio

        _, tensors = self.sides[name][subject_index]
        images = {k: (tio.ScalarImage if k.startswith("real_") else tio.LabelMap)(tensor=v) for k, v in tensors.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            patch = next(iter(self.samplers[name](tio.Subject(**images), num_patches=1)))
        return {k: patch[k].data.numpy() for k in tensors}

    def __getitem__(self, item) -> dict:
        index, draw = unpack_item(item, len(self))
        key = index if draw is None else draw
        picks = {"a": index % len(self.sides["a"]),
                 "b": int(draw_rng(self.seed, key, 3).integers(len(self.sides["b"])))}
        arrays, out = {}, {}
        for stream, (name, subject_index) in enumerate(picks.items()):
            part = self._patch(name, subject_index, draw_seed(self.seed, key, 4 + stream))
            # A and B come from different subjects: each gets its own flips; transforms act on A only
            part = augment(part, seed=self.seed + (name == "b"), draw=draw, flip_axes=self.flip_axes,
                           transform=self.transform if name == "a" else None, spatial_dims=3)
            arrays.update(part)
            out[f"subject_{name}"] = self.sides[name][subject_index][0]
        arrays["body_mask"] = arrays["body_mask_b"]
        return {**as_tensors(arrays), **out}
