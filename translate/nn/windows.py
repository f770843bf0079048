"""Intensity windows as extra input channels of a network that reads one domain (a critic, a generator).

A CT critic that sees HU through one wide window ([-1024, 2000] HU -> [-1, 1]) barely sees soft
tissue: fat (-100 HU) and muscle (+40 HU) differ by 0.09 there, and a critic with instance norm can
score a CT whose soft tissue is shifted by 150 HU as it scores the real one
(``benchmarks/unpaired_diagnosis.py probe``). Radiologists read CT through several windows; so can a
critic: :class:`WindowedInput` shows the network the image plus one clipped, rescaled copy per window,
so soft-tissue differences reach it with the contrast of an abdomen window. Gradients still reach
every voxel through the unclipped channel. A generator that reads CT (CycleGAN's ``g_ba``) gains the
same: it need not learn to amplify a 0.09 difference before it can tell fat from muscle.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn


class WindowedInput(nn.Module):
    """``(B, C, *S) -> net(cat[x, w_1(x), ..., w_n(x)])`` with ``w_i(x) = 2 (clip(x, l_i, u_i) - l_i) / (u_i - l_i) - 1``.

    Args:
        net: the wrapped network; its input has ``C * (1 + len(windows))`` channels.
        windows: ``(lower, upper)`` pairs in the network's input units (for a CT domain, the HU
            window's image of the HU bounds: :func:`translate.engine.build.build_model` converts).

    Keyword arguments of :meth:`forward` (``return_features`` ...) pass through to ``net``.

    Example:
        >>> w = WindowedInput(nn.Identity(), [(-0.5, 0.0)])
        >>> w(torch.tensor([[[-1.0, -0.25, 1.0]]])).tolist()
        [[[-1.0, -0.25, 1.0], [-1.0, 0.0, 1.0]]]
    """

    def __init__(self, net: nn.Module, windows: Sequence[Tuple[float, float]]):
        super().__init__()
        pairs = [[float(lo), float(hi)] for lo, hi in windows]
        if not pairs or any(not lo < hi for lo, hi in pairs):  # checked in Python: the build may be on the meta device
            raise ValueError(f"input_windows: expected [lower, upper] pairs with lower < upper, got {list(windows)}")
        bounds = torch.as_tensor(pairs, dtype=torch.float32).reshape(-1, 2)
        self.net = net
        self.register_buffer("bounds", bounds)

    def windowed(self, x: Tensor) -> Tensor:
        """The network's input: ``(B, C * (1 + n), *S)``."""
        channels = [x]
        for lower, upper in self.bounds.to(x.dtype):
            channels.append((x.clamp(lower, upper) - lower) * (2.0 / (upper - lower)) - 1.0)
        return torch.cat(channels, dim=1)

    @property
    def size_multiple(self) -> int:
        """The wrapped generator's: inputs are padded to it."""
        return int(getattr(self.net, "size_multiple", 1))

    def forward(self, x: Tensor, *args, **kwargs):
        return self.net(self.windowed(x), *args, **kwargs)

    def extra_repr(self) -> str:
        return "windows=" + ", ".join(f"[{lo:.4g}, {hi:.4g}]" for lo, hi in self.bounds.tolist())
