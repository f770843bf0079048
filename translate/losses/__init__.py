"""The loss catalogue: every term reads named tensors and composes with ``+`` and ``*``.

>>> from translate.losses import Adversarial, Pixel, Gradient
>>> objective = Adversarial("lsgan") + 100 * Pixel("l1") + 10 * Gradient()
>>> objective.part_names
['adversarial', 'pixel', 'gradient']
"""

from .base import (LOSSES, Constant, LinearDecay, LinearWarmup, MissingTensorError, Objective, Schedule, Term,
                   build_objective, build_weight)
from .adversarial import Adversarial
from .pixel import Cycle, Geometry, Identity, Pixel, SelfRegularization
from .gradient import EdgeWeighted, Gradient
from .structure import Structure
from .kspace import KSpace, cartesian_mask
from .perceptual import Perceptual, Style
from .shape import Shape
from .feature_matching import FeatureMatching
from .kl import KL
from .segmentation import DiceCE, SegANL1
from .window import WindowPixel
from .gradient_correlation import GradientCorrelation, NormalizedGradientFields
from .mind import MIND
from .silhouette import BoneVoid, Silhouette, SignalVoid
from .r1 import R1  # noqa: E402

__all__ = [
    "LOSSES", "Term", "Objective", "Schedule", "Constant", "LinearWarmup", "LinearDecay", "MissingTensorError",
    "build_objective", "build_weight", "Adversarial", "Pixel", "Cycle", "Identity", "Geometry", "SelfRegularization",
    "Gradient", "EdgeWeighted", "Structure", "KSpace", "cartesian_mask", "Perceptual", "Style", "Shape",
    "FeatureMatching", "KL",
    "DiceCE", "SegANL1",
    "WindowPixel",
    "GradientCorrelation",
    "NormalizedGradientFields",
    "MIND",
    "Silhouette",
    "BoneVoid",
    "SignalVoid",
]
