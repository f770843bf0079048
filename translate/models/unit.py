"""UNIT (Liu, Breuel & Kautz 2017): unpaired translation through a shared latent space.

Two VAE-GANs, one per domain: encoders ``e_a``, ``e_b`` map images to a latent code whose
innermost layers are *shared* (the last residual blocks of both encoders are one module, as are
the first blocks of both decoders), decoders ``dec_a``, ``dec_b`` map codes back to images. With
the paper's Gaussian posterior of unit variance, :math:`q(z | x) = \\mathcal N(E(x), I)`, a code is
``z = mu + n``, ``n ~ N(0, I)``. Translation A -> B is ``dec_b(e_a(a))``; critics ``d_a``, ``d_b``
judge translations; the cycle runs through the latent: ``rec_a = dec_a(e_b(dec_b(z_a)) + n)``.

The objective comes from the catalogue; the recipe ``recipes/t1t2-unit.yaml`` holds the paper's
weights (:math:`\\lambda_0 .. \\lambda_4` = 10, 0.1, 100, 0.1, 100, divided by 10 with mean
reductions as in the authors' code)::

    generator:     adversarial(fake=d_fake_b) + adversarial(fake=d_fake_a)
                   + 10 * pixel(recon_a, real_a) + 10 * pixel(recon_b, real_b)
                   + 0.02 * kl(mu_a, mean) + 0.02 * kl(mu_b, mean)        # = 0.01 mean(mu^2)
                   + 10 * cycle + 0.02 * kl(mu_ab, mean) + 0.02 * kl(mu_ba, mean)
"""

from __future__ import annotations

from typing import Any, Collection, Dict, List, Mapping

import torch
from torch import Tensor, nn

from ..nn.generators.resnet import ResidualBlock
from ..nn.layers import check_norm, check_spatial_dims, conv, conv_bias, downsample_stage, norm_layer, upsample_stage
from ..nn.layers import final_activation as make_final_activation
from ..nn.windows import WindowedInput
from .base import MODELS, Channels, Role, TranslationModel
from .cyclegan import _single


