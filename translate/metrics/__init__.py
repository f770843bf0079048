"""Image metrics: paired (MAE in HU, PSNR, SSIM with the SynthRAD 2023 convention)."""

from .denoise import denoise_metrics, edge_sharpness, noise_std  # noqa: F401  (denoising: two conventions, noise, sharpness)

from .paired import (
    PairedMetrics,
    evaluate_volumes,
    gaussian_filter,
    mae_hu,
    psnr,
    ssim,
    ssim_map,
    synthrad_metrics,
)

__all__ = ["PairedMetrics", "evaluate_volumes", "gaussian_filter", "mae_hu", "psnr", "ssim", "ssim_map",
           "synthrad_metrics"]
