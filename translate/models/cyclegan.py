"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators, two critics and a cycle.

``g_ab: A -> B`` and ``g_ba: B -> A`` are trained so that ``d_b`` cannot tell ``g_ab(a)`` from real
B images (and ``d_a`` likewise), while translating there and back returns the input (cycle
consistency); the discriminators judge a history of past translations (:class:`ImagePool`). The
objective is the recipe's, from the loss catalogue: the reference CycleGAN is::

    generator:     adversarial(lsgan, fake=d_fake_b) + adversarial(lsgan, fake=d_fake_a)
                   + 10 * cycle + 5 * identity
    discriminator: 0.5 * adversarial(side=discriminator, real=d_real_b, fake=d_fake_b_detached)
                   + 0.5 * adversarial(side=discriminator, real=d_real_a, fake=d_fake_a_detached)

Options from the catalogue: ``gradient_correlation`` between ``real_a`` and ``fake_b`` (Hiasa et al.
2018), ``shape`` with a segmentor on the source labels ``labels_a`` (Zhang et al. 2018), ``cycle``
with ``mask: body_mask_a`` (mask-weighted cycle loss), ``geometry`` (flip consistency, Fu et al. 2019).
"""

from __future__ import annotations

from typing import Any, Collection, Dict, List, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import TranslateError
from .base import MODELS, Channels, Role, TranslationModel


class ImagePool(nn.Module):
    """A history of generated images (Shrivastava et al. 2017), as CycleGAN's discriminators see them.

    :meth:`query` takes a batch of fresh translations. While fewer than ``size`` images are stored,
    each fresh image is stored and returned. Once full, each image is, with probability 1/2,
    returned as it is, or else swapped for a stored image drawn uniformly (the stored one is
    returned and the fresh one takes its place): about half current, half past. Random numbers come
    from torch's global generator, which the trainer saves and restores, and the stored images are
    this module's extra state, so they are in every checkpoint and ``--resume`` continues exactly.
    ``size=0`` returns the batch unchanged.
    """

    def __init__(self, size: int = 50):
        super().__init__()
        if int(size) != size or size < 0:
            raise ValueError(f"pool_size: expected an integer >= 0, got {size!r}")
        self.size = int(size)
        self.images: List[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, batch: Tensor) -> Tensor:
        """``(B, C, *S)`` fresh images -> ``(B, C, *S)``: the mix described above (detached)."""
        batch = batch.detach()
        if self.size == 0:
            return batch
        out = []
        for image in batch:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                out.append(image)
            else:
                index = int(torch.randint(len(self.images), ()))
                past = self.images[index]
                self.images[index] = image.clone()
                out.append(past.to(device=image.device, dtype=image.dtype))
        return torch.stack(out)

    def get_extra_state(self) -> Dict[str, Any]:
        stored = torch.stack(self.images) if self.images else torch.zeros(0)
        return {"size": self.size, "images": stored}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        images = state.get("images") if isinstance(state, Mapping) else None
        if not isinstance(images, Tensor):
            raise TranslateError("image pool state: expected {'size', 'images'} from a CycleGAN checkpoint")
        self.images = [image.clone() for image in images] if images.dim() > 1 else []

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _single(domain: str):
    """Channel rule of a generator input: one image of ``domain`` (a cycle feeds outputs back in)."""

    def rule(c: Channels) -> int:
        if c.served[domain] != c.domain[domain]:
            raise TranslateError(f"data.dataset: the model translates back and forth, so each input is one image; "
                                 f"domain {domain!r} is served with {c.served[domain]} channels but has "
                                 f"{c.domain[domain]} (set context_slices: 0)")
        return c.domain[domain]

    return rule


@MODELS.register("cyclegan")
class CycleGAN(TranslationModel):
    """Unpaired two-way translation.

    Roles: ``g_ab`` ``(B, Ca, *S) -> (B, Cb, *S)``, ``g_ba`` the reverse (any registered generator:
    ``resnet`` with 6 or 9 blocks as in the paper, or ``unet``); ``d_a``, ``d_b`` critics of one
    domain's images (PatchGAN). Without discriminators it trains on cycle (and identity) terms alone.

    Named tensors for the generator objective: ``real_a``, ``real_b``, ``fake_b = g_ab(real_a)``,
    ``fake_a = g_ba(real_b)``, ``rec_a = g_ba(fake_b)``, ``rec_b = g_ab(fake_a)``, and when a term
    reads them ``idt_a = g_ba(real_a)``, ``idt_b = g_ab(real_b)``, ``d_fake_b = d_b(fake_b)``,
    ``d_fake_a = d_a(fake_a)``, ``geo_fake_b``, ``geo_fake_a`` (``geometry_flips``); every tensor of the
    batch (``body_mask_a``, ``labels_a`` ...) too.
    For the discriminator objective: ``d_real_a``, ``d_real_b``, ``d_fake_a_detached``,
    ``d_fake_b_detached`` (on images from the pools), ``critic_a``, ``critic_b`` (the networks, for
    gradient penalties) and ``pool_fake_a``, ``pool_fake_b`` (the images judged).

    Args:
        pool_size: images kept per discriminator's :class:`ImagePool` (50 in the paper; 0: none).
        cycle_noise: standard deviation (network units) of Gaussian noise added to ``fake_b`` and
            ``fake_a`` before they are translated back for ``rec_a`` / ``rec_b``, in training only
            (0: none). A generator can pass the cycle by hiding its source in low-amplitude texture of
            the translation (Chu et al. 2017, "CycleGAN, a master of steganography"); noise on that
            path makes hidden detail unrecoverable, so the cycle must be carried by visible anatomy
            (Bashkirova et al. 2019). The translations the critics and the other terms see are unchanged.
        geometry_flips: spatial axes (0 = first spatial axis) of the flips behind ``geo_fake_b`` and
            ``geo_fake_a``, the tensors of the ``geometry`` term (GcGAN, Fu et al. 2019): each step draws
            one non-empty subset ``T`` of these axes and computes ``geo_fake_b = T(g_ab(T(real_a)))``
            (a flip is its own inverse), which a flip-equivariant generator makes equal to ``fake_b``;
            ``None`` (default): every spatial axis. Computed only when a term reads them.
    """

    roles = {
        "g_ab": Role("generator", inputs=_single("a"), outputs=lambda c: c.domain["b"], reads="a"),
        "g_ba": Role("generator", inputs=_single("b"), outputs=lambda c: c.domain["a"], reads="b"),
        "d_a": Role("discriminator", group="discriminator", optional=True, inputs=lambda c: c.domain["a"],
                     reads="a"),
        "d_b": Role("discriminator", group="discriminator", optional=True, inputs=lambda c: c.domain["b"],
                     reads="b"),
    }
    directions = {"a2b": ("a", "b"), "b2a": ("b", "a")}
    pairing = "unpaired"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        size = options.get("pool_size", 50)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"pool_size: expected an integer >= 0, got {size!r}")
        noise = options.get("cycle_noise", 0.0)
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
            raise ValueError(f"cycle_noise: expected a number in [0, 1) (network units), got {noise!r}")
        axes = options.get("geometry_flips")
        if axes is not None and (not isinstance(axes, (list, tuple)) or not axes
                                 or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= 2 for a in axes)
                                 or len(set(axes)) != len(axes)):
            raise ValueError(f"geometry_flips: expected distinct spatial axes in 0..2 (e.g. [0, 1]), got {axes!r}")

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module, d_a: nn.Module | None = None, d_b: nn.Module | None = None,
                 pool_size: int = 50, cycle_noise: float = 0.0, geometry_flips: Sequence[int] | None = None):
        super().__init__()
        if (d_a is None) != (d_b is None):
            raise ValueError("networks d_a and d_b: give both discriminators or neither")
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.cycle_noise = float(cycle_noise)
        self.geometry_flips = None if geometry_flips is None else tuple(int(a) for a in geometry_flips)

    def _cycle_input(self, fake: Tensor) -> Tensor:
        if self.cycle_noise and self.training:
            return fake + self.cycle_noise * torch.randn_like(fake)
        return fake

    def _geometry_dims(self, image: Tensor) -> List[int]:
        """The tensor dims of one random non-empty subset of the geometry flips (torch's global generator)."""
        spatial = image.dim() - 2
        axes = self.geometry_flips if self.geometry_flips is not None else tuple(range(spatial))
        if max(axes) >= spatial:
            raise TranslateError(f"model.options.geometry_flips: {list(axes)}; the images have {spatial} spatial axes "
                                 f"(0..{spatial - 1})")
        subset = int(torch.randint(1, 2 ** len(axes), ()))
        return [2 + axis for bit, axis in enumerate(axes) if subset >> bit & 1]

    def generator_tensors(self, batch: Mapping[str, Tensor], needs: Collection[str] = ()) -> Dict[str, Any]:
        real_a, real_b = batch["real_a"], batch["real_b"]
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        out["fake_b"] = fake_b = self.g_ab(real_a)
        out["fake_a"] = fake_a = self.g_ba(real_b)
        out["rec_a"] = self.g_ba(self._cycle_input(fake_b))
        out["rec_b"] = self.g_ab(self._cycle_input(fake_a))
        needs = set(needs)
        if "idt_a" in needs:
            out["idt_a"] = self.g_ba(real_a)
        if "idt_b" in needs:
            out["idt_b"] = self.g_ab(real_b)
        if "geo_fake_b" in needs:
            dims = self._geometry_dims(real_a)
            out["geo_fake_b"] = torch.flip(self.g_ab(torch.flip(real_a, dims)), dims)
        if "geo_fake_a" in needs:
            dims = self._geometry_dims(real_b)
            out["geo_fake_a"] = torch.flip(self.g_ba(torch.flip(real_b, dims)), dims)
        if self.d_b is not None and "d_fake_b" in needs:
            out["d_fake_b"] = self.d_b(fake_b)
        if self.d_a is not None and "d_fake_a" in needs:
            out["d_fake_a"] = self.d_a(fake_a)
        return out

    def discriminator_tensors(self, batch: Mapping[str, Tensor], generated: Mapping[str, Any],
                              needs: Collection[str] = ()) -> Dict[str, Any]:
        out: Dict[str, Any] = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
        if self.d_a is None:
            return out
        for name, critic, pool in (("a", self.d_a, self.pool_a), ("b", self.d_b, self.pool_b)):
            judged = pool.query(generated[f"fake_{name}"])
            out[f"pool_fake_{name}"] = judged
            out[f"d_real_{name}"] = critic(batch[f"real_{name}"])
            out[f"d_fake_{name}_detached"] = critic(judged)
            out[f"critic_{name}"] = critic
        return out

    @torch.no_grad()
    def translate(self, source: Tensor, direction: str = "a2b") -> Tensor:
        return self.g_ab(source) if direction == "a2b" else self.g_ba(source)
