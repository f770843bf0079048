"""Pix2pix (Isola et al. 2017): paired translation with a conditional PatchGAN.

``G: A -> B`` is trained so that ``D`` cannot tell ``(real_a, G(real_a))`` from
``(real_a, real_b)``, plus whatever paired terms the objective adds (L1 by default).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Dict, Iterable, Mapping

import torch
from torch import Tensor, nn

from .base import MODELS, TranslationModel


@MODELS.register("pix2pix")
class Pix2Pix(TranslationModel):
    """Paired image-to-image translation.

    Args:
        generator: maps ``real_a (B, Ca, *S)`` to ``fake_b (B, Cb, *S)``.
        discriminator: conditional critic on ``cat(real_a, b)`` with ``Ca + Cb`` channels; its
            ``forward(x, return_features=True)`` must return ``(logits, features)`` when
            feature matching is used.
        conditional: when False, ``D`` sees only ``b`` (an unconditional GAN).
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module | None = None, conditional: bool = True):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.conditional = conditional

    def _critic(self, real_a: Tensor) -> Callable[[Tensor], Any]:
        if self.conditional:
            return lambda b: self.discriminator(torch.cat([real_a, b], dim=1))
        return lambda b: self.discriminator(b)

    def _judge(self, real_a: Tensor, b: Tensor, features: bool):
        x = torch.cat([real_a, b], dim=1) if self.conditional else b
        if features:
            return self.discriminator(x, return_features=True)
        return self.discriminator(x), None

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        fake_b = self.generator(real_a)
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out["fake_b"] = fake_b
        if self.discriminator is not None and ({"d_fake", "d_fake_features", "d_real_features"} & set(needs)):
            want_features = "d_fake_features" in needs or "d_real_features" in needs
            out["d_fake"], fake_features = self._judge(real_a, fake_b, want_features)
            if want_features:
                out["d_fake_features"] = fake_features
                with torch.no_grad():
                    _, out["d_real_features"] = self._judge(real_a, real_b, True)
        return out

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        fake_b = generated["fake_b"].detach()
        out: Dict[str, Any] = {"real_a": real_a, "real_b": real_b, "fake_b": fake_b}
        out["d_real"], _ = self._judge(real_a, real_b, False)
        out["d_fake_detached"], _ = self._judge(real_a, fake_b, False)
        out["critic"] = self._critic(real_a)
        return out

    def parameter_groups(self) -> Dict[str, Iterable[nn.Parameter]]:
        groups = {"generator": list(self.generator.parameters())}
        if self.discriminator is not None:
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def discriminators(self) -> Dict[str, nn.Module]:
        return {"discriminator": self.discriminator} if self.discriminator is not None else {}

    @torch.no_grad()
    def translate(self, source: Tensor) -> Tensor:
        return self.generator(source)
