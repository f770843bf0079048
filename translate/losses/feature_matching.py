"""Feature matching: the generator matches the discriminator's intermediate features on real data."""

from __future__ import annotations

from typing import List, Sequence, Union

import torch
from torch import Tensor

from .base import LOSSES, Tensors, Term

#: one discriminator: a list of feature maps; a multi-scale discriminator: a list of such lists.
Features = Union[Sequence[Tensor], Sequence[Sequence[Tensor]]]


def _as_scales(features: Features, what: str) -> List[List[Tensor]]:
    if isinstance(features, Tensor) or not isinstance(features, (list, tuple)) or len(features) == 0:
        raise TypeError(f"feature_matching_loss: {what} must be a non-empty list of feature maps "
                        f"(or a list of such lists for a multi-scale discriminator)")
    if all(isinstance(f, Tensor) for f in features):
        return [list(features)]
    if all(isinstance(s, (list, tuple)) and len(s) > 0 and all(isinstance(f, Tensor) for f in s) for s in features):
        return [list(s) for s in features]
    raise TypeError(f"feature_matching_loss: {what} mixes tensors and lists, or holds an empty scale")


def feature_matching_loss(fake_features: Features, real_features: Features) -> Tensor:
    r"""Mean L1 distance between discriminator features on fake and on real images
    (Salimans et al. 2016, "Improved techniques for training GANs"; Wang et al. 2018, pix2pixHD).

    .. math::
        \mathcal{L} = \frac{1}{S} \sum_{s=1}^{S} \frac{1}{L_s} \sum_{l=1}^{L_s}
        \operatorname{mean}\,\bigl|D^{(s)}_l(\hat y) - \operatorname{sg}[D^{(s)}_l(y)]\bigr|

    :math:`\operatorname{sg}` stops the gradient: the real features are targets, so only the
    generator (through the fake features) is pushed. Each scale weighs the same, as in pix2pixHD.

    Args:
        fake_features: D's intermediate maps on the generated image, a list per scale.
        real_features: the same on the real image, same structure and shapes.

    Shape:
        - each feature map: :math:`(B, C_l, H_l, W_l)` or :math:`(B, C_l, D_l, H_l, W_l)`.
        - Output: scalar.

    Example:
        >>> f = [torch.rand(1, 8, 4, 4), torch.rand(1, 16, 2, 2)]
        >>> feature_matching_loss(f, f).item()
        0.0
    """
    fake, real = _as_scales(fake_features, "fake_features"), _as_scales(real_features, "real_features")
    if [len(s) for s in fake] != [len(s) for s in real]:
        raise ValueError(f"feature_matching_loss: fake has layers per scale {[len(s) for s in fake]}, "
                         f"real has {[len(s) for s in real]}")
    per_scale = []
    for fake_scale, real_scale in zip(fake, real):
        per_layer = []
        for f, r in zip(fake_scale, real_scale):
            if f.shape != r.shape:
                raise ValueError(f"feature_matching_loss: fake map {tuple(f.shape)} != real map {tuple(r.shape)}")
            per_layer.append((f - r.detach()).abs().mean())
        per_scale.append(torch.stack(per_layer).mean())
    return torch.stack(per_scale).mean()


@LOSSES.register("feature_matching")
class FeatureMatching(Term):
    """L1 between discriminator features on fake and real images.

    See :func:`feature_matching_loss`.

    Example:
        >>> f = [torch.rand(1, 8, 4, 4)]
        >>> FeatureMatching().compute({"d_fake_features": f, "d_real_features": f}).item()
        0.0
    """

    name = "feature_matching"
    requirement = "aligned pair; a discriminator exposing intermediate features"
    formula = "mean_scales mean_layers mean|D_l(fake) - sg(D_l(real))|"
    reference = "Salimans et al. 2016 NeurIPS; Wang et al. 2018 CVPR (pix2pixHD)"

    def __init__(self, fake: str = "d_fake_features", real: str = "d_real_features"):
        super().__init__()
        self.fake, self.real = fake, real

    def needs(self) -> tuple:
        return (self.fake, self.real)

    def compute(self, tensors: Tensors) -> Tensor:
        return feature_matching_loss(tensors[self.fake], tensors[self.real])

    def extra_repr(self) -> str:
        return f"fake={self.fake!r}, real={self.real!r}"
