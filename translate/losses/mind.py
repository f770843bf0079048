"""Structure consistency by modality-independent neighbourhood descriptors (MIND; Heinrich et al. 2012).

A voxel's MIND descriptor says how alike its patch is to each of its neighbours' patches, relative to
the local noise. It is the same for an image and any monotonic *or inverted* contrast of it, so it compares
an MR with its synthetic CT without a pair: bone (dark in MR, bright in CT) and fat (bright in T1, dark in
CT) keep their self-similarity. Yang et al. 2018 ("Unpaired brain MR-to-CT synthesis using a
structure-constrained CycleGAN") add it to CycleGAN for MR -> CT.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from kornia.filters import filter2d, filter3d, get_gaussian_kernel1d
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_pair
from .pixel import _check_mask, masked_mean


def _check_options(radius: int, sigma: float) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius: expected an integer >= 1, got {radius!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma: expected a positive number, got {sigma!r}")


def _shift(x: Tensor, axis: int, offset: int) -> Tensor:
    """``x`` moved by ``offset`` voxels along spatial ``axis`` (value at i is x[i + offset]), edges replicated."""
    dim = 2 + axis
    n = x.shape[dim]
    index = (torch.arange(n, device=x.device) + offset).clamp(0, n - 1)
    return x.index_select(dim, index)


def _gaussian_smooth(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian of ``sigma`` voxels along every spatial axis, replicate borders, per channel (kornia)."""
    kernel = get_gaussian_kernel1d(2 * max(1, round(2 * sigma)) + 1, sigma, device=x.device, dtype=x.dtype).flatten()
    spatial = x.dim() - 2
    for axis in range(spatial):  # one 1D pass per axis: a kernel of 1 tap along the others
        shape = [1] * spatial
        shape[axis] = kernel.numel()
        x = (filter2d if spatial == 2 else filter3d)(x, kernel.view(1, *shape), border_type="replicate")
    return x


def mind_descriptor(x: Tensor, radius: int = 2, sigma: float = 0.8, clamp: float = 1e3) -> Tensor:
    r"""MIND descriptor with the six-neighbourhood (four in 2D) at distance ``radius`` (Heinrich et al. 2012).

    .. math::
        D_r(x) = \sum_{p} G_\sigma(p) \bigl(I(x + p) - I(x + r + p)\bigr)^2, \qquad
        V(x) = \tfrac{1}{|R|} \sum_{r \in R} D_r(x), \qquad
        \mathrm{MIND}_r(x) = \frac{\exp(-D_r(x) / V(x))}{\max_{r'} \exp(-D_{r'}(x) / V(x))}

    with :math:`R = \{\pm\,\mathrm{radius}\, e_k\}` along every spatial axis and :math:`G_\sigma` the
    Gaussian patch weights. :math:`V` is clamped to ``[mean V / clamp, mean V * clamp]`` (per image and
    channel) so flat regions and single strong edges stay finite, as in the authors' code. Invariant to
    :math:`I \to aI + b` for any :math:`a \neq 0`.

    Shape:
        - x: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: :math:`(B, C \cdot |R|, H, W)` / :math:`(B, C \cdot |R|, D, H, W)` in :math:`(0, 1]`.

    Example:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> torch.allclose(mind_descriptor(x), mind_descriptor(1 - 3 * x), atol=1e-5)
        True
    """
    if x.dim() not in (4, 5):
        raise ValueError(f"mind_descriptor: expected (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}")
    _check_options(radius, sigma)
    if not clamp > 1:
        raise ValueError(f"clamp: expected a number > 1, got {clamp!r}")
    distances: List[Tensor] = []
    for axis in range(x.dim() - 2):
        for offset in (-radius, radius):
            distances.append(_gaussian_smooth((x - _shift(x, axis, offset)).square(), sigma))
    d = torch.stack(distances, 2)  # (B, C, R, *S)
    v = d.mean(2, keepdim=True)
    scale = v.flatten(2).mean(-1).detach().clamp_min(1e-12)  # (B, C)
    scale = scale.view(*scale.shape, *([1] * (v.dim() - 2)))
    v = torch.minimum(torch.maximum(v, scale / clamp), scale * clamp)
    logits = -d / v
    mind = torch.exp(logits - logits.amax(2, keepdim=True))  # exp(-D/V) / max_r exp(-D_r/V)
    return mind.flatten(1, 2)


@LOSSES.register("mind")
class MIND(Term):
    """Structure consistency between the source and its translation: L1 between their MIND descriptors.

    See :func:`mind_descriptor`: local, and blind to the sign and scale of contrast, for sources and
    translations whose intensities relate non-monotonically (MR <-> CT). Reads ``source`` (default
    ``real_a``) and ``pred`` (default ``fake_b``), and ``mask`` (e.g. ``body_mask_a``) if given, to
    compare only inside it; a second term with ``source: real_b, pred: fake_a`` covers the other direction.

    Example:
        >>> x, noise = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
        >>> term = MIND()
        >>> term.compute({"real_a": x, "fake_b": -2 * x}) < 1e-5
        tensor(True)
        >>> term.compute({"real_a": x, "fake_b": noise}) > 0.1
        tensor(True)
    """

    name = "mind"
    requirement = "a source and its translation (no pair needed)"
    formula = "mean |MIND(a) - MIND(G(a))|, MIND_r(x) = exp(-D_r(x) / V(x)) / max_r'"
    reference = "Heinrich et al. 2012 (MIND); Yang et al. 2018 DLMIA (structure-constrained CycleGAN)"

    def __init__(self, source: str = "real_a", pred: str = "fake_b", radius: int = 2, sigma: float = 0.8,
                 mask: str | None = None, name: str = "mind"):
        super().__init__(name)
        _check_options(radius, sigma)
        self.source, self.pred, self.radius, self.sigma, self.mask = source, pred, radius, float(sigma), mask

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred) + ((self.mask,) if self.mask else ())

    def compute(self, tensors: Tensors) -> Tensor:
        source, pred = tensors[self.source], tensors[self.pred]
        check_pair(source, pred, "mind")
        mask = tensors[self.mask] if self.mask else None
        _check_mask(mask, pred, "mind")
        diff = (mind_descriptor(source, self.radius, self.sigma) - mind_descriptor(pred, self.radius, self.sigma)).abs()
        return masked_mean(diff, mask)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, pred={self.pred!r}, radius={self.radius}, sigma={self.sigma}, mask={self.mask!r}"
