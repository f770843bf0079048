"""Joint (image, mask) GANs from noise: seed 003's DCGAN / LSGAN / WGAN / WGAN-GP / hinge rows.

The generator draws ``z ~ N(0, I)`` and outputs image and mask as channels: ``tanh`` for the image
(domain ``b``), a softmax over the label channels (domain ``a``, intensity ``labels``) for the
mask, so the critic compares soft one-hot maps with the real one-hot maps. One architecture
(DCGAN: transposed convolutions up, strided convolutions down); the catalogue's ``adversarial``
term picks the objective (``vanilla`` = DCGAN, ``lsgan``, ``wgan`` with clipping, ``wgan-gp``,
``hinge``), set per run with overrides such as
``objective.generator.0.mode=hinge objective.discriminator.0.mode=hinge``.

Seed 003's tricks are options: ``label_smoothing`` (on the adversarial term), feature matching
(the ``feature_matching`` term), spectral norm (``spectral_norm: true`` on either network) and
differentiable augmentation (``diffaugment: [translation, cutout, brightness]``, Zhao et al. 2020,
with kornia), applied alike to real and fake pairs before the critic.

Tensors: ``real_joint`` / ``fake_joint`` ``(B, C_b + L, H, W)`` (what the critic sees; name them
as the adversarial term's ``real_image`` / ``fake_image`` for gradient penalties), ``fake_b``
(the image part, for previews), ``d_fake``, ``d_fake_features``, ``d_real_features``; the
discriminator side ``d_real``, ``d_fake_detached``, ``critic``.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import MODELS, Role, TranslationModel

DIFFAUGMENT = ("translation", "cutout", "brightness")


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm: expected 'batch', 'instance', 'layer' or 'none', got {kind!r}")


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): ``z (B, in_channels)`` -> ``(B, out_channels, S, S)`` raw outputs.

    A 4x4 transposed convolution from the latent, then ``log2(S / 4)`` stride-2 transposed
    convolutions (BatchNorm + ReLU) halving the width each time, the last one to ``out_channels``.

    Args:
        spatial_dims: 2 (the joint GANs are 2D).
        in_channels: latent size ``z_dim``.
        out_channels: image + label channels.
        image_size: output side ``S``, a power of two >= 8.
        channels: width of the last hidden layer (widths ``channels * 2**k`` towards the latent, at most 8x).
        norm: ``batch``, ``instance``, ``layer`` or ``none``.
        spectral_norm: spectral normalisation on every convolution.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 64, out_channels: int = 2, image_size: int = 64,
                 channels: int = 32, norm: str = "batch", spectral_norm: bool = False):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the DCGAN generator is 2D; got spatial_dims={spatial_dims}")
        ups = int(round(math.log2(int(image_size) / 4)))
        if image_size < 8 or 4 * 2 ** ups != image_size:
            raise ValueError(f"image_size: expected a power of two >= 8, got {image_size}")
        self.z_dim, self.image_size = int(in_channels), int(image_size)
        widths = [int(channels) * min(2 ** k, 8) for k in reversed(range(ups))]
        layers: List[nn.Module] = [_sn(nn.ConvTranspose2d(self.z_dim, widths[0], 4, 1, 0, bias=norm == "none"), spectral_norm),
                                   _norm(norm, widths[0]), nn.ReLU(True)]
        for i in range(ups - 1):
            layers += [_sn(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=norm == "none"), spectral_norm),
                       _norm(norm, widths[i + 1]), nn.ReLU(True)]
        layers.append(_sn(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """DCGAN critic: stride-2 4x4 convolutions (LeakyReLU 0.2, norm after the first), a 3x3 head, mean -> one logit.

    The spatial mean in place of DCGAN's last 4x4 valid convolution lets any size >= ``2 ** n_layers`` through.

    Args:
        spatial_dims: 2.
        in_channels: image + label channels.
        channels: first width (doubling, at most 8x).
        n_layers: stride-2 convolutions.
        norm: ``batch`` (DCGAN), ``instance``, ``layer`` (WGAN-GP) or ``none``.
        spectral_norm: spectral normalisation on every convolution (Miyato et al. 2018).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 2, channels: int = 32, n_layers: int = 4,
                 norm: str = "batch", spectral_norm: bool = False):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"the DCGAN discriminator is 2D; got spatial_dims={spatial_dims}")
        blocks, previous = [], in_channels
        for i in range(int(n_layers)):
            width = int(channels) * min(2 ** i, 8)
            layers = [_sn(nn.Conv2d(previous, width, 4, 2, 1, bias=i == 0 or norm == "none"), spectral_norm)]
            if i > 0:
                layers.append(_norm(norm, width))
            layers.append(nn.LeakyReLU(0.2, True))
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.head = _sn(nn.Conv2d(previous, 1, 3, 1, 1), spectral_norm)

    def forward(self, x: Tensor, return_features: bool = False):
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        logits = self.head(x).mean(dim=(2, 3))
        return (logits, features) if return_features else logits


