"""Generators; importing this package registers them in ``GENERATORS``."""

from .resnet import ResNetGenerator, ResidualBlock
from .unet import UNetGenerator

__all__ = ["ResNetGenerator", "ResidualBlock", "UNetGenerator"]
