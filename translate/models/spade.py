"""SPADE (Park et al. 2019): mask-conditioned image synthesis, label map -> image.

Domain ``a`` is a label map (intensity spec ``labels``: one-hot channels), domain ``b`` the image
(e.g. CT). The ``generator`` (:class:`~translate.nn.generators.spade.SPADEGenerator`) turns the
one-hot map and a style vector into an image; with ``style_encoder: true`` it also encodes the
real image into a Gaussian style posterior (VAE-GAN: reparameterised sample in training, ``mu``
and ``logvar`` for the catalogue's ``kl`` term), and at inference the style is drawn from
``N(0, I)``, so one mask yields varied images. The ``discriminator`` (a multi-scale PatchGAN in
the recipes) judges ``cat(labels, image)``; hinge loss and feature matching come from the
catalogue, exactly as for pix2pix, whose discriminator side this model inherits.

Tensors for loss terms: ``real_a`` (labels), ``real_b``, ``fake_b``, ``d_fake``,
``d_fake_features``, ``d_real_features``, ``mu``, ``logvar`` (with a style encoder); the
discriminator side: ``d_real``, ``d_fake_detached``, ``critic``.
"""

from __future__ import annotations

from typing import Any, Collection, Dict, Mapping

import torch
from torch import Tensor, nn

from .base import MODELS, Role
from .pix2pix import Pix2Pix


@MODELS.register("spade")
class SPADE(Pix2Pix):
    """Label map -> image with SPADE blocks, an optional style encoder and a conditional critic.

    Args:
        generator: a network ``forward(labels, z=None)`` with ``z_dim``; with ``encode(image) ->
            (mu, logvar)`` when ``style_encoder`` (the registered ``spade`` generator has both).
        discriminator: critic on ``cat(labels, image)`` (``conditional``) or on the image alone.
        conditional, mask: as :class:`~translate.models.pix2pix.Pix2Pix`.
        style_encoder: train as a VAE-GAN with the generator's encoder (``mu``/``logvar`` tensors).
    """

    roles = {
        "generator": Role("generator", inputs=lambda c: c.served["a"], outputs=lambda c: c.domain["b"]),
        "discriminator": Role("discriminator", group="discriminator", optional=True,
                              inputs=lambda c: (c.served["a"] if c.options.get("conditional", True) else 0)
                              + c.domain["b"]),
    }

    def __init__(self, generator: nn.Module, discriminator: nn.Module | None = None, conditional: bool = True,
                 mask: str | None = None, style_encoder: bool = False):
        super().__init__(generator, discriminator, conditional=conditional, mask=mask)
        if not isinstance(style_encoder, bool):
            raise ValueError(f"style_encoder: expected true or false, got {style_encoder!r}")
        if style_encoder and getattr(generator, "encoder", None) is None:
            raise ValueError("style_encoder is true but the generator has no style encoder; "
                             "set model.networks.generator.style_encoder: true")
        if not hasattr(generator, "z_dim"):
            raise ValueError("the SPADE generator must have a z_dim (style vector size)")
        self.style_encoder = style_encoder

    def style(self, real_b: Tensor | None, batch: int, like: Tensor) -> Dict[str, Tensor]:
        """Training style: the reparameterised posterior sample with ``mu``/``logvar``, or a prior draw."""
        if self.style_encoder and real_b is not None:
            mu, logvar = self.generator.encode(real_b)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return {"z": z, "mu": mu, "logvar": logvar}
        return {"z": torch.randn(batch, self.generator.z_dim, device=like.device, dtype=like.dtype)}

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        self._current_mask = self._batch_mask(batch)
        style = self.style(real_b, real_a.shape[0], real_a)
        fake_b = self.generator(real_a, style["z"])
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out.update(style)
        out["fake_b"] = fake_b
        if self.discriminator is not None and ({"d_fake", "d_fake_features", "d_real_features"} & set(needs)):
            want_features = "d_fake_features" in needs or "d_real_features" in needs
            out["d_fake"], fake_features = self._judge(real_a, fake_b, want_features)
            if want_features:
                out["d_fake_features"] = fake_features
                with torch.no_grad():
                    _, out["d_real_features"] = self._judge(real_a, real_b, True)
        return out

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str = "a2b", z: Tensor | None = None) -> Tensor:
        """One-hot labels ``(B, L, *S)`` -> images; ``z`` None: a fresh style from N(0, I) per sample."""
        if z is None:
            z = torch.randn(source.shape[0], self.generator.z_dim, device=source.device, dtype=source.dtype)
        return self.generator(source, z)
