"""Supervised segmentation: a network's logits against one-hot label maps (the ``labels`` domain)."""

from __future__ import annotations

from torch import Tensor

from .base import LOSSES, Tensors, Term


@LOSSES.register("segmentation")
class Segmentation(Term):
    r"""Dice + cross-entropy of predicted label logits against a one-hot label map (MONAI ``DiceCELoss``).

    .. math::
        \mathcal{L} = \lambda_{dice}\,\bigl(1 - \mathrm{Dice}(\mathrm{softmax}(p), y)\bigr) + \lambda_{ce}\,\mathrm{CE}(p, y)

    Trains a segmenter as a backbone without discriminator whose output domain is a label map
    (``intensity: labels``): ``fake_b`` holds the logits, ``real_b`` the one-hot map; inference
    maps the argmax back to the label ids.

    Args:
        dice_weight, ce_weight: :math:`\lambda_{dice}`, :math:`\lambda_{ce}`.
        include_background: count the background channel in the Dice.
        pred, target: tensor names of the logits and of the one-hot map.

    Shape:
        - pred, target: :math:`(B, L, H, W)` or :math:`(B, L, D, H, W)`, the same shape.
        - Output: scalar.

    Example:
        >>> y = torch.nn.functional.one_hot(torch.randint(0, 3, (1, 8, 8)), 3).permute(0, 3, 1, 2).float()
        >>> bool(Segmentation().compute({"fake_b": 20 * y, "real_b": y}) < 0.01)
        True
    """

    name = "segmentation"
    requirement = "label maps of the output domain (one-hot, intensity 'labels')"
    formula = "dice_weight * (1 - Dice(softmax(fake_b), real_b)) + ce_weight * CE(fake_b, real_b)"
    reference = "Milletari et al. 2016 (V-Net Dice loss); MONAI DiceCELoss"

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, include_background: bool = False,
                 pred: str = "fake_b", target: str = "real_b"):
        super().__init__()
        from monai.losses import DiceCELoss

        self.loss = DiceCELoss(softmax=True, include_background=bool(include_background),
                               lambda_dice=float(dice_weight), lambda_ce=float(ce_weight))
        self.pred, self.target = pred, target

    def needs(self) -> tuple:
        return (self.pred, self.target)

    def compute(self, tensors: Tensors) -> Tensor:
        pred, target = tensors[self.pred], tensors[self.target]
        if pred.shape != target.shape:
            raise ValueError(f"segmentation loss: logits {tuple(pred.shape)} and one-hot target {tuple(target.shape)} "
                             f"must have the same shape (one channel per label)")
        return self.loss(pred, target)

    def extra_repr(self) -> str:
        return f"pred={self.pred!r}, target={self.target!r}"
