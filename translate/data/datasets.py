"""Paired 2D / 2.5D slice datasets read from a folder of subjects.

A data folder holds one sub-folder per subject (``<root>/<id>/{mr,ct,labels}.nii.gz``) and a
``split.json`` = ``{"train": [ids], "val": [ids], "test": [ids]}``; the built-in phantom
(:func:`translate.data.phantom.write_phantom`) writes exactly this layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch.utils.data import Dataset

from ..errors import TranslateError
from .intensity import HUWindow, MRNormalizer, body_mask_from_mr
from .io import check_same_grid, read_volume
from .masks import body_mask_from_ct

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
BODY_HU = -500.0


def subjects_from_folder(root: Path, split: str, keys=("mr", "ct")) -> list[dict]:
    """Subjects of one split: ``[{"id": str, key: Path, ...}]`` in the order split.json lists them.

    Each ``key`` is looked up as ``<root>/<id>/<key>`` with one of :data:`IMAGE_SUFFIXES`.
    Raises TranslateError (one line) for a missing root, a missing or malformed split.json, an
    unknown or empty split, a missing subject folder or a missing image.
    """
    root = Path(root)
    if not root.is_dir():
        raise TranslateError(f"data.root {root}: folder not found")
    split_file = root / "split.json"
    if not split_file.is_file():
        raise TranslateError(f'data.root {root}: no split.json (expected {{"train": [ids], "val": [ids], "test": [ids]}})')
    try:
        splits = json.loads(split_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TranslateError(f"{split_file}: invalid JSON ({err})") from None
    if not isinstance(splits, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in splits.values()):
        raise TranslateError(f"{split_file}: expected an object mapping split names to lists of subject folder names")
    if split not in splits:
        raise TranslateError(f"{split_file}: no split {split!r}; it has {sorted(splits)}")
    if not splits[split]:
        raise TranslateError(f"data.root {root}: split {split!r} lists no subjects")

    subjects = []
    for subject_id in splits[split]:
        folder = root / subject_id
        if not folder.is_dir():
            raise TranslateError(f"data.root {root}: subject {subject_id!r} of split {split!r} has no folder")
        subject: dict = {"id": subject_id}
        for key in keys:
            found = [folder / f"{key}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{key}{suffix}").is_file()]
            if not found:
                looked = ", ".join(f"{key}{suffix}" for suffix in IMAGE_SUFFIXES)
                raise TranslateError(f"{folder}: no {key!r} image (looked for {looked})")
            subject[key] = found[0]
        subjects.append(subject)
    return subjects


class PairedSliceDataset(Dataset):
    """Slices of paired volumes, normalised, for 2D (``context_slices=0``) or 2.5D training.

    Each item is a dict:
        ``real_a``: float32 ``(1 + 2k, H, W)``, the source slice and its ``k = context_slices``
        neighbours on each side as channels (edge slices replicated);
        ``real_b``: float32 ``(1, H, W)``, the target slice;
        ``body_mask``: float32 ``(1, H, W)``, 1 inside the body (``labels > 0`` when the subject
        has labels, else CT > -500 HU with enclosed gas filled, else the MR body mask);
        ``subject``: str; ``slice``: int, the index along ``axis``.

    Volumes are read once. Keys in ``hu_keys`` are mapped by ``hu_window``; others by
    ``mr_norm`` fitted per volume (on the volume alone, as at inference). Index -> (subject,
    slice) is deterministic: all slices in order, or with ``samples_per_epoch`` a fixed
    seeded sequence of permutations, so resumed training sees the same items. Augmentation
    (random flips of both axes of the slice) draws from a generator seeded by ``(seed, index)``.

    Args:
        subjects: ``[{"id": str, key: path, ...}]``, e.g. from :func:`subjects_from_folder`.
        source_key, target_key: which images are the input and the target.
        hu_window: CT intensity map; mr_norm: MR normalisation.
        context_slices: neighbours ``k`` on each side (2.5D); 0 for 2D.
        axis: array axis to slice along (0 = z in SimpleITK's ``(z, y, x)`` array order).
        samples_per_epoch: length of the dataset; None for one pass over all slices.
        augment: random flips; seed: seeds the index order and the augmentation.
        hu_keys: image keys holding Hounsfield units.
    """

    def __init__(self, subjects: list[dict], source_key: str = "mr", target_key: str = "ct", *,
                 hu_window: HUWindow = HUWindow(), mr_norm: MRNormalizer = MRNormalizer(),
                 context_slices: int = 0, axis: int = 0, samples_per_epoch: int | None = None,
                 augment: bool = False, seed: int = 0, hu_keys: tuple[str, ...] = ("ct", "cbct")):
        if not subjects:
            raise ValueError("PairedSliceDataset: subjects is empty")
        if int(context_slices) != context_slices or context_slices < 0:
            raise ValueError(f"PairedSliceDataset context_slices={context_slices!r}: expected an integer >= 0")
        if axis not in (0, 1, 2):
            raise ValueError(f"PairedSliceDataset axis={axis!r}: expected 0, 1 or 2")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"PairedSliceDataset samples_per_epoch={samples_per_epoch!r}: expected None or >= 1")
        self.source_key, self.target_key = source_key, target_key
        self.hu_window, self.mr_norm, self.hu_keys = hu_window, mr_norm, tuple(hu_keys)
        self.context_slices, self.axis = int(context_slices), axis
        self.augment, self.seed = augment, seed
        self.volumes: list[dict] = [self._load(subject) for subject in subjects]

        self._slices = np.array([(i, s) for i, vol in enumerate(self.volumes) for s in range(len(vol["a"]))])
        if samples_per_epoch is None:
            self._order = np.arange(len(self._slices))
        else:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51CE]))
            repeats = -(-samples_per_epoch // len(self._slices))
            self._order = np.concatenate([rng.permutation(len(self._slices)) for _ in range(repeats)])[:samples_per_epoch]

    def _load(self, subject: dict) -> dict:
        subject_id = str(subject.get("id") or Path(subject[self.source_key]).parent.name)
        for key in (self.source_key, self.target_key):
            if key not in subject:
                raise TranslateError(f"subject {subject_id!r}: no {key!r} image; it has {sorted(k for k in subject if k != 'id')}")
        paths = {key: Path(subject[key]) for key in (self.source_key, self.target_key, "labels") if key in subject}
        images = {key: read_volume(path, what=f"{key} of subject {subject_id}") for key, path in paths.items()}
        for key in images:
            if key != self.source_key:
                check_same_grid(images[self.source_key], images[key], str(paths[self.source_key]), str(paths[key]))
        arrays = {key: np.moveaxis(sitk.GetArrayFromImage(image), self.axis, 0) for key, image in images.items()}

        if "labels" in arrays:
            body = arrays["labels"] > 0
        elif self.target_key in self.hu_keys or self.source_key in self.hu_keys:
            body = body_mask_from_ct(arrays[self.target_key if self.target_key in self.hu_keys else self.source_key],
                                     threshold=BODY_HU)
        else:
            body = body_mask_from_mr(arrays[self.source_key])
        volume = {"id": subject_id, "body_mask": np.ascontiguousarray(body, dtype=np.float32), "norm": {}}
        for role, key in (("a", self.source_key), ("b", self.target_key)):
            volume[role], volume["norm"][key] = self._normalise(key, arrays[key])
        return volume

    def _normalise(self, key: str, array: np.ndarray) -> tuple[np.ndarray, dict]:
        if key in self.hu_keys:
            return np.ascontiguousarray(self.hu_window.forward(array.astype(np.float32))), self.hu_window.to_dict()
        params = self.mr_norm.fit(array)
        return np.ascontiguousarray(self.mr_norm.apply(array, params)), params

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        subject_index, slice_index = (int(v) for v in self._slices[self._order[index]])
        volume = self.volumes[subject_index]
        k = self.context_slices
        neighbours = np.clip(np.arange(slice_index - k, slice_index + k + 1), 0, len(volume["a"]) - 1)
        real_a = volume["a"][neighbours]
        real_b = volume["b"][slice_index][None]
        body_mask = volume["body_mask"][slice_index][None]
        if self.augment:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
            flip_axes = tuple(axis for axis in (1, 2) if rng.uniform() < 0.5)
            if flip_axes:
                real_a, real_b, body_mask = (np.flip(x, flip_axes) for x in (real_a, real_b, body_mask))
        return {
            "real_a": torch.from_numpy(np.ascontiguousarray(real_a, dtype=np.float32)),
            "real_b": torch.from_numpy(np.ascontiguousarray(real_b, dtype=np.float32)),
            "body_mask": torch.from_numpy(np.ascontiguousarray(body_mask, dtype=np.float32)),
            "subject": volume["id"],
            "slice": slice_index,
        }
