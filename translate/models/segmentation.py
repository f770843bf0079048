"""Adversarial segmentation: image -> label map, a segmenter plus an optional critic of (image, mask) pairs.

The segmenter ``S`` maps ``real_a`` (an image) to logits over the label channels of domain ``b``
(a ``labels`` intensity spec: one-hot channels, background first). Dice and cross-entropy
(``dice_ce`` in the loss catalogue) train it on the logits. With a ``discriminator``, ``D`` judges
pairs of the image and a soft mask, as Luc et al. 2016 ("Semantic segmentation using adversarial
networks"): the real pair holds the one-hot ground truth, the fake pair ``S``'s softmax. Its input is

* ``product`` (default; Luc et al.'s "product", SegAN's masked image, Xue et al. 2018): the image
  multiplied by each class's probability map, ``C_a x C_b`` channels;
* ``concat`` (Luc et al.'s "basic" with the image): ``cat(image, mask)``, ``C_a + C_b`` channels.

Named tensors for the loss terms: ``logits_b`` (raw segmenter output), ``fake_b`` (softmax),
``real_b`` (one-hot), ``d_fake`` / ``d_real`` / ``d_fake_detached`` / ``critic`` (GAN terms) and,
when a term asks, ``d_fake_features`` / ``d_real_features`` (the critic's feature maps on both
pairs: SegAN's multi-scale L1, ``segan_l1``; generator side) and ``d_fake_features_detached``
(discriminator side, where SegAN's critic maximises the same L1).
"""

from __future__ import annotations

from typing import Any, Collection, Dict, Mapping

import torch
from torch import Tensor, nn

from .base import MODELS, Channels, Role, TranslationModel

INPUTS = ("product", "concat")


def _critic_channels(c: Channels) -> int:
    image, mask = c.served["a"], c.domain["b"]
    return image * mask if c.options.get("discriminator_input", "product") == "product" else image + mask


@MODELS.register("adversarial_segmentation")
class AdversarialSegmentation(TranslationModel):
    """A segmenter trained with Dice + cross-entropy, plus an optional adversarial critic of (image, mask) pairs.

    Roles: ``segmenter`` (a generator, e.g. ``monai_unet`` with ``final_activation: none``) maps
    ``real_a (B, Ca, *S)`` to logits ``(B, Cb, *S)``, ``Cb`` = the number of label ids, background
    included; ``discriminator`` (optional) sees ``(image, soft mask)`` pairs (see the module notes).

    Args:
        discriminator_input: ``product`` or ``concat``.
        image_channel: with 2.5D input, which input channel is the image shown to the critic
            (default: the centre slice); the critic sees one image channel.

    Example:
        >>> from translate.nn import build_generator
        >>> s = build_generator("monai_unet", spatial_dims=2, in_channels=1, out_channels=3, final_activation="none")
        >>> m = AdversarialSegmentation(segmenter=s)
        >>> m.translate(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    roles = {
        "segmenter": Role("generator", inputs=lambda c: c.served["a"], outputs=lambda c: c.domain["b"]),
        "discriminator": Role("discriminator", group="discriminator", optional=True,
                              inputs=lambda c: _critic_channels(Channels(
                                  served={**c.served, "a": 1}, domain=c.domain, options=c.options))),
    }
    default_init = ("kaiming", 0.02)  # Kaiming convs; norm weights N(1, 0.02)

    def __init__(self, segmenter: nn.Module, discriminator: nn.Module | None = None,
                 discriminator_input: str = "product", image_channel: int | None = None):
        super().__init__()
        if discriminator_input not in INPUTS:
            raise ValueError(f"discriminator_input: expected one of {list(INPUTS)}, got {discriminator_input!r}")
        if image_channel is not None and (not isinstance(image_channel, int) or image_channel < 0):
            raise ValueError(f"image_channel: expected a channel index >= 0, got {image_channel!r}")
        self.segmenter = segmenter
        self.discriminator = discriminator
        self.discriminator_input = discriminator_input
        self.image_channel = image_channel

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        value = options.get("discriminator_input", "product")
        if value not in INPUTS:
            raise ValueError(f"discriminator_input: expected one of {list(INPUTS)}, got {value!r}")

    # ---------------------------------------------------------------- the critic's input
    def _image(self, real_a: Tensor) -> Tensor:
        channel = real_a.shape[1] // 2 if self.image_channel is None else self.image_channel
        if channel >= real_a.shape[1]:
            raise ValueError(f"image_channel {channel}: the input has {real_a.shape[1]} channels")
        # [-1, 1] -> [0, 1]: a product with a mask must be zero where the mask is, not where the image is 0 HU
        return (real_a[:, channel:channel + 1] + 1.0) * 0.5

    def pair(self, real_a: Tensor, mask: Tensor) -> Tensor:
        """The critic's input for an image and a soft mask ``(B, Cb, *S)`` (probabilities or one-hot)."""
        image = self._image(real_a)
        if self.discriminator_input == "product":
            return image * mask  # (B, 1, *S) x (B, Cb, *S) -> (B, Cb, *S)
        return torch.cat([image, mask], dim=1)

    def _judge(self, pair: Tensor, features: bool):
        if features:
            return self.discriminator(pair, return_features=True)
        return self.discriminator(pair), None

    # ---------------------------------------------------------------- named tensors
    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a = batch["real_a"]
        logits = self.segmenter(real_a)
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out["logits_b"] = logits
        out["fake_b"] = torch.softmax(logits, dim=1)
        wants = set(needs)
        if self.discriminator is not None and ({"d_fake", "d_fake_features", "d_real_features"} & wants):
            want_features = bool({"d_fake_features", "d_real_features"} & wants)
            out["d_fake"], fake_features = self._judge(self.pair(real_a, out["fake_b"]), want_features)
            if want_features:
                out["d_fake_features"] = fake_features
                # the real pair does not depend on the segmenter: no gradient needed on this side
                with torch.no_grad():
                    _, out["d_real_features"] = self._judge(self.pair(real_a, batch["real_b"]), True)
        return out

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        fake_b = generated["fake_b"].detach()
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out["fake_b"] = fake_b
        real_pair, fake_pair = self.pair(real_a, real_b), self.pair(real_a, fake_b)
        wants = set(needs)
        want_features = bool({"d_real_features", "d_fake_features_detached"} & wants)
        out["d_real"], real_features = self._judge(real_pair, want_features)
        out["d_fake_detached"], fake_features = self._judge(fake_pair, want_features)
        if want_features:
            out["d_real_features"], out["d_fake_features_detached"] = real_features, fake_features
        # gradient penalties interpolate between the pairs the critic sees
        out["real_pair"], out["fake_pair"] = real_pair, fake_pair
        out["critic"] = self.discriminator
        return out

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        """``(B, Ca, *S)`` -> class probabilities ``(B, Cb, *S)`` (the labels spec takes the argmax)."""
        return torch.softmax(self.segmenter(source), dim=1)
