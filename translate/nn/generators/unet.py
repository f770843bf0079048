"""The pix2pix U-Net generator (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017), in 2D and 3D.

Layout: ``(B, C, H, W)`` for ``spatial_dims=2``, ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from ..layers import (BlurPool, check_divisible, check_norm, check_spatial_dims, conv, conv_bias, conv_transpose,
                      norm_layer, resize_conv)
from ..layers import final_activation as make_final_activation
from ..registry import GENERATORS

#: pix2pix puts dropout in the first three decoder blocks (the innermost ones)
DROPOUT_BLOCKS = 3

#: how a decoder block doubles the resolution: the paper's 4x4 stride-2 transposed conv, the same followed by a fixed
#: [1, 2, 1] blur, or a resize (nearest or linear) and a 3x3 conv
UPSAMPLE_MODES = ("transposed", "blur", "nearest", "linear")


@GENERATORS.register("unet")
class UNetGenerator(nn.Module):
    """Encoder-decoder with skip connections by concatenation.

    Encoder block ``i``: LeakyReLU(0.2) -> 4x4 stride-2 conv -> norm (the first block has neither
    activation nor norm, the innermost no norm). Decoder block: ReLU -> 4x4 stride-2 transposed conv
    (followed by a [1, 2, 1] blur with ``upsample="blur"``; a 2x resize and a 3x3 conv with ``"nearest"`` /
    ``"linear"``) -> norm [-> dropout]; the outermost ends in ``final_activation`` instead of a norm. Each decoder
    block after the innermost reads ``cat(skip, upsampled)``. Dropout (the GAN's only noise source)
    is in the ``min(3, depth - 1)`` innermost decoder blocks, as in the paper's ``CD512`` layers.

    With the defaults (depth 8) this is the reference ``unet_256``; depth 7 is ``unet_128``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the source image ``real_a``.
        out_channels: channels of the translated image.
        channels: encoder output channels per level; depth = ``len(channels)``, and every
            spatial size must be divisible by ``2 ** depth``.
        dropout: probability in the innermost decoder blocks (0 disables).
        norm: ``"batch"`` (pix2pix), ``"instance"`` or ``"none"``.
        final_activation: ``"tanh"`` for targets in ``[-1, 1]`` or ``"none"``.
        upsample: ``"transposed"`` (the paper's); ``"blur"``: the transposed conv, then a [1, 2, 1]
            binomial filter along every axis (the FIR step of StyleGAN2's upsampling), which has no response at
            the stride-2 grid's frequency; or ``"nearest"`` / ``"linear"``: resize by 2, then a reflection-padded
            3x3 conv (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016), so every output voxel
            sees the same number of kernel taps. With these three the decoder cannot paint a pattern locked to its
            stride-2 grid: a constant input gives a constant output away from the border.
        outer_skips_dropped: how many of the outermost decoder blocks read only the upsampled features, without
            their encoder level's skip (0, the paper's: every block after the innermost has it; at most
            ``depth - 1``). Without the outer skips every output voxel is decided from the deeper levels' context,
            as in a ResNet generator, not from a copy of its own neighbourhood's intensities.

    Example:
        >>> net = UNetGenerator(spatial_dims=2, channels=(8, 16, 32))
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 channels: Sequence[int] = (64, 128, 256, 512, 512, 512, 512, 512), dropout: float = 0.5,
                 norm: str = "batch", final_activation: str = "tanh", upsample: str = "transposed",
                 outer_skips_dropped: int = 0):
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        channels = [int(c) for c in channels]
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        check_norm(norm)
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        self.upsample = upsample
        if not 0 <= int(outer_skips_dropped) <= len(channels) - 1:
            raise ValueError(f"outer_skips_dropped must be in [0, {len(channels) - 1}] (depth - 1), "
                             f"got {outer_skips_dropped}")
        self.outer_skips_dropped = int(outer_skips_dropped)
        head = make_final_activation(final_activation)  # validated before the big layers are built
        self.depth = len(channels)
        bias = conv_bias(norm)  # the reference code uses one bias flag for every normalisable conv

        self.encoder = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(channels):
            innermost, outermost = level == self.depth - 1, level == 0
            block: List[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, inplace=False)]
            block.append(conv(spatial_dims, previous, width, kernel_size=4, stride=2, padding=1, bias=bias))
            if not (outermost or innermost):
                block.append(norm_layer(norm, spatial_dims, width))
            self.encoder.append(nn.Sequential(*block))
            previous = width

        # decoder[level] undoes encoder[level]; built innermost first, like the data flows
        decoder: List[nn.Module] = []
        n_dropout = min(DROPOUT_BLOCKS, self.depth - 1) if dropout > 0 else 0
        for level in reversed(range(self.depth)):
            innermost, outermost = level == self.depth - 1, level == 0
            block_in = channels[level] * (1 if innermost or self.has_no_skip(level) else 2)
            block: List[nn.Module] = [nn.ReLU(inplace=False)]
            width = out_channels if outermost else channels[level - 1]
            if upsample in ("transposed", "blur"):
                block.append(conv_transpose(spatial_dims, block_in, width, bias=True if outermost else bias))
                if upsample == "blur":
                    block.append(BlurPool(spatial_dims, width, kernel_size=3, stride=1))
            else:
                block += resize_conv(spatial_dims, block_in, width, mode=upsample, bias=True if outermost else bias)
            if outermost:
                block.append(head)
            else:
                block.append(norm_layer(norm, spatial_dims, width))
                if self.depth - 1 - level < n_dropout:
                    block.append(nn.Dropout(dropout))
            decoder.append(nn.Sequential(*block))
        self.decoder = nn.ModuleList(decoder)

    def has_no_skip(self, level: int) -> bool:
        """Whether the decoder block that undoes encoder ``level`` reads the upsampled features alone."""
        return level < self.outer_skips_dropped

    @property
    def size_multiple(self) -> int:
        """Every spatial size of the input must be a multiple of this."""
        return 2 ** self.depth

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, *S) -> (B, out_channels, *S)`` with ``S`` divisible by ``2 ** depth``."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"UNetGenerator(spatial_dims={self.spatial_dims}) expects a "
                             f"{self.spatial_dims + 2}D tensor, got shape {tuple(x.shape)}")
        check_divisible(x.shape[2:], self.size_multiple, f"UNetGenerator(depth={self.depth})")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.decoder[0](skips.pop())
        for level, block in zip(reversed(range(self.depth - 1)), self.decoder[1:]):
            skip = skips.pop()
            x = block(x if self.has_no_skip(level) else torch.cat([skip, x], dim=1))
        return x
