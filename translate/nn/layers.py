"""2D/3D building blocks: thin factories over MONAI's ``Conv``/``Norm``/``Pool`` so that every
network has one code path and ``spatial_dims`` picks ``Conv2d`` or ``Conv3d``.

Tensors are ``(B, C, H, W)`` for ``spatial_dims=2`` and ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from kornia.filters.kernels import get_pascal_kernel_1d
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.utils import StrEnum
from torch import Tensor, nn


class NormKind(StrEnum):
    """Feature normalisation after a convolution."""

    INSTANCE = "instance"
    BATCH = "batch"
    NONE = "none"


class FinalActivation(StrEnum):
    """Output non-linearity of a generator; ``tanh`` matches targets scaled to ``[-1, 1]``."""

    TANH = "tanh"
    NONE = "none"


def _choice(enum: type[StrEnum], value: str, what: str) -> StrEnum:
    try:
        return enum(str(value).lower())
    except ValueError:
        valid = ", ".join(repr(v.value) for v in enum)
        raise ValueError(f"unknown {what} {value!r}; expected one of {valid}") from None


def check_norm(norm: str) -> NormKind:
    """Validate a norm name; raises ``ValueError`` listing the valid values."""
    return _choice(NormKind, norm, "norm")


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
         padding: int = 0, bias: bool = True, padding_mode: str = "zeros") -> nn.Module:
    """``Conv2d``/``Conv3d``; ``padding_mode="reflect"`` replaces the separate reflection-pad layer
    of the reference code, which has no 3D twin in older torch releases."""
    return Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                                         padding=padding, bias=bias, padding_mode=padding_mode)


def conv_transpose(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2,
                   padding: int = 1, output_padding: int = 0, bias: bool = True) -> nn.Module:
    """``ConvTranspose2d``/``ConvTranspose3d``."""
    return Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                                              padding=padding, output_padding=output_padding, bias=bias)


def norm_layer(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """Batch norm, instance norm (affine-free, no running stats, as pix2pix/CycleGAN) or identity."""
    kind = check_norm(norm)
    if kind is NormKind.NONE:
        return nn.Identity()
    if kind is NormKind.INSTANCE:
        return Norm[Norm.INSTANCE, spatial_dims](channels, affine=False, track_running_stats=False)
    return Norm[Norm.BATCH, spatial_dims](channels)


def conv_bias(norm: str) -> bool:
    """Batch norm's shift makes a conv bias redundant; instance norm without affine does not."""
    return check_norm(norm) is not NormKind.BATCH


def final_activation(name: str) -> nn.Module:
    return nn.Tanh() if _choice(FinalActivation, name, "final_activation") is FinalActivation.TANH else nn.Identity()


def avg_downsample(spatial_dims: int) -> nn.Module:
    """Halve the resolution as pix2pixHD does between discriminator scales."""
    return Pool[Pool.AVG, spatial_dims](kernel_size=3, stride=2, padding=1, count_include_pad=False)


class BlurPool(nn.Module):
    """Low-pass, then subsample: a binomial (Pascal) filter along every spatial axis, reflection
    padded, applied per channel with ``stride`` (Zhang, "Making Convolutional Networks Shift-Invariant
    Again", ICML 2019). Subsampling without the filter aliases: what a network computes then depends
    on where the stride-2 grid falls, not only on the image. 2D and 3D; in 2D (stride 2, kernel 3)
    it equals ``kornia.filters.blur_pool2d`` away from the border.
    """

    def __init__(self, spatial_dims: int, channels: int, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.spatial_dims, self.channels, self.stride = check_spatial_dims(spatial_dims), channels, stride
        taps = get_pascal_kernel_1d(kernel_size, norm=True)
        kernel = taps
        for _ in range(spatial_dims - 1):
            kernel = kernel[..., None] * taps
        self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).contiguous(), persistent=False)
        self.pad = [kernel_size // 2, (kernel_size - 1) // 2] * spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, self.pad, mode="reflect")
        step = F.conv2d if self.spatial_dims == 2 else F.conv3d
        return step(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)


def downsample_stage(spatial_dims: int, in_channels: int, out_channels: int, norm: str,
                     antialias: bool = False) -> list[nn.Module]:
    """Halve the resolution: a 3x3 stride-2 conv, norm and ReLU (the pix2pix / CycleGAN encoders), or with
    ``antialias`` a stride-1 reflection-padded conv, norm, ReLU and a [1, 3, 3, 1] :class:`BlurPool`."""
    bias = conv_bias(norm)
    if not antialias:
        return [conv(spatial_dims, in_channels, out_channels, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, spatial_dims, out_channels), nn.ReLU(inplace=True)]
    return [conv(spatial_dims, in_channels, out_channels, 3, padding=1, bias=bias, padding_mode="reflect"),
            norm_layer(norm, spatial_dims, out_channels), nn.ReLU(inplace=True),
            BlurPool(spatial_dims, out_channels, kernel_size=4)]


def resize_conv(spatial_dims: int, in_channels: int, out_channels: int, mode: str = "nearest",
                bias: bool = True) -> list[nn.Module]:
    """Double the resolution without a transposed conv: a 2x resize (``"nearest"``, or ``"linear"``: bi- or
    trilinear) and a reflection-padded 3x3 conv (Odena et al., Distill 2016)."""
    if mode not in ("nearest", "linear"):
        raise ValueError(f"resize mode must be 'nearest' or 'linear', got {mode!r}")
    if mode == "linear":
        resize = nn.Upsample(scale_factor=2, mode="bilinear" if spatial_dims == 2 else "trilinear", align_corners=False)
    else:
        resize = nn.Upsample(scale_factor=2, mode="nearest")
    return [resize, conv(spatial_dims, in_channels, out_channels, 3, padding=1, bias=bias, padding_mode="reflect")]


def upsample_stage(spatial_dims: int, in_channels: int, out_channels: int, norm: str,
                   antialias: bool = False) -> list[nn.Module]:
    """Double the resolution: a 3x3 stride-2 transposed conv, norm and ReLU (the reference decoders), or
    with ``antialias`` a linear 2x resize and a reflection-padded 3x3 conv, norm and ReLU (a transposed conv whose
    kernel is not divisible by its stride paints a grid-locked pattern: Odena et al., Distill 2016)."""
    bias = conv_bias(norm)
    if antialias:
        first = resize_conv(spatial_dims, in_channels, out_channels, mode="linear", bias=bias)
    else:
        first = [conv_transpose(spatial_dims, in_channels, out_channels, kernel_size=3, stride=2, padding=1,
                                output_padding=1, bias=bias)]
    return first + [norm_layer(norm, spatial_dims, out_channels), nn.ReLU(inplace=True)]


def check_divisible(spatial_shape: Sequence[int], multiple: int, network: str) -> None:
    """Raise ``ValueError`` naming the size and the multiple when a size would not round-trip."""
    bad = [s for s in spatial_shape if s % multiple]
    if bad:
        raise ValueError(
            f"{network}: spatial size {tuple(spatial_shape)} must be divisible by {multiple} "
            f"(size {bad[0]} is not); crop or pad the input to a multiple of {multiple}"
        )
