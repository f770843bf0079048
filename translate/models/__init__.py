"""Backbones: which networks, which named tensors. Registered in :data:`MODELS`."""

from .base import MODELS, TranslationModel
from . import pix2pix  # noqa: F401  (registers "pix2pix")
from . import segmentation  # noqa: F401  (registers "adversarial_segmentation")

__all__ = ["MODELS", "TranslationModel"]
