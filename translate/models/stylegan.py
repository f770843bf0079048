"""A compact StyleGAN2 (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN") for the
joint (image, mask) GAN: seed 003's best row (StyleGAN, Dice 0.87 of 0.89 on ACDC) at 64² or 128².

What is kept from StyleGAN2:

* a **mapping network**: ``z`` pixel-normalised, then ``mapping_layers`` fully connected layers
  (LeakyReLU 0.2, learning rate x ``mapping_lr``) to the intermediate latent ``w``;
* a **synthesis network** from a learned constant 4x4 input, two **modulated / demodulated 3x3
  convolutions** per resolution (the style ``s = A(w)`` scales the weights per input channel, the
  demodulation rescales each output filter to unit norm instead of AdaIN), per-pixel **noise
  inputs** with learned per-layer strengths, and the *skip* generator: a modulated 1x1 ``toRGB`` at
  every resolution, summed after upsampling;
* **style mixing** regularisation in training (a second latent takes over from a random layer);
* the running mean of ``w`` for the **truncation trick** at sampling (``truncation < 1``);
* **equalised learning rate** (weights drawn from N(0, 1), scaled at run time by He's constant);
* a **residual discriminator** with a minibatch standard-deviation channel;
* the **R1 penalty** on real data is the catalogue's ``r1`` term (``translate losses``), on the
  discriminator side with the non-saturating loss, as StyleGAN2 trains.

Left out for size: the FIR (blur) filters of the resampling (bilinear up / average-pool down here),
path length regularisation, lazy regularisation and the weight EMA of the generator.

The generator maps ``z (B, in_channels)`` to raw outputs ``(B, out_channels, S, S)``;
:class:`~translate.models.joint_gan.JointGAN` turns them into an image (``tanh``) and a mask
(softmax), as for the DCGAN rows (``recipes/joint-stylegan.yaml``).
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_SQRT2 = math.sqrt(2.0)


def _lrelu(x: Tensor) -> Tensor:
    """LeakyReLU 0.2 with StyleGAN's gain sqrt(2) (keeps the activations' scale with equalised weights)."""
    return F.leaky_relu(x, 0.2) * _SQRT2


class EqualLinear(nn.Module):
    """Fully connected layer with an equalised learning rate: ``y = x (W c)^T + b m``, ``W ~ N(0, 1/m^2)``, ``c = m / sqrt(in)``."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul = lr_mul / math.sqrt(in_features), lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """2D convolution with an equalised learning rate (weights scaled by ``1 / sqrt(fan_in)`` at run time)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale, self.padding = 1.0 / math.sqrt(in_channels * kernel_size ** 2), kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ModulatedConv2d(nn.Module):
    r"""StyleGAN2's modulated convolution: per-sample weights :math:`w'_{ijk} = s_i\, w_{ijk}`, demodulated
    :math:`w''_{ijk} = w'_{ijk} / \sqrt{\sum_{i,k} w'^2_{ijk} + \epsilon}` (``i`` input, ``j`` output channel,
    ``k`` tap), computed as input scaling, one shared convolution and output scaling.

    Args:
        in_channels, out_channels, kernel_size: as a convolution.
        w_dim: size of the intermediate latent ``w``; the affine map ``A`` gives the styles ``s`` (bias 1).
        demodulate: ``False`` for the toRGB layers.
        upsample: 2x bilinear upsampling before the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel_size // 2
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # StyleGAN2's non-fused form (its Sec. 2.2): scaling the input channels by s and the output
        # channels by the demodulation factor equals convolving with the per-sample weights, with one
        # shared-weight convolution instead of a grouped one (much faster on a CPU).
        style = self.affine(w)  # (B, in)
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt(style.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # (B, out)
            out = out * demod[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    """Per-pixel Gaussian noise (one map for all channels) times a learned strength, initially 0."""

    def __init__(self):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.strength * noise


class StyledConv(nn.Module):
    """Modulated 3x3 convolution + noise + bias + LeakyReLU (one synthesis layer)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool = False, noise: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection() if noise else None
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w)
        if self.noise is not None:
            x = self.noise(x)
        return _lrelu(x + self.bias)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to the output channels (no demodulation), plus bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias


