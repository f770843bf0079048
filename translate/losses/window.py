"""A pixel loss read in an HU display window: what the reader of a CT (and a windowed PSNR) sees.

A CT network works in a wide HU window mapped to [-1, 1] (``ct_hu`` with ``[-1024, 2000]`` keeps air
and bone exact on write-back), where soft-tissue noise of 20 HU is 0.013 and errors at bone and air
edges dominate a squared loss. Low-dose CT denoising is judged in the abdominal window
[-160, 240] HU (Chen et al. 2017, RED-CNN; the AAPM low-dose challenge). This term maps both images
back to HU, clips them to such a window and compares them there, scaled to the window's width, so
the loss is the windowed MSE that the windowed PSNR reports (``kind: l2``), next to a plain
``pixel`` term that still holds air and bone.
Layout: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

from torch import Tensor

from ..data.intensity import HUWindow
from .base import LOSSES, Tensors, Term, check_choice, check_pair
from .pixel import PixelKind, _check_mask, pixel_loss


def _window(value: Sequence[float], what: str) -> Tuple[float, float]:
    try:
        lower, upper = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected [lower, upper] in HU, got {value!r}") from None
    if not upper > lower:
        raise ValueError(f"{what}: expected lower < upper, got [{lower}, {upper}]")
    return lower, upper


def window_pixel_loss(pred: Tensor, target: Tensor, kind: str = "l2", window: Sequence[float] = (-160.0, 240.0),
                      space: Sequence[float] = (-1024.0, 2000.0), mask: Tensor | None = None,
                      eps: float = 1e-3) -> Tensor:
    r"""Voxel-wise distance of two images clipped to an HU window, in units of the window's width.

    .. math::
        \mathcal{L} = \frac{1}{|M|} \sum_{v \in M} \rho\!\left(\frac{c(h(p_v)) - c(h(t_v))}{u - l}\right),
        \qquad c(x) = \min(\max(x, l), u)

    :math:`h` maps the network space back to HU (the ``ct_hu`` window ``space``), :math:`[l, u]`
    is ``window`` and :math:`\rho` the ``kind`` penalty of :func:`~translate.losses.pixel.pixel_loss`.
    A voxel where both images lie on the same side outside the window costs nothing (the pixel
    term beside it holds those); where the prediction is clipped its gradient is zero.

    Args:
        pred, target: images in the network space of ``space``.
        kind: ``"l2"`` (the windowed MSE behind the windowed PSNR), ``"l1"`` or ``"charbonnier"``.
        window: ``[lower, upper]`` HU, e.g. the abdominal ``[-160, 240]``.
        space: the ``ct_hu`` window ``[lower, upper]`` HU that maps to [-1, 1] in the network.
        mask: optional voxel weights, broadcast over channels.
        eps: Charbonnier smoothing.

    Example:
        >>> import torch
        >>> space = HUWindow(-1000.0, 1000.0)
        >>> pred, target = space.forward(torch.full((1, 1, 2, 2), 40.0)), space.forward(torch.zeros(1, 1, 2, 2))
        >>> round(window_pixel_loss(pred, target, "l1", window=(-200, 200), space=(-1000, 1000)).item(), 4)
        0.1
    """
    kind = check_choice(PixelKind, kind, "window_pixel loss kind")
    lower, upper = _window(window, "window_pixel window")
    mapping = HUWindow(*_window(space, "window_pixel space"))
    check_pair(pred, target, "window_pixel_loss")
    _check_mask(mask, pred, "window_pixel_loss")
    width = upper - lower
    return pixel_loss(mapping.inverse(pred).clamp(lower, upper) / width,
                      mapping.inverse(target).clamp(lower, upper) / width, kind=kind.value, mask=mask, eps=eps)


@LOSSES.register("window_pixel")
class WindowPixel(Term):
    """Paired pixel loss inside an HU display window (e.g. the abdominal [-160, 240] HU of low-dose CT).

    See :func:`window_pixel_loss`; pair it with a ``pixel`` term over the whole range.

    Example:
        >>> import torch
        >>> t = {"fake_b": torch.zeros(1, 1, 4, 4), "real_b": torch.full((1, 1, 4, 4), 0.9)}
        >>> WindowPixel().compute(t).item()  # both beyond 240 HU: nothing to see in the window
        0.0
    """

    name = "window_pixel"
    requirement = "aligned pair of CT images (ct_hu intensity, its window given as space)"
    formula = "mean rho((clip(HU(G(a)), l, u) - clip(HU(b), l, u)) / (u - l)), rho = l2 | l1 | charbonnier"
    reference = "windowed evaluation of low-dose CT: Chen et al. 2017 (RED-CNN); AAPM low-dose CT challenge"

    def __init__(self, kind: str = "l2", window: Sequence[float] = (-160.0, 240.0),
                 space: Sequence[float] = (-1024.0, 2000.0), pred: str = "fake_b", target: str = "real_b",
                 mask: str | None = None, name: str = "window_pixel"):
        super().__init__(name)
        self.kind = check_choice(PixelKind, kind, "window_pixel loss kind")
        self.window = _window(window, "window_pixel window")
        self.space = _window(space, "window_pixel space")
        self.pred, self.target, self.mask = pred, target, mask

    def needs(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys([self.pred, self.target] + ([self.mask] if self.mask else [])))

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        return window_pixel_loss(tensors[self.pred], tensors[self.target], self.kind, self.window, self.space, mask)

    def extra_repr(self) -> str:
        return f"kind={self.kind.value!r}, window={list(self.window)}, space={list(self.space)}, mask={self.mask!r}"
