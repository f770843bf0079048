"""Per-tissue MAE: values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from translate.errors import TranslateError
from translate.metrics.tissue import tissue_mae


def volumes():
    # (Z, Y, X) = (1, 2, 3): air, soft, soft / soft, bone, air
    target = np.array([[[-1000.0, 0.0, 300.0], [-400.0, 1000.0, -401.0]]])
    error = np.array([[[10.0, -20.0, 40.0], [5.0, 100.0, -30.0]]])
    return target + error, target


def test_known_values_everywhere():
    pred, target = volumes()
    result = tissue_mae(pred, target)
    assert result["voxels"] == 6 and result["voxels_air"] == 2 and result["voxels_soft"] == 3
    assert result["voxels_bone"] == 1
    assert result["mae"] == pytest.approx((10 + 20 + 40 + 5 + 100 + 30) / 6)
    assert result["mae_air"] == pytest.approx((10 + 30) / 2)  # -1000 and -401
    assert result["mae_soft"] == pytest.approx((20 + 40 + 5) / 3)  # 0, 300 and -400 are soft
    assert result["mae_bone"] == pytest.approx(100.0)
    assert result["bias_hu"] == pytest.approx((10 - 20 + 40 + 5 + 100 - 30) / 6)
    assert result["bias_air"] == pytest.approx((10 - 30) / 2)  # signed: a shift, not the spread
    assert result["bias_soft"] == pytest.approx((-20 + 40 + 5) / 3) and result["bias_bone"] == pytest.approx(100.0)
    assert all(isinstance(v, float) for k, v in result.items() if k.startswith(("mae", "bias")))
    assert all(type(v) is int for k, v in result.items() if k.startswith("voxels"))


def test_mask_extra_masks_and_empty_classes():
    pred, target = volumes()
    mask = np.array([[[1, 1, 0], [1, 0, 0]]])
    tumour = np.array([[[0, 1, 1], [1, 1, 1]]])
    result = tissue_mae(pred, target, mask=mask, extra_masks={"tumour": tumour})
    assert result["voxels"] == 3 and result["mae"] == pytest.approx((10 + 20 + 5) / 3)
    assert math.isnan(result["mae_bone"]) and result["voxels_bone"] == 0  # bone voxel is outside the mask
    assert result["voxels_tumour"] == 2 and result["mae_tumour"] == pytest.approx((20 + 5) / 2)
    assert result["bias_tumour"] == pytest.approx((-20 + 5) / 2) and math.isnan(result["bias_bone"])
    empty = tissue_mae(pred, target, mask=np.zeros_like(mask))
    assert empty["voxels"] == 0 and math.isnan(empty["mae"]) and math.isnan(empty["bias_hu"])


def test_synthrad_clip_and_bad_shapes():
    target = np.array([-2000.0, 3500.0])
    assert tissue_mae(target + [0.0, 100.0], target)["mae"] == 0.0  # both clipped to [-1024, 3000]
    assert tissue_mae(target + [0.0, 100.0], target, clip=None)["mae"] == 50.0
    with pytest.raises(TranslateError, match="shape"):
        tissue_mae(np.zeros(3), np.zeros(4))
    with pytest.raises(TranslateError, match="mask"):
        tissue_mae(np.zeros(3), np.zeros(3), mask=np.ones(2))
    for clash in ("soft", "hu"):  # mae_soft / bias_hu are taken
        with pytest.raises(TranslateError, match=f"'{clash}'"):
            tissue_mae(np.zeros(3), np.zeros(3), extra_masks={clash: np.ones(3)})
