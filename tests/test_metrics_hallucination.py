"""Hallucination rates on constructed volumes whose answers are known by counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from translate.errors import TranslateError
from translate.metrics.hallucination import hallucination_rates
from translate.metrics.paired import evaluate_volumes


def _torso():
    """A 10 x 20 x 20 body of soft tissue (40 HU) in air, with two 2 x 4 x 4 bone blocks and a gas pocket."""
    ct = np.full((10, 20, 20), -1000.0)
    ct[:, 2:18, 2:18] = 40.0
    ct[2:4, 4:8, 4:8] = 1000.0          # bone block 1: 32 voxels
    ct[6:8, 4:8, 10:14] = 800.0         # bone block 2: 32 voxels
    ct[4:6, 12:15, 12:15] = -950.0      # bowel gas inside the body: 18 voxels
    return ct


def test_one_bone_block_turned_to_soft_tissue_gives_exactly_that_fraction():
    real = _torso()
    pred = real.copy()
    pred[2:4, 4:8, 4:8] = 40.0           # the first bone block becomes soft tissue
    rates = hallucination_rates(pred, real, real > -500)
    assert rates["voxels_bone"] == 64
    assert rates["bone_lost"] == 0.5 and rates["bone_to_soft"] == 0.5 and rates["bone_to_air"] == 0.0
    assert rates["soft_to_bone"] == 0.0 and math.isnan(rates["air_to_tissue"])  # no air inside real > -500


def test_invented_bone_lost_bone_and_filled_gas_in_a_body_mask():
    real = _torso()
    body = np.zeros(real.shape, bool)
    body[:, 2:18, 2:18] = True             # the body with its gas pocket
    pred = real.copy()
    pred[6:8, 4:8, 10:12] = -900.0         # half of bone block 2 becomes air: 16 voxels
    pred[0, 10:12, 10:15] = 500.0          # 10 soft voxels become bone
    pred[4:6, 12:15, 12] = 30.0            # 6 of the 18 gas voxels become tissue
    rates = hallucination_rates(pred, real, body)
    soft = int(body.sum()) - 64 - 18
    assert rates["bone_to_air"] == 16 / 64 and rates["bone_lost"] == 16 / 64 and rates["bone_to_soft"] == 0.0
    assert rates["soft_to_bone"] == pytest.approx(10 / soft)
    assert rates["air_to_tissue"] == pytest.approx(6 / 18)
    assert hallucination_rates(real, real, body)["bone_lost"] == 0.0
    assert math.isnan(hallucination_rates(np.zeros((2, 2)), np.zeros((2, 2)))["bone_lost"])  # no bone: NaN
    with pytest.raises(TranslateError, match="same shape"):
        hallucination_rates(np.zeros((2, 2)), np.zeros((2, 3)))


def test_evaluate_volumes_reports_the_rates(tmp_path):
    real = _torso()
    pred = real.copy()
    pred[2:4, 4:8, 4:8] = 40.0
    for name, array in (("real", real), ("pred", pred)):
        sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.int16)), str(tmp_path / f"{name}.nii.gz"))
    result = evaluate_volumes(tmp_path / "pred.nii.gz", tmp_path / "real.nii.gz")
    assert result["bone_lost"] == 0.5 and result["bone_to_soft"] == 0.5  # body mask: CT > -500 HU, holes filled
    assert result["air_to_tissue"] == 0.0
