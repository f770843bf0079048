"""Networks for image-to-image translation, 2D and 3D by ``spatial_dims``.

Build by name: ``build_generator("unet", spatial_dims=3, in_channels=1, out_channels=1)``. To add a
network, decorate its class with ``@GENERATORS.register("name")`` (or ``DISCRIMINATORS``) in a module
imported below; the tests loop over every registered entry, so it is tested the day it is added.

Layout: ``(B, C, H, W)`` for ``spatial_dims=2``, ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from . import discriminators, generators, layers  # noqa: F401  (imports register the networks)
from .discriminators import (MultiScaleDiscriminator, PatchDiscriminator, SlicePatchDiscriminator,
                             patchgan_receptive_field)
from .generators import ResNetGenerator, UNetGenerator
from .registry import DISCRIMINATORS, GENERATORS

INIT_KINDS = ("normal", "xavier", "kaiming", "orthogonal")


def build_generator(name: str, **kwargs: Any) -> nn.Module:
    """A registered generator (or a dotted path to one) built from keyword arguments."""
    return GENERATORS.build(name, **kwargs)


def build_discriminator(name: str, **kwargs: Any) -> nn.Module:
    """A registered discriminator (or a dotted path to one) built from keyword arguments."""
    return DISCRIMINATORS.build(name, **kwargs)


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise in place as pix2pix/CycleGAN do, and return ``module``.

    Conv and linear weights: ``N(0, gain)`` for ``"normal"`` (or Xavier/Kaiming/orthogonal with
    ``gain``); their biases 0. Norm layers with an affine part: weight ``N(1, gain)``, bias 0 (so
    they start near identity). Layers of other kinds are left alone.
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"unknown init kind {kind!r}; expected one of {', '.join(map(repr, INIT_KINDS))}")

    def initialise(layer: nn.Module) -> None:
        weight = getattr(layer, "weight", None)
        bias = getattr(layer, "bias", None)
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
        elif isinstance(layer, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if weight is not None:
                nn.init.normal_(weight, 1.0, gain)
        else:
            return
        if bias is not None:
            nn.init.zeros_(bias)

    module.apply(initialise)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "DISCRIMINATORS", "GENERATORS", "MultiScaleDiscriminator", "PatchDiscriminator", "ResNetGenerator",
    "SlicePatchDiscriminator", "UNetGenerator", "build_discriminator", "build_generator", "count_parameters",
    "init_weights", "patchgan_receptive_field",
]
