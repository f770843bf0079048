"""Backbones: which networks, which named tensors. Registered in :data:`MODELS`."""

from .base import MODELS, TranslationModel
from . import pix2pix  # noqa: F401  (registers "pix2pix")
from . import cyclegan  # noqa: F401  (registers "cyclegan")

__all__ = ["MODELS", "TranslationModel"]
