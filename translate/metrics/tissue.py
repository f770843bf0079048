"""MAE of a synthetic CT per tissue class of the real CT: air, soft tissue, bone, and any named mask.

An overall MAE hides where a synthetic CT fails: bone is a few percent of the voxels but carries
most of the dose-relevant error. Classes are taken from the *target* CT, in HU:

============  =======================
``air``       target < -400
``soft``      -400 <= target <= 300
``bone``      target > 300
============  =======================

Both volumes are clipped to the SynthRAD range :math:`[-1024, 3000]` HU first, as
``translate evaluate`` does, so the overall ``mae`` agrees with its ``mae_hu`` on the same mask.

Example:
    >>> import numpy as np
    >>> target = np.array([[[-1000.0, 0.0, 1000.0]]])          # (Z, Y, X)
    >>> result = tissue_mae(target + [[[10.0, -20.0, 30.0]]], target)
    >>> result["mae"], result["mae_air"], result["mae_soft"], result["mae_bone"], result["bias_hu"]
    (20.0, 10.0, 20.0, 30.0, 6.666666666666667)
    >>> result["bias_air"], result["bias_soft"], result["bias_bone"]
    (10.0, -20.0, 30.0)

The bias of each region tells a shift from noise: a synthetic CT whose soft tissue is 50 HU too dark has a
soft-tissue MAE of at least 50 HU and a ``bias_soft`` of -50, while one that is right on average but noisy
has a ``bias_soft`` near 0.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import TranslateError

TISSUE_CLASSES = ("air", "soft", "bone")
AIR_BELOW = -400.0
BONE_ABOVE = 300.0
SYNTHRAD_CLIP = (-1024.0, 3000.0)  # the same range as translate.metrics.paired (not imported: torch)


def _as_mask(mask, shape: Tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise TranslateError(f"tissue_mae: {name} of shape {mask.shape}; expected {shape} like the CTs")
    return mask != 0


def tissue_mae(pred_hu, target_hu, mask=None, extra_masks: Optional[Mapping[str, object]] = None, *,
               clip: Optional[Tuple[float, float]] = SYNTHRAD_CLIP) -> Dict[str, float]:
    """Mean absolute error (HU) overall, per tissue class and inside each extra mask.

    Args:
        pred_hu: synthetic CT in HU, ``(Z, Y, X)`` (any shape equal to ``target_hu``'s).
        target_hu: real CT in HU, same shape; it defines the tissue classes.
        mask: where to score (nonzero = inside), e.g. the pair's ``valid`` mask intersected with
            the body; ``None``: everywhere.
        extra_masks: ``{name: mask}`` regions (e.g. ``{"tumour": ...}``), each intersected with
            ``mask``; they give ``mae_<name>``, ``bias_<name>`` and ``voxels_<name>``.
        clip: ``(low, high)`` HU applied to both CTs first; ``None`` to compare raw values.

    Returns:
        ``{"mae", "mae_air", "mae_soft", "mae_bone", "bias_hu", "bias_air", "bias_soft", "bias_bone",
        "voxels", "voxels_air", "voxels_soft", "voxels_bone", "mae_<name>", "bias_<name>", "voxels_<name>"}``:
        MAE and bias (mean of prediction - target; ``bias_hu`` over the whole mask) in HU as floats, counts
        as ints. A region with no voxel has NaN MAE and bias and count 0.
    """
    pred = np.asarray(pred_hu, dtype=np.float64)
    target = np.asarray(target_hu, dtype=np.float64)
    if pred.shape != target.shape:
        raise TranslateError(f"tissue_mae: prediction of shape {pred.shape} and target of shape {target.shape}; "
                             "expected the same shape")
    if clip is not None:
        pred, target = np.clip(pred, *clip), np.clip(target, *clip)
    inside = np.ones(target.shape, dtype=bool) if mask is None else _as_mask(mask, target.shape, "mask")
    error = pred - target
    absolute = np.abs(error)

    def mean(values: np.ndarray, region: np.ndarray) -> float:
        count = int(np.count_nonzero(region))
        return float(values[region].mean()) if count else math.nan

    regions = {"": inside,
               "_air": inside & (target < AIR_BELOW),
               "_soft": inside & (target >= AIR_BELOW) & (target <= BONE_ABOVE),
               "_bone": inside & (target > BONE_ABOVE)}
    for name, extra in (extra_masks or {}).items():
        if f"_{name}" in regions or name == "hu":
            raise TranslateError(f"tissue_mae: extra mask name {name!r} clashes with a tissue class or with "
                                 "'bias_hu'; expected another name")
        regions[f"_{name}"] = inside & _as_mask(extra, target.shape, f"mask {name!r}")
    result: Dict[str, float] = {}
    for suffix, region in regions.items():
        result[f"mae{suffix}"] = mean(absolute, region)
        result[f"bias{suffix or '_hu'}"] = mean(error, region)
    for suffix, region in regions.items():
        result[f"voxels{suffix}"] = int(np.count_nonzero(region))
    return result
