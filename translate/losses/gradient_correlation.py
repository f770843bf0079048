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


def normalized_gradient_fields(x: Tensor, y: Tensor, eta: float = 0.5, eps: float = 1e-8) -> Tensor:
    r"""Normalised gradient fields distance (Haber & Modersitzki 2006), averaged over voxels, channels and batch.

    .. math::
        \mathrm{NGF}(x, y) = \frac{1}{N} \sum_{i} 1 - \left(n_\varepsilon(x)_i \cdot n_\varepsilon(y)_i\right)^2,
        \qquad n_\varepsilon(f) = \frac{\nabla f}{\sqrt{\lVert \nabla f \rVert^2 + \varepsilon_f^2}}

    The squared inner product makes it *local* and *polarity-free*: an edge counts as consistent wherever
    both images have it along the same line, whichever side is brighter; bone (dark in MR, bright in CT)
    and fat (bright in T1, dark in CT) then pull the same way, which a global correlation of signed
    gradients (:func:`gradient_correlation`, even with ``absolute``) cannot give. :math:`\varepsilon_f`
    is ``eta`` times each image's mean gradient magnitude (detached), so weak soft-tissue edges count
    once they stand out of that image's own background and the distance does not depend on intensity units.

    Shape:
        - x, y: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, equal shapes.
        - Output: scalar in :math:`[0, 1]`; 0 when every voxel's gradients are parallel or antiparallel
          and strong.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8); x[..., 4:] = 1
        >>> round(normalized_gradient_fields(x, 1 - 3 * x, eta=0.01).item(), 2)  # the same edge, inverted
        0.75
        >>> round(normalized_gradient_fields(x, x.transpose(-1, -2), eta=0.01).item(), 2)  # crossing edges
        1.0
    """
    check_pair(x, y, "normalized_gradient_fields")
    if not eta > 0:
        raise ValueError(f"eta: expected a positive number, got {eta!r}")
    gx, gy = image_gradients(x), image_gradients(y)  # (B, C, K, ...)

    def unit(g: Tensor) -> Tensor:
        norm2 = g.square().sum(2, keepdim=True)
        scale = eta * norm2.sqrt().flatten(2).mean(-1).detach()  # (B, C): eps_f per image and channel
        scale = scale.view(*scale.shape, *([1] * (g.dim() - 2)))
        return g / (norm2 + scale.square() + eps).sqrt()

    return (1.0 - (unit(gx) * unit(gy)).sum(2).square()).mean()


@LOSSES.register("ngf")
class NormalizedGradientFields(Term):
    """Edge consistency between the source and its translation by normalised gradient fields.

    See :func:`normalized_gradient_fields`: local and insensitive to the sign of contrast, for sources and
    translations whose intensities relate non-monotonically (MR <-> CT). Reads ``source`` (default
    ``real_a``) and ``pred`` (default ``fake_b``); a second term with ``source: real_b, pred: fake_a``
    covers the other direction.

    Example:
        >>> x, noise = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        >>> ngf = NormalizedGradientFields()
        >>> ngf.compute({"real_a": x, "fake_b": -2 * x}) < ngf.compute({"real_a": x, "fake_b": noise})
        tensor(True)
    """

    name = "ngf"
    requirement = "a source and its translation (no pair needed)"
    formula = "mean_i 1 - (n(a)_i . n(G(a))_i)^2, n(f) = grad f / sqrt(|grad f|^2 + eps_f^2)"
    reference = "Haber & Modersitzki 2006 (normalised gradient fields); Hiasa et al. 2018 (gradient consistency)"

    def __init__(self, source: str = "real_a", pred: str = "fake_b", eta: float = 0.5, name: str = "ngf"):
        super().__init__(name)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 0:
            raise ValueError(f"eta: expected a positive number, got {eta!r}")
        self.source, self.pred, self.eta = source, pred, float(eta)

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred)

    def compute(self, tensors: Tensors) -> Tensor:
        return normalized_gradient_fields(tensors[self.source], tensors[self.pred], self.eta)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, pred={self.pred!r}, eta={self.eta}"
