"""The pix2pixHD multi-scale discriminator (Wang et al., "High-Resolution Image Synthesis and
Semantic Manipulation with Conditional GANs", CVPR 2018), in 2D and 3D.

Layout: ``(B, C, H, W)`` for ``spatial_dims=2``, ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

from typing import List, Tuple

from torch import Tensor, nn

from ..layers import avg_downsample, check_spatial_dims
from ..registry import DISCRIMINATORS
from .patchgan import PatchDiscriminator


@DISCRIMINATORS.register("multiscale")
class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` independent PatchGANs; scale ``k`` sees the input average-pooled ``k`` times,
    so the coarse critics judge global structure with the same (cheap) architecture.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (2 for a conditional single-channel pair).
        num_scales: number of critics, finest first.
        **patchgan_kwargs: ``channels``, ``n_layers``, ``norm``, ``receptive_field`` of each
            :class:`PatchDiscriminator`.

    Example:
        >>> d = MultiScaleDiscriminator(spatial_dims=2, num_scales=2, channels=8)
        >>> [o.shape[-1] for o in d(torch.zeros(1, 2, 64, 64))]
        [6, 2]
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 2, num_scales: int = 2, **patchgan_kwargs):
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(spatial_dims=spatial_dims, in_channels=in_channels, **patchgan_kwargs)
            for _ in range(num_scales))
        self.downsample = avg_downsample(spatial_dims)

    def forward(self, x: Tensor, return_features: bool = False
                ) -> List[Tensor] | Tuple[List[Tensor], List[List[Tensor]]]:
        """``(B, C, *S)`` -> list of logit maps, finest first; with ``return_features`` also a list
        (one per scale) of feature lists."""
        logits, features = [], []
        for index, discriminator in enumerate(self.discriminators):
            if index > 0:
                x = self.downsample(x)
            out, feats = discriminator(x, return_features=True)
            logits.append(out)
            features.append(feats)
        return (logits, features) if return_features else logits
