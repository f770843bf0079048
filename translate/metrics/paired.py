"""Paired image metrics for synthetic CT with the SynthRAD 2023 convention: MAE (HU), PSNR, SSIM.

Both CTs are clipped to :math:`[-1024, 3000]` HU (range :math:`R = 4024`) and compared inside a
mask (the body, by default). One code path for 2D ``(H, W)`` and 3D ``(D, H, W)``; numpy arrays
are computed on the CPU in float64, tensors on their own device. scikit-image is the reference
the tests check against, not a dependency of this module.

Example:
    >>> import numpy as np
    >>> ct = np.full((16, 16, 16), 40.0); ct[4:12, 4:12, 4:12] = 700.0
    >>> synthrad_metrics(ct + 10.0, ct)["mae_hu"]
    10.0
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import TranslateError

Clip = Optional[Tuple[float, float]]
SYNTHRAD_CLIP = (-1024.0, 3000.0)
SYNTHRAD_RANGE = 4024.0
METRIC_NAMES = ("mae_hu", "psnr", "ssim")


def _prepare(pred: Any, target: Any, mask: Any) -> Tuple[Tensor, Tensor, Tensor]:
    """Validate and convert to float tensors on one device; the mask becomes bool (nonzero = inside)."""
    device = next((x.device for x in (pred, target, mask) if isinstance(x, Tensor)), torch.device("cpu"))
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64

    def as_tensor(x: Any, name: str) -> Tensor:
        if isinstance(x, Tensor):
            return x.detach().to(device=device, dtype=dtype)
        try:
            return torch.from_numpy(np.asarray(x, dtype=np.float64)).to(device=device, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise TranslateError(f"paired metrics: {name} is not a numeric array: {err}") from None

    pred, target = as_tensor(pred, "prediction"), as_tensor(target, "target")
    if pred.shape != target.shape or pred.ndim not in (2, 3):
        raise TranslateError(f"paired metrics: prediction {tuple(pred.shape)} and target {tuple(target.shape)}; "
                             f"expected the same shape, (H, W) or (D, H, W)")
    for name, x in (("prediction", pred), ("target", target)):
        if not bool(torch.isfinite(x).all()):
            raise TranslateError(f"paired metrics: {name} contains NaN/Inf values")
    if mask is None:
        inside = torch.ones(pred.shape, dtype=torch.bool, device=device)
    else:
        inside = as_tensor(mask, "mask") != 0
        if inside.shape != pred.shape:
            raise TranslateError(f"paired metrics: mask {tuple(inside.shape)}; expected the image shape {tuple(pred.shape)}")
        if not bool(inside.any()):
            raise TranslateError("paired metrics: the mask is empty; expected at least one voxel inside")
    return pred, target, inside


def _clip(x: Tensor, clip: Clip) -> Tensor:
    return x if clip is None else x.clamp(min(clip), max(clip))


def gaussian_filter(image: Tensor, sigma: float = 1.5, truncate: float = 3.5) -> Tensor:
    r"""Separable Gaussian smoothing over every axis, like ``scipy.ndimage.gaussian_filter(mode="reflect")``.

    The kernel is :math:`w_k \propto e^{-k^2 / 2\sigma^2}` for :math:`|k| \le r`,
    :math:`r = \lfloor \mathrm{truncate}\,\sigma + 0.5 \rfloor` (11 taps for the defaults). Borders
    are extended by half-sample symmetric reflection (``d c b a | a b c d``), which torch's
    ``pad`` lacks, so the padding is an index gather.

    Args:
        image: ``(H, W)`` or ``(D, H, W)`` (any number of axes), floating point.
    """
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    out = image
    for axis in range(image.ndim):
        n = image.shape[axis]
        index = torch.arange(-radius, n + radius, device=image.device).remainder(2 * n)
        index = torch.where(index >= n, 2 * n - 1 - index, index)  # repeats correctly when n < radius
        lines = out.movedim(axis, -1).index_select(-1, index)
        shape = lines.shape
        smoothed = F.conv1d(lines.reshape(-1, 1, shape[-1]), kernel).reshape(*shape[:-1], n)
        out = smoothed.movedim(-1, axis)
    return out


def ssim_map(pred: Tensor, target: Tensor, data_range: float = SYNTHRAD_RANGE, sigma: float = 1.5) -> Tensor:
    r"""Local SSIM (Wang et al., IEEE TIP 2004) with Gaussian weights, same shape as the inputs.

    .. math::
        S = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \quad C_1 = (0.01R)^2,\ C_2 = (0.03R)^2

    with local moments from :func:`gaussian_filter` and population (not sample) covariance,
    as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, full=True)`` returns it.

    Args:
        pred, target: ``(H, W)`` or ``(D, H, W)`` float tensors, already clipped and shifted.
        data_range: :math:`R`.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = gaussian_filter(pred, sigma), gaussian_filter(target, sigma)
    var_x = gaussian_filter(pred * pred, sigma) - mu_x * mu_x
    var_y = gaussian_filter(target * target, sigma) - mu_y * mu_y
    cov_xy = gaussian_filter(pred * target, sigma) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def mae_hu(pred: Any, target: Any, mask: Any = None, clip: Clip = SYNTHRAD_CLIP) -> float:
    r"""Mean absolute error in HU inside the mask: :math:`\frac{1}{|M|}\sum_{i \in M} |\hat y_i - y_i|` after clipping.

    Args:
        pred, target: CT in HU, ``(H, W)`` or ``(D, H, W)`` numpy arrays or tensors.
        mask: same shape, nonzero = inside; ``None`` = everywhere.
        clip: HU interval both images are clipped to; ``None`` = no clipping.
    """
    pred, target, inside = _prepare(pred, target, mask)
    return float((_clip(pred, clip) - _clip(target, clip)).abs()[inside].mean())


