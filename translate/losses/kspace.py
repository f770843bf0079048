"""Frequency-domain (k-space) losses and Cartesian undersampling masks for MR data consistency."""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
from monai.utils import StrEnum
from torch import Tensor

from .base import LOSSES, Tensors, Term, check_choice, check_image, check_pair
from .pixel import masked_mean


class KSpaceKind(StrEnum):
    """Distance between spectra in :func:`kspace_loss`."""

    COMPLEX = "complex"
    LOG_MAGNITUDE = "log_magnitude"


def fft_nd(x: Tensor) -> Tensor:
    r"""Centred, orthonormal discrete Fourier transform over the spatial axes.

    :math:`\mathcal{F}(x) = \mathrm{fftshift}(\mathrm{FFT}_{ortho}(\mathrm{ifftshift}(x)))`: the
    zero frequency sits at index ``n // 2`` of every axis (the fastMRI convention), and
    Parseval holds, :math:`\lVert \mathcal{F}(x) \rVert_2 = \lVert x \rVert_2`.

    Shape:
        - x: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, real or complex.
        - Output: the same shape, complex.

    Example:
        >>> k = fft_nd(torch.ones(1, 1, 4, 4))
        >>> k[0, 0, 2, 2].real.item(), k.abs().sum().item()
        (4.0, 4.0)
    """
    check_image(x, "fft_nd")
    dims = tuple(range(2, x.dim()))
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims)


def kspace_loss(pred: Tensor, target: Tensor, kind: str = "complex", mask: Tensor | None = None) -> Tensor:
    r"""Mean distance between the spectra of a prediction and its target.

    .. math::
        \mathcal{L}_{complex} = \frac{1}{|M|}\sum_{k \in M} \big|\mathcal{F}(p)_k - \mathcal{F}(t)_k\big|,
        \qquad
        \mathcal{L}_{log} = \frac{1}{|M|}\sum_{k \in M}
        \big|\log(1 + |\mathcal{F}(p)_k|) - \log(1 + |\mathcal{F}(t)_k|)\big|

    with :math:`\mathcal{F}` = :func:`fft_nd` and :math:`M` the sampled frequencies of ``mask``
    (all by default). ``complex`` compares phase and magnitude (the modulus of the complex
    difference); with an undersampling mask it is a data-consistency term: only the measured
    lines count. ``log_magnitude`` ignores phase and compresses the dominant low frequencies
    so that fine detail (high frequencies) weighs in.

    MONAI's ``JukeboxLoss`` (Dhariwal et al. 2020) is the *mean squared* difference of raw
    magnitudes, with its FFT also over the channel axis; for one channel it equals
    ``((fft_nd(p).abs() - fft_nd(t).abs()) ** 2).mean()`` (the shift does not change a mean).

    Args:
        pred: predicted image.
        target: reference image.
        kind: ``"complex"`` or ``"log_magnitude"``.
        mask: k-space weights in centred coordinates, broadcastable to the spatial shape
            (e.g. :func:`cartesian_mask`).

    Shape:
        - pred, target: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - mask: :math:`(H, W)`, :math:`(D, H, W)` or any shape broadcasting to the images.
        - Output: scalar.

    Example:
        >>> x = torch.randn(1, 1, 8, 8)
        >>> kspace_loss(x, x).item()
        0.0
    """
    kind = check_choice(KSpaceKind, kind, "k-space loss kind")
    check_pair(pred, target, "kspace_loss")
    if mask is not None:
        try:
            ok = torch.broadcast_shapes(mask.shape, pred.shape) == pred.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"kspace_loss: mask {tuple(mask.shape)} does not broadcast to {tuple(pred.shape)}")
    k_pred, k_target = fft_nd(pred), fft_nd(target)
    if kind == KSpaceKind.COMPLEX:
        values = (k_pred - k_target).abs()
    else:
        values = (torch.log1p(k_pred.abs()) - torch.log1p(k_target.abs())).abs()
    return masked_mean(values, mask)


