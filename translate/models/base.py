"""What every backbone provides: the networks it needs by role, and named tensors for each objective.

Models compute, the trainer optimises: no ``backward()`` or ``step()`` here. A backbone declares
its roles (``generator``, ``discriminator``; CycleGAN: ``g_ab``, ``g_ba``, ``d_a``, ``d_b`` ...) with
the channel rule of each, takes the built networks as keyword arguments named by role (plus its
own options), turns a batch into the named tensors that loss terms read (``fake_b``, ``d_fake``,
``rec_a`` ...) and translates in the directions it knows (``a2b``, ``b2a``).

To add a backbone: one file in this package (or anywhere, referenced by dotted path) with a
subclass registered by ``@MODELS.register("name")``, and a recipe. Nothing else changes: the
build, the trainer, the inferer and the checkpoints work from the roles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, Iterable, Mapping, Optional, Tuple

from torch import Tensor, nn

from ..registry import Registry

MODELS = Registry("model")


@dataclass(frozen=True)
class Channels:
    """What a role's channel rule sees: ``served`` (per domain, as the dataset serves it, e.g. with
    2.5D context), ``domain`` (per domain, one image), and the model's ``options``."""

    served: Mapping[str, int]
    domain: Mapping[str, int]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Role:
    """One network a model needs.

    Args:
        kind: which registry builds it: ``generator`` or ``discriminator``.
        inputs / outputs: channel rules ``Channels -> int`` (``outputs`` None: the network has no
            ``out_channels`` argument, e.g. a PatchGAN).
        group: the optimiser it belongs to (``generator`` or ``discriminator``).
        optional: the recipe may leave it out (e.g. Pix2pix trained with L1 only).
        reads: for a network whose input is one domain's images alone (CycleGAN's ``d_b`` and
            ``g_ba`` read CT), that domain: the recipe may then show it intensity windows of the
            domain as extra input channels (``input_windows``).
    """

    kind: str
    inputs: Callable[[Channels], int]
    outputs: Optional[Callable[[Channels], int]] = None
    group: str = "generator"
    optional: bool = False
    reads: Optional[str] = None


class TranslationModel(nn.Module):
    """Base class of the backbones.

    Subclasses set :attr:`roles`, :attr:`directions`, :attr:`default_init`, take their networks as
    keyword arguments named by role and store each as an attribute of that name, and implement
    :meth:`generator_tensors`, :meth:`discriminator_tensors` and :meth:`translate`.
    """

    #: role name -> :class:`Role`
    roles: Dict[str, Role] = {}
    #: direction -> (input domain, output domain)
    directions: Dict[str, Tuple[str, str]] = {"a2b": ("a", "b")}
    #: (init kind, gain) applied to registered networks the recipe does not load from weights
    default_init: Tuple[str, float] = ("normal", 0.02)
    #: dataset families this model trains from ("paired", "unpaired")
    pairing: str = "paired"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ValueError naming a bad option; the default accepts whatever ``__init__`` accepts."""

    def networks(self) -> Dict[str, nn.Module]:
        """Built networks by role (absent optional roles left out)."""
        return {role: getattr(self, role) for role in self.roles if getattr(self, role, None) is not None}

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        """Forward pass for the generator update; ``needs`` lets costly extras be skipped."""
        raise NotImplementedError

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        """Forward pass for the discriminator update, reusing the generator's outputs (detached)."""
        raise NotImplementedError

    def parameter_groups(self) -> Dict[str, Iterable[nn.Parameter]]:
        """One optimiser per group, from the roles' ``group`` (shared parameters counted once)."""
        groups: Dict[str, list] = {}
        seen: set = set()
        for role, net in self.networks().items():
            params = [p for p in net.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.setdefault(self.roles[role].group, []).extend(params)
        return groups

    def discriminators(self) -> Dict[str, nn.Module]:
        """Networks that discriminator-side terms act on (e.g. WGAN weight clipping)."""
        return {role: net for role, net in self.networks().items() if self.roles[role].group == "discriminator"}

    def size_multiple(self, direction: str | None = None) -> int:
        """Least common multiple of the generators' size multiples: inputs must be padded to it."""
        multiple = 1
        for role, net in self.networks().items():
            if self.roles[role].kind == "generator":
                multiple = math.lcm(multiple, int(getattr(net, "size_multiple", 1)))
        return multiple

    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        """Inference: ``(B, C_in, *S)`` in network space -> ``(B, C_out, *S)``."""
        raise NotImplementedError
