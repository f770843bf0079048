"""Pix2pix (Isola et al. 2017): paired translation with a conditional PatchGAN.

``G: A -> B`` is trained so that ``D`` cannot tell ``(real_a, G(real_a))`` from
``(real_a, real_b)``, plus whatever paired terms the objective adds (L1 by default).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Dict, Mapping

import torch
from torch import Tensor, nn

from .base import MODELS, Role, TranslationModel


@MODELS.register("pix2pix")
class Pix2Pix(TranslationModel):
    """Paired image-to-image translation.

    Roles: ``generator`` maps ``real_a (B, Ca, *S)`` to ``fake_b (B, Cb, *S)``; ``discriminator``
    (optional) is a critic on ``cat(real_a, b)`` with ``Ca + Cb`` channels (``Cb`` when not
    ``conditional``); its ``forward(x, return_features=True)`` must return ``(logits, features)``
    when feature matching is used. Without a discriminator this is a plain supervised network.

    Args:
        conditional: when False, ``D`` sees only ``b`` (an unconditional GAN).
        mask: name of a batch mask (e.g. ``valid_mask``, where both domains have data): outside
            it ``D`` sees background (-1) in every image, real and fake alike, so a partial MR
            coverage does not teach it to judge voxels no loss can supervise. None: no mask.
    """

    roles = {
        "generator": Role("generator", inputs=lambda c: c.served["a"], outputs=lambda c: c.domain["b"]),
        "discriminator": Role("discriminator", group="discriminator", optional=True,
                              inputs=lambda c: (c.served["a"] if c.options.get("conditional", True) else 0)
                              + c.domain["b"]),
    }

    def __init__(self, generator: nn.Module, discriminator: nn.Module | None = None, conditional: bool = True,
                 mask: str | None = None):
        super().__init__()
        if not isinstance(conditional, bool):
            raise ValueError(f"conditional: expected true or false, got {conditional!r}")
        if mask is not None and not isinstance(mask, str):
            raise ValueError(f"mask: expected the name of a batch mask such as valid_mask, got {mask!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.conditional = conditional
        self.mask = mask
        self._current_mask: Tensor | None = None

    def _hide(self, x: Tensor) -> Tensor:
        if self._current_mask is None:
            return x
        m = self._current_mask.to(x.dtype)
        return x * m - (1.0 - m)

    def _critic(self, real_a: Tensor) -> Callable[[Tensor], Any]:
        real_a = self._hide(real_a)
        if self.conditional:
            return lambda b: self.discriminator(torch.cat([real_a, self._hide(b)], dim=1))
        return lambda b: self.discriminator(self._hide(b))

    def _judge(self, real_a: Tensor, b: Tensor, features: bool):
        real_a, b = self._hide(real_a), self._hide(b)
        x = torch.cat([real_a, b], dim=1) if self.conditional else b
        if features:
            return self.discriminator(x, return_features=True)
        return self.discriminator(x), None

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        self._current_mask = self._batch_mask(batch)
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
        self._current_mask = self._batch_mask(batch)
        fake_b = generated["fake_b"].detach()
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out["fake_b"] = fake_b
        out["d_real"], _ = self._judge(real_a, real_b, False)
        out["d_fake_detached"], _ = self._judge(real_a, fake_b, False)
        out["critic"] = self._critic(real_a)
        return out

    def _batch_mask(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        if self.mask is None:
            return None
        if self.mask not in batch:
            raise KeyError(f"pix2pix option mask={self.mask!r}: the batch has no such tensor; it has {sorted(batch)}")
        return batch[self.mask]

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        return self.generator(source)
