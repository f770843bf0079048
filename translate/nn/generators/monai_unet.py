"""MONAI's residual U-Net (``monai.networks.nets.UNet``) as a registered generator, 2D and 3D.

The plain supervised baseline the sCT literature reports beside GANs; here it is one recipe
entry, ``{name: monai_unet, channels: [16, 32, 64, 128], num_res_units: 2}``, trained by the
same trainer (with no discriminator) so baselines and GANs share data, schedule and scoring.
Layout: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..layers import check_divisible, check_spatial_dims
from ..registry import GENERATORS


@GENERATORS.register("monai_unet")
class MonaiUNet(nn.Module):
    """MONAI ``UNet`` with stride-2 levels and a ``tanh`` head for targets in [-1, 1].

    Args:
        spatial_dims, in_channels, out_channels: as every generator.
        channels: features per level (``len(channels) - 1`` downsamplings).
        num_res_units: residual units per block (MONAI's option).
        norm: MONAI norm name (``instance``, ``batch``).
        dropout: dropout probability.
        final_activation: ``tanh`` or ``none``.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 channels: Sequence[int] = (16, 32, 64, 128), num_res_units: int = 2, norm: str = "instance",
                 dropout: float = 0.0, final_activation: str = "tanh"):
        super().__init__()
        from monai.networks.nets import UNet

        self.spatial_dims = check_spatial_dims(spatial_dims)
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError(f"channels: expected at least two levels, got {channels}")
        if final_activation not in ("tanh", "none"):
            raise ValueError(f"final_activation: expected 'tanh' or 'none', got {final_activation!r}")
        self.net = UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                        channels=channels, strides=[2] * (len(channels) - 1), num_res_units=int(num_res_units),
                        norm=norm, dropout=float(dropout))
        self.head = nn.Tanh() if final_activation == "tanh" else nn.Identity()
        self._multiple = 2 ** (len(channels) - 1)

    @property
    def size_multiple(self) -> int:
        return self._multiple

    def forward(self, x: Tensor) -> Tensor:
        check_divisible(x.shape[2:], self.size_multiple, f"MonaiUNet(levels={len(self.net.channels)})")
        return self.head(self.net(x))
