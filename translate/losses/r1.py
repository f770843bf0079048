"""The R1 penalty as a term of its own (StyleGAN2's discriminator regulariser)."""

from __future__ import annotations

from typing import Tuple

from torch import Tensor

from .adversarial import r1_penalty
from .base import LOSSES, Tensors, Term


@LOSSES.register("r1")
class R1(Term):
    """R1 gradient penalty on real samples, for the discriminator side (zero-centred, real data only).

    ``gamma / 2`` times :func:`~translate.losses.adversarial.r1_penalty`: the squared norm of the
    critic's gradient with respect to real inputs. StyleGAN2 pairs it with the non-saturating loss
    (``adversarial`` with ``mode: nonsaturating``); the same penalty is the ``r1_weight`` option of
    the ``adversarial`` term. ``real_image`` names the tensor the critic judges as real (``real_b``,
    or ``real_joint`` for the joint GANs).

    Example:
        >>> R1(gamma=2.0).compute({"critic": lambda x: 2 * x.flatten(1).sum(1), "real_b": torch.ones(2, 1, 1, 1)}).item()
        4.0
    """

    name = "r1"
    requirement = "a discriminator (discriminator side)"
    formula = "gamma / 2 * mean_real ||grad_x D(x)||^2"
    reference = "Mescheder et al. 2018 ICML (R1); Karras et al. 2020 CVPR (StyleGAN2)"

    def __init__(self, gamma: float = 10.0, critic: str = "critic", real_image: str = "real_b", name: str = "r1"):
        super().__init__(name)
        if not float(gamma) > 0:
            raise ValueError(f"r1 gamma: expected a positive number, got {gamma}")
        self.gamma, self.critic, self.real_image = float(gamma), critic, real_image

    def needs(self) -> Tuple[str, ...]:
        return (self.critic, self.real_image)

    def compute(self, tensors: Tensors) -> Tensor:
        return 0.5 * self.gamma * r1_penalty(tensors[self.critic], tensors[self.real_image])

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, real_image={self.real_image!r}"
