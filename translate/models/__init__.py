"""Backbones: which networks, which named tensors. Registered in :data:`MODELS`."""

from .base import MODELS, TranslationModel
from . import pix2pix  # noqa: F401  (registers "pix2pix")
from . import segmentation  # noqa: F401  (registers "adversarial_segmentation")
from . import cyclegan  # noqa: F401  (registers "cyclegan")
from . import unit  # noqa: F401  (registers "unit")

__all__ = ["MODELS", "TranslationModel"]
from . import spade  # noqa: E402,F401  (registers "spade")
from . import joint_gan  # noqa: E402,F401  (registers "joint_gan")
