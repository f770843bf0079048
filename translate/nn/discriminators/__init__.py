"""Discriminators; importing this package registers them in ``DISCRIMINATORS``."""

from .multiscale import MultiScaleDiscriminator
from .patchgan import PatchDiscriminator, n_layers_for, patchgan_receptive_field
from .slices import SlicePatchDiscriminator

__all__ = ["MultiScaleDiscriminator", "PatchDiscriminator", "SlicePatchDiscriminator", "n_layers_for",
           "patchgan_receptive_field"]