class UNITEncoder(nn.Module):
    """Image -> latent mean: 7x7 stem, ``n_downsampling`` stride-2 convs, ``n_blocks`` private residual
    blocks, then ``n_shared`` residual blocks in :attr:`shared` (tied across domains by :class:`UNIT`).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: latent channels; the stem has ``out_channels / 2 ** n_downsampling``.
        n_downsampling, n_blocks, n_shared: as above (the paper: 2, 3, 1).
        norm: ``instance`` (default), ``batch`` or ``none``.
        antialias: blur-pooled downsampling, as :class:`~translate.nn.generators.resnet.ResNetGenerator`'s.

    Shape: ``(B, in_channels, *S) -> (B, out_channels, *S / 2 ** n_downsampling)``.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 64, n_downsampling: int = 2,
                 n_blocks: int = 3, n_shared: int = 1, norm: str = "instance", antialias: bool = False):
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_norm(norm)
        if out_channels % (2 ** n_downsampling) or n_blocks < 0 or n_shared < 1 or n_downsampling < 0:
            raise ValueError(f"UNITEncoder: out_channels {out_channels} must be divisible by 2 ** n_downsampling "
                             f"({2 ** n_downsampling}); n_blocks >= 0, n_shared >= 1")
        bias, width = conv_bias(norm), out_channels // 2 ** n_downsampling
        layers: List[nn.Module] = [conv(spatial_dims, in_channels, width, 7, padding=3, bias=bias, padding_mode="reflect"),
                                   norm_layer(norm, spatial_dims, width), nn.ReLU(inplace=True)]
        for _ in range(n_downsampling):
            layers += downsample_stage(spatial_dims, width, width * 2, norm, antialias)
            width *= 2
        layers += [ResidualBlock(spatial_dims, width, norm) for _ in range(n_blocks)]
        self.private = nn.Sequential(*layers)
        self.shared = nn.Sequential(*[ResidualBlock(spatial_dims, width, norm) for _ in range(n_shared)])
        self.size_multiple = 2 ** n_downsampling

    def forward(self, x: Tensor) -> Tensor:
        return self.shared(self.private(x))


class UNITDecoder(nn.Module):
    """Latent -> image: ``n_shared`` residual blocks in :attr:`shared` (tied across domains), ``n_blocks``
    private ones, ``n_upsampling`` stride-2 transposed convs, 7x7 head and ``final_activation``.

    Args:
        in_channels: latent channels; out_channels: image channels; others as :class:`UNITEncoder`
        (``antialias``: linear-resize upsampling instead of transposed convs).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 64, out_channels: int = 1, n_upsampling: int = 2,
                 n_blocks: int = 3, n_shared: int = 1, norm: str = "instance", final_activation: str = "tanh",
                 antialias: bool = False):
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_norm(norm)
        if in_channels % (2 ** n_upsampling) or n_blocks < 0 or n_shared < 1 or n_upsampling < 0:
            raise ValueError(f"UNITDecoder: in_channels {in_channels} must be divisible by 2 ** n_upsampling "
                             f"({2 ** n_upsampling}); n_blocks >= 0, n_shared >= 1")
        width = in_channels
        self.shared = nn.Sequential(*[ResidualBlock(spatial_dims, width, norm) for _ in range(n_shared)])
        layers: List[nn.Module] = [ResidualBlock(spatial_dims, width, norm) for _ in range(n_blocks)]
        for _ in range(n_upsampling):
            layers += upsample_stage(spatial_dims, width, width // 2, norm, antialias)
            width //= 2
        layers += [conv(spatial_dims, width, out_channels, 7, padding=3, bias=True, padding_mode="reflect"),
                   make_final_activation(final_activation)]
        self.private = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.private(self.shared(z))


def _latent(c: Channels) -> int:
    return int(c.options.get("latent_channels", 64))


@MODELS.register("unit")
class UNIT(TranslationModel):
    """Unpaired two-way translation with a shared latent space.

    Roles: ``e_a``, ``e_b`` (encoders with a ``shared`` submodule, e.g.
    ``translate.models.unit.UNITEncoder``), ``dec_a``, ``dec_b`` (decoders with a ``shared``
    submodule, ``translate.models.unit.UNITDecoder``), optional critics ``d_a``, ``d_b``. On
    construction ``e_b.shared`` *becomes* ``e_a.shared`` and ``dec_b.shared`` becomes
    ``dec_a.shared``: one parameter object each, updated once per step.

    Named tensors: ``real_a/b``, ``mu_a/b`` (latent means), ``logvar_a/b`` (zeros: unit variance),
    ``recon_a = dec_a(z_a)``, ``recon_b``, ``fake_b = dec_b(z_a)``, ``fake_a = dec_a(z_b)``,
    ``mu_ab = e_b(fake_b)``, ``mu_ba = e_a(fake_a)`` (with ``logvar_ab/ba``), ``rec_a = dec_a(mu_ab + n)``,
    ``rec_b``, and ``d_fake_a/b`` when read; for critics ``d_real_a/b``, ``d_fake_a/b_detached``,
    ``critic_a/b``.

    Args:
        latent_channels: channels of the latent code (the encoders' ``out_channels``).
    """

    roles = {
        "e_a": Role("generator", inputs=_single("a"), outputs=_latent, reads="a"),
        "e_b": Role("generator", inputs=_single("b"), outputs=_latent, reads="b"),
        "dec_a": Role("generator", inputs=_latent, outputs=lambda c: c.domain["a"]),
        "dec_b": Role("generator", inputs=_latent, outputs=lambda c: c.domain["b"]),
        "d_a": Role("discriminator", group="discriminator", optional=True, inputs=lambda c: c.domain["a"],
                     reads="a"),
        "d_b": Role("discriminator", group="discriminator", optional=True, inputs=lambda c: c.domain["b"],
                     reads="b"),
    }
    directions = {"a2b": ("a", "b"), "b2a": ("b", "a")}
    pairing = "unpaired"
    default_init = ("kaiming", 1.0)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        latent = options.get("latent_channels", 64)
        if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
            raise ValueError(f"latent_channels: expected a positive integer, got {latent!r}")

    def __init__(self, e_a: nn.Module, e_b: nn.Module, dec_a: nn.Module, dec_b: nn.Module,
                 d_a: nn.Module | None = None, d_b: nn.Module | None = None, latent_channels: int = 64):
        super().__init__()
        if (d_a is None) != (d_b is None):
            raise ValueError("networks d_a and d_b: give both discriminators or neither")
        # a network given ``input_windows`` is wrapped (translate.nn.windows.WindowedInput): tie its inner network
        inner = {role: net.net if isinstance(net, WindowedInput) else net
                 for role, net in (("e_a", e_a), ("e_b", e_b), ("dec_a", dec_a), ("dec_b", dec_b))}
        for first, second in (("e_a", "e_b"), ("dec_a", "dec_b")):
            one, two = inner[first], inner[second]
            for role, net in ((first, one), (second, two)):
                if not isinstance(getattr(net, "shared", None), nn.Module):
                    raise ValueError(f"networks {role}: a UNIT network needs a `shared` submodule "
                                     f"(use translate.models.unit.UNITEncoder / UNITDecoder)")
            shapes = [[p.shape for p in net.shared.parameters()] for net in (one, two)]
            if shapes[0] != shapes[1]:
                raise ValueError(f"networks {first} and {second}: their shared layers differ in shape; give both the "
                                 f"same n_shared and latent_channels")
            two.shared = one.shared  # one module: the same Parameter objects in both networks
        self.e_a, self.e_b, self.dec_a, self.dec_b, self.d_a, self.d_b = e_a, e_b, dec_a, dec_b, d_a, d_b
        self.latent_channels = latent_channels

    @staticmethod
    def _sample(mu: Tensor) -> Tensor:
        return mu + torch.randn_like(mu)

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        mu_a, mu_b = self.e_a(real_a), self.e_b(real_b)
        z_a, z_b = self._sample(mu_a), self._sample(mu_b)
        out.update(mu_a=mu_a, mu_b=mu_b, logvar_a=torch.zeros_like(mu_a), logvar_b=torch.zeros_like(mu_b))
        out["recon_a"], out["recon_b"] = self.dec_a(z_a), self.dec_b(z_b)
        out["fake_b"], out["fake_a"] = fake_b, fake_a = self.dec_b(z_a), self.dec_a(z_b)
        mu_ab, mu_ba = self.e_b(fake_b), self.e_a(fake_a)
        out.update(mu_ab=mu_ab, mu_ba=mu_ba, logvar_ab=torch.zeros_like(mu_ab), logvar_ba=torch.zeros_like(mu_ba))
        out["rec_a"], out["rec_b"] = self.dec_a(self._sample(mu_ab)), self.dec_b(self._sample(mu_ba))
        if self.d_b is not None and "d_fake_b" in needs:
            out["d_fake_b"] = self.d_b(fake_b)
        if self.d_a is not None and "d_fake_a" in needs:
            out["d_fake_a"] = self.d_a(fake_a)
        return out

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        if self.d_a is None:
            return out
        for name, critic in (("a", self.d_a), ("b", self.d_b)):
            fake = generated[f"fake_{name}"].detach()
            out[f"fake_{name}"] = fake
            out[f"d_real_{name}"] = critic(batch[f"real_{name}"])
            out[f"d_fake_{name}_detached"] = critic(fake)
            out[f"critic_{name}"] = critic
        return out

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        """The latent mean, no noise: ``dec_b(e_a(a))`` or ``dec_a(e_b(b))``."""
        if direction == "a2b":
            return self.dec_b(self.e_a(source))
        return self.dec_a(self.e_b(source))
