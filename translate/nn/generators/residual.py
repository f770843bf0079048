"""Residual learning: a generator that predicts the correction to its input, not the output image.

For denoising (RED-CNN, Chen et al. 2017; DnCNN, Zhang et al. 2017) the target differs from the
input by the noise only, which is small and structureless next to the anatomy; a network that
predicts ``output - input`` starts as the identity and spends its capacity on the noise.
Layout: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor, nn

from ..registry import GENERATORS

DEFAULT_BACKBONE = {"name": "unet", "channels": [32, 64, 128, 256], "dropout": 0.0, "norm": "instance"}


@GENERATORS.register("residual")
class ResidualGenerator(nn.Module):
    """``out = centre(x) + scale * backbone(x)``: any registered generator wrapped to predict a residual.

    ``centre(x)`` is the input's own slice: with 2.5D input of ``2k + 1`` stacked slices
    (``in_channels = (2k + 1) * out_channels``) it is the middle one. The input and output must
    be in the same network space (e.g. both ``ct_hu`` with one window), which a denoising recipe
    has by construction.

    Args:
        spatial_dims, in_channels, out_channels: as every generator.
        backbone: ``{name: <registered generator>, ...its keyword arguments}``.
        scale: multiplies the backbone's output (its ``tanh`` head bounds the residual to ``scale``).

    Example:
        >>> import torch
        >>> net = ResidualGenerator(in_channels=3, backbone={"name": "unet", "channels": [4, 8]})
        >>> net(torch.zeros(1, 3, 16, 16)).shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 backbone: Optional[Mapping[str, Any]] = None, scale: float = 1.0):
        super().__init__()
        spec = dict(DEFAULT_BACKBONE if backbone is None else backbone)
        if "name" not in spec:
            raise ValueError(f"backbone: expected {{name: <generator>, ...}}, got {dict(spec)}")
        name = str(spec.pop("name"))
        if name.lower() == "residual":
            raise ValueError("backbone: a residual generator cannot wrap another residual generator")
        stacked = in_channels // out_channels if out_channels else 0
        if out_channels < 1 or in_channels % out_channels or stacked % 2 == 0:
            raise ValueError(f"in_channels {in_channels} must be an odd multiple of out_channels {out_channels} "
                             f"(the input slice and its context), so the output adds to the middle one")
        if not float(scale) > 0:
            raise ValueError(f"scale: expected > 0, got {scale}")
        k = (stacked - 1) // 2
        self.first, self.last = k * out_channels, (k + 1) * out_channels
        self.scale = float(scale)
        self.backbone = GENERATORS.build(name, spatial_dims=spatial_dims, in_channels=in_channels,
                                         out_channels=out_channels, **spec)

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.backbone, "size_multiple", 1))

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.first:self.last] + self.scale * self.backbone(x)