def psnr(pred: Any, target: Any, mask: Any = None, data_range: float = SYNTHRAD_RANGE,
         clip: Clip = SYNTHRAD_CLIP) -> float:
    r"""Peak signal-to-noise ratio in dB, :math:`10 \log_{10}(R^2 / \mathrm{MSE}_M)`, MSE over the mask.

    Identical images give ``inf``. Arguments as :func:`mae_hu`; ``data_range`` is :math:`R`.
    """
    pred, target, inside = _prepare(pred, target, mask)
    mse = float(((_clip(pred, clip) - _clip(target, clip)) ** 2)[inside].mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range ** 2 / mse)


def ssim(pred: Any, target: Any, mask: Any = None, data_range: float = SYNTHRAD_RANGE,
         clip: Clip = SYNTHRAD_CLIP) -> float:
    """Mean SSIM inside the mask, from :func:`ssim_map` of the whole clipped images.

    Both images are clipped and shifted by ``-min(clip)`` (+1024 HU) to :math:`[0, R]`, since the
    luminance term is not shift invariant. The map covers the whole image, borders included
    (symmetric reflection), and is averaged over the mask; skimage's scalar ``mssim`` instead
    crops 5 voxels from each border, so this equals skimage's ``full=True`` map averaged in the mask.
    Arguments as :func:`psnr`.
    """
    pred, target, inside = _prepare(pred, target, mask)
    shift = 0.0 if clip is None else -min(clip)
    local = ssim_map(_clip(pred, clip) + shift, _clip(target, clip) + shift, data_range=data_range)
    return float(local[inside].mean())


def synthrad_metrics(pred: Any, target: Any, mask: Any = None) -> Dict[str, float]:
    """MAE (HU), PSNR (dB) and SSIM with the SynthRAD 2023 settings, and the voxel count of the mask.

    Args:
        pred, target: CT in HU, ``(H, W)`` or ``(D, H, W)``.
        mask: nonzero = inside; ``None`` = everywhere.

    Returns:
        ``{"mae_hu": float, "psnr": float, "ssim": float, "voxels": int}``
    """
    pred, target, inside = _prepare(pred, target, mask)
    return {"mae_hu": mae_hu(pred, target, inside), "psnr": psnr(pred, target, inside),
            "ssim": ssim(pred, target, inside), "voxels": int(inside.sum())}


