"""Structural dissimilarity ``1 - SSIM``, computed by kornia (``ssim`` in 2D, ``ssim3d`` in 3D).

kornia rather than MONAI: MONAI's ``compute_ssim_and_cs`` casts to float32, which defeats
float64 gradient checks; kornia keeps the dtype. With ``padding="valid"`` and ``eps=0`` the two
agree (see ``tests/test_losses_structure.py``).
"""

from __future__ import annotations

from typing import Tuple

from kornia.metrics import ssim, ssim3d
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_pair


def ssim_loss(pred: Tensor, target: Tensor, data_range: float = 2.0, window: int = 11,
              intensity_min: float = -1.0) -> Tensor:
    r"""One minus the mean structural similarity (Wang et al. 2004, "Image quality assessment:
    from error visibility to structural similarity").

    .. math::
        \mathcal{L} = 1 - \frac{1}{N} \sum_v
        \frac{(2\mu_p\mu_t + c_1)(2\sigma_{pt} + c_2)}{(\mu_p^2 + \mu_t^2 + c_1)(\sigma_p^2 + \sigma_t^2 + c_2)},
        \qquad c_1 = (0.01 L)^2,\; c_2 = (0.03 L)^2

    with local Gaussian statistics (:math:`\sigma = 1.5`, fixed by kornia, ``window`` taps per
    axis) over the *valid* region, as in Wang's reference code, scikit-image and MONAI.
    Both images are first shifted by :math:`-`\ ``intensity_min`` into :math:`[0, L]`: the
    luminance factor assumes non-negative intensities, and near zero a tiny mean difference
    would otherwise cost almost the whole factor. Models work in :math:`[-1, 1]`, hence
    :math:`L = 2`, ``intensity_min = -1``.

    Args:
        pred: predicted image.
        target: reference image.
        data_range: :math:`L`, the width of the intensity range.
        window: odd number of Gaussian taps per axis; every spatial size must be at least this.
        intensity_min: lowest intensity of the range (0 for images already in :math:`[0, L]`).

    Shape:
        - pred, target: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: scalar in :math:`[0, 2]`, 0 for identical images.

    Example:
        >>> x = torch.rand(1, 1, 16, 16) * 2 - 1
        >>> abs(ssim_loss(x, x).item()) < 1e-6
        True
    """
    check_pair(pred, target, "ssim_loss")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"ssim_loss: window must be a positive odd number, got {window}")
    if min(pred.shape[2:]) < window:
        raise ValueError(f"ssim_loss: every spatial size of {tuple(pred.shape)} must be >= window={window}; "
                         f"pass a smaller odd window")
    if data_range <= 0:
        raise ValueError(f"ssim_loss: data_range must be > 0, got {data_range}")
    fn = ssim if pred.dim() == 4 else ssim3d
    similarity = fn(pred - intensity_min, target - intensity_min, window_size=window, max_val=float(data_range),
                    eps=0.0, padding="valid")
    return 1.0 - similarity.mean()


@LOSSES.register("structure")
class Structure(Term):
    """Structural dissimilarity 1 - SSIM between the translation and its target.

    See :func:`ssim_loss`.

    Example:
        >>> x = torch.zeros(1, 1, 16, 16)
        >>> Structure().compute({"fake_b": x, "real_b": x}).item()
        0.0
    """

    name = "structure"
    requirement = "aligned pair"
    formula = "1 - mean SSIM(G(a), b) (Gaussian window, sigma 1.5)"
    reference = "Wang et al. 2004; Zhao et al. 2017 (SSIM as a loss)"

    def __init__(self, data_range: float = 2.0, window: int = 11, intensity_min: float = -1.0,
                 pred: str = "fake_b", target: str = "real_b", name: str = "structure"):
        super().__init__(name)
        if window < 1 or window % 2 == 0 or data_range <= 0:
            raise ValueError(f"Structure: window must be odd and positive and data_range > 0, "
                             f"got window={window}, data_range={data_range}")
        self.data_range, self.window, self.intensity_min = data_range, window, intensity_min
        self.pred, self.target = pred, target

    def needs(self) -> Tuple[str, ...]:
        return (self.pred, self.target)

    def compute(self, tensors: Tensors) -> Tensor:
        return ssim_loss(tensors[self.pred], tensors[self.target], self.data_range, self.window, self.intensity_min)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, window={self.window}, pred={self.pred!r}, target={self.target!r}"
