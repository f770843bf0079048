"""Gradient-difference and edge-weighted losses: keep boundaries sharp where pixel losses blur.

Spatial gradients are kornia's central differences with replicate padding
(``spatial_gradient`` in 2D, ``spatial_gradient3d`` in 3D), so one code path serves both.
"""

from __future__ import annotations

from typing import Tuple

import torch
from kornia.filters import spatial_gradient, spatial_gradient3d
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_choice, check_image, check_pair
from .pixel import PixelKind


def image_gradients(x: Tensor) -> Tensor:
    r"""Central differences :math:`(f_{i+1} - f_{i-1}) / 2` along every spatial axis.

    Shape:
        - x: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: :math:`(B, C, 2, H, W)` or :math:`(B, C, 3, D, H, W)`.

    Example:
        >>> ramp = torch.arange(4.0).expand(1, 1, 4, 4)
        >>> image_gradients(ramp)[0, 0, 0, 0].tolist()
        [0.5, 1.0, 1.0, 0.5]
    """
    check_image(x, "image_gradients")
    if x.dim() == 4:
        return spatial_gradient(x, mode="diff", order=1, normalized=True)
    return spatial_gradient3d(x, mode="diff", order=1)


def gradient_loss(pred: Tensor, target: Tensor, kind: str = "l1", edge_weighted: bool = False) -> Tensor:
    r"""Gradient-difference loss, or pixel loss weighted by the target's edges.

    Gradient difference (Mathieu et al. 2016, "Deep multi-scale video prediction beyond mean
    square error"; Nie et al. 2018 for synthetic CT), with :math:`\nabla_k` the central
    difference along spatial axis :math:`k` and :math:`\rho` the ``kind`` penalty:

    .. math::
        \mathcal{L}_{GD} = \frac{1}{K N} \sum_{k=1}^{K} \sum_{v} \rho\big(\nabla_k p_v - \nabla_k t_v\big)

    Edge-weighted (``edge_weighted=True``, the review's :math:`\mathcal{L}_{edge}`): a pixel
    loss weighted by the target's gradient magnitude, normalised per image and channel:

    .. math::
        \mathcal{L}_{edge} = \frac{1}{N} \sum_v w_v\, \rho(p_v - t_v), \qquad
        w_v = \frac{\lVert \nabla t_v \rVert_2}{\max_u \lVert \nabla t_u \rVert_2}

    The weights are constants (no gradient flows through the target); a flat target has
    zero weight everywhere, so pair this term with a plain pixel loss.

    Args:
        pred: predicted image.
        target: reference image.
        kind: ``"l1"`` or ``"l2"`` (``"charbonnier"`` is not offered here).
        edge_weighted: compute :math:`\mathcal{L}_{edge}` instead of :math:`\mathcal{L}_{GD}`.

    Shape:
        - pred, target: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: scalar.

    Example:
        >>> ramp = torch.arange(4.0).expand(1, 1, 4, 4)
        >>> gradient_loss(ramp, ramp).item()
        0.0
    """
    kind = check_choice(PixelKind, kind, "gradient loss kind")
    if kind == PixelKind.CHARBONNIER:
        raise ValueError("gradient loss kind must be 'l1' or 'l2'")
    check_pair(pred, target, "gradient_loss")
    rho = torch.abs if kind == PixelKind.L1 else torch.square
    if not edge_weighted:
        return rho(image_gradients(pred) - image_gradients(target)).mean()
    with torch.no_grad():
        magnitude = image_gradients(target).square().sum(2).sqrt()
        peak = magnitude.flatten(2).amax(2).reshape(*magnitude.shape[:2], *([1] * (target.dim() - 2)))
        weight = magnitude / peak.clamp_min(torch.finfo(magnitude.dtype).tiny)
    return (weight * rho(pred - target)).mean()


@LOSSES.register("gradient")
class Gradient(Term):
    """Gradient-difference loss: match the spatial derivatives of the target (sharp edges).

    See :func:`gradient_loss`.

    Example:
        >>> ramp = torch.arange(4.0).expand(1, 1, 4, 4)
        >>> Gradient().compute({"fake_b": ramp, "real_b": 2 * ramp}).item()
        0.375
    """

    name = "gradient"
    requirement = "aligned pair"
    formula = "mean_k mean |d_k G(a) - d_k b| (central differences)"
    reference = "Mathieu et al. 2016; Nie et al. 2018 (sCT)"
    edge_weighted = False

    def __init__(self, kind: str = "l1", pred: str = "fake_b", target: str = "real_b", name: str = "gradient"):
        super().__init__(name)
        self.kind = check_choice(PixelKind, kind, "gradient loss kind")
        if self.kind == PixelKind.CHARBONNIER:
            raise ValueError("gradient loss kind must be 'l1' or 'l2'")
        self.pred, self.target = pred, target

    def needs(self) -> Tuple[str, ...]:
        return (self.pred, self.target)

    def compute(self, tensors: Tensors) -> Tensor:
        return gradient_loss(tensors[self.pred], tensors[self.target], self.kind, self.edge_weighted)

    def extra_repr(self) -> str:
        return f"kind={self.kind.value!r}, pred={self.pred!r}, target={self.target!r}"


@LOSSES.register("edge")
class EdgeWeighted(Gradient):
    """Pixel loss weighted by the target's normalised gradient magnitude (errors on edges count most).

    See :func:`gradient_loss` with ``edge_weighted=True``.

    Example:
        >>> flat = torch.zeros(1, 1, 4, 4)
        >>> EdgeWeighted().compute({"fake_b": flat + 1, "real_b": flat}).item()
        0.0
    """

    name = "edge"
    formula = "mean w * |G(a) - b|, w = |grad b| / max |grad b|"
    reference = "edge-weighted L1 (L_edge in sCT loss reviews)"
    edge_weighted = True

    def __init__(self, kind: str = "l1", pred: str = "fake_b", target: str = "real_b", name: str = "edge"):
        super().__init__(kind, pred, target, name)