class DiffAugment(nn.Module):
    """Differentiable augmentation (Zhao et al. 2020) with kornia: the same random policy for real and fake.

    ``translation``: shifts up to 1/8 of the size (kornia ``RandomAffine``, zero padding);
    ``cutout``: a random rectangle of about a quarter of the area set to 0 (kornia ``RandomErasing``);
    ``brightness``: a random offset in [-0.25, 0.25] added to the image channels only.
    Spatial operations move image and mask channels together.
    """

    def __init__(self, policy: Sequence[str], image_channels: int):
        super().__init__()
        unknown = [p for p in policy if p not in DIFFAUGMENT]
        if unknown:
            raise ValueError(f"diffaugment: unknown operation {unknown[0]!r}; expected some of {list(DIFFAUGMENT)}")
        import kornia.augmentation as K

        self.policy, self.image_channels = list(policy), int(image_channels)
        self.translate = K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), padding_mode="zeros", p=1.0)
        self.cutout = K.RandomErasing(scale=(0.2, 0.3), ratio=(0.5, 2.0), value=0.0, p=1.0)

    def forward(self, x: Tensor) -> Tensor:
        if "brightness" in self.policy:
            shift = (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * 0.5
            image = x[:, :self.image_channels] + shift
            x = torch.cat([image, x[:, self.image_channels:]], dim=1)
        if "translation" in self.policy:
            x = self.translate(x)
        if "cutout" in self.policy:
            x = self.cutout(x)
        return x


@MODELS.register("joint_gan")
class JointGAN(TranslationModel):
    """Unconditional GAN over (image, mask) pairs; :meth:`sample` draws new pairs.

    Args:
        generator: ``z (B, z_dim) -> (B, C_b + L, S, S)`` raw outputs (e.g. :class:`DCGANGenerator`).
        discriminator: critic on ``(B, C_b + L, S, S)``; ``forward(x, return_features=True)`` for feature matching.
        z_dim: latent size (the generator's ``in_channels``).
        image_size: side of the generated pairs; training slices must have it.
        diffaugment: DiffAugment operations applied before the critic (``[]``: none).
    """

    roles = {
        "generator": Role("generator", inputs=lambda c: int(c.options.get("z_dim", 64)),
                          outputs=lambda c: c.domain["b"] + c.domain["a"]),
        "discriminator": Role("discriminator", group="discriminator",
                              inputs=lambda c: c.domain["b"] + c.domain["a"]),
    }
    directions: Dict[str, Tuple[str, str]] = {}

    def __init__(self, generator: nn.Module, discriminator: nn.Module, z_dim: int = 64, image_size: int = 64,
                 diffaugment: Sequence[str] = (), image_channels: int = 1):
        super().__init__()
        if int(z_dim) < 1:
            raise ValueError(f"z_dim: expected a positive integer, got {z_dim}")
        self.generator, self.discriminator = generator, discriminator
        self.z_dim, self.image_size, self.image_channels = int(z_dim), int(image_size), int(image_channels)
        self.augment = DiffAugment(list(diffaugment), self.image_channels) if diffaugment else None

    def _joint(self, raw: Tensor) -> Tensor:
        c = self.image_channels
        return torch.cat([torch.tanh(raw[:, :c]), torch.softmax(raw[:, c:], dim=1)], dim=1)

    def _critic(self, x: Tensor, features: bool = False):
        if self.augment is not None:
            x = self.augment(x)
        return self.discriminator(x, return_features=True) if features else (self.discriminator(x), None)

    def _real(self, batch: Mapping[str, Tensor]) -> Tensor:
        real = torch.cat([batch["real_b"], batch["real_a"]], dim=1)
        if tuple(real.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"joint_gan image_size {self.image_size}: training slices are {tuple(real.shape[2:])}; "
                             f"set model.options.image_size (and the generator's) to the slice size")
        return real

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real = self._real(batch)
        z = torch.randn(real.shape[0], self.z_dim, device=real.device, dtype=real.dtype)
        fake = self._joint(self.generator(z))
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out.update(real_joint=real, fake_joint=fake, fake_b=fake[:, :self.image_channels])
        if {"d_fake", "d_fake_features", "d_real_features"} & set(needs):
            want = "d_fake_features" in needs or "d_real_features" in needs
            out["d_fake"], features = self._critic(fake, want)
            if want:
                out["d_fake_features"] = features
                with torch.no_grad():
                    _, out["d_real_features"] = self._critic(real, True)
        return out

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        real, fake = generated["real_joint"], generated["fake_joint"].detach()
        out: Dict[str, Any] = {"real_joint": real, "fake_joint": fake}
        out["d_real"], _ = self._critic(real)
        out["d_fake_detached"], _ = self._critic(fake)
        out["critic"] = lambda x: self._critic(x)[0]
        return out

    @torch.no_grad()
    def sample(self, n: int, device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor]:
        """``n`` new pairs: images ``(n, C_b, S, S)`` in [-1, 1] and soft one-hot masks ``(n, L, S, S)``."""
        z = torch.randn(int(n), self.z_dim, device=device)
        joint = self._joint(self.generator(z))
        return joint[:, :self.image_channels], joint[:, self.image_channels:]

    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        raise ValueError("joint_gan translates nothing: it samples (image, mask) pairs; use `translate synthesize`")
