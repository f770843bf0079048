"""Validation during training: whole held-out volumes, translated and scored by the output domain.

CT outputs are scored as ``translate evaluate`` does (MAE in HU, PSNR, SSIM inside the body and
the valid mask), label maps by the mean Dice over foreground labels, MR outputs by PSNR and SSIM
of the network-space images (each volume normalised by its own spec) inside the body.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from ..data.domains import Domain
from ..data.subjects import held_out_block, load_volumes, subjects_from_folder
from ..metrics.paired import psnr, ssim, synthrad_metrics
from ..models import TranslationModel
from ..recipe import Recipe
from .inferer import VolumeTranslator, build_inferer


def dice_scores(pred: np.ndarray, target: np.ndarray, values: List[int]) -> Dict[int, float]:
    """Dice of each label id in ``values`` (empty in both: 1.0). ``pred``, ``target``: ``(Z, Y, X)`` ids."""
    scores = {}
    for value in values:
        p, t = pred == value, target == value
        total = int(p.sum()) + int(t.sum())
        scores[value] = 1.0 if total == 0 else 2.0 * float((p & t).sum()) / total
    return scores


def score_volume(translator: VolumeTranslator, source: np.ndarray, target: np.ndarray, body: np.ndarray,
                 valid: Optional[np.ndarray], region: Optional[np.ndarray] = None) -> Dict[str, float]:
    """One subject's scores, keyed without the ``val_`` prefix; ``region`` limits where they are taken
    (a held-out block), while the whole volume is translated as at inference."""
    spec = translator.target.intensity
    inside = body if valid is None else body & valid
    if region is not None:
        inside = inside & region
    if spec.kind == "ct":
        pred = translator.translate_array(source, mask=valid)
        scores = synthrad_metrics(pred, target, inside)
        scores.pop("voxels", None)
        return scores
    if spec.kind == "labels":
        pred = translator.translate_array(source, mask=valid)
        if region is not None:
            pred, target = pred[region], target[region]
        foreground = spec.values[1:]
        return {"dice": float(np.mean(list(dice_scores(pred, target, foreground).values())))}
    pred = translator.translate_network(translator.prepare(source, valid))[0]
    reference = spec.forward(target, spec.fit(target, valid))[0]
    return {"psnr": psnr(pred, reference, inside, data_range=2.0, clip=(-1.0, 1.0)),
            "ssim": ssim(pred, reference, inside, data_range=2.0, clip=(-1.0, 1.0))}


class VolumeValidator:
    """Scores a model on the ``data.val_split`` subjects (direction ``a2b``), or, with ``val_block``,
    on the held-out last slices of every training subject.

    Volumes are read once; each call translates every one whole (eval mode, no gradients, no random
    numbers drawn, so training resumes identically) and returns the means as ``{"val_<metric>": ...}``.
    """

    def __init__(self, recipe: Recipe, domains: Mapping[str, Domain], subjects: List[Dict[str, Any]],
                 val_block: float = 0.0):
        self.recipe, self.domains = recipe, domains
        pair = {"a": domains["a"], "b": domains["b"]}
        axis = int(recipe.data.dataset.kwargs().get("axis", 0))
        self.volumes = []
        for subject in subjects:
            arrays = load_volumes(subject, pair, valid_key=recipe.data.valid_key)
            valid = arrays["valid_mask"] if recipe.data.valid_key else None
            region = None
            if val_block:
                start, _ = held_out_block(arrays["a"].shape[axis], val_block, 0)
                region = np.zeros(arrays["a"].shape, dtype=bool)
                index = [slice(None)] * 3
                index[axis] = slice(start, None)
                region[tuple(index)] = True
            self.volumes.append((subject["id"], arrays["a"].astype(np.float32), arrays["b"], arrays["body_mask"],
                                 valid, region))

    def __len__(self) -> int:
        return len(self.volumes)

    def __call__(self, model: TranslationModel, device: torch.device) -> Dict[str, float]:
        translator = VolumeTranslator(model, self.domains, build_inferer(self.recipe, model), device=device,
                                  recipe=self.recipe)
        scores = [score_volume(translator, source, target, body, valid, region)
                  for _, source, target, body, valid, region in self.volumes]
        return {f"val_{key}": float(np.mean([s[key] for s in scores])) for key in scores[0]}


def build_validator(recipe: Recipe, domains: Mapping[str, Domain]) -> VolumeValidator | None:
    """A validator over ``data.val_split``, or None when ``trainer.val_every`` is 0."""
    from .build import held_out_fraction

    if not recipe.trainer.val_every:
        return None
    keys = [domains["a"].key, domains["b"].key] + ([recipe.data.valid_key] if recipe.data.valid_key else [])
    val_block = held_out_fraction(recipe)
    if val_block:
        subjects = subjects_from_folder(recipe.data.root, recipe.data.train_split, keys=keys)
        return VolumeValidator(recipe, domains, subjects, val_block=val_block)
    subjects = subjects_from_folder(recipe.data.root, recipe.data.val_split, keys=keys)
    return VolumeValidator(recipe, domains, subjects)
