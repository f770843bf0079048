"""Hallucination rates of a synthetic CT: tissue classes of the real CT that the prediction changed.

Unpaired translation can erase or invent anatomy while every image still looks like a CT. These
rates count, inside the body mask, the real voxels of one class predicted in another, with the
classes of :mod:`translate.metrics.tissue` (air < -400 HU <= soft <= 300 HU < bone):

==================  =========================================================================
``bone_lost``       real bone voxels predicted as soft tissue or air (``bone_to_soft`` + ``bone_to_air``)
``bone_to_soft``    real bone predicted as soft tissue
``bone_to_air``     real bone predicted as air
``soft_to_bone``    real soft-tissue voxels predicted as bone (invented bone)
``air_to_tissue``   real air voxels inside the body (bowel gas) predicted as soft tissue or bone
==================  =========================================================================

Each is a fraction of the real class's voxels in the mask (NaN when the class is absent).

Example:
    >>> import numpy as np
    >>> real = np.zeros((4, 4, 4)); real[:2] = 1000.0                 # half bone, half soft tissue
    >>> pred = real.copy(); pred[0] = 40.0                             # one bone slab turned soft
    >>> hallucination_rates(pred, real)["bone_lost"]
    0.5
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np

from ..errors import TranslateError
from .tissue import AIR_BELOW, BONE_ABOVE

RATE_NAMES = ("bone_lost", "bone_to_soft", "bone_to_air", "soft_to_bone", "air_to_tissue")


def tissue_classes(hu: np.ndarray) -> np.ndarray:
    """0 air (< -400 HU), 1 soft tissue, 2 bone (> 300 HU), elementwise."""
    hu = np.asarray(hu, dtype=np.float64)
    return np.where(hu < AIR_BELOW, 0, np.where(hu > BONE_ABOVE, 2, 1)).astype(np.int8)


def hallucination_rates(pred_hu, target_hu, mask=None) -> Dict[str, float]:
    """Fractions of real bone / soft tissue / air voxels inside ``mask`` predicted in another class.

    Args:
        pred_hu: synthetic CT in HU, any shape.
        target_hu: real CT in HU, same shape; it defines the classes.
        mask: where to count (nonzero = inside), e.g. the body; ``None``: everywhere.

    Returns:
        ``{name: fraction for name in RATE_NAMES}`` plus ``voxels_bone``, ``voxels_soft``, ``voxels_air``.
    """
    pred, target = np.asarray(pred_hu), np.asarray(target_hu)
    if pred.shape != target.shape:
        raise TranslateError(f"hallucination_rates: prediction of shape {pred.shape} and target of shape "
                             f"{target.shape}; expected the same shape")
    inside = np.ones(target.shape, dtype=bool) if mask is None else np.asarray(mask) != 0
    if inside.shape != target.shape:
        raise TranslateError(f"hallucination_rates: mask of shape {inside.shape}; expected {target.shape}")
    real, fake = tissue_classes(target)[inside], tissue_classes(pred)[inside]

    def rate(real_class: int, predicted) -> float:
        of_class = real == real_class
        count = int(of_class.sum())
        return float(np.isin(fake[of_class], predicted).sum() / count) if count else math.nan

    result = {"bone_lost": rate(2, [0, 1]), "bone_to_soft": rate(2, [1]), "bone_to_air": rate(2, [0]),
              "soft_to_bone": rate(1, [2]), "air_to_tissue": rate(0, [1, 2])}
    for index, name in enumerate(("air", "soft", "bone")):
        result[f"voxels_{name}"] = int((real == index).sum())
    return result
