"""Gradient consistency: the translation's edges must lie where the source's are (Hiasa et al. 2018).

Unlike :class:`~translate.losses.gradient.Gradient` (a paired difference of gradients of two images of
the *same* modality) this compares the source with its translation, whose intensities differ, by
the normalised cross-correlation of their gradients, so it needs no pair.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_pair
from .gradient import image_gradients


def gradient_correlation(x: Tensor, y: Tensor, absolute: bool = False, eps: float = 1e-6) -> Tensor:
    r"""Gradient correlation (Penney et al. 1998), averaged over spatial axes, channels and the batch.

    .. math::
        \mathrm{GC}(x, y) = \frac{1}{K} \sum_{k=1}^{K} \mathrm{NCC}(\nabla_k x, \nabla_k y), \qquad
        \mathrm{NCC}(u, v) = \frac{\sum (u - \bar u)(v - \bar v)}{\sqrt{\sum (u - \bar u)^2 \sum (v - \bar v)^2}}

    with :math:`\nabla_k` the central difference along spatial axis :math:`k` (kornia). With
    ``absolute`` each NCC enters as :math:`|\mathrm{NCC}|`, so an edge whose contrast is inverted
    (bone is dark in MR, bright in CT) counts as consistent.

    Shape:
        - x, y: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, equal shapes.
        - Output: scalar in :math:`[-1, 1]`.

    Example:
        >>> ramp = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> round(gradient_correlation(ramp, -3 * ramp + 1).item(), 4)
        -1.0
    """
    check_pair(x, y, "gradient_correlation")
    gx, gy = image_gradients(x).flatten(3), image_gradients(y).flatten(3)  # (B, C, K, N)
    gx, gy = gx - gx.mean(-1, keepdim=True), gy - gy.mean(-1, keepdim=True)
    ncc = (gx * gy).sum(-1) / ((gx.square().sum(-1) * gy.square().sum(-1)).sqrt() + eps)
    return (ncc.abs() if absolute else ncc).mean()


@LOSSES.register("gradient_correlation")
class GradientCorrelation(Term):
    """Gradient consistency between the source and its translation: 1 - gradient correlation.

    See :func:`gradient_correlation`. Reads ``source`` (default ``real_a``) and ``pred`` (default
    ``fake_b``); a second term with ``source: real_b, pred: fake_a`` covers the other direction.

    Example:
        >>> ramp = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> GradientCorrelation().compute({"real_a": ramp, "fake_b": 2 * ramp}).item() < 1e-6
        True
    """

    name = "gradient_correlation"
    requirement = "a source and its translation (no pair needed)"
    formula = "1 - mean_k NCC(d_k a, d_k G(a)) (|NCC| with absolute)"
    reference = "Hiasa et al. 2018 SASHIMI (gradient consistency); Penney et al. 1998 (gradient correlation)"

    def __init__(self, source: str = "real_a", pred: str = "fake_b", absolute: bool = False,
                 name: str = "gradient_correlation"):
        super().__init__(name)
        if not isinstance(absolute, bool):
            raise ValueError(f"absolute: expected true or false, got {absolute!r}")
        self.source, self.pred, self.absolute = source, pred, absolute

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred)

    def compute(self, tensors: Tensors) -> Tensor:
        return 1.0 - gradient_correlation(tensors[self.source], tensors[self.pred], self.absolute)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, pred={self.pred!r}, absolute={self.absolute}"
