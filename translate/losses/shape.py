"""Shape consistency: a segmentor must find the source image's anatomy in the translated image."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import TranslateError
from ..registry import import_dotted
from .base import LOSSES, Tensors, Term


def build_segmentor(segmentor: str, *, spatial_dims: int, in_channels: int, num_classes: int,
                    segmentor_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """``"unet"`` (MONAI UNet, 16-32-64-128 channels) or a dotted path to an ``nn.Module`` class.

    A user class receives ``segmentor_kwargs`` when given, else
    ``(spatial_dims=, in_channels=, out_channels=num_classes)``.
    """
    if segmentor == "unet":
        from monai.networks.nets import UNet

        kwargs = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                      channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)
        return UNet(**{**kwargs, **dict(segmentor_kwargs or {})})
    cls = import_dotted(segmentor, "segmentor")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TranslateError(f"segmentor {segmentor!r} is not an nn.Module class")
    kwargs = dict(segmentor_kwargs) if segmentor_kwargs is not None else dict(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes)
    return cls(**kwargs)


def load_segmentor(network: nn.Module, checkpoint: str | Path) -> None:
    """Load a state dict, or ``{"segmentor": state_dict}``, saved with ``torch.save``."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise TranslateError(f"segmentor checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("segmentor"), Mapping):
        state = state["segmentor"]
    if not isinstance(state, Mapping):
        raise TranslateError(f"{path}: expected a segmentor state dict, got {type(state).__name__}")
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0:2]
        raise TranslateError(f"{path}: does not fit the segmentor: {' '.join(first)}") from None


@LOSSES.register("shape")
class Shape(Term):
    r"""Segmentation loss of a segmentor applied to the translated image against the source labels.

    The translated image must keep the source anatomy (Zhang, Yang & Zheng 2018, "Translating and
    segmenting multimodal medical volumes with cycle- and shape-consistency GAN", CVPR):

    .. math::
        \mathcal{L} = \lambda_{dice}\,\mathrm{Dice}(S(G(x)), y) + \lambda_{ce}\,\mathrm{CE}(S(G(x)), y)

    with the MONAI ``DiceCELoss`` (softmax, one-hot labels). Two modes:

    * **frozen** (default when ``checkpoint`` is given): a segmentor trained beforehand on the target
      domain; ``requires_grad=False`` and eval mode, gradients still reach the generator.
    * **joint**: the segmentor trains with the generator; :meth:`trainable_parameters` hands its
      parameters to the generator's optimiser. ``extra_pairs`` such as ``[("real_b", "labels_b")]``
      let it learn from real labelled images too. The loss is the mean over all pairs.

    Args:
        num_classes: segmentation classes including background.
        segmentor: ``"unet"`` or a dotted path to an ``nn.Module`` class (see :func:`build_segmentor`).
        spatial_dims: 2 or 3.
        in_channels: channels of the translated image.
        checkpoint: segmentor weights (a state dict or ``{"segmentor": state_dict}``).
        frozen: keep the segmentor fixed; default ``True`` with a checkpoint, else ``False``.
        dice_weight, ce_weight: :math:`\lambda_{dice}`, :math:`\lambda_{ce}`.
        pred: tensor name of the translated image; labels: tensor name of the source labels.
        extra_pairs: more ``(image name, labels name)`` pairs to segment.
        segmentor_kwargs: constructor arguments of the segmentor (override the UNet defaults).

    Shape:
        - pred: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`; spatial sizes multiples of 8, at least 16, for the UNet.
        - labels: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`, integers in ``[0, num_classes)``.

    Example:
        >>> term = Shape(num_classes=3)
        >>> t = {"fake_b": torch.rand(1, 1, 16, 16), "labels": torch.randint(0, 3, (1, 1, 16, 16))}
        >>> bool(term.compute(t) > 0)
        True
    """

    name = "shape"
    requirement = "pixel-wise labels of the source image"
    formula = "dice_weight * Dice(S(fake_b), labels) + ce_weight * CE(S(fake_b), labels)"
    reference = "Zhang et al. 2018 CVPR (cycle- and shape-consistency GAN)"

    def __init__(self, num_classes: int, segmentor: str = "unet", spatial_dims: int = 2, in_channels: int = 1,
                 checkpoint: str | None = None, frozen: bool | None = None, dice_weight: float = 1.0,
                 ce_weight: float = 1.0, pred: str = "fake_b", labels: str = "labels",
                 extra_pairs: Sequence[Sequence[str]] = (), segmentor_kwargs: Dict[str, Any] | None = None):
        super().__init__()
        from monai.losses import DiceCELoss

        if int(num_classes) < 2:
            raise ValueError(f"num_classes: expected >= 2 (background included), got {num_classes}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims}")
        frozen = checkpoint is not None if frozen is None else bool(frozen)
        if frozen and checkpoint is None:
            raise ValueError("frozen=True needs a checkpoint: a frozen random segmentor teaches nothing")
        pairs = [(str(p[0]), str(p[1])) for p in extra_pairs]
        if any(len(p) != 2 for p in extra_pairs):
            raise ValueError(f"extra_pairs: expected (image name, labels name) pairs, got {extra_pairs!r}")
        self.segmentor = build_segmentor(segmentor, spatial_dims=spatial_dims, in_channels=in_channels,
                                         num_classes=int(num_classes), segmentor_kwargs=segmentor_kwargs)
        if checkpoint is not None:
            load_segmentor(self.segmentor, checkpoint)
        self.frozen, self.num_classes = frozen, int(num_classes)
        if frozen:
            self.segmentor.requires_grad_(False)
            self.segmentor.eval()
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=float(dice_weight),
                                  lambda_ce=float(ce_weight))
        self.pairs: List[Tuple[str, str]] = [(pred, labels)] + pairs

    def train(self, mode: bool = True) -> "Shape":
        super().train(mode)
        if self.frozen:  # a pretrained segmentor keeps its normalisation statistics
            self.segmentor.eval()
        return self

    def trainable_parameters(self) -> List[nn.Parameter]:
        """Parameters the trainer adds to the generator's optimiser (none when frozen)."""
        return [] if self.frozen else list(self.segmentor.parameters())

    def needs(self) -> tuple:
        return tuple(dict.fromkeys(name for pair in self.pairs for name in pair))

    def compute(self, tensors: Tensors) -> Tensor:
        losses = []
        for image_name, labels_name in self.pairs:
            image, labels = tensors[image_name], tensors[labels_name]
            if labels.dim() != image.dim() or labels.shape[1] != 1 or labels.shape[2:] != image.shape[2:]:
                raise ValueError(f"shape loss: labels {labels_name!r} {tuple(labels.shape)} must be (B, 1, ...) "
                                 f"matching image {image_name!r} {tuple(image.shape)}")
            losses.append(self.dice_ce(self.segmentor(image), labels.long()))
        return torch.stack(losses).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, frozen={self.frozen}, pairs={self.pairs}"
