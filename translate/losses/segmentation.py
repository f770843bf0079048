"""Segmentation terms: Dice + cross-entropy on a segmenter's logits, and SegAN's multi-scale L1.

Compose them like any other term::

    objective = DiceCE() + 0.1 * Adversarial("lsgan")          # Luc et al. 2016
    objective = DiceCE() + SegANL1()                            # Xue et al. 2018 (generator side)
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from .base import LOSSES, Tensors, Term
from .feature_matching import _as_scales


@LOSSES.register("dice_ce")
class DiceCE(Term):
    r"""Dice plus cross-entropy between a segmenter's logits and one-hot (or integer) labels.

    MONAI's ``DiceCELoss`` with a softmax over the channels:

    .. math::
        \mathcal{L} = \lambda_{dice}\Big(1 - \frac{1}{C}\sum_c \frac{2\sum p_c y_c + \epsilon}
        {\sum p_c + \sum y_c + \epsilon}\Big) + \lambda_{ce}\,\mathrm{CE}(z, y), \qquad p = \mathrm{softmax}(z)

    Args:
        pred: tensor name of the logits ``(B, C, *S)`` (``logits_b`` from ``adversarial_segmentation``).
        target: tensor name of the labels: one-hot ``(B, C, *S)`` (the ``labels`` intensity spec) or
            integer ids ``(B, 1, *S)`` in ``[0, C)``.
        include_background: count the background channel in the Dice.
        dice_weight, ce_weight: :math:`\lambda_{dice}`, :math:`\lambda_{ce}` (one may be 0).
        squared_pred: squared terms in the Dice denominator (V-Net).
        batch: one Dice over the whole batch rather than per sample (steadier for classes absent
            from some slices).

    Example:
        >>> y = torch.zeros(1, 3, 4, 4); y[:, 0] = 1
        >>> float(DiceCE().compute({"logits_b": 20 * y, "real_b": y})) < 0.01
        True
    """

    name = "dice_ce"
    requirement = "pixel-wise labels (a labels domain)"
    formula = "dice_weight * (1 - Dice(softmax(logits), y)) + ce_weight * CE(logits, y)"
    reference = "Milletari et al. 2016 (V-Net Dice); MONAI DiceCELoss"

    def __init__(self, pred: str = "logits_b", target: str = "real_b", include_background: bool = True,
                 dice_weight: float = 1.0, ce_weight: float = 1.0, squared_pred: bool = False, batch: bool = True):
        super().__init__()
        from monai.losses import DiceCELoss

        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight == 0:
            raise ValueError(f"dice_weight and ce_weight: expected >= 0 and not both 0, got {dice_weight}, {ce_weight}")
        self.pred, self.target = pred, target
        self.loss = DiceCELoss(include_background=bool(include_background), softmax=True,
                               squared_pred=bool(squared_pred), batch=bool(batch),
                               lambda_dice=float(dice_weight), lambda_ce=float(ce_weight))

    def needs(self) -> Tuple[str, ...]:
        return (self.pred, self.target)

    def compute(self, tensors: Tensors) -> Tensor:
        logits, target = tensors[self.pred], tensors[self.target]
        if target.shape[1] == 1 and logits.shape[1] > 1:  # integer ids -> one-hot
            target = nn.functional.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        if target.shape != logits.shape:
            raise ValueError(f"dice_ce: logits {tuple(logits.shape)} and labels {tuple(target.shape)} differ; "
                             f"expected one-hot labels with the logits' channels")
        return self.loss(logits, target)

    def extra_repr(self) -> str:
        return f"pred={self.pred!r}, target={self.target!r}"


def multiscale_l1(fake_features, real_features) -> Tensor:
    r"""SegAN's multi-scale L1: the mean absolute difference of the critic's features on the
    masked image with the predicted mask and with the true mask, averaged over layers (and scales).

    .. math::
        \ell_{mae} = \frac{1}{L}\sum_{l=1}^{L} \mathrm{mean}\,\bigl|f_l(x \circ S(x)) - f_l(x \circ y)\bigr|

    Unlike :func:`~translate.losses.feature_matching.feature_matching_loss` no side is detached:
    the critic maximises this distance while the segmenter minimises it (Xue et al. 2018).
    """
    fake, real = _as_scales(fake_features, "fake_features"), _as_scales(real_features, "real_features")
    if [len(s) for s in fake] != [len(s) for s in real]:
        raise ValueError(f"multiscale_l1: fake has layers per scale {[len(s) for s in fake]}, real {[len(s) for s in real]}")
    per_scale = [torch.stack([(f - r).abs().mean() for f, r in zip(fs, rs)]).mean() for fs, rs in zip(fake, real)]
    return torch.stack(per_scale).mean()


@LOSSES.register("segan_l1")
class SegANL1(Term):
    r"""SegAN's adversarial multi-scale L1 on critic features (Xue et al. 2018), either side.

    Generator side: :math:`\ell_{mae}` of the critic's features on (image x predicted mask) and
    (image x true mask) is minimised by the segmenter. Discriminator side: the critic *maximises*
    it (the term returns :math:`-\ell_{mae}`), with its weights clipped to ``[-clip_value, clip_value]``
    after each step as in the paper. See :func:`multiscale_l1`.

    Args:
        side: ``generator`` or ``discriminator``.
        clip_value: discriminator side: weight clipping bound (SegAN: 0.05); None: no clipping.

    Example:
        >>> f = [torch.ones(1, 4, 2, 2)]
        >>> SegANL1().compute({"d_fake_features": f, "d_real_features": [torch.zeros(1, 4, 2, 2)]}).item()
        1.0
    """

    name = "segan_l1"
    requirement = "a labels domain; a critic exposing its features (adversarial_segmentation)"
    formula = "G: mean_l mean|f_l(x*S(x)) - f_l(x*y)|; D: minus the same"
    reference = "Xue et al. 2018 Neuroinformatics (SegAN)"

    def __init__(self, side: str = "generator", clip_value: float | None = None):
        super().__init__()
        if side not in ("generator", "discriminator"):
            raise ValueError(f"unknown side {side!r}; expected 'generator' or 'discriminator'")
        if clip_value is not None and (side != "discriminator" or clip_value <= 0):
            raise ValueError(f"clip_value: a bound > 0 on the discriminator side only, got {clip_value!r} on {side}")
        self.side, self.clip_value = side, clip_value

    def needs(self) -> Tuple[str, ...]:
        if self.side == "generator":
            return ("d_fake_features", "d_real_features")
        return ("d_fake_features_detached", "d_real_features")

    def compute(self, tensors: Tensors) -> Tensor:
        if self.side == "generator":
            return multiscale_l1(tensors["d_fake_features"], tensors["d_real_features"])
        return -multiscale_l1(tensors["d_fake_features_detached"], tensors["d_real_features"])

    @torch.no_grad()
    def after_optimizer_step(self, network: nn.Module) -> None:
        if self.clip_value is not None:
            for parameter in network.parameters():
                parameter.clamp_(-self.clip_value, self.clip_value)
