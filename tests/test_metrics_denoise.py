"""Denoising metrics against known answers: PSNR in both conventions, SSIM, noise, edge rise distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from translate.errors import TranslateError
from translate.metrics.denoise import (RISE_PER_SIGMA, denoise_metrics, edge_sharpness, noise_std, signed_distance,
                                       ssim_2d)


def test_psnr_in_both_conventions_has_the_closed_form():
    target = np.full((3, 16, 16), 40.0)
    result = denoise_metrics(target + 20.0, target)
    assert result["rmse_hu"] == pytest.approx(20.0)
    assert result["psnr_window"] == pytest.approx(10 * math.log10(400.0 ** 2 / 400.0))
    assert result["psnr_full"] == pytest.approx(10 * math.log10(4024.0 ** 2 / 400.0))


def test_window_convention_ignores_differences_outside_the_window():
    target = np.full((16, 16), 40.0)
    target[4:8, 4:8] = 1000.0  # bone: both clip to 240 in the window
    pred = target.copy()
    pred[4:8, 4:8] = 500.0
    result = denoise_metrics(pred, target)
    assert math.isinf(result["psnr_window"]) and result["ssim_window"] == pytest.approx(1.0)
    assert result["psnr_full"] < 40.0 and result["ssim_full"] < 1.0


def test_ssim_is_skimage_per_slice_map():
    rng = np.random.default_rng(0)
    target = rng.normal(40, 30, size=(2, 24, 24))
    pred = target + rng.normal(0, 15, size=target.shape)
    expected = np.mean([structural_similarity(np.clip(p, -160, 240) + 160, np.clip(t, -160, 240) + 160,
                                              data_range=400.0, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, full=True)[1].mean()
                        for p, t in zip(pred, target)])
    assert ssim_2d(pred, target, data_range=400.0, clip=(-160, 240)) == pytest.approx(expected, rel=1e-6)


def test_noise_std_pools_slices_and_ignores_their_offsets():
    rng = np.random.default_rng(1)
    image = rng.normal(0.0, 10.0, size=(4, 64, 64)) + np.array([0.0, 50.0, -30.0, 100.0])[:, None, None]
    region = np.zeros(image.shape, dtype=bool)
    region[:, 8:56, 8:56] = True
    result = noise_std(image, region)
    assert result["noise_std"] == pytest.approx(10.0, rel=0.03)
    assert result["mean_hu"] == pytest.approx(30.0, abs=0.5) and result["voxels"] == 4 * 48 * 48
    with pytest.raises(TranslateError, match="no slice"):
        noise_std(image, np.zeros(image.shape, dtype=bool))


def disc(sigma_px: float, size: int = 96, radius: float = 30.0, inside: float = 60.0, outside: float = -100.0):
    """A disc rendered with 8 x 8 supersampling per pixel, then blurred by a Gaussian of ``sigma_px``."""
    fine = (np.mgrid[:size * 8, :size * 8] + 0.5) / 8.0 - size / 2.0
    hit = np.hypot(*fine) <= radius
    image = np.where(hit, inside, outside).reshape(size, 8, size, 8).mean(axis=(1, 3))
    image = ndimage.gaussian_filter(image, sigma_px) if sigma_px else image
    centres = np.mgrid[:size, :size] + 0.5 - size / 2.0
    return image, np.hypot(*centres) <= radius


@pytest.mark.parametrize("sigma_px", [1.0, 2.0, 3.0])
def test_edge_rise_of_a_blurred_disc_matches_the_blur(sigma_px):
    spacing = 0.5
    image, region = disc(sigma_px)
    result = edge_sharpness(image, region, spacing=(spacing, spacing), max_distance=8 * sigma_px * spacing + 2)
    # pixel integration adds a 1-pixel box (variance 1/12) to the Gaussian
    expected_sigma = math.sqrt(sigma_px ** 2 + 1 / 12) * spacing
    assert result["sigma_mm"] == pytest.approx(expected_sigma, rel=0.05)
    assert result["rise_10_90_mm"] == pytest.approx(RISE_PER_SIGMA * expected_sigma, rel=0.05)
    assert result["contrast_hu"] == pytest.approx(-160.0, rel=0.03)  # inside 60 -> outside -100
    assert result["slope_hu_per_mm"] == pytest.approx(160 / (expected_sigma * math.sqrt(2 * math.pi)), rel=0.06)


def test_edge_rise_survives_noise_and_orders_blur():
    rng = np.random.default_rng(2)
    sharp, region = disc(1.0)
    blurred, _ = disc(2.5)
    noisy = np.stack([sharp + rng.normal(0, 40, sharp.shape) for _ in range(3)])
    stack = np.repeat(region[None], 3, axis=0)
    noisy_rise = edge_sharpness(noisy, stack)["rise_10_90_mm"]
    assert noisy_rise == pytest.approx(edge_sharpness(sharp, region)["rise_10_90_mm"], rel=0.2)
    assert edge_sharpness(blurred, region)["rise_10_90_mm"] > 2 * noisy_rise


def test_signed_distance_is_half_a_voxel_at_the_boundary():
    region = np.zeros((3, 8), dtype=bool)
    region[:, :4] = True
    assert signed_distance(region, (2.0, 2.0))[1].tolist() == [-7.0, -5.0, -3.0, -1.0, 1.0, 3.0, 5.0, 7.0]
    with pytest.raises(TranslateError, match="no boundary"):
        edge_sharpness(np.zeros((4, 4)), np.ones((4, 4), dtype=bool))


def test_evaluate_denoise_option_writes_both_conventions_and_region_noise(tmp_path):
    import json

    import SimpleITK as sitk
    from typer.testing import CliRunner

    from translate.cli import app

    rng = np.random.default_rng(3)
    target = np.full((3, 32, 32), 40.0)
    target[:, :, :4] = -1000.0  # air beside the body
    pred = target + np.where(target > -500, 20.0, 0.0)
    pred[:, 8:24, 8:24] += rng.normal(0.0, 5.0, size=(3, 16, 16))
    region = np.zeros(target.shape, dtype=np.uint8)
    region[:, 8:24, 8:24] = 1
    paths = {}
    for name, array in (("pred", pred), ("ct", target), ("liver", region)):
        image = sitk.GetImageFromArray(np.rint(array).astype(np.int16 if name != "liver" else np.uint8))
        image.SetSpacing((2.0, 2.0, 3.0))
        paths[name] = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    result = CliRunner().invoke(app, ["evaluate", str(paths["pred"]), str(paths["ct"]), "--denoise",
                                      "--region", f"liver={paths['liver']}", "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "PSNR [-160, 240]" in result.output
    record = json.loads((tmp_path / "m.json").read_text())
    from translate.data.masks import body_mask_from_ct

    expected = denoise_metrics(np.rint(pred), target, body_mask_from_ct(target, threshold=-500.0))
    for key in ("psnr_window", "psnr_full", "ssim_window", "ssim_full", "rmse_hu"):
        assert record[key] == pytest.approx(expected[key]), key
    assert record["noise_liver"] == pytest.approx(5.0, rel=0.15)
