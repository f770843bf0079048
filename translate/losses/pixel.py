"""Voxel-wise distances (L1, L2, Charbonnier) and their named configurations: paired pixel
loss, cycle consistency, identity, and input-output self-regularisation."""

from __future__ import annotations

from typing import List, Tuple

import torch
from monai.utils import StrEnum
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_choice, check_pair


class PixelKind(StrEnum):
    """Per-voxel penalty of :func:`pixel_loss`."""

    L1 = "l1"
    L2 = "l2"
    CHARBONNIER = "charbonnier"


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the voxels where ``mask`` is set (a soft mask weights them).

    ``mask`` broadcasts to ``values`` (e.g. ``(B, 1, *S)`` over channels); an empty mask gives 0.
    """
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    total = weights.sum()
    # an empty mask: 0 with zero gradients. Dividing by a clamped tiny total instead overflows in backward
    # (upstream weight / 1e-38 = inf, times the zero weights = NaN) once a term's weight exceeds about 4.
    empty = total <= 0
    return torch.where(empty, 0.0 * values.sum(), (values * weights).sum() / torch.where(empty, 1.0, total))


def _check_mask(mask: Tensor | None, pred: Tensor, what: str) -> None:
    if mask is None:
        return
    if mask.dim() != pred.dim():
        raise ValueError(f"{what}: mask must have {pred.dim()} dims like the images, got {tuple(mask.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, pred.shape)
    except RuntimeError:
        raise ValueError(f"{what}: mask {tuple(mask.shape)} does not broadcast to {tuple(pred.shape)}") from None


def pixel_loss(pred: Tensor, target: Tensor, kind: str = "l1", mask: Tensor | None = None, eps: float = 1e-3) -> Tensor:
    r"""Mean voxel-wise distance between a prediction and its target.

    .. math::
        \mathcal{L} = \frac{1}{|M|} \sum_{v \in M} \rho(p_v - t_v), \qquad
        \rho(d) = |d| \;(\mathrm{l1}), \quad d^2 \;(\mathrm{l2}), \quad
        \sqrt{d^2 + \varepsilon^2} - \varepsilon \;(\mathrm{charbonnier})

    :math:`M` is every voxel, or the voxels inside ``mask`` (e.g. a body mask, so air does
    not dominate). The Charbonnier penalty (Charbonnier et al. 1994; Lai et al. 2017, LapSRN)
    is a smooth L1; subtracting :math:`\varepsilon` makes it zero for identical images without
    changing its gradient.

    Args:
        pred: predicted image.
        target: reference image.
        kind: ``"l1"``, ``"l2"`` or ``"charbonnier"``.
        mask: optional voxel weights, broadcast over channels.
        eps: Charbonnier smoothing :math:`\varepsilon`.

    Shape:
        - pred, target: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - mask: :math:`(B, 1, H, W)` / :math:`(B, 1, D, H, W)` or the image shape.
        - Output: scalar.

    Example:
        >>> pixel_loss(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)).item()
        0.5
    """
    kind = check_choice(PixelKind, kind, "pixel loss kind")
    check_pair(pred, target, "pixel_loss")
    _check_mask(mask, pred, "pixel_loss")
    diff = pred - target
    if kind == PixelKind.L1:
        values = diff.abs()
    elif kind == PixelKind.L2:
        values = diff.square()
    else:
        values = (diff.square() + eps**2).sqrt() - eps
    return masked_mean(values, mask)


@LOSSES.register("pixel")
class Pixel(Term):
    """Paired voxel-wise distance between the translation and its target.

    See :func:`pixel_loss`. Configured subclasses: :class:`Cycle`, :class:`Identity`,
    :class:`SelfRegularization`.

    Example:
        >>> t = {"fake_b": torch.zeros(1, 1, 4, 4), "real_b": torch.ones(1, 1, 4, 4)}
        >>> Pixel("l2").compute(t).item()
        1.0
    """

    name = "pixel"
    requirement = "aligned pair"
    formula = "mean rho(G(a) - b), rho = |.| (l1), (.)^2 (l2), sqrt(.^2 + eps^2) - eps (charbonnier)"
    reference = "Isola et al. 2017 (pix2pix)"

    def __init__(self, kind: str = "l1", pred: str = "fake_b", target: str = "real_b", mask: str | None = None,
                 name: str = "pixel"):
        self._setup(kind, [(pred, target)], mask, name)

    def _setup(self, kind: str, pairs: List[Tuple[str, str]], mask: str | None, name: str) -> None:
        Term.__init__(self, name)
        self.kind = check_choice(PixelKind, kind, "pixel loss kind")
        self.pairs, self.mask = pairs, mask

    def needs(self) -> Tuple[str, ...]:
        names = [n for pair in self.pairs for n in pair] + ([self.mask] if self.mask else [])
        return tuple(dict.fromkeys(names))

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        losses = [pixel_loss(tensors[p], tensors[t], self.kind, mask) for p, t in self.pairs]
        return torch.stack(losses).sum()

    def extra_repr(self) -> str:
        return f"kind={self.kind.value!r}, pairs={self.pairs}, mask={self.mask!r}"


def _domain_pairs(prefix: str, domain: str, target: str = "real") -> List[Tuple[str, str]]:
    """``(prefix_a, target_a)`` and/or ``(prefix_b, target_b)`` for ``domain`` ``a``, ``b`` or ``both``."""
    pairs = {"a": [(f"{prefix}_a", f"{target}_a")], "b": [(f"{prefix}_b", f"{target}_b")]}
    pairs["both"] = pairs["a"] + pairs["b"]
    if domain not in pairs:
        raise ValueError(f"unknown domain {domain!r}; expected 'a', 'b' or 'both'")
    return pairs[domain]


@LOSSES.register("cycle")
class Cycle(Pixel):
    """Cycle consistency: an image translated there and back again should return unchanged.

    ``rec_a = G_BA(G_AB(real_a))`` vs ``real_a``, ``rec_b = G_AB(G_BA(real_b))`` vs ``real_b``;
    ``domain="both"`` sums the two.

    Example:
        >>> t = {k: torch.zeros(1, 1, 4, 4) for k in ("rec_a", "real_a", "rec_b", "real_b")}
        >>> Cycle().compute(t).item()
        0.0
    """

    name = "cycle"
    requirement = "two generators A->B and B->A (unpaired data)"
    formula = "mean |G_BA(G_AB(a)) - a| + mean |G_AB(G_BA(b)) - b|"
    reference = "Zhu et al. 2017 (CycleGAN)"

    def __init__(self, kind: str = "l1", domain: str = "both", mask: str | None = None, name: str = "cycle"):
        self._setup(kind, _domain_pairs("rec", domain), mask, name)
        self.domain = domain


@LOSSES.register("identity")
class Identity(Pixel):
    """Identity mapping: a generator fed an image of its own output domain should leave it unchanged.

    Convention: ``idt_a = G_BA(real_a)`` is compared with ``real_a`` and ``idt_b = G_AB(real_b)``
    with ``real_b``; ``domain="both"`` sums the two. Zhu et al. weight it 0.5 x the cycle weight.

    Example:
        >>> t = {"idt_b": torch.ones(1, 1, 4, 4), "real_b": torch.zeros(1, 1, 4, 4)}
        >>> Identity(domain="b").compute(t).item()
        1.0
    """

    name = "identity"
    requirement = "generators whose input and output channels match"
    formula = "mean |G_BA(a) - a| + mean |G_AB(b) - b|"
    reference = "Taigman et al. 2017; Zhu et al. 2017 (CycleGAN)"

    def __init__(self, kind: str = "l1", domain: str = "both", mask: str | None = None, name: str = "identity"):
        self._setup(kind, _domain_pairs("idt", domain), mask, name)
        self.domain = domain


@LOSSES.register("geometry")
class Geometry(Pixel):
    """Geometry consistency (GcGAN): a generator should commute with a flip of its input.

    ``geo_fake_b = T(G_AB(T(real_a)))`` vs ``fake_b`` (and ``geo_fake_a`` vs ``fake_a``), with ``T`` a
    flip the model draws each step (CycleGAN's ``geometry_flips``); ``domain="both"`` sums the two.
    Both sides carry gradients, as in Fu et al. A GAN generator draws texture that is not the same
    in a mirrored image (which is why averaging flips at test time helps); this term asks for the
    same translation either way, so the texture must follow the anatomy.

    Example:
        >>> t = {"geo_fake_b": torch.ones(1, 1, 4, 4), "fake_b": torch.ones(1, 1, 4, 4)}
        >>> Geometry(domain="b").compute(t).item()
        0.0
    """

    name = "geometry"
    requirement = "a model that produces flipped translations (CycleGAN)"
    formula = "mean |T(G_AB(T(a))) - G_AB(a)| + mean |T(G_BA(T(b))) - G_BA(b)|, T a random flip"
    reference = "Fu et al. 2019 (GcGAN)"

    def __init__(self, kind: str = "l1", domain: str = "both", mask: str | None = None, name: str = "geometry"):
        self._setup(kind, _domain_pairs("geo_fake", domain, target="fake"), mask, name)
        self.domain = domain


@LOSSES.register("self_regularization")
class SelfRegularization(Pixel):
    """Input-output similarity: keep the translation close to its own input (e.g. denoising, CBCT -> CT).

    Example:
        >>> t = {"fake_b": torch.ones(1, 1, 4, 4), "real_a": torch.ones(1, 1, 4, 4)}
        >>> SelfRegularization().compute(t).item()
        0.0
    """

    name = "self_regularization"
    requirement = "source and target of the same modality and channels"
    formula = "mean |G(a) - a|"
    reference = "Shrivastava et al. 2017 (SimGAN)"

    def __init__(self, kind: str = "l1", pred: str = "fake_b", target: str = "real_a", mask: str | None = None,
                 name: str = "self_regularization"):
        self._setup(kind, [(pred, target)], mask, name)