def _widths(image_size: int, channels: int, max_multiplier: int = 8) -> List[int]:
    """Widths from 4x4 up to ``image_size``: ``channels`` at the output, doubling towards 4x4, at most 8x."""
    levels = int(round(math.log2(int(image_size) / 4)))
    if image_size < 8 or 4 * 2 ** levels != image_size:
        raise ValueError(f"image_size: expected a power of two >= 8, got {image_size}")
    if int(channels) < 1:
        raise ValueError(f"channels: expected a positive width, got {channels}")
    return [int(channels) * min(2 ** (levels - k), max_multiplier) for k in range(levels + 1)]


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator: ``z (B, in_channels)`` -> ``(B, out_channels, S, S)`` raw outputs.

    Args:
        spatial_dims: 2 (the joint GANs are 2D).
        in_channels: latent size ``z_dim``.
        out_channels: image + label channels.
        image_size: output side ``S``, a power of two >= 8 (64 or 128 in the recipes).
        channels: width at the output resolution, doubling towards 4x4 (at most 8x).
        w_dim: size of ``w`` (default: ``in_channels``).
        mapping_layers: fully connected layers of the mapping network (StyleGAN2: 8).
        mapping_lr: learning-rate multiplier of the mapping network (StyleGAN2: 0.01).
        noise: per-pixel noise inputs.
        style_mixing: probability of mixing two latents in training (StyleGAN2: 0.9).
        truncation: ``psi`` of the truncation trick in eval mode (1: none).

    Example:
        >>> g = StyleGAN2Generator(in_channels=8, out_channels=3, image_size=16, channels=4, mapping_layers=2)
        >>> g(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 64, out_channels: int = 2, image_size: int = 64,
                 channels: int = 32, w_dim: Optional[int] = None, mapping_layers: int = 4, mapping_lr: float = 0.01,
                 noise: bool = True, style_mixing: float = 0.9, truncation: float = 1.0):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the StyleGAN2 generator is 2D; got spatial_dims={spatial_dims}")
        if int(mapping_layers) < 1:
            raise ValueError(f"mapping_layers: expected >= 1, got {mapping_layers}")
        if not 0.0 <= float(style_mixing) <= 1.0:
            raise ValueError(f"style_mixing: expected a probability in [0, 1], got {style_mixing}")
        if not 0.0 <= float(truncation) <= 1.0:
            raise ValueError(f"truncation: expected psi in [0, 1], got {truncation}")
        widths = _widths(image_size, channels)
        self.z_dim, self.image_size = int(in_channels), int(image_size)
        self.w_dim = int(w_dim or in_channels)
        self.style_mixing, self.truncation = float(style_mixing), float(truncation)
        layers: List[nn.Module] = []
        previous = self.z_dim
        for _ in range(int(mapping_layers)):
            layers.append(EqualLinear(previous, self.w_dim, lr_mul=float(mapping_lr)))
            previous = self.w_dim
        self.mapping = nn.ModuleList(layers)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))
        self.constant = nn.Parameter(torch.randn(1, widths[0], 4, 4))
        self.conv0 = StyledConv(widths[0], widths[0], self.w_dim, noise=noise)
        self.rgb0 = ToRGB(widths[0], out_channels, self.w_dim)
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for k in range(1, len(widths)):
            self.ups.append(StyledConv(widths[k - 1], widths[k], self.w_dim, upsample=True, noise=noise))
            self.convs.append(StyledConv(widths[k], widths[k], self.w_dim, noise=noise))
            self.rgbs.append(ToRGB(widths[k], out_channels, self.w_dim))
        #: one w per synthesis convolution; a toRGB uses its level's last one
        self.num_ws = 1 + 2 * len(self.ups)

    def map(self, z: Tensor) -> Tensor:
        """``z`` -> ``w`` through the mapping network (``z`` normalised to unit mean square first)."""
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.mapping:
            x = _lrelu(layer(x))
        return x

    def _ws(self, z: Tensor) -> Tensor:
        w = self.map(z.reshape(z.shape[0], self.z_dim))
        if self.training:
            with torch.no_grad():  # running mean of w for the truncation trick
                self.w_avg.lerp_(w.detach().mean(0), 0.005)
        elif self.truncation < 1.0:
            w = self.w_avg + self.truncation * (w - self.w_avg)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.style_mixing > 0 and self.num_ws > 1 and torch.rand(()) < self.style_mixing:
            other = self.map(torch.randn_like(z.reshape(z.shape[0], self.z_dim)))
            cut = int(torch.randint(1, self.num_ws, ()))
            ws = torch.cat([ws[:, :cut], other.unsqueeze(1).expand(-1, self.num_ws - cut, -1)], dim=1)
        return ws

    def forward(self, z: Tensor) -> Tensor:
        ws = self._ws(z)
        x = self.conv0(self.constant.expand(z.shape[0], -1, -1, -1), ws[:, 0])
        rgb = self.rgb0(x, ws[:, 0])
        for k, (up, conv, to_rgb) in enumerate(zip(self.ups, self.convs, self.rgbs)):
            x = up(x, ws[:, 1 + 2 * k])
            x = conv(x, ws[:, 2 + 2 * k])
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(x, ws[:, 2 + 2 * k])
        return rgb


