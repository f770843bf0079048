"""Perceptual and style losses on frozen ImageNet VGG features; 3D volumes are compared 2.5D.

The VGG is never downloaded: ``weights="imagenet"`` reads torchvision's checkpoint from the torch
hub cache and fails with the exact file and folder when it is absent, so a run on an offline
cluster never trains silently against random features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import TranslateError
from .base import LOSSES, Tensors, Term, check_pair

_DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_checkpoint_path(arch: str = "vgg16") -> Tuple[Path, str]:
    """``(file, url)``: where ``weights="imagenet"`` looks (``torch.hub.get_dir()/checkpoints/<name>``) and its source."""
    from torchvision.models import VGG16_Weights, VGG19_Weights

    url = {"vgg16": VGG16_Weights, "vgg19": VGG19_Weights}[arch].IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def _load_state(arch: str, weights: str | Path) -> Dict[str, Tensor]:
    if str(weights) == "imagenet":
        path, url = imagenet_checkpoint_path(arch)
        if not path.is_file():
            raise TranslateError(
                f"ImageNet {arch} weights not found: put {path.name} (from {url}) at {path}, "
                f"or pass weights=<path to a {arch} state dict>; nothing is downloaded")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise TranslateError(f"VGG weights file not found: {path}")
    try:  # mmap avoids reading the 400 MB classifier we never use; legacy files cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TranslateError(f"{path}: expected a {arch} state dict, got {type(state).__name__}")
    return state


class VGGFeatures(nn.Module):
    r"""Frozen VGG feature extractor returning the named activations (``relu1_2``, ``conv3_3``, ...).

    Inputs in :math:`[-1, 1]` are mapped to :math:`[0, 1]`, grayscale is repeated to RGB, then
    ImageNet mean/std normalisation is applied. The network is truncated after the deepest
    requested layer and always stays in eval mode with ``requires_grad=False``.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        layers: names ``conv{block}_{i}``, ``relu{block}_{i}`` or ``pool{block}``.
        weights: ``"imagenet"`` (torchvision's checkpoint, read from the torch hub cache, never
            downloaded), a path to a state dict in torchvision's key layout (``features.N.weight``),
            or ``None`` for random weights (tests only: random features are not perceptual).

    Shape:
        - Input: :math:`(B, C, H, W)` with :math:`C \in \{1, 3\}`.
        - Output: dict ``layer -> (B, C_l, H_l, W_l)`` in the order of ``layers``.

    Example:
        >>> vgg = VGGFeatures(layers=("relu1_2",), weights=None)
        >>> vgg(torch.rand(1, 1, 16, 16) * 2 - 1)["relu1_2"].shape
        torch.Size([1, 64, 16, 16])
    """

    def __init__(self, arch: str = "vgg16", layers: Sequence[str] = _DEFAULT_LAYERS,
                 weights: str | Path | None = "imagenet"):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        if arch not in ("vgg16", "vgg19"):
            raise ValueError(f"arch: expected 'vgg16' or 'vgg19', got {arch!r}")
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        cfg = cfgs["D" if arch == "vgg16" else "E"]
        names = _layer_names(cfg)
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"layers: unknown {unknown or 'empty'}; valid for {arch}: {names}")
        depth = max(names.index(name) for name in layers) + 1
        state = _load_state(arch, weights) if weights is not None else None
        # build only the blocks needed: initialising all 13-16 convs costs seconds on a CPU
        sizes = [1 if v == "M" else 2 for v in cfg]
        n_entries = next(i + 1 for i in range(len(cfg)) if sum(sizes[: i + 1]) >= depth)
        features = make_layers(cfg[:n_entries])[:depth]
        for module in features:
            if isinstance(module, nn.ReLU):  # in-place ReLU would overwrite captured conv outputs
                module.inplace = False
        if state is not None:
            prefix = "features." if any(k.startswith("features.") for k in state) else ""
            wanted = {k: state.get(prefix + k) for k in features.state_dict()}
            missing = [prefix + k for k, v in wanted.items() if v is None]
            if missing:
                raise TranslateError(f"VGG weights {weights}: missing keys {missing[:4]} for {arch}")
            features.load_state_dict(wanted)
        self.arch, self.layers, self.features = arch, layers, features
        self._index = {names.index(name): name for name in layers}
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # frozen statistics-free net; eval keeps it deterministic

    def preprocess(self, x: Tensor) -> Tensor:
        """``[-1, 1]`` grayscale or RGB ``(B, C, H, W)`` -> ImageNet-normalised RGB."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGGFeatures: expected (B, 1 or 3, H, W), got {tuple(x.shape)}")
        x = (x + 1) / 2
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        h, out = self.preprocess(x), {}
        for i, module in enumerate(self.features):
            h = module(h)
            if i in self._index:
                out[self._index[i]] = h
        return {name: out[name] for name in self.layers}


