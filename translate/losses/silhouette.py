"""Silhouette consistency: a synthetic CT is tissue where its source MR shows the body, and air elsewhere.

Unpaired translation may permute tissue classes and stay cycle-consistent: on real limbs a CycleGAN
learned to render T1 muscle as CT air and the MR's background as CT soft tissue (README, real
patients), which every CT critic accepts since both images hold air and tissue. The body outline is
the one thing both modalities show alike, so this term ties the translation's air / tissue boundary
(the ``AIR_BELOW`` of :mod:`translate.metrics.tissue`, -400 HU) to the source's body, read off the
source itself: its centre channel above ``level`` (network units; an MR normalised by ``mr_robust``
or ``mr_percentile`` puts air at -1), closed morphologically so that dark structures inside the
body (cortical bone and tendons, dark in T1, bright or grey in CT) count as body.
Layout: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.

:class:`BoneVoid` is the CT -> MR counterpart for bone: cortical bone is dark in MR, so the MR translation
of a CT is dark where that CT shows cortical bone. :class:`SignalVoid` is the MR -> CT one: where the source
MR has no signal inside the body, the CT translation is air or bone, never soft tissue.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.intensity import HUWindow
from ..metrics.tissue import AIR_BELOW, BONE_ABOVE
from .base import LOSSES, Tensors, Term
from .window import _window


def _max_pool(x: Tensor, size: int) -> Tensor:
    """Maximum over a centred ``size``-voxel square / cube, stride 1, same shape: one 1D pass per axis (the
    maximum over a box is the maximum of the maxima along each axis), ``size`` instead of ``size ** dims``
    comparisons per voxel and the same result as one ``max_pool`` over the whole box."""
    pool = F.max_pool2d if x.dim() == 4 else F.max_pool3d
    spatial = x.dim() - 2
    for axis in range(spatial):
        kernel = tuple(size if a == axis else 1 for a in range(spatial))
        x = pool(x, kernel, stride=1, padding=tuple(k // 2 for k in kernel))
    return x


def _check_numbers(term: str, **values) -> None:
    for what, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{term} {what}: expected a number, got {value!r}")


def _check_closing(term: str, closing) -> None:
    if isinstance(closing, bool) or not isinstance(closing, int) or closing < 1 or closing % 2 == 0:
        raise ValueError(f"{term} closing: expected an odd number of voxels >= 1, got {closing!r}")


def _check_one_channel_on_grid(what: str, pred: Tensor, source: Tensor) -> None:
    if pred.shape[1] != 1 or pred.shape[0] != source.shape[0] or pred.shape[2:] != source.shape[2:]:
        raise ValueError(f"{what}: prediction of shape {tuple(pred.shape)} and source of shape "
                         f"{tuple(source.shape)}; expected one prediction channel on the source's grid")


def source_body(source: Tensor, level: float = -0.8, closing: int = 9) -> Tensor:
    """``(B, 1, *S)`` 0/1 mask of the body in ``source`` ``(B, C, *S)``: its centre channel above ``level``,
    closed (dilated, then eroded) by a ``closing``-voxel cube; no gradient.

    Example:
        >>> ring = torch.full((1, 1, 9, 9), 0.5); ring[..., 3:6, 3:6] = -1.0; ring[..., 4, 4] = 0.5
        >>> int(source_body(ring, closing=1).sum()), int(source_body(ring, closing=5).sum())  # the ring closed
        (73, 81)
    """
    if source.dim() not in (4, 5):
        raise ValueError(f"source_body: expected (B, C, H, W) or (B, C, D, H, W), got shape {tuple(source.shape)}")
    centre = source.shape[1] // 2
    mask = (source[:, centre:centre + 1].detach() > level).to(source.dtype)
    if closing > 1:  # outside the image counts as air: pad with it so the erosion undoes the dilation at borders
        width = 2 * (closing // 2)
        spatial = mask.dim() - 2
        padded = F.pad(mask, [width] * (2 * spatial), value=0.0)
        closed = 1.0 - _max_pool(1.0 - _max_pool(padded, closing), closing)
        mask = closed[(slice(None), slice(None)) + (slice(width, -width),) * spatial]
    return mask


def silhouette_loss(pred: Tensor, source: Tensor, space: Sequence[float] = (-1024.0, 2000.0),
                    threshold: float = AIR_BELOW, temperature: float = 50.0, level: float = -0.8, closing: int = 9,
                    mask: Tensor | None = None) -> Tensor:
    r"""Binary cross-entropy between the translation's soft tissue mask and the source's body.

    .. math::
        \mathcal{L} = \frac{1}{|M|} \sum_{v \in M}
        \mathrm{BCE}\!\left(\sigma\!\left(\frac{h(p_v) - \theta}{\tau}\right), \mathrm{body}(s)_v\right)

    with :math:`h` the ``ct_hu`` window ``space`` mapped back to HU, :math:`\theta` = ``threshold``
    (HU), :math:`\tau` = ``temperature`` (HU) and body from :func:`source_body`. A voxel already on
    the right side of the threshold by several :math:`\tau` costs almost nothing, so the term fixes
    the outline and leaves the HU inside to the other terms.

    Args:
        pred: translation ``(B, 1, *S)`` in the network space of ``space`` (one CT channel).
        source: its source ``(B, C, *S)`` (2.5D channels: the centre one is read).
        mask: optional voxel weights ``(B, 1, *S)`` (e.g. where the source has data).

    Example:
        >>> ct = HUWindow(-1024.0, 2000.0)
        >>> mr = torch.full((1, 1, 16, 16), -1.0); mr[..., 4:12, 4:12] = 0.0        # a body in air
        >>> right = ct.forward(torch.where(mr > -0.8, 40.0, -1000.0))            # tissue in it, air around
        >>> swapped = ct.forward(torch.where(mr > -0.8, -1000.0, 40.0))          # the classes permuted
        >>> silhouette_loss(right, mr).item() < 1e-3, silhouette_loss(swapped, mr).item() > 5
        (True, True)
    """
    _check_one_channel_on_grid("silhouette_loss", pred, source)
    if not temperature > 0:
        raise ValueError(f"silhouette temperature: expected a positive number of HU, got {temperature!r}")
    logits = (HUWindow(*_window(space, "silhouette space")).inverse(pred) - threshold) / temperature
    target = source_body(source, level, closing)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if mask is None:
        return loss.mean()
    weights = mask.to(loss.dtype).expand_as(loss)
    return (loss * weights).sum() / weights.sum().clamp_min(1.0)


@LOSSES.register("silhouette")
class Silhouette(Term):
    """Body-outline consistency of an unpaired MR -> CT translation (see :func:`silhouette_loss`).

    Reads ``pred`` (default ``fake_b``, a ``ct_hu`` image whose window is ``space``) and ``source``
    (default ``real_a``); ``mask`` names optional voxel weights.

    Example:
        >>> mr = torch.full((1, 1, 16, 16), -1.0); mr[..., 4:12, 4:12] = 0.0
        >>> fake = HUWindow(-1024.0, 2000.0).forward(torch.full((1, 1, 16, 16), -1000.0))  # all air
        >>> Silhouette().compute({"real_a": mr, "fake_b": fake}).item() > 1.0
        True
    """

    name = "silhouette"
    requirement = "a source MR and its CT translation (no pair needed)"
    formula = "mean BCE(sigmoid((HU(G(a)) - theta) / tau), closing(a > level)), theta = -400 HU"
    reference = "body-outline consistency of the source and its translation (air / tissue classes of the hallucination rates)"

    def __init__(self, source: str = "real_a", pred: str = "fake_b", space: Sequence[float] = (-1024.0, 2000.0),
                 threshold: float = AIR_BELOW, temperature: float = 50.0, level: float = -0.8, closing: int = 9,
                 mask: str | None = None, name: str = "silhouette"):
        super().__init__(name)
        _check_numbers("silhouette", threshold=threshold, temperature=temperature, level=level)
        if not temperature > 0:
            raise ValueError(f"silhouette temperature: expected a positive number of HU, got {temperature!r}")
        _check_closing("silhouette", closing)
        self.space = _window(space, "silhouette space")
        self.source, self.pred, self.mask = source, pred, mask
        self.threshold, self.temperature, self.level, self.closing = float(threshold), float(temperature), float(level), closing

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred) + ((self.mask,) if self.mask else ())

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        return silhouette_loss(tensors[self.pred], tensors[self.source], self.space, self.threshold,
                               self.temperature, self.level, self.closing, mask)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, pred={self.pred!r}, threshold={self.threshold}, "
                f"temperature={self.temperature}, level={self.level}, closing={self.closing}, mask={self.mask!r}")


def bone_void_loss(pred: Tensor, source: Tensor, space: Sequence[float] = (-1024.0, 2000.0), threshold: float = 600.0,
                   level: float = -0.8, mask: Tensor | None = None) -> Tensor:
    r"""Mean excess of an MR translation above ``level`` where its source CT shows cortical bone.

    .. math::
        \mathcal{L} = \frac{1}{|B|} \sum_{v \in B} \max(0,\ p_v - \ell), \qquad B = \{v : h(s_v) > \theta\}

    with :math:`h` the ``ct_hu`` window ``space`` mapped back to HU and :math:`\theta` = ``threshold`` (HU).
    Cortical bone has no signal in conventional MR (its T2* is far below the echo times), so T1 and T2
    show it as dark as air; voxels darker than ``level`` cost nothing and every other voxel is left
    to the other terms. Zero (with a gradient of zeros) where the source holds no bone.

    Args:
        pred: MR translation ``(B, 1, *S)`` in network units (air at -1 under ``mr_robust`` / ``mr_percentile``).
        source: its source CT ``(B, C, *S)`` in the network space of ``space`` (the centre channel is read).
        mask: optional voxel weights ``(B, 1, *S)``.

    Example:
        >>> ct = HUWindow(-1024.0, 2000.0)
        >>> source = ct.forward(torch.full((1, 1, 8, 8), 40.0)); source[..., 2:4, 2:4] = ct.forward(torch.tensor(1200.0))
        >>> dark = torch.full((1, 1, 8, 8), -0.95); bright = dark.clone(); bright[..., 2:4, 2:4] = 0.2
        >>> round(bone_void_loss(dark, source).item(), 4), round(bone_void_loss(bright, source).item(), 4)
        (0.0, 1.0)
    """
    _check_one_channel_on_grid("bone_void_loss", pred, source)
    centre = source.shape[1] // 2
    hu = HUWindow(*_window(space, "bone_void space")).inverse(source[:, centre:centre + 1].detach())
    weights = (hu > threshold).to(pred.dtype)
    if mask is not None:
        weights = weights * mask.to(pred.dtype).expand_as(weights)
    excess = F.relu(pred - level)
    return (excess * weights).sum() / weights.sum().clamp_min(1.0)


@LOSSES.register("bone_void")
class BoneVoid(Term):
    """Cortical bone is dark in MR: a CT -> MR translation is below ``level`` where its source CT is above
    ``threshold`` HU (see :func:`bone_void_loss`). The CT -> MR half of a cycle that keeps bone: with it the
    MR -> CT generator must turn the dark in-body structures of real MR back into bone to close the CT cycle.

    Reads ``pred`` (default ``fake_a``, the MR translation) and ``source`` (default ``real_b``, a ``ct_hu``
    image whose window is ``space``); ``mask`` names optional voxel weights.

    Example:
        >>> ct = HUWindow(-1024.0, 2000.0)
        >>> source = ct.forward(torch.full((1, 1, 8, 8), 1200.0))                  # all cortical bone
        >>> round(BoneVoid().compute({"real_b": source, "fake_a": torch.zeros(1, 1, 8, 8)}).item(), 4)  # mid-grey MR
        0.8
    """

    name = "bone_void"
    requirement = "a source CT and its MR translation (no pair needed)"
    formula = "mean over {HU(b) > theta} of max(0, G(b) - level), theta = 600 HU, level = -0.8"
    reference = "cortical bone gives no MR signal (short T2*): the bone half of the tissue classes both modalities share"

    def __init__(self, source: str = "real_b", pred: str = "fake_a", space: Sequence[float] = (-1024.0, 2000.0),
                 threshold: float = 600.0, level: float = -0.8, mask: str | None = None, name: str = "bone_void"):
        super().__init__(name)
        _check_numbers("bone_void", threshold=threshold, level=level)
        self.space = _window(space, "bone_void space")
        if not self.space[0] < threshold < self.space[1]:
            raise ValueError(f"bone_void threshold: expected a HU value inside space {list(self.space)}, got {threshold!r}")
        self.source, self.pred, self.mask = source, pred, mask
        self.threshold, self.level = float(threshold), float(level)

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred) + ((self.mask,) if self.mask else ())

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        return bone_void_loss(tensors[self.pred], tensors[self.source], self.space, self.threshold, self.level, mask)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, pred={self.pred!r}, threshold={self.threshold}, level={self.level}, "
                f"mask={self.mask!r}")


def signal_voids(source: Tensor, level: float = -0.8, closing: int = 9) -> Tensor:
    """``(B, 1, *S)`` 0/1 mask of the signal voids inside the body of ``source``: voxels of its centre channel at
    or below ``level`` that lie inside :func:`source_body` (the body closed by a ``closing``-voxel cube); no gradient.

    Example:
        >>> mr = torch.full((1, 1, 9, 9), -1.0); mr[..., 1:8, 1:8] = 0.5; mr[..., 4, 4] = -1.0  # a void in a body
        >>> int(signal_voids(mr, closing=3).sum()), int(signal_voids(mr, closing=1).sum())
        (1, 0)
    """
    centre = source.shape[1] // 2
    dark = (source[:, centre:centre + 1].detach() <= level).to(source.dtype)
    return source_body(source, level, closing) * dark


def _signal_void_window(space: Sequence[float], air_below: float, bone_above: float) -> HUWindow:
    """The ``ct_hu`` window ``space``, once ``air_below`` < ``bone_above`` are checked to lie inside it."""
    window = HUWindow(*_window(space, "signal_void space"))
    if not window.lower < air_below < bone_above < window.upper:
        raise ValueError(f"signal_void: expected space lower < air_below < bone_above < space upper, got "
                         f"space {[window.lower, window.upper]}, air_below {air_below!r}, bone_above {bone_above!r}")
    return window


def signal_void_loss(pred: Tensor, source: Tensor, space: Sequence[float] = (-1024.0, 2000.0),
                     air_below: float = AIR_BELOW, bone_above: float = BONE_ABOVE, level: float = -0.8,
                     closing: int = 9, mask: Tensor | None = None) -> Tensor:
    r"""Mean distance of a CT translation from the air or bone range where its source MR has a signal void.

    .. math::
        \mathcal{L} = \frac{1}{|V|} \sum_{v \in V} \min\big(\max(0,\ p_v - w(a)),\ \max(0,\ w(b) - p_v)\big)

    with :math:`V` the :func:`signal_voids` of the source, :math:`p` the translation in network units, :math:`w`
    the ``ct_hu`` window ``space`` (HU -> network units), :math:`a` = ``air_below`` and :math:`b` = ``bone_above``
    (HU; the air and bone classes of the hallucination rates). Conventional MR gives no signal from air and from
    cortical bone (its T2* is far below the echo times), while every soft tissue and fat gives some: a void inside
    the body is air or bone in CT. A voxel already below ``air_below`` or above ``bone_above`` costs nothing, so the
    term leaves which of the two, and the HU inside it, to the other terms (critic, cycle, silhouette); a voxel in the
    soft-tissue range is pushed to the nearer bound. Zero (with a gradient of zeros) where the source has no void.

    Args:
        pred: CT translation ``(B, 1, *S)`` in the network space of ``space``.
        source: its source MR ``(B, C, *S)`` in network units (air at -1 under ``mr_robust`` / ``mr_percentile``;
            2.5D channels: the centre one is read).
        mask: optional voxel weights ``(B, 1, *S)`` (e.g. where the source has data).

    Example:
        >>> ct = HUWindow(-1024.0, 2000.0)
        >>> mr = torch.full((1, 1, 9, 9), -1.0); mr[..., 1:8, 1:8] = 0.5; mr[..., 4, 4] = -1.0  # one void in a body
        >>> soft, bone = ct.forward(torch.full((1, 1, 9, 9), 40.0)), ct.forward(torch.full((1, 1, 9, 9), 900.0))
        >>> round(signal_void_loss(soft, mr, closing=3).item() * 3024 / 2), signal_void_loss(bone, mr, closing=3).item()
        (260, 0.0)
    """
    _check_one_channel_on_grid("signal_void_loss", pred, source)
    window = _signal_void_window(space, air_below, bone_above)
    weights = signal_voids(source, level, closing).to(pred.dtype)
    if mask is not None:
        weights = weights * mask.to(pred.dtype).expand_as(weights)
    air, bone = float(window.forward(torch.tensor(air_below))), float(window.forward(torch.tensor(bone_above)))
    distance = torch.minimum(F.relu(pred - air), F.relu(bone - pred))
    return (distance * weights).sum() / weights.sum().clamp_min(1.0)


@LOSSES.register("signal_void")
class SignalVoid(Term):
    """No MR signal inside the body means air or bone in CT: the MR -> CT translation is outside the soft-tissue
    range ``(air_below, bone_above)`` HU where its source MR is at or below ``level`` inside the closed body (see
    :func:`signal_void_loss`). The MR -> CT counterpart of :class:`BoneVoid`: without it an unpaired generator that
    cannot tell the MR's cortical bone from its bowel gas (both dark) fills both with soft tissue. Measured on the
    phantom's 3D recipe and the real limbs, it made things worse (the voids became air; README, "signal_void"), so
    no shipped recipe uses it.

    Reads ``pred`` (default ``fake_b``, a ``ct_hu`` image whose window is ``space``) and ``source`` (default
    ``real_a``); ``mask`` names optional voxel weights.

    Example:
        >>> ct = HUWindow(-1024.0, 2000.0)
        >>> mr = torch.full((1, 1, 9, 9), -1.0); mr[..., 1:8, 1:8] = 0.5; mr[..., 4, 4] = -1.0
        >>> SignalVoid(closing=3).compute({"real_a": mr, "fake_b": ct.forward(torch.full((1, 1, 9, 9), -900.0))}).item()
        0.0
    """

    name = "signal_void"
    requirement = "a source MR and its CT translation (no pair needed)"
    formula = "mean over MR voids in the body of min(max(0, G(a) - w(-400 HU)), max(0, w(300 HU) - G(a)))"
    reference = "air and cortical bone give no MR signal, soft tissue and fat do: the MR -> CT half of bone_void"

    def __init__(self, source: str = "real_a", pred: str = "fake_b", space: Sequence[float] = (-1024.0, 2000.0),
                 air_below: float = AIR_BELOW, bone_above: float = BONE_ABOVE, level: float = -0.8, closing: int = 9,
                 mask: str | None = None, name: str = "signal_void"):
        super().__init__(name)
        _check_numbers("signal_void", air_below=air_below, bone_above=bone_above, level=level)
        _check_closing("signal_void", closing)
        window = _signal_void_window(space, air_below, bone_above)
        self.space = (window.lower, window.upper)
        self.source, self.pred, self.mask = source, pred, mask
        self.air_below, self.bone_above = float(air_below), float(bone_above)
        self.level, self.closing = float(level), closing

    def needs(self) -> Tuple[str, ...]:
        return (self.source, self.pred) + ((self.mask,) if self.mask else ())

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        return signal_void_loss(tensors[self.pred], tensors[self.source], self.space, self.air_below,
                                self.bone_above, self.level, self.closing, mask)

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, pred={self.pred!r}, air_below={self.air_below}, "
                f"bone_above={self.bone_above}, level={self.level}, closing={self.closing}, mask={self.mask!r}")
