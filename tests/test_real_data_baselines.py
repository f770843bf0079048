"""The real-data baselines' fitting functions, on numbers worked out by hand."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def baselines():
    spec = importlib.util.spec_from_file_location("baselines", REPO / "benchmarks" / "real_data" / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constant_and_linear(baselines):
    mr = np.array([0.0, 1.0, 2.0, 3.0])
    ct = 200.0 * mr - 50.0
    assert np.allclose(baselines.fit_constant(mr, ct)(np.zeros((2, 2))), ct.mean())
    linear = baselines.fit_linear(mr, ct)
    assert linear.parameters["a"] == pytest.approx(200.0) and linear.parameters["b"] == pytest.approx(-50.0)
    assert np.allclose(linear(np.array([10.0])), 1950.0)


def test_lookup_bins_and_fills_empty_bins_from_the_nearest(baselines):
    # MR in two clusters: bins between them are empty and take the nearest cluster's mean
    mr = np.concatenate([np.full(500, 0.0), np.full(500, 10.0)])
    ct = np.concatenate([np.full(500, -100.0), np.full(500, 900.0)])
    lookup = baselines.fit_lookup(mr, ct, bins=4, percentiles=(0, 100))
    assert lookup.parameters["edges"] == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0])
    assert lookup.parameters["values"] == pytest.approx([-100.0, -100.0, 900.0, 900.0])
    assert np.allclose(lookup(np.array([-5.0, 1.0, 4.0, 6.0, 50.0])), [-100, -100, -100, 900, 900])


def test_summary_pools_by_voxels(baselines):
    per = {"a": {"mae": 10.0, "voxels": 1, "bias_hu": 1.0}, "b": {"mae": 40.0, "voxels": 3, "bias_hu": -1.0}}
    for record in per.values():
        for suffix in ("_air", "_soft", "_bone", "_tumour"):
            record[f"mae{suffix}"], record[f"voxels{suffix}"] = float("nan"), 0
    summary = baselines.summarise(per)
    assert summary["mean_over_patients"]["mae"] == 25.0 and summary["pooled"]["mae"] == pytest.approx(32.5)
    assert summary["pooled"]["bias_hu"] == pytest.approx(-0.5) and summary["pooled"]["voxels_bone"] == 0


def test_scores_carry_hallucination_rates_averaged_over_patients_that_have_the_class(baselines):
    ct = np.full((2, 4, 4), 40.0, dtype=np.float32)
    ct[0, :2] = 1000.0                                       # 8 bone voxels, 24 soft
    pred = ct.copy()
    pred[0, 0] = 40.0                                        # 4 of the 8 bone voxels turned soft
    pred[1, 3, :2] = 900.0                                   # 2 of the 24 soft voxels turned bone
    region = np.ones(ct.shape, dtype=bool)
    data = {"ct": ct, "region": region, "tumour": np.zeros_like(region)}
    scores = baselines.score_prediction(pred, data)
    assert scores["bone_to_soft"] == 0.5 and scores["bone_lost"] == 0.5 and scores["soft_to_bone"] == 2 / 24
    assert np.isnan(scores["air_to_tissue"])                 # no air: NaN, left out of the mean
    no_bone = baselines.score_prediction(np.full_like(ct, 40.0), {**data, "ct": np.full_like(ct, 40.0)})
    mean = baselines.summarise({"p1": scores, "p2": no_bone})["mean_over_patients"]
    assert mean["bone_to_soft"] == 0.5 and mean["soft_to_bone"] == pytest.approx(1 / 24)
    assert "air_to_tissue" not in mean


def test_soft_tissue_splits_into_fat_and_muscle_with_their_bias(baselines):
    ct = np.full((2, 4, 4), 40.0, dtype=np.float32)         # muscle
    ct[0] = -90.0                                            # 16 fat voxels
    ct[1, 0] = 200.0                                         # 4 dense soft-tissue voxels: neither fat nor muscle
    pred = ct.copy()
    pred[0] = -240.0                                         # fat 150 HU too dark
    pred[1, 1:] = 60.0                                       # muscle 20 HU too bright
    region = np.ones(ct.shape, dtype=bool)
    scores = baselines.score_prediction(pred, {"ct": ct, "region": region, "tumour": np.zeros_like(region)})
    assert scores["voxels_fat"] == 16 and scores["voxels_muscle"] == 12
    assert scores["mae_fat"] == pytest.approx(150.0) and scores["bias_fat"] == pytest.approx(-150.0)
    assert scores["mae_muscle"] == pytest.approx(20.0) and scores["bias_muscle"] == pytest.approx(20.0)
    assert scores["mae_soft"] == pytest.approx((16 * 150 + 12 * 20) / 32)
    no_fat = baselines.score_prediction(np.full_like(ct, 40.0), {"ct": np.full_like(ct, 40.0), "region": region,
                                                                 "tumour": np.zeros_like(region)})
    assert no_fat["voxels_fat"] == 0 and np.isnan(no_fat["bias_fat"])
    mean = baselines.summarise({"p1": scores, "p2": no_fat})["mean_over_patients"]
    assert mean["bias_fat"] == pytest.approx(-150.0) and mean["mae_fat"] == pytest.approx(150.0)
    assert mean["bias_muscle"] == pytest.approx(10.0)       # (20 + 0) / 2: both patients have muscle
