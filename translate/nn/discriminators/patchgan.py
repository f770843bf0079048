"""The pix2pix PatchGAN discriminator (Isola et al., CVPR 2017), in 2D and 3D.

Each output logit judges one receptive-field-sized patch of the input, so the critic models
high-frequency structure while L1 handles the low frequencies. Written here rather than wrapping
``monai.networks.nets.PatchDiscriminator``: MONAI's doubles channels without the reference's 8x cap,
has no ``"none"`` norm and always returns every feature map, not the ``return_features`` switch.

Layout: ``(B, C, H, W)`` for ``spatial_dims=2``, ``(B, C, D, H, W)`` for ``spatial_dims=3``.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from torch import Tensor, nn

from ..layers import check_norm, check_spatial_dims, conv, conv_bias, norm_layer
from ..registry import DISCRIMINATORS

KERNEL_SIZE, PADDING = 4, 1
#: channel growth stops at 8x the first layer, as in the reference implementation
MAX_WIDTH_MULTIPLIER = 8


def patchgan_strides(n_layers: int) -> List[int]:
    """Strides of every conv: ``n_layers`` stride-2, then a stride-1 conv and the stride-1 head."""
    return [2] * n_layers + [1, 1]


def patchgan_receptive_field(n_layers: int) -> int:
    """Side of the input patch one output logit sees, from the real kernel and strides.

    ``r = 1 + sum_l (k - 1) * prod_{j<l} s_j``; n_layers 1..5 give 16, 34, 70, 142, 286.
    """
    field, jump = 1, 1
    for stride in patchgan_strides(n_layers):
        field += (KERNEL_SIZE - 1) * jump
        jump *= stride
    return field


#: receptive field -> n_layers, for the ``receptive_field=`` shortcut
RECEPTIVE_FIELDS: Dict[int, int] = {patchgan_receptive_field(n): n for n in range(1, 6)}


def n_layers_for(receptive_field: int) -> int:
    if receptive_field not in RECEPTIVE_FIELDS:
        raise ValueError(f"receptive_field {receptive_field!r} is not available; "
                         f"expected one of {sorted(RECEPTIVE_FIELDS)}")
    return RECEPTIVE_FIELDS[receptive_field]


@DISCRIMINATORS.register("patchgan")
class PatchDiscriminator(nn.Module):
    """Fully convolutional critic returning a map of patch logits (no sigmoid: pair with an
    LSGAN or BCE-with-logits loss).

    Layers: 4x4 stride-2 conv + LeakyReLU(0.2) (no norm); ``n_layers - 1`` x [4x4 stride-2 conv +
    norm + LeakyReLU]; 4x4 stride-1 conv + norm + LeakyReLU; 4x4 stride-1 conv to 1 channel.
    Widths ``channels * min(2**i, 8)``. For a conditional GAN the caller concatenates
    ``cat(real_a, b)`` on channels, so ``in_channels = C_a + C_b``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (2 for a conditional single-channel pair).
        channels: width of the first conv.
        n_layers: stride-2 convs; 3 gives the 70x70 PatchGAN.
        norm: ``"batch"`` (pix2pix), ``"instance"`` or ``"none"``.
        receptive_field: when given, picks ``n_layers`` (16, 34, 70, 142 or 286) and overrides it.

    Example:
        >>> d = PatchDiscriminator(spatial_dims=2, in_channels=2, receptive_field=70)
        >>> d(torch.zeros(1, 2, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 2, channels: int = 64, n_layers: int = 3,
                 norm: str = "batch", receptive_field: int | None = None):
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        check_norm(norm)
        if receptive_field is not None:
            n_layers = n_layers_for(receptive_field)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_layers = n_layers
        bias = conv_bias(norm)
        blocks: List[nn.Module] = []
        previous = in_channels
        for index, stride in enumerate(patchgan_strides(n_layers)[:-1]):
            width = channels * min(2 ** index, MAX_WIDTH_MULTIPLIER)
            # the first conv sees raw intensities: normalising them would discard contrast
            layers: List[nn.Module] = [conv(spatial_dims, previous, width, KERNEL_SIZE, stride=stride,
                                            padding=PADDING, bias=bias or index == 0)]
            if index > 0:
                layers.append(norm_layer(norm, spatial_dims, width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.head = conv(spatial_dims, previous, 1, KERNEL_SIZE, stride=1, padding=PADDING, bias=True)

    @property
    def receptive_field(self) -> int:
        return patchgan_receptive_field(self.n_layers)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | Tuple[Tensor, List[Tensor]]:
        """``(B, in_channels, *S) -> (B, 1, *S')`` logits; with ``return_features`` also the
        output of every block before the head (for pix2pixHD feature matching)."""
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(f"PatchDiscriminator(spatial_dims={self.spatial_dims}) expects a "
                             f"{self.spatial_dims + 2}D tensor, got shape {tuple(x.shape)}")
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        logits = self.head(x)
        return (logits, features) if return_features else logits
