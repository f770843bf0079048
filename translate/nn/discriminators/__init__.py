"""Discriminators; importing this package registers them in ``DISCRIMINATORS``."""

from .multiscale import MultiScaleDiscriminator
from .patchgan import PatchDiscriminator, n_layers_for, patchgan_receptive_field

__all__ = ["MultiScaleDiscriminator", "PatchDiscriminator", "n_layers_for", "patchgan_receptive_field"]
