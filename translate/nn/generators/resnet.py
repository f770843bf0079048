"""The CycleGAN ResNet generator (Zhu et al., ICCV 2017), after Johnson et al., "Perceptual
Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016; 2D and 3D.

Layout: ``(B, C, H, W)`` for ``spatial_dims=2``, ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

from typing import List

from torch import Tensor, nn

from ..layers import check_divisible, check_norm, check_spatial_dims, conv, conv_bias, downsample_stage
from ..layers import final_activation as make_final_activation
from ..layers import norm_layer, upsample_stage
from ..registry import GENERATORS


class ResidualBlock(nn.Module):
    """``x + (pad-conv3-norm-ReLU-[dropout]-pad-conv3-norm)(x)``, reflection padded."""

    def __init__(self, spatial_dims: int, channels: int, norm: str, dropout: float = 0.0):
        super().__init__()
        bias = conv_bias(norm)
        layers: List[nn.Module] = [
            conv(spatial_dims, channels, channels, 3, padding=1, bias=bias, padding_mode="reflect"),
            norm_layer(norm, spatial_dims, channels), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [conv(spatial_dims, channels, channels, 3, padding=1, bias=bias, padding_mode="reflect"),
                   norm_layer(norm, spatial_dims, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@GENERATORS.register("resnet")
class ResNetGenerator(nn.Module):
    """7x7 stem, ``n_downsampling`` stride-2 convs, ``n_blocks`` residual blocks at the bottleneck,
    as many stride-2 transposed convs, 7x7 head. Reflection padding avoids border artefacts.

    ``n_blocks=9`` is the reference ``resnet_9blocks`` (256^2), ``6`` is ``resnet_6blocks`` (128^2).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the source image.
        out_channels: channels of the translated image.
        channels: width of the stem; doubled at each downsampling.
        n_blocks: residual blocks at the bottleneck.
        n_downsampling: stride-2 stages; spatial sizes must be divisible by ``2 ** n_downsampling``.
        norm: ``"instance"`` (CycleGAN), ``"batch"`` or ``"none"``.
        dropout: inside residual blocks (the reference's ``use_dropout``); 0 disables.
        final_activation: ``"tanh"`` or ``"none"``.
        antialias: sample without aliasing: each downsampling is a stride-1 conv, norm, ReLU, then a
            binomial [1, 3, 3, 1] blur with stride 2 (:class:`~translate.nn.layers.BlurPool`); each upsampling is a
            linear 2x resize, then a 3x3 conv. The reference's strided and transposed convs
            (``False``) make the output depend on where the stride-2 grid falls: a GAN generator then
            draws texture locked to that grid, which a 1-pixel shift (or a flip) of the input moves.

    Example:
        >>> net = ResNetGenerator(spatial_dims=3, channels=4, n_blocks=1)
        >>> net(torch.zeros(1, 1, 8, 8, 8)).shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1, channels: int = 64,
                 n_blocks: int = 9, n_downsampling: int = 2, norm: str = "instance", dropout: float = 0.0,
                 final_activation: str = "tanh", antialias: bool = False):
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        check_norm(norm)
        if n_blocks < 0 or n_downsampling < 0 or channels < 1:
            raise ValueError("n_blocks and n_downsampling must be >= 0 and channels >= 1")
        self.n_downsampling = n_downsampling
        bias = conv_bias(norm)
        layers: List[nn.Module] = [
            conv(spatial_dims, in_channels, channels, 7, padding=3, bias=bias, padding_mode="reflect"),
            norm_layer(norm, spatial_dims, channels), nn.ReLU(inplace=True)]
        width = channels
        for _ in range(n_downsampling):
            layers += downsample_stage(spatial_dims, width, width * 2, norm, antialias)
            width *= 2
        layers += [ResidualBlock(spatial_dims, width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += upsample_stage(spatial_dims, width, width // 2, norm, antialias)
            width //= 2
        layers += [conv(spatial_dims, width, out_channels, 7, padding=3, bias=True, padding_mode="reflect"),
                   make_final_activation(final_activation)]
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        return 2 ** self.n_downsampling

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, *S) -> (B, out_channels, *S)``."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"ResNetGenerator(spatial_dims={self.spatial_dims}) expects a "
                             f"{self.spatial_dims + 2}D tensor, got shape {tuple(x.shape)}")
        check_divisible(x.shape[2:], self.size_multiple, f"ResNetGenerator(n_downsampling={self.n_downsampling})")
        return self.model(x)
