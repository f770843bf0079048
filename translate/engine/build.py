"""Recipe -> objects. Reads the validated schema and calls constructors with explicit arguments."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from torch import nn

from ..errors import TranslateError
from ..losses import build_objective
from ..losses.base import Objective
from ..models import MODELS, TranslationModel
from ..recipe import Recipe


def source_channels(recipe: Recipe) -> int:
    """Input channels of the generator: the slice plus ``context_slices`` neighbours each side."""
    return 1 + 2 * recipe.data.context_slices


def build_model(recipe: Recipe) -> TranslationModel:
    """Networks from the registries, initialised as in pix2pix, wrapped by the backbone."""
    from ..nn import build_discriminator, build_generator, init_weights

    spec = recipe.model
    in_channels, out_channels = source_channels(recipe), 1
    try:
        generator = build_generator(spec.generator.name, spatial_dims=spec.spatial_dims,
                                    in_channels=in_channels, out_channels=out_channels,
                                    **spec.generator.kwargs())
        discriminator = None
        if spec.discriminator is not None:
            discriminator = build_discriminator(spec.discriminator.name, spatial_dims=spec.spatial_dims,
                                                in_channels=in_channels + out_channels,
                                                **spec.discriminator.kwargs())
    except (TypeError, ValueError) as err:
        raise TranslateError(f"model: {err}") from None
    init_weights(generator, gain=spec.init_gain)
    if discriminator is not None:
        init_weights(discriminator, gain=spec.init_gain)
    model_cls = MODELS.get(spec.name)
    return model_cls(generator=generator, discriminator=discriminator)


def build_objectives(recipe: Recipe) -> Tuple[Objective, Objective]:
    generator = build_objective(recipe.objective.generator, where="objective.generator")
    discriminator = build_objective(recipe.objective.discriminator, where="objective.discriminator")
    return generator, discriminator


def build_intensity(recipe: Recipe):
    """The source normaliser and the target HU window, as stored in checkpoints."""
    from ..data.intensity import HUWindow, MRNormalizer

    data = recipe.data
    window = HUWindow(lower=data.hu_window[0], upper=data.hu_window[1])
    normaliser = MRNormalizer(method=data.source_norm, lower=data.source_percentiles[0],
                              upper=data.source_percentiles[1])
    return normaliser, window


def intensity_state(recipe: Recipe) -> Dict[str, Any]:
    normaliser, window = build_intensity(recipe)
    return {"source": normaliser.to_dict(), "target": window.to_dict()}


def build_train_dataset(recipe: Recipe):
    from ..data.datasets import PairedSliceDataset, subjects_from_folder

    data = recipe.data
    normaliser, window = build_intensity(recipe)
    subjects = subjects_from_folder(data.root, data.train_split, keys=(data.source, data.target))
    return PairedSliceDataset(subjects, source_key=data.source, target_key=data.target,
                              hu_window=window, mr_norm=normaliser, context_slices=data.context_slices,
                              axis=data.axis, augment=data.augment, seed=recipe.trainer.seed)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