def _layer_names(cfg: Sequence) -> list:
    """Names of the modules ``make_layers(cfg)`` builds: conv, relu per channel entry; pool per "M"."""
    names, block, conv = [], 1, 0
    for entry in cfg:
        if entry == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return names


# ----------------------------------------------------------------------------- functions
def _planes(x: Tensor, max_slices: int | None) -> list:
    """The 2D slices of a ``(B, C, D, H, W)`` volume along D, H and W, each plane as one batch."""
    planes = []
    for axis in (2, 3, 4):
        n = x.shape[axis]
        if max_slices is not None and n > max_slices:
            index = torch.linspace(0, n - 1, max_slices, device=x.device).round().long()
            v = x.index_select(axis, index)
        else:
            v = x
        v = v.movedim(axis, 1)  # (B, S, C, ., .)
        planes.append(v.reshape(-1, *v.shape[2:]))
    return planes


def _weights(features: VGGFeatures, layer_weights: Sequence[float] | None) -> list:
    if layer_weights is None:
        return [1.0 / len(features.layers)] * len(features.layers)
    if len(layer_weights) != len(features.layers):
        raise ValueError(f"layer_weights: {len(layer_weights)} given for {len(features.layers)} layers")
    return [float(w) for w in layer_weights]


def _distance(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    if kind == "l1":
        return lambda a, b: (a - b).abs().mean()
    if kind == "l2":
        return lambda a, b: (a - b).pow(2).mean()
    raise ValueError(f"kind: expected 'l1' or 'l2', got {kind!r}")


def _vgg_loss(pred: Tensor, target: Tensor, features: VGGFeatures, layer_weights: Sequence[float] | None,
              kind: str, max_slices: int | None, transform: Callable[[Tensor], Tensor]) -> Tensor:
    weights, distance = _weights(features, layer_weights), _distance(kind)

    def loss_2d(p: Tensor, t: Tensor) -> Tensor:
        fp, ft = features(p), features(t)
        return sum(w * distance(transform(fp[n]), transform(ft[n])) for w, n in zip(weights, features.layers))

    if pred.dim() == 4:
        return loss_2d(pred, target)
    # 2.5D: slices of one plane form one batch, so its loss is already the mean over its slices
    losses = [loss_2d(p, t) for p, t in zip(_planes(pred, max_slices), _planes(target, max_slices))]
    return torch.stack(losses).mean()


def perceptual_loss(pred: Tensor, target: Tensor, features: VGGFeatures,
                    layer_weights: Sequence[float] | None = None, kind: str = "l1",
                    max_slices_per_plane: int | None = None) -> Tensor:
    r"""Distance between VGG activations (Johnson et al. 2016, "Perceptual losses for real-time
    style transfer and super-resolution"; pix2pixHD's VGG loss).

    .. math::
        \mathcal{L} = \sum_l w_l \,\operatorname{mean}\,|\phi_l(\hat y) - \phi_l(y)|^p,
        \qquad p = 1 \text{ (l1) or } 2 \text{ (l2)}

    A 3D volume is compared 2.5D: the mean over the three orthogonal planes of the mean 2D loss
    over that plane's slices.

    Args:
        pred: generated image in :math:`[-1, 1]`.
        target: reference image in :math:`[-1, 1]`.
        features: the :class:`VGGFeatures` extractor.
        layer_weights: :math:`w_l` per layer; default :math:`1/L` (the mean over layers).
        kind: ``"l1"`` or ``"l2"``.
        max_slices_per_plane: 3D only; evenly spaced slices kept per plane (``None``: all).

    Shape:
        - pred, target: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, :math:`C \in \{1, 3\}`.
        - Output: scalar.

    Example:
        >>> vgg = VGGFeatures(layers=("relu1_2",), weights=None)
        >>> x = torch.rand(1, 1, 16, 16)
        >>> perceptual_loss(x, x, vgg).item()
        0.0
    """
    check_pair(pred, target, "perceptual_loss")
    return _vgg_loss(pred, target, features, layer_weights, kind, max_slices_per_plane, lambda f: f)


def gram_matrix(x: Tensor) -> Tensor:
    r""":math:`G = F F^\top / (C H W)` of ``(B, C, H, W)`` features, shape ``(B, C, C)``."""
    b, c = x.shape[:2]
    f = x.reshape(b, c, -1)
    return f @ f.transpose(1, 2) / f[0].numel()


def style_loss(pred: Tensor, target: Tensor, features: VGGFeatures,
               layer_weights: Sequence[float] | None = None, kind: str = "l2",
               max_slices_per_plane: int | None = None) -> Tensor:
    r"""Distance between Gram matrices of VGG activations (Gatys et al. 2016, "Image style transfer
    using convolutional neural networks"; Johnson et al. 2016).

    .. math::
        G_l(x) = \frac{\phi_l(x)\,\phi_l(x)^\top}{C_l H_l W_l}, \qquad
        \mathcal{L} = \sum_l w_l \,\operatorname{mean}\,|G_l(\hat y) - G_l(y)|^p

    Args and Shape as :func:`perceptual_loss` (default ``kind="l2"``, the squared Frobenius
    distance averaged over the :math:`C_l^2` entries).

    Example:
        >>> vgg = VGGFeatures(layers=("relu1_2",), weights=None)
        >>> x = torch.rand(1, 1, 16, 16)
        >>> style_loss(x, x, vgg).item()
        0.0
    """
    check_pair(pred, target, "style_loss")
    return _vgg_loss(pred, target, features, layer_weights, kind, max_slices_per_plane, gram_matrix)


# ----------------------------------------------------------------------------- terms
class _VGGTerm(Term):
    """Holds the VGG outside the module tree: frozen, never in ``state_dict``, still moved by ``.to()``."""

    _function: Callable[..., Tensor]

    def __init__(self, *, arch: str, layers: Sequence[str], weights: str | None, layer_weights: Sequence[float] | None,
                 kind: str, max_slices_per_plane: int | None, pred: str, target: str):
        super().__init__()
        _distance(kind)  # fail at recipe build time, not at the first step
        if max_slices_per_plane is not None and int(max_slices_per_plane) < 1:
            raise ValueError(f"max_slices_per_plane: expected >= 1 or None, got {max_slices_per_plane}")
        # object.__setattr__ bypasses nn.Module registration, so the VGG stays out of state_dict
        object.__setattr__(self, "vgg", VGGFeatures(arch=arch, layers=layers, weights=weights))
        _weights(self.vgg, layer_weights)
        self.layer_weights, self.kind, self.max_slices = layer_weights, kind, max_slices_per_plane
        self.pred, self.target = pred, target

    def _apply(self, fn: Callable, recurse: bool = True) -> "_VGGTerm":
        self.vgg._apply(fn)
        return super()._apply(fn, recurse)

    def needs(self) -> tuple:
        return (self.pred, self.target)

    def compute(self, tensors: Tensors) -> Tensor:
        pred, target = tensors[self.pred], tensors[self.target]
        if self.vgg.mean.device != pred.device:  # a term used without .to(device)
            self.vgg.to(pred.device)
        return type(self)._function(pred, target, self.vgg, layer_weights=self.layer_weights, kind=self.kind,
                                    max_slices_per_plane=self.max_slices)

    def extra_repr(self) -> str:
        return f"{self.vgg.arch}, layers={self.vgg.layers}, kind={self.kind!r}, {self.pred} vs {self.target}"


@LOSSES.register("perceptual")
class Perceptual(_VGGTerm):
    """VGG perceptual loss between a generated and a reference image.

    See :func:`perceptual_loss`; 3D volumes are compared 2.5D.

    Example:
        >>> term = Perceptual(layers=("relu1_2",), weights=None)   # weights=None: tests only
        >>> x = torch.rand(1, 1, 16, 16)
        >>> term.compute({"fake_b": x, "real_b": x}).item()
        0.0
    """

    name = "perceptual"
    requirement = "aligned pair; ImageNet VGG weights"
    formula = "sum_l w_l mean|vgg_l(fake_b) - vgg_l(real_b)|"
    reference = "Johnson et al. 2016 ECCV (perceptual losses)"
    _function = staticmethod(perceptual_loss)

    def __init__(self, arch: str = "vgg16", layers: Sequence[str] = _DEFAULT_LAYERS, weights: str | None = "imagenet",
                 layer_weights: Sequence[float] | None = None, kind: str = "l1",
                 max_slices_per_plane: int | None = None, pred: str = "fake_b", target: str = "real_b"):
        super().__init__(arch=arch, layers=layers, weights=weights, layer_weights=layer_weights, kind=kind,
                         max_slices_per_plane=max_slices_per_plane, pred=pred, target=target)


@LOSSES.register("style")
class Style(_VGGTerm):
    """Gram-matrix style loss between a generated and a reference image.

    See :func:`style_loss`; 3D volumes are compared 2.5D.
    """

    name = "style"
    requirement = "reference image of the target style; ImageNet VGG weights"
    formula = "sum_l w_l mean(Gram(vgg_l(fake_b)) - Gram(vgg_l(real_b)))^2, Gram = F F^T / (C H W)"
    reference = "Gatys et al. 2016 CVPR; Johnson et al. 2016 ECCV"
    _function = staticmethod(style_loss)

    def __init__(self, arch: str = "vgg16", layers: Sequence[str] = _DEFAULT_LAYERS, weights: str | None = "imagenet",
                 layer_weights: Sequence[float] | None = None, kind: str = "l2",
                 max_slices_per_plane: int | None = None, pred: str = "fake_b", target: str = "real_b"):
        super().__init__(arch=arch, layers=layers, weights=weights, layer_weights=layer_weights, kind=kind,
                         max_slices_per_plane=max_slices_per_plane, pred=pred, target=target)
