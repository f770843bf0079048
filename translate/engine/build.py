"""Recipe -> objects. Reads the validated schema and calls constructors with explicit arguments.

Nothing here knows a particular backbone: networks are built per role from the model's channel
rules and the data domains, datasets and inferers come from their registries.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
from torch import nn

from ..data.domains import Domain, build_intensity
from ..errors import TranslateError
from ..losses import build_objective
from ..losses.base import Objective
from ..models import MODELS, TranslationModel
from ..models.base import Channels
from ..nn.windows import WindowedInput
from ..recipe import Recipe


def build_domains(recipe: Recipe) -> Dict[str, Domain]:
    """``data.domains`` -> ``{"a": Domain, "b": Domain, ...}``."""
    return {name: Domain(name, spec.key, build_intensity(spec.intensity, f"data.domains.{name}.intensity"))
            for name, spec in recipe.data.domains.items()}


def dataset_class(recipe: Recipe):
    from ..data.datasets import DATASETS

    return DATASETS.get(recipe.data.dataset.name)


def served_channels(recipe: Recipe, domains: Mapping[str, Domain]) -> Dict[str, int]:
    cls = dataset_class(recipe)
    return cls.served_channels(domains, **recipe.data.dataset.kwargs())


def model_options(recipe: Recipe) -> Dict[str, Any]:
    return dict(recipe.model.options)


def _init_for(spec, model_cls) -> Tuple[str, float]:
    from ..nn.registry import DISCRIMINATORS, GENERATORS

    registered = spec.name.lower() in GENERATORS or spec.name.lower() in DISCRIMINATORS
    default_kind, default_gain = model_cls.default_init
    kind = spec.init or (default_kind if registered else "none")
    # the model's gain belongs to its own init kind (0.02 is a std for "normal", not a Xavier gain)
    gain = default_gain if kind == default_kind else 1.0
    return kind, spec.init_gain if spec.init_gain is not None else gain


def _load_weights(network: nn.Module, path: Path, role: str) -> None:
    if not Path(path).is_file():
        raise TranslateError(f"model.networks.{role}.weights: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TranslateError(f"model.networks.{role}.weights: cannot read {path} as a state dict ({str(err)[:100]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        detail = str(err).strip().splitlines()[0][:160]
        raise TranslateError(f"model.networks.{role}.weights: {path} does not fit the network ({detail})") from None


def _input_windows(role: str, spec, rule, domains: Mapping[str, Domain]) -> list:
    """``spec.input_windows`` (native units) in the network units of the domain the network reads."""
    if not spec.input_windows:
        return []
    where = f"model.networks.{role}.input_windows"
    if rule.reads is None:
        raise TranslateError(f"{where}: only a network whose input is one domain's images takes intensity windows "
                             f"(CycleGAN g_ab, g_ba, d_a, d_b; UNIT e_a, e_b, d_a, d_b); {role!r} is not one")
    domain = domains[rule.reads]
    try:
        return [(domain.intensity.network_value(lo), domain.intensity.network_value(hi)) for lo, hi in spec.input_windows]
    except ValueError as err:
        raise TranslateError(f"{where}: domain {rule.reads!r}: {err}") from None


def build_model(recipe: Recipe, domains: Mapping[str, Domain] | None = None, *, initialise: bool = True) -> TranslationModel:
    """Every role's network from its registry, initialised (unless loaded from ``weights``), wrapped by the model.

    ``initialise=False`` skips init and weight files: the caller loads a checkpoint over the nets.
    """
    from ..nn import init_weights
    from ..nn.registry import DISCRIMINATORS, GENERATORS

    domains = build_domains(recipe) if domains is None else domains
    model_cls = MODELS.get(recipe.model.name)
    options = model_options(recipe)
    channels = Channels(served=served_channels(recipe, domains),
                        domain={name: d.channels for name, d in domains.items()}, options=options)
    networks: Dict[str, nn.Module] = {}
    for role, spec in recipe.model.networks.items():
        rule = model_cls.roles[role]
        registry = GENERATORS if rule.kind == "generator" else DISCRIMINATORS
        windows = _input_windows(role, spec, rule, domains)
        given = spec.kwargs()
        for key in ("spatial_dims", "in_channels") + (("out_channels",) if rule.outputs is not None else ()):
            if key in given:
                raise TranslateError(f"model.networks.{role}.{key}: set by the toolkit (from model.spatial_dims, the "
                                     f"domains' channels and model.options), not in a network spec; remove it")
        kwargs = dict(spatial_dims=recipe.model.spatial_dims, in_channels=rule.inputs(channels) * (1 + len(windows)),
                      **given)
        if rule.outputs is not None:
            kwargs["out_channels"] = rule.outputs(channels)
        try:
            network = registry.build(spec.name, **kwargs)
        except (TypeError, ValueError, TranslateError) as err:
            raise TranslateError(f"model.networks.{role} ({spec.name}): {err}") from None
        if not isinstance(network, nn.Module):
            raise TranslateError(f"model.networks.{role}: {spec.name!r} did not build a torch.nn.Module")
        if windows:
            network = WindowedInput(network, windows)
        if initialise:
            if spec.weights is not None:
                _load_weights(network, spec.weights, role)
            else:
                kind, gain = _init_for(spec, model_cls)
                if kind != "none":
                    init_weights(network, kind=kind, gain=gain)
        networks[role] = network
    try:
        return model_cls(**networks, **options)
    except (TypeError, ValueError) as err:
        raise TranslateError(f"model ({recipe.model.name}): {err}") from None


def role_problems(recipe: Recipe) -> str | None:
    """One line naming an unknown, missing or misplaced role or option, or None."""
    model_cls = MODELS.get(recipe.model.name)
    roles = model_cls.roles
    unknown = sorted(set(recipe.model.networks) - set(roles))
    if unknown:
        return f"model.networks.{unknown[0]}: model {recipe.model.name!r} has no role {unknown[0]!r}; its roles are {sorted(roles)}"
    missing = [r for r, rule in roles.items() if not rule.optional and r not in recipe.model.networks]
    if missing:
        return f"model.networks: model {recipe.model.name!r} needs a network for role {missing[0]!r}"
    parameters = inspect.signature(model_cls.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    allowed = [n for n in parameters if n != "self" and n not in roles]
    for option in recipe.model.options:
        if option in roles or (option not in allowed and not takes_any):
            return f"model.options.{option}: model {recipe.model.name!r} has no option {option!r}; its options are {allowed}"
    try:
        model_cls.check_options(recipe.model.options)
    except ValueError as err:
        return f"model.options: {err}"
    return None


def build_objectives(recipe: Recipe) -> Tuple[Objective, Objective]:
    generator = build_objective(recipe.objective.generator, where="objective.generator")
    discriminator = build_objective(recipe.objective.discriminator, where="objective.discriminator")
    return generator, discriminator


def domain_state(domains: Mapping[str, Domain]) -> Dict[str, Any]:
    """What checkpoints store so that inference normalises and inverts exactly as training did."""
    return {name: domain.to_dict() for name, domain in domains.items()}


def build_train_dataset(recipe: Recipe, model: TranslationModel | None = None, domains: Mapping[str, Domain] | None = None):
    """The recipe's dataset over ``data.train_split``, padded to the model's size multiple."""
    domains = build_domains(recipe) if domains is None else domains
    multiple = model.size_multiple() if model is not None else 1
    cls = dataset_class(recipe)
    kwargs = dict(root=recipe.data.root, split=recipe.data.train_split, domains=domains, size_multiple=multiple,
                  seed=recipe.trainer.seed, **recipe.data.dataset.kwargs())
    parameters = inspect.signature(cls).parameters
    if "valid_key" in parameters:
        kwargs["valid_key"] = recipe.data.valid_key
    if "fill_outside_valid" in parameters:
        kwargs["fill_outside_valid"] = recipe.data.fill_outside_valid
    if "body_only" in parameters:
        kwargs["body_only"] = recipe.data.body_only
    if "val_block" in parameters:
        kwargs["val_block"] = held_out_fraction(recipe)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TranslateError(f"data.dataset ({recipe.data.dataset.name}): {err}") from None


def held_out_fraction(recipe: Recipe) -> float:
    """``data.val_block`` when it is in force (validating, and the split has no validation subjects), else 0."""
    from ..data.subjects import read_split

    if not (recipe.data.val_block and recipe.trainer.val_every):
        return 0.0
    return 0.0 if read_split(recipe.data.root).get(recipe.data.val_split) else recipe.data.val_block


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
