"""Distances between image sets (Fréchet distance, KID, IS, extractors) and the FID/Dice pipeline end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from translate.errors import TranslateError
from translate.evaluation.distances import (InceptionFeatures, SegmenterFeatures, frechet_distance, inception_score,
                                            kernel_inception_distance)

REPO = Path(__file__).resolve().parents[1]


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root (pytorch-fid's computation)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


def test_frechet_distance_matches_scipy_on_the_same_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    y = rng.normal(0.3, 1.5, size=(250, 12)) @ rng.normal(size=(12, 12))
    assert frechet_distance(x, y) == pytest.approx(scipy_frechet(x, y), rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8))
    assert abs(frechet_distance(x, x)) < 1e-8
    distances = [frechet_distance(x, x + shift) for shift in (0.1, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances) and distances[0] > 0
    assert distances[-1] == pytest.approx(8 * 2.0 ** 2, rel=1e-6)  # same covariance: the squared mean shift


def test_kid_is_unbiased_on_two_samples_of_one_distribution():
    rng = np.random.default_rng(2)
    same = [kernel_inception_distance(rng.normal(size=(60, 16)), rng.normal(size=(60, 16)), subsets=5,
                                      subset_size=60, seed=k)[0] for k in range(40)]
    mean, error = np.mean(same), np.std(same) / np.sqrt(len(same))
    assert abs(mean) < 3 * error  # zero in expectation (the biased V-statistic would sit near +2/m)
    biased = []
    for k in range(40):
        x, y = rng.normal(size=(60, 16)), rng.normal(size=(60, 16))
        kxx, kyy, kxy = ((a @ b.T / 16 + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    assert np.mean(biased) > 10 * error
    shifted, _ = kernel_inception_distance(rng.normal(size=(60, 16)), rng.normal(0.5, 1, size=(60, 16)))
    assert shifted > 10 * error


def test_inception_score_bounds():
    assert inception_score(np.full((20, 5), 0.2))[0] == pytest.approx(1.0)
    assert inception_score(np.eye(5)[np.arange(50) % 5], splits=1)[0] == pytest.approx(5.0, rel=1e-6)


def test_inception_without_weights_names_the_file_and_never_runs_random(tmp_path):
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(TranslateError, match=f"weights file not found: {missing}"):
        InceptionFeatures(missing)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(TranslateError, match="is not torchvision's Inception-v3 state dict"):
        InceptionFeatures(wrong)


def test_segmenter_features_are_the_unet_bottleneck():
    from translate.nn.generators.monai_unet import MonaiUNet

    unet = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=3, channels=[4, 8, 16], num_res_units=1)
    features = SegmenterFeatures(unet)(torch.randn(5, 1, 30, 36))  # padded to the size multiple
    assert features.shape == (5, 16)


def test_pipeline_end_to_end_on_a_tiny_configuration(tiny_phantom, tmp_path):
    from translate.evaluation.synthesis import Budget, Generator, run_pipeline

    recipes = REPO / "recipes"
    spade = Generator("spade", recipes / "spade-ct.yaml", [
        "model.networks.generator.channels=[16, 8]", "model.networks.generator.z_dim=8",
        "model.networks.generator.encoder_channels=[8, 8]", "model.networks.generator.spade_hidden=8",
        "model.networks.discriminator.channels=8", "model.networks.discriminator.n_layers=2", "data.batch_size=2"])
    joint = Generator("dcgan", recipes / "joint-dcgan.yaml", [
        "model.networks.generator.image_size=32", "model.options.image_size=32", "model.networks.generator.channels=8",
        "model.networks.discriminator.channels=8", "model.networks.discriminator.n_layers=3", "data.batch_size=2",
        "model.options.z_dim=8"])
    started = time.process_time()  # CPU seconds: the 2 cores are shared, wall time is not ours
    results = run_pipeline([spade, joint], tmp_path / "bench", data_root=tiny_phantom, budget=Budget(2, 2, 16, 2),
                           segmenter_overrides=["model.networks.generator.channels=[8, 16]"], progress=False,
                           announce=lambda text: None)
    assert time.process_time() - started < 60
    rows = {(r["training_data"], r["generator"]): r for r in results["rows"]}
    assert set(rows) == {("real", "-"), ("real + classic augmentation", "-"), ("synthetic", "spade"),
                         ("synthetic", "dcgan"), ("real + synthetic", "spade"), ("real + synthetic", "dcgan")}
    for row in rows.values():
        assert 0 <= row["dice"] <= 1 and set(row["dice_per_structure"]) <= set(results["structures"].values())
    assert rows[("synthetic", "spade")]["fid_segmenter"] >= 0 and "kid_segmenter" in rows[("synthetic", "dcgan")]
    assert set(results["fid_ranks_like_dice"]["segmenter"]["order_by_fid"]) == {"spade", "dcgan"}
    written = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert written["rows"][0]["training_data"] == "real"
    table = (tmp_path / "bench" / "results.md").read_text(encoding="utf-8")
    assert "| training data | generator | FID (segmenter) | KID (segmenter) | Dice | HD95 (mm) |" in table
    png = tmp_path / "bench" / "fid_vs_dice.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 100_000
    # the real + synthetic root holds both kinds of subjects
    mixed = json.loads((tmp_path / "bench" / "mixed" / "spade" / "split.json").read_text())["train"]
    assert any(s.startswith("real_") for s in mixed) and any(s.startswith("synthetic_") for s in mixed)


def test_benchmark_command_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from translate.cli import app

    result = CliRunner().invoke(app, ["benchmark", "synthesis", "x=missing.yaml", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "recipe file not found: missing.yaml" in result.output
    result = CliRunner().invoke(app, ["benchmark", "synthesis", "recipes/spade-ct.yaml", "--out", str(tmp_path),
                                      "--extractor", "inception", "--inception-weights", str(tmp_path / "none.pth")])
    assert result.exit_code == 2 and "weights file not found" in result.output


def test_slab_split_of_the_real_ct_never_mixes_slabs(shared_data, tmp_path):
    import SimpleITK as sitk

    from translate.evaluation.synthesis import slab_root

    ct, seg = shared_data / "totalseg" / "example_ct_sm.nii.gz", shared_data / "totalseg" / "example_seg.nii.gz"
    root = slab_root(ct, seg, tmp_path / "slabs", labels={5: 1, 1: 2, 2: 3, 3: 3}, slabs=3, test_slabs=(1,), gap=1, crop=64)
    split = json.loads((root / "split.json").read_text())
    assert split["test"] == ["slab_1"] and split["train"] == ["slab_0", "slab_2"]
    source = sitk.ReadImage(str(ct))
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
    taken = []
    for subject in ("slab_0", "slab_1", "slab_2"):
        image = sitk.ReadImage(str(root / subject / "ct.nii.gz"))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / subject / "labels.nii.gz")))
        assert image.GetSize()[:2] == (64, 64) and image.GetSpacing() == source.GetSpacing()
        first = round(source.TransformPhysicalPointToContinuousIndex(image.GetOrigin())[2])
        taken.append(set(range(first, first + image.GetSize()[2])))
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        assert (labels == 1).sum() == (full[first:first + image.GetSize()[2]] == 5).sum() or labels.shape[1:] != full.shape[1:]
    assert not taken[0] & taken[1] and not taken[1] & taken[2]  # whole slabs, and a gap slice at each cut
    assert min(taken[1]) - max(taken[0]) == 3 and min(taken[2]) - max(taken[1]) == 3  # gap 1 each side


def test_a_rerun_never_reuses_samples_or_segmenters_older_than_what_made_them(tiny_phantom, tmp_path):
    from translate.evaluation.synthesis import Budget, Generator, run_pipeline

    joint = Generator("dcgan", REPO / "recipes" / "joint-dcgan.yaml", [
        "model.networks.generator.image_size=32", "model.options.image_size=32", "model.networks.generator.channels=4",
        "model.networks.discriminator.channels=4", "model.networks.discriminator.n_layers=2", "data.batch_size=2",
        "model.options.z_dim=4"])
    kwargs = dict(data_root=tiny_phantom, segmenter_overrides=["model.networks.generator.channels=[4, 8]"],
                  progress=False, announce=lambda text: None, mixed=[], augmentation=False)
    out = tmp_path / "bench"
    run_pipeline([joint], out, budget=Budget(1, 1, 4, 2), **kwargs)
    real, synthetic = (out / "segmenters" / name / "checkpoints" / "last.pt" for name in ("real", "synthetic_dcgan"))
    before = {p: p.stat().st_mtime_ns for p in (real, synthetic)}
    run_pipeline([joint], out, budget=Budget(2, 1, 4, 2), **kwargs)  # the generator retrained: new samples
    assert json.loads((out / "synthetic" / "dcgan" / "synthesis.json").read_text())["checkpoint_step"] == 2
    assert real.stat().st_mtime_ns == before[real]  # same data, same budget: reused
    assert synthetic.stat().st_mtime_ns != before[synthetic]  # its data changed: trained again
