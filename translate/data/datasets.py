"""The dataset registry: a recipe picks one by name (``data.dataset.name``) plus keyword arguments.

=====================  ==  =======================================================================
name                   D   what it serves
=====================  ==  =======================================================================
``paired_slices``      2   registered pairs, slice by slice; 2.5D with ``context_slices``
``unpaired_slices``    2   domain A and domain B slices drawn independently (separate subject lists)
``paired_patches``     3   random 3D patches of registered pairs (torchio uniform / label sampler)
``unpaired_patches``   3   domain A and domain B 3D patches drawn independently (separate subject lists)
=====================  ==  =======================================================================

A dataset class takes ``root``, ``split``, ``domains``, ``size_multiple``, ``seed`` and its own
options; it says its ``spatial_dims`` and which channels it serves per domain
(``served_channels``), and serves items ``index`` or ``(index, draw)``, where ``draw`` numbers the
sample in the run so augmentation differs every time and replays on resume.
"""

from __future__ import annotations

from ..registry import Registry

DATASETS = Registry("dataset")

from .subjects import IMAGE_SUFFIXES, subjects_from_folder  # noqa: E402
from . import slices, patches  # noqa: E402,F401  (register the datasets)
from . import unpaired  # noqa: E402,F401  (registers unpaired_patches)
from .slices import PairedSlices, UnpairedSlices, context_stack  # noqa: E402
from .patches import PairedPatches  # noqa: E402

__all__ = ["DATASETS", "IMAGE_SUFFIXES", "PairedPatches", "PairedSlices", "UnpairedSlices", "context_stack",
           "subjects_from_folder"]