class _ResidualDown(nn.Module):
    """Two 3x3 convolutions and a 2x average pool, plus a pooled 1x1 skip, summed / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.avg_pool2d(_lrelu(self.conv2(_lrelu(self.conv1(x)))), 2)
        return (out + self.skip(F.avg_pool2d(x, 2))) / _SQRT2


def minibatch_stddev(x: Tensor, group: int = 4) -> Tensor:
    """StyleGAN's minibatch standard deviation: one channel with the mean std over groups of samples.

    The group is the largest divisor of the batch not above ``group`` (a batch of 1 gets zeros).

    Example:
        >>> minibatch_stddev(torch.zeros(4, 2, 3, 3)).shape
        torch.Size([4, 3, 3, 3])
    """
    b = x.shape[0]
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = x.reshape(g, b // g, *x.shape[1:])
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / g,)
    std = std.view(1, b // g, 1, 1, 1).expand(g, -1, 1, *x.shape[2:]).reshape(b, 1, *x.shape[2:])
    return torch.cat([x, std], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator: fromRGB, residual downsampling blocks, minibatch std, 3x3 conv, linear.

    Args:
        spatial_dims: 2.
        in_channels: image + label channels.
        channels: width after fromRGB (doubling per block, at most 8x).
        n_layers: residual downsampling blocks (a 64² input with 4 ends at 4x4).
        mbstd_group: group size of the minibatch standard deviation (0: none).

    ``forward(x, return_features=True)`` also returns every block's output (feature matching).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 2, channels: int = 32, n_layers: int = 4,
                 mbstd_group: int = 4):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the StyleGAN2 discriminator is 2D; got spatial_dims={spatial_dims}")
        if int(n_layers) < 1:
            raise ValueError(f"n_layers: expected >= 1, got {n_layers}")
        widths = [int(channels) * min(2 ** k, 8) for k in range(int(n_layers) + 1)]
        self.from_rgb = EqualConv2d(in_channels, widths[0], 1)
        self.blocks = nn.ModuleList(_ResidualDown(widths[k], widths[k + 1]) for k in range(int(n_layers)))
        self.mbstd_group = int(mbstd_group)
        self.final_conv = EqualConv2d(widths[-1] + (1 if self.mbstd_group else 0), widths[-1], 3)
        self.head = EqualLinear(widths[-1], 1)

    def forward(self, x: Tensor, return_features: bool = False):
        x = _lrelu(self.from_rgb(x))
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        if self.mbstd_group:
            x = minibatch_stddev(x, self.mbstd_group)
        x = _lrelu(self.final_conv(x)).mean(dim=(2, 3))  # a spatial mean: any size >= 2 ** n_layers
        logits = self.head(x)
        return (logits, features) if return_features else logits
