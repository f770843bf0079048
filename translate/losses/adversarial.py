"""Adversarial losses for both sides of a GAN, gradient penalties, and the :class:`Adversarial` term.

Discriminator outputs are raw logits (no sigmoid), one tensor or a list of tensors from a
multi-scale discriminator; every loss is the mean over patches, averaged over the scales.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from monai.utils import StrEnum
from torch import Tensor, nn

from .base import LOSSES, Tensors, Term, check_choice, check_pair

Logits = Union[Tensor, Sequence[Tensor]]
Critic = Callable[[Tensor], Logits]


class AdversarialMode(StrEnum):
    """GAN objective; see :func:`generator_loss` and :func:`discriminator_loss`."""

    VANILLA = "vanilla"
    NONSATURATING = "nonsaturating"
    LSGAN = "lsgan"
    WGAN = "wgan"
    WGAN_GP = "wgan-gp"
    HINGE = "hinge"


def _scales(logits: Logits, what: str) -> List[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    if isinstance(logits, (list, tuple)) and logits and all(isinstance(x, Tensor) for x in logits):
        return list(logits)
    raise TypeError(f"{what}: expected a tensor of logits or a non-empty list of them, got {type(logits).__name__}")


def _mean_over_scales(logits: Logits, what: str, per_scale: Callable[[Tensor], Tensor]) -> Tensor:
    return torch.stack([per_scale(x) for x in _scales(logits, what)]).mean()


def generator_loss(d_fake: Logits, mode: str = "lsgan") -> Tensor:
    r"""Generator side of the adversarial loss, with :math:`x = D(G(a))` the logits on fakes.

    .. math::
        \mathcal{L}_G = \begin{cases}
        -\,\mathrm{BCE}(x, 0) = \log(1 - \sigma(x)) & \text{vanilla (minimax, Goodfellow 2014)}\\
        \mathrm{BCE}(x, 1) = -\log \sigma(x) & \text{nonsaturating}\\
        (x - 1)^2 & \text{lsgan (Mao 2017)}\\
        -x & \text{wgan, wgan-gp (Arjovsky 2017), hinge (Lim 2017)}
        \end{cases}

    averaged over patches and scales. The minimax form saturates when D wins; it is kept
    for completeness and its value is negative. ``lsgan`` follows the pix2pix/CycleGAN code
    (targets 1 for real, 0 for fake: Mao's ``a=0, b=c=1`` variant).

    Args:
        d_fake: discriminator logits on generated images, gradients flowing to G.
        mode: one of :class:`AdversarialMode`.

    Shape:
        - d_fake: any shape ``(B, ...)`` (e.g. patch logits ``(B, 1, h, w)``), or a list of them.
        - Output: scalar.

    Example:
        >>> generator_loss(torch.ones(2, 1, 4, 4), "lsgan").item()
        0.0
    """
    mode = check_choice(AdversarialMode, mode, "adversarial mode")
    if mode == AdversarialMode.VANILLA:
        per_scale = lambda x: -F.softplus(x).mean()  # noqa: E731  -BCE(x, 0) = log(1 - sigmoid(x))
    elif mode == AdversarialMode.NONSATURATING:
        per_scale = lambda x: F.softplus(-x).mean()  # noqa: E731  BCE(x, 1) = -log sigmoid(x)
    elif mode == AdversarialMode.LSGAN:
        per_scale = lambda x: (x - 1).square().mean()  # noqa: E731
    else:
        per_scale = lambda x: -x.mean()  # noqa: E731
    return _mean_over_scales(d_fake, "generator_loss d_fake", per_scale)


def _check_real_label(mode: AdversarialMode, real_label: float) -> AdversarialMode:
    if real_label != 1.0 and mode in (AdversarialMode.WGAN, AdversarialMode.WGAN_GP, AdversarialMode.HINGE):
        raise ValueError(f"a real label other than 1 (label smoothing) has no meaning for mode {mode.value!r}; "
                         f"use 'vanilla', 'nonsaturating' or 'lsgan'")
    return mode


def discriminator_loss(d_real: Logits, d_fake: Logits, mode: str = "lsgan", real_label: float = 1.0) -> Tensor:
    r"""Discriminator side of the adversarial loss: the *sum* of the real and fake parts.

    With :math:`r = D(b)`, :math:`f = D(G(a))` (detached) and real label :math:`y` (1, or
    :math:`1 - s` with one-sided label smoothing, Salimans 2016):

    .. math::
        \mathcal{L}_D = \begin{cases}
        \mathrm{BCE}(r, y) + \mathrm{BCE}(f, 0) & \text{vanilla, nonsaturating}\\
        (r - y)^2 + f^2 & \text{lsgan}\\
        f - r & \text{wgan, wgan-gp (penalty added by the term)}\\
        \max(0, 1 - r) + \max(0, 1 + f) & \text{hinge}
        \end{cases}

    each part averaged over patches and scales. pix2pix halves this sum; give the term a
    weight of 0.5 to match it.

    Args:
        d_real: logits on real images.
        d_fake: logits on generated images (detached from G).
        mode: one of :class:`AdversarialMode`.
        real_label: target for real logits; only the BCE and least-squares modes have one.

    Shape:
        - d_real, d_fake: ``(B, ...)`` or lists of them (multi-scale).
        - Output: scalar.

    Example:
        >>> discriminator_loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), "lsgan").item()
        0.0
    """
    mode = _check_real_label(check_choice(AdversarialMode, mode, "adversarial mode"), real_label)
    if mode in (AdversarialMode.VANILLA, AdversarialMode.NONSATURATING):
        real = lambda x: F.binary_cross_entropy_with_logits(x, torch.full_like(x, real_label))  # noqa: E731
        fake = lambda x: F.binary_cross_entropy_with_logits(x, torch.zeros_like(x))  # noqa: E731
    elif mode == AdversarialMode.LSGAN:
        real = lambda x: (x - real_label).square().mean()  # noqa: E731
        fake = lambda x: x.square().mean()  # noqa: E731
    elif mode == AdversarialMode.HINGE:
        real = lambda x: F.relu(1 - x).mean()  # noqa: E731
        fake = lambda x: F.relu(1 + x).mean()  # noqa: E731
    else:
        real = lambda x: -x.mean()  # noqa: E731
        fake = lambda x: x.mean()  # noqa: E731
    return (_mean_over_scales(d_real, "discriminator_loss d_real", real)
            + _mean_over_scales(d_fake, "discriminator_loss d_fake", fake))


def _per_sample_score(critic: Critic, images: Tensor) -> Tensor:
    # A patch critic has many outputs per image; their mean is the score whose gradient the
    # penalties constrain (for a scalar critic this is the score itself).
    scales = _scales(critic(images), "critic output")
    return torch.stack([s.reshape(s.shape[0], -1).mean(1) for s in scales]).mean(0)


def _input_gradient(critic: Critic, images: Tensor) -> Tensor:
    images = images.detach().requires_grad_(True)
    # create_graph: the penalty itself must be differentiable w.r.t. the critic's weights.
    (grad,) = torch.autograd.grad(_per_sample_score(critic, images).sum(), images, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, target_norm: float = 1.0) -> Tensor:
    r"""WGAN-GP gradient penalty (Gulrajani et al. 2017, "Improved training of Wasserstein GANs").

    .. math::
        \mathcal{L}_{GP} = \mathbb{E}_{\hat x}\big(\lVert \nabla_{\hat x} D(\hat x) \rVert_2
        - k\big)^2, \qquad \hat x = \epsilon\, x_{real} + (1 - \epsilon)\, x_{fake},
        \quad \epsilon \sim U[0, 1] \text{ per sample}

    ``fake`` is detached. For a patch critic :math:`D(\hat x)` is the mean of its outputs
    (and of its scales). A critic with batch normalisation couples the samples, which the
    penalty assumes away (Gulrajani et al. advise layer or instance norm).

    Args:
        critic: image -> logits (the model binds any conditioning input).
        real: real images.
        fake: generated images.
        target_norm: :math:`k`, the gradient norm aimed for.

    Shape:
        - real, fake: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: scalar.

    Example:
        >>> w = torch.full((1, 1, 2, 2), 0.5)  # ||w|| = 1
        >>> gp = gradient_penalty(lambda x: (w * x).flatten(1).sum(1), torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2))
        >>> gp.item() < 1e-6
        True
    """
    check_pair(real, fake, "gradient_penalty")
    real, fake = real.detach(), fake.detach()
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    grad = _input_gradient(critic, eps * real + (1 - eps) * fake)
    norm = (grad.square().sum(1) + 1e-12).sqrt()  # the epsilon keeps the gradient finite for a flat critic
    return (norm - target_norm).square().mean()


def r1_penalty(critic: Critic, real: Tensor) -> Tensor:
    r"""R1 regulariser (Mescheder et al. 2018, "Which training methods for GANs do actually converge?").

    .. math::
        R_1 = \mathbb{E}_{x \sim p_{data}} \lVert \nabla_x D(x) \rVert_2^2

    The paper's weight :math:`\gamma / 2` is the term's ``r1_weight``.

    Shape:
        - real: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`.
        - Output: scalar.

    Example:
        >>> r1_penalty(lambda x: 2 * x.flatten(1).sum(1), torch.ones(2, 1, 1, 1)).item()
        4.0
    """
    check_pair(real, real, "r1_penalty")
    return _input_gradient(critic, real).square().sum(1).mean()


@LOSSES.register("adversarial")
class Adversarial(Term):
    """GAN loss for the generator or the discriminator side, with optional penalties and clipping.

    See :func:`generator_loss`, :func:`discriminator_loss`, :func:`gradient_penalty` and
    :func:`r1_penalty`. On the discriminator side, ``wgan-gp`` adds ``gp_weight`` times the
    gradient penalty, ``r1_weight > 0`` adds the R1 penalty, and ``clip_value`` (default 0.01
    for ``wgan``) makes :meth:`after_optimizer_step` clamp the discriminator's weights.

    Example:
        >>> g = Adversarial("lsgan")
        >>> g.compute({"d_fake": torch.ones(2, 1, 4, 4)}).item()
        0.0
        >>> Adversarial("wgan-gp", side="discriminator").needs()
        ('d_real', 'd_fake_detached', 'critic', 'real_b', 'fake_b')
    """

    name = "adversarial"
    requirement = "a discriminator (any data)"
    formula = "lsgan G: mean (D(G(a)) - 1)^2; D: mean (D(b) - 1)^2 + mean D(G(a))^2; other modes per docs"
    reference = "Goodfellow 2014; Mao 2017 (LSGAN); Arjovsky 2017 (WGAN); Gulrajani 2017 (GP); Lim 2017 (hinge)"

    def __init__(self, mode: str = "lsgan", side: str = "generator", label_smoothing: float = 0.0,
                 gp_weight: float = 10.0, r1_weight: float = 0.0, clip_value: float | None = None,
                 fake: str | None = None, real: str = "d_real", critic: str = "critic",
                 real_image: str = "real_b", fake_image: str = "fake_b", name: str = "adversarial"):
        super().__init__(name)
        self.mode = check_choice(AdversarialMode, mode, "adversarial mode")
        if side not in ("generator", "discriminator"):
            raise ValueError(f"unknown side {side!r}; expected 'generator' or 'discriminator'")
        self.side = side
        on_d = side == "discriminator"
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if gp_weight < 0 or r1_weight < 0:
            raise ValueError(f"gp_weight and r1_weight must be >= 0, got {gp_weight}, {r1_weight}")
        if not on_d and (label_smoothing or r1_weight or clip_value is not None):
            raise ValueError("label_smoothing, r1_weight and clip_value act on the discriminator side only")
        if self.mode == AdversarialMode.WGAN and on_d and clip_value is None:
            clip_value = 0.01  # Arjovsky et al.'s c: weight clipping keeps the critic Lipschitz
        if clip_value is not None and clip_value <= 0:
            raise ValueError(f"clip_value must be > 0, got {clip_value}")
        self.real_label = 1.0 - label_smoothing
        _check_real_label(self.mode, self.real_label)
        self.gp_weight = gp_weight if (on_d and self.mode == AdversarialMode.WGAN_GP) else 0.0
        self.r1_weight, self.clip_value = r1_weight, clip_value
        self.fake = fake or ("d_fake_detached" if on_d else "d_fake")
        self.real, self.critic = real, critic
        self.real_image, self.fake_image = real_image, fake_image

    def needs(self) -> Tuple[str, ...]:
        if self.side == "generator":
            return (self.fake,)
        names = [self.real, self.fake]
        if self.gp_weight > 0:
            names += [self.critic, self.real_image, self.fake_image]
        elif self.r1_weight > 0:
            names += [self.critic, self.real_image]
        return tuple(names)

    def compute(self, tensors: Tensors) -> Tensor:
        if self.side == "generator":
            return generator_loss(tensors[self.fake], self.mode)
        loss = discriminator_loss(tensors[self.real], tensors[self.fake], self.mode, self.real_label)
        if self.gp_weight > 0:
            loss = loss + self.gp_weight * gradient_penalty(
                tensors[self.critic], tensors[self.real_image], tensors[self.fake_image])
        if self.r1_weight > 0:
            loss = loss + self.r1_weight * r1_penalty(tensors[self.critic], tensors[self.real_image])
        return loss

    @torch.no_grad()
    def after_optimizer_step(self, network: nn.Module) -> None:
        if self.clip_value is not None:
            for parameter in network.parameters():
                parameter.clamp_(-self.clip_value, self.clip_value)

    def extra_repr(self) -> str:
        return f"mode={self.mode.value!r}, side={self.side!r}, fake={self.fake!r}"
