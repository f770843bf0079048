"""A 2D PatchGAN that judges a 3D volume slice by slice (a "2.5D" critic).

The 3D CycleGAN's critics are small 3D PatchGANs (8 channels, 34^3 receptive field) because a 3D conv
costs ``k`` times a 2D one. This critic gives a 3D model the 2D recipes' critic (16 channels, 70 x 70 in
plane) instead: every slice along ``axis`` is one 2D sample, the same weights for all of them, and the
logits come back in the volume's layout.

Layout: input ``(B, C, D, H, W)``; output ``(B, 1, D', h, w)`` with the sliced axis kept in place.
"""

from __future__ import annotations

from typing import List, Tuple

from torch import Tensor, nn

from ..layers import check_spatial_dims
from ..registry import DISCRIMINATORS
from .patchgan import PatchDiscriminator


@DISCRIMINATORS.register("slice_patchgan")
class SlicePatchDiscriminator(nn.Module):
    """A 2D :class:`PatchDiscriminator` applied to every slice of a 3D input along ``axis``.

    Args:
        spatial_dims: must be 3 (a 2D model takes ``patchgan`` itself).
        in_channels: input channels.
        axis: the spatial axis sliced: 0 (D, axial slices of a ``(D, H, W)`` patch), 1 (H) or 2 (W).
        **patchgan_kwargs: ``channels``, ``n_layers``, ``norm``, ``receptive_field`` of the 2D critic.

    Example:
        >>> d = SlicePatchDiscriminator(spatial_dims=3, in_channels=1, channels=8, n_layers=2)
        >>> d(torch.zeros(2, 1, 4, 32, 32)).shape
        torch.Size([2, 1, 4, 6, 6])
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, axis: int = 0, **patchgan_kwargs):
        super().__init__()
        if check_spatial_dims(spatial_dims) != 3:
            raise ValueError(f"slice_patchgan judges 3D inputs slice by slice; got spatial_dims={spatial_dims} "
                             f"(use patchgan for 2D)")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (a spatial axis of (D, H, W)), got {axis!r}")
        self.spatial_dims = 3
        self.axis = int(axis)
        self.critic = PatchDiscriminator(spatial_dims=2, in_channels=in_channels, **patchgan_kwargs)

    @property
    def receptive_field(self) -> int:
        """In-plane side of the patch one logit sees (one voxel across the sliced axis)."""
        return self.critic.receptive_field

    def _to_slices(self, x: Tensor) -> Tuple[Tensor, int]:
        dim = 2 + self.axis
        batch, count = x.shape[0], x.shape[dim]
        moved = x.movedim(dim, 1)                       # (B, S, C, a, b)
        return moved.reshape(batch * count, *moved.shape[2:]), count

    def _to_volume(self, y: Tensor, batch: int, count: int) -> Tensor:
        y = y.reshape(batch, count, *y.shape[1:])       # (B, S, C, a, b)
        return y.movedim(1, 2 + self.axis)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | Tuple[Tensor, List[Tensor]]:
        """``(B, C, D, H, W) -> (B, 1, ...)`` logits, the sliced axis in place; with ``return_features`` also
        every block's output, in the same layout."""
        if x.dim() != 5:
            raise ValueError(f"SlicePatchDiscriminator expects a 5D tensor (B, C, D, H, W), got shape {tuple(x.shape)}")
        batch = x.shape[0]
        slices, count = self._to_slices(x)
        logits, features = self.critic(slices, return_features=True)
        logits = self._to_volume(logits, batch, count)
        if not return_features:
            return logits
        return logits, [self._to_volume(f, batch, count) for f in features]
