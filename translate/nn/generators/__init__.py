"""Generators; importing this package registers them in ``GENERATORS``."""

from .resnet import ResNetGenerator, ResidualBlock
from .unet import UNetGenerator
from .monai_unet import MonaiUNet

__all__ = ["MonaiUNet", "ResNetGenerator", "ResidualBlock", "UNetGenerator"]
from .spade import SPADEGenerator, SPADEStyleEncoder  # noqa: E402,F401  (registers "spade")
