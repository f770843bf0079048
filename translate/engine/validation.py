"""Validation during training: whole held-out volumes, translated and scored as `translate evaluate` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from ..data.io import image_to_array, read_volume
from ..data.masks import body_mask_from_ct
from ..metrics.paired import synthrad_metrics
from ..models import TranslationModel
from ..recipe import Recipe
from .inferer import SliceTranslator


class VolumeValidator:
    """Scores a model on the ``data.val_split`` subjects: MAE (HU), PSNR and SSIM inside the body.

    The volumes are read once; each call translates every one slice by slice (eval mode, no
    gradients, no random numbers drawn, so training resumes identically) and returns the means
    as ``{"val_mae_hu", "val_psnr", "val_ssim"}``.
    """

    def __init__(self, recipe: Recipe, normaliser: Any, window: Any, subjects: List[Dict[str, Any]],
                 batch_size: int = 16):
        data = recipe.data
        self.recipe, self.normaliser, self.window, self.batch_size = recipe, normaliser, window, batch_size
        self.volumes = []
        for subject in subjects:
            source = image_to_array(read_volume(subject[data.source], what=f"{subject['id']} {data.source}"))
            target = image_to_array(read_volume(subject[data.target], what=f"{subject['id']} {data.target}"))
            self.volumes.append((subject["id"], source.astype(np.float32), target.astype(np.float32),
                                 body_mask_from_ct(target)))

    def __len__(self) -> int:
        return len(self.volumes)

    def __call__(self, model: TranslationModel, device: torch.device) -> Dict[str, float]:
        translator = SliceTranslator(model, self.recipe, self.normaliser, self.window, device=device)
        scores = [synthrad_metrics(translator.translate_array(source, batch_size=self.batch_size), target, body)
                  for _, source, target, body in self.volumes]
        return {f"val_{key}": float(np.mean([s[key] for s in scores])) for key in ("mae_hu", "psnr", "ssim")}


def build_validator(recipe: Recipe) -> VolumeValidator | None:
    """A validator over ``data.val_split``, or None when ``trainer.val_every`` is 0 or the split is absent/empty."""
    import json

    from ..data.datasets import subjects_from_folder
    from .build import build_intensity

    if not recipe.trainer.val_every:
        return None
    split_file = Path(recipe.data.root) / "split.json"
    splits = json.loads(split_file.read_text())
    if not splits.get(recipe.data.val_split):
        return None
    subjects = subjects_from_folder(recipe.data.root, recipe.data.val_split, keys=(recipe.data.source, recipe.data.target))
    normaliser, window = build_intensity(recipe)
    return VolumeValidator(recipe, normaliser, window, subjects)
