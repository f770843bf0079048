"""The FID/Dice pipeline over several U-Net seeds: per-seed Dice, mean ± sd, and rows paired by seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.errors import TranslateError

REPO = Path(__file__).resolve().parents[1]


def test_paired_comparison_matches_scipy_paired_t_test():
    from scipy.stats import ttest_rel

    from translate.evaluation.synthesis import paired_comparison

    row, real = [0.70, 0.74, 0.69, 0.75, 0.72], [0.71, 0.73, 0.72, 0.74, 0.74]
    entry = paired_comparison(row, real)
    d = np.subtract(row, real)
    assert entry["differences"] == pytest.approx(list(d))
    assert entry["mean_difference"] == pytest.approx(d.mean()) and entry["sd_difference"] == pytest.approx(d.std(ddof=1))
    reference = ttest_rel(row, real)
    assert entry["t"] == pytest.approx(reference.statistic)
    assert entry["p_two_sided"] == pytest.approx(reference.pvalue)
    assert entry["p_one_sided_worse"] == pytest.approx(ttest_rel(row, real, alternative="less").pvalue)
    assert (entry["wins"], entry["losses"]) == (2, 3)
    one = paired_comparison([0.7], [0.6])  # one seed: the difference only
    assert one["mean_difference"] == pytest.approx(0.1) and math.isnan(one["p_two_sided"])
    with pytest.raises(TranslateError, match="2 seeds against 1"):
        paired_comparison([0.1, 0.2], [0.3])


def test_two_unet_seeds_give_per_seed_dice_and_a_mean_and_sd_that_match_them(tiny_phantom, tmp_path):
    from translate.evaluation.synthesis import Budget, Generator, run_pipeline

    joint = Generator("dcgan", REPO / "recipes" / "joint-dcgan.yaml", [
        "model.networks.generator.image_size=32", "model.options.image_size=32", "model.networks.generator.channels=4",
        "model.networks.discriminator.channels=4", "model.networks.discriminator.n_layers=2", "data.batch_size=2",
        "model.options.z_dim=4"])
    kwargs = dict(data_root=tiny_phantom, budget=Budget(1, 2, 8, 2), augmentation=False, progress=False,
                  segmenter_overrides=["model.networks.generator.channels=[4, 8]"], announce=lambda text: None)
    out = tmp_path / "bench"
    one = run_pipeline([joint], out, **kwargs)
    first = out / "segmenters" / "real" / "checkpoints" / "last.pt"
    stamp = first.stat().st_mtime_ns
    results = run_pipeline([joint], out, unet_seeds=2, **kwargs)
    assert first.stat().st_mtime_ns == stamp  # the one-seed run is seed 0 of the two-seed run: reused
    second = out / "segmenters" / "real_seed1" / "checkpoints" / "last.pt"
    weights = [torch.load(p, map_location="cpu", weights_only=True)["networks"]["model"] for p in (first, second)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if weights[0][k].is_floating_point())
    assert results["unet_seeds"] == [0, 1]
    for row, single in zip(results["rows"], one["rows"]):
        assert len(row["dice_per_seed"]) == 2 and row["seeds"] == [0, 1]
        assert row["dice_per_seed"][0] == single["dice"]  # seed 0 is the one-seed row
        assert row["dice"] == pytest.approx(np.mean(row["dice_per_seed"]))
        assert row["dice_sd"] == pytest.approx(np.std(row["dice_per_seed"], ddof=1))
        for name, values in row["dice_per_structure_per_seed"].items():
            present = [v for v in values if v is not None]
            assert row["dice_per_structure"][name] == pytest.approx(np.mean(present))
        assert single["dice_sd"] is None or math.isnan(single["dice_sd"])  # one seed: no sd
    real = results["rows"][0]
    mixed = next(r for r in results["rows"] if r["training_data"] == "real + synthetic")
    paired = results["paired_vs_real"]["real + synthetic (dcgan)"]
    assert paired["differences"] == pytest.approx(np.subtract(mixed["dice_per_seed"], real["dice_per_seed"]).tolist())
    check = results["real_plus_synthetic_not_worse"]["dcgan"]
    assert check["not_worse_on_mean"] == (mixed["dice"] >= real["dice"])
    assert results["synthetic_over_real_dice"]["dcgan"] == pytest.approx(results["rows"][1]["dice"] / real["dice"])
    table = (out / "results.md").read_text(encoding="utf-8")
    assert f"{real['dice']:.3f} ± {real['dice_sd']:.3f}" in table and "Paired by U-Net seed" in table
    written = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert written["rows"][0]["dice_per_seed"] == real["dice_per_seed"]
    with pytest.raises(TranslateError, match="--unet-seeds"):
        run_pipeline([joint], out, unet_seeds=0, **kwargs)
