"""What every backbone provides to the trainer: named tensors for each side's objective.

Models compute, the trainer optimises: no ``backward()`` or ``step()`` here. A backbone turns a
batch into the named tensors that loss terms read (``fake_b``, ``d_fake``, ``rec_a`` ...), and
says which parameters belong to which optimiser.
"""

from __future__ import annotations

from typing import Any, Collection, Dict, Iterable, Mapping

from torch import Tensor, nn

from ..registry import Registry

MODELS = Registry("model")


class TranslationModel(nn.Module):
    """Base class of the backbones.

    To add one: subclass, register with ``@MODELS.register("name")``, build its networks in
    ``__init__`` from explicit arguments, and implement the three methods below.
    """

    #: keys this model needs in each training batch
    batch_keys: tuple = ("real_a", "real_b")

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        """Forward pass for the generator update; ``needs`` lets costly extras be skipped."""
        raise NotImplementedError

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        """Forward pass for the discriminator update, reusing the generator's outputs (detached)."""
        raise NotImplementedError

    def parameter_groups(self) -> Dict[str, Iterable[nn.Parameter]]:
        """``{"generator": ..., "discriminator": ...}``: one optimiser per group."""
        raise NotImplementedError

    def discriminators(self) -> Dict[str, nn.Module]:
        """Networks that discriminator-side terms may act on (e.g. WGAN weight clipping)."""
        return {}

    def translate(self, source: Tensor) -> Tensor:
        """Inference: source images ``(B, C, H, W)`` -> translated images ``(B, 1, H, W)``."""
        raise NotImplementedError