class PairedMetrics:
    """Accumulates :func:`synthrad_metrics` over cases, MONAI-style.

    Example:
        >>> metrics = PairedMetrics()
        >>> for fake_ct, real_ct, body_mask in cases:          # doctest: +SKIP
        ...     metrics(fake_ct, real_ct, body_mask)
        >>> metrics.aggregate()["mae_hu"]["mean"]              # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.cases: List[Dict[str, float]] = []

    def __call__(self, pred: Any, target: Any, mask: Any = None) -> Dict[str, float]:
        """Score one case, ``(H, W)`` or ``(D, H, W)``; returns its metrics and keeps them."""
        result = synthrad_metrics(pred, target, mask)
        self.cases.append(result)
        return result

    def aggregate(self) -> Dict[str, Any]:
        """``{metric: {"mean", "std"}}`` over the cases so far (population std), plus ``"cases"``.

        A case with identical images has PSNR ``inf``, which makes the PSNR mean ``inf``.
        """
        if not self.cases:
            raise TranslateError("PairedMetrics.aggregate: no cases yet; call it on a prediction first")
        summary: Dict[str, Any] = {"cases": len(self.cases)}
        for name in METRIC_NAMES:
            values = np.array([case[name] for case in self.cases], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                summary[name] = {"mean": float(values.mean()), "std": float(values.std())}
        return summary

    def reset(self) -> None:
        self.cases = []


def evaluate_volumes(prediction: str | Path, target: str | Path, mask: str | Path | None = None,
                     regions: Dict[str, str | Path] | None = None) -> Dict[str, Any]:
    """SynthRAD metrics of a synthetic CT file against a real CT file on the same grid.

    Args:
        prediction: synthetic CT in HU (NIfTI, NRRD, MHA or DICOM folder).
        target: real CT in HU on the same grid.
        mask: evaluation mask on the same grid, nonzero = inside; ``None`` = the body,
            :func:`translate.data.masks.body_mask_from_ct` of the target at -500 HU.

        regions: ``{name: mask file}`` (e.g. a tumour) scored inside ``mask`` as ``mae_<name>``.

    Returns:
        ``{"mae_hu", "psnr", "ssim", "voxels", "mask"}``, ``"mask"`` naming where the mask came from,
        plus the MAE per tissue class of the target (``mae_air`` < -400, ``mae_soft``, ``mae_bone``
        > 300 HU), ``bias_hu`` and ``mae_<name>`` per region (:func:`translate.metrics.tissue.tissue_mae`),
        and the hallucination rates ``bone_lost``, ``bone_to_soft``, ``bone_to_air``, ``soft_to_bone``,
        ``air_to_tissue`` (:func:`translate.metrics.hallucination.hallucination_rates`).
    """
    from .tissue import tissue_mae

    from ..data.io import check_same_grid, image_to_array, read_volume
    from ..data.masks import body_mask_from_ct

    fake_image = read_volume(prediction, what="prediction")
    real_image = read_volume(target, what="target")
    check_same_grid(fake_image, real_image, f"prediction {prediction}", f"target {target}")
    real_ct = image_to_array(real_image)
    if mask is None:
        inside, source = body_mask_from_ct(real_ct, threshold=-500.0), "body (CT > -500 HU)"
    else:
        mask_image = read_volume(mask, what="mask")
        check_same_grid(mask_image, real_image, f"mask {mask}", f"target {target}")
        inside, source = image_to_array(mask_image) != 0, str(mask)
    if not inside.any():
        raise TranslateError(f"evaluation mask {source} is empty for target {target}; expected voxels inside")
    extra = {}
    for name, path in (regions or {}).items():
        region_image = read_volume(path, what=f"region {name}")
        check_same_grid(region_image, real_image, f"region {name} {path}", f"target {target}")
        extra[name] = image_to_array(region_image) != 0
    fake_ct = image_to_array(fake_image)
    tissue = tissue_mae(fake_ct, real_ct, inside, extra)
    per_class = {k: v for k, v in tissue.items() if k != "mae" and k != "voxels"}
    from .hallucination import RATE_NAMES, hallucination_rates

    rates = hallucination_rates(fake_ct, real_ct, inside)
    per_class.update({k: rates[k] for k in RATE_NAMES})
    return {**synthrad_metrics(fake_ct, real_ct, inside), "mask": source, **per_class}
