"""Generators; importing this package registers them in ``GENERATORS``."""

from .resnet import ResNetGenerator, ResidualBlock
from .unet import UNetGenerator
from .monai_unet import MonaiUNet
from .residual import ResidualGenerator

__all__ = ["MonaiUNet", "ResNetGenerator", "ResidualBlock", "ResidualGenerator", "UNetGenerator"]
from .spade import SPADEGenerator, SPADEStyleEncoder  # noqa: E402,F401  (registers "spade")
