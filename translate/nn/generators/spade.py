"""The SPADE generator (Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization",
CVPR 2019) from MONAI's ``SPADENetResBlock`` / ``SPADE`` blocks, in 2D and 3D, with an optional VAE
style encoder.

MONAI's ``SPADENet`` is not used whole: it fixes the input size (linear layers sized by
``input_shape``), its non-VAE decoder ignores any noise (one label map, one image) and it draws
its prior sample on ``seg.get_device()``, which fails on a CPU. Here the generator is fully
convolutional (any size that is a multiple of ``2 ** len(channels)``) and always takes a style
vector ``z``: from the encoder during VAE training, from ``N(0, I)`` otherwise, so one label map
yields varied images.

Layout: label maps ``(B, L, H, W)`` / ``(B, L, D, H, W)`` one-hot, images ``(B, C, *S)`` in [-1, 1].
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import check_divisible, check_spatial_dims
from ..registry import GENERATORS


class SPADEStyleEncoder(nn.Module):
    """Image -> ``(mu, logvar)`` of a diagonal Gaussian style posterior, size-agnostic.

    Strided 3x3 convolutions (MONAI ``Convolution``: instance norm, LeakyReLU 0.2), a global
    average pool and two linear heads. SPADE's encoder flattens a fixed-size map instead; the pool
    lets the same encoder see slices of any size.
    """

    def __init__(self, spatial_dims: int, in_channels: int, z_dim: int, channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        from monai.networks.blocks import Convolution

        layers, previous = [], in_channels
        for width in channels:
            layers.append(Convolution(spatial_dims=spatial_dims, in_channels=previous, out_channels=int(width),
                                      strides=2, kernel_size=3, norm="INSTANCE", act=("LEAKYRELU", {"negative_slope": 0.2})))
            previous = int(width)
        self.blocks = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(previous, z_dim)
        self.fc_logvar = nn.Linear(previous, z_dim)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        h = self.blocks(image).flatten(2).mean(2)
        return self.fc_mu(h), self.fc_logvar(h).clamp(-10.0, 10.0)


@GENERATORS.register("spade")
class SPADEGenerator(nn.Module):
    """Label map (+ style) -> image through SPADE residual blocks.

    The label map, resized to ``1 / 2 ** n`` of the output, is embedded by a 3x3 convolution;
    ``n = len(channels)`` MONAI ``SPADENetResBlock`` (each normalising with a scale and shift
    predicted from the label map at its resolution) are each followed by a 2x nearest upsampling;
    a LeakyReLU, a 3x3 convolution and ``tanh`` give the image. The style vector is broadcast over
    the grid and stacked onto the label channels that every SPADE block reads, so it changes the
    predicted scales and shifts (a per-channel bias would be removed by the blocks' parameter-free
    normalisation).

    Args:
        spatial_dims: 2 or 3.
        in_channels: label channels (one-hot).
        out_channels: image channels.
        channels: block widths, coarsest first (the last block outputs ``channels[-1]``).
        z_dim: style vector size.
        style_encoder: build a :class:`SPADEStyleEncoder` (``encode(image)``) for VAE training.
        encoder_channels: widths of the style encoder.
        spade_hidden: channels of the SPADE blocks' shared layer.
        norm: parameter-free normalisation inside SPADE (``instance`` or ``batch``).
        upsample_first: upsample *before* every block but the first (Park et al.'s order), so the
            last SPADE block modulates at the output resolution and one-pixel structures (a thin
            cortex, small gas pockets) are placed by the label map itself; the default (False)
            upsamples after every block, so the last modulation is at half resolution and the
            output only sees it through one 3x3 convolution. Costs about 4x the block compute.

    Example:
        >>> g = SPADEGenerator(spatial_dims=2, in_channels=4, out_channels=1, channels=[32, 16])
        >>> g(torch.zeros(2, 4, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 2, out_channels: int = 1,
                 channels: Sequence[int] = (64, 32, 16), z_dim: int = 32, style_encoder: bool = False,
                 encoder_channels: Sequence[int] = (16, 32, 64), spade_hidden: int = 32, norm: str = "instance",
                 upsample_first: bool = False):
        super().__init__()
        from monai.networks.blocks import Convolution
        from monai.networks.nets.spade_network import SPADENetResBlock

        self.spatial_dims = check_spatial_dims(spatial_dims)
        channels = [int(c) for c in channels]
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels: expected a non-empty list of positive widths, got {channels}")
        if int(z_dim) < 1:
            raise ValueError(f"z_dim: expected a positive integer, got {z_dim}")
        if norm not in ("instance", "batch"):
            raise ValueError(f"norm: expected 'instance' or 'batch', got {norm!r}")
        self.in_channels, self.out_channels, self.z_dim = int(in_channels), int(out_channels), int(z_dim)
        self.levels = len(channels)
        if not isinstance(upsample_first, bool):
            raise ValueError(f"upsample_first: expected true or false, got {upsample_first!r}")
        self.upsample_first = upsample_first
        self.conv_init = Convolution(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=channels[0],
                                     kernel_size=3, act=None, norm=None)
        widths = channels + [channels[-1]]
        self.blocks = nn.ModuleList(
            SPADENetResBlock(spatial_dims=spatial_dims, in_channels=widths[i], out_channels=widths[i + 1],
                             label_nc=in_channels + self.z_dim, spade_intermediate_channels=int(spade_hidden), norm=norm.upper())
            for i in range(self.levels))
        self.head = nn.Sequential(nn.LeakyReLU(0.2), Convolution(spatial_dims=spatial_dims, in_channels=channels[-1],
                                                                 out_channels=out_channels, kernel_size=3, act=None,
                                                                 norm=None, bias=True), nn.Tanh())
        self.encoder = (SPADEStyleEncoder(spatial_dims, out_channels, self.z_dim, encoder_channels)
                        if style_encoder else None)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.levels - 1 if self.upsample_first else self.levels)

    def encode(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, C_out, *S)`` image -> ``(mu, logvar)``, each ``(B, z_dim)``."""
        if self.encoder is None:
            raise ValueError("this SPADE generator has no style encoder (style_encoder: false)")
        return self.encoder(image)

    def forward(self, seg: Tensor, z: Optional[Tensor] = None) -> Tensor:
        """``seg (B, L, *S)`` one-hot (or soft) labels, ``z (B, z_dim)`` style (None: drawn from N(0, I))."""
        check_divisible(seg.shape[2:], self.size_multiple, f"SPADEGenerator(levels={self.levels})")
        if z is None:
            z = torch.randn(seg.shape[0], self.z_dim, device=seg.device, dtype=seg.dtype)
        coarse = [s // self.size_multiple for s in seg.shape[2:]]
        x = self.conv_init(F.interpolate(seg, size=coarse, mode="nearest"))
        condition = torch.cat([seg, z.view(*z.shape, *([1] * self.spatial_dims)).expand(-1, -1, *seg.shape[2:])], 1)
        for i, block in enumerate(self.blocks):
            if self.upsample_first:
                x = block(F.interpolate(x, scale_factor=2, mode="nearest") if i else x, condition)
            else:
                x = F.interpolate(block(x, condition), scale_factor=2, mode="nearest")
        return self.head(x)