def cartesian_mask(shape: Sequence[int], acceleration: float = 4, center_fraction: float = 0.08,
                   seed: int = 0) -> Tensor:
    r"""Random Cartesian undersampling of phase-encode lines (the last spatial axis).

    fastMRI's ``RandomMaskFunc`` (Zbontar et al. 2018): of :math:`N` = ``shape[-1]`` lines,
    the :math:`N_{low} = \mathrm{round}(N \cdot f_c)` central ones are always sampled and every
    other line is kept with probability

    .. math::
        p = \frac{N / R - N_{low}}{N - N_{low}}

    so that about :math:`N / R` lines are sampled in expectation (:math:`R` = ``acceleration``).
    The centre block starts at ``(N - N_low + 1) // 2``, matching :func:`fft_nd`'s centring, and
    the draw uses ``numpy.random.RandomState(seed)`` as fastMRI does, so a seed gives the same lines.

    Args:
        shape: spatial shape, ``(H, W)`` or ``(D, H, W)``; lines run along every axis but the last.
        acceleration: :math:`R \geq 1`.
        center_fraction: :math:`f_c \in [0, 1]`, the fully sampled fraction around DC.
        seed: random seed.

    Returns:
        A float tensor of ``shape`` with 1 on sampled lines, 0 elsewhere.

    Example:
        >>> m = cartesian_mask((4, 16), acceleration=4, center_fraction=0.25, seed=0)
        >>> m.shape, bool(m[:, 6:10].all()), bool((m == m[0]).all())
        (torch.Size([4, 16]), True, True)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or min(shape) < 1:
        raise ValueError(f"cartesian_mask: expected a spatial shape of positive sizes, got {shape}")
    if acceleration < 1:
        raise ValueError(f"cartesian_mask: acceleration must be >= 1, got {acceleration}")
    if not 0.0 <= center_fraction <= 1.0:
        raise ValueError(f"cartesian_mask: center_fraction must be in [0, 1], got {center_fraction}")
    num_cols = shape[-1]
    num_low = int(round(num_cols * center_fraction))
    prob = (num_cols / acceleration - num_low) / max(num_cols - num_low, 1)
    lines = np.random.RandomState(seed).uniform(size=num_cols) < prob
    pad = (num_cols - num_low + 1) // 2
    lines[pad:pad + num_low] = True
    return torch.from_numpy(lines.astype(np.float32)).expand(shape).clone()


@LOSSES.register("kspace")
class KSpace(Term):
    """Distance between the translation's and the target's k-space, optionally on sampled lines only.

    See :func:`kspace_loss`. ``mask`` names a k-space mask tensor in the model's outputs.

    Example:
        >>> x = torch.randn(1, 1, 8, 8)
        >>> KSpace("log_magnitude").compute({"fake_b": x, "real_b": x}).item()
        0.0
    """

    name = "kspace"
    requirement = "aligned pair (k-space)"
    formula = "mean_k |F(G(a))_k - F(b)_k| over sampled k (or L1 of log(1 + |F|))"
    reference = "Zbontar et al. 2018 (fastMRI); Quan et al. 2018 (k-space data consistency)"

    def __init__(self, kind: str = "complex", pred: str = "fake_b", target: str = "real_b", mask: str | None = None,
                 name: str = "kspace"):
        super().__init__(name)
        self.kind = check_choice(KSpaceKind, kind, "k-space loss kind")
        self.pred, self.target, self.mask = pred, target, mask

    def needs(self) -> Tuple[str, ...]:
        return (self.pred, self.target) + ((self.mask,) if self.mask else ())

    def compute(self, tensors: Tensors) -> Tensor:
        mask = tensors[self.mask] if self.mask else None
        return kspace_loss(tensors[self.pred], tensors[self.target], self.kind, mask)

    def extra_repr(self) -> str:
        return f"kind={self.kind.value!r}, pred={self.pred!r}, target={self.target!r}, mask={self.mask!r}"
