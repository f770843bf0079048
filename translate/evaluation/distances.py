"""Distances between sets of images through a feature extractor: Fréchet distance, KID, Inception Score.

Extractors map ``(B, 1, H, W)`` images in network space ([-1, 1]) to ``(B, F)`` features:

* ``segmenter``: the encoder of a U-Net trained on real data (its bottleneck, averaged over the
  plane), the domain-specific extractor seed 003 argues for; it needs no download;
* ``inception``: torchvision's Inception-v3 from a local ImageNet weights file (2048-d pool
  features, and class probabilities for the Inception Score). No file, no number: a clear error
  names where to put it, and random weights are never used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TranslateError

#: torchvision's file name for the ImageNet Inception-v3 weights
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_ENV = "TRANSLATE_INCEPTION_WEIGHTS"


def default_inception_path() -> Path:
    """``$TRANSLATE_INCEPTION_WEIGHTS``, else torch's hub cache file ``~/.cache/torch/hub/checkpoints/...``."""
    if os.environ.get(INCEPTION_ENV):
        return Path(os.environ[INCEPTION_ENV])
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


# ----------------------------------------------------------------------------- distances
def _moments(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"expected features (N >= 2, F), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID).

    .. math::
        d^2 = \lVert\mu_r - \mu_f\rVert^2 + \mathrm{Tr}\bigl(\Sigma_r + \Sigma_f - 2(\Sigma_r\Sigma_f)^{1/2}\bigr)

    :math:`\mathrm{Tr}(\Sigma_r\Sigma_f)^{1/2}` is computed as the sum of the square roots of the
    eigenvalues of the symmetric :math:`\Sigma_r^{1/2}\Sigma_f\Sigma_r^{1/2}` (same spectrum),
    which stays real and exact for the singular covariances of few samples.

    Shape: real ``(N, F)``, fake ``(M, F)``; N, M >= 2.
    """
    mu_r, cov_r = _moments(real)
    mu_f, cov_f = _moments(fake)
    if mu_r.shape != mu_f.shape:
        raise ValueError(f"feature sizes differ: {mu_r.shape[0]} and {mu_f.shape[0]}")
    values, vectors = np.linalg.eigh(cov_r)
    root_r = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_r @ cov_f @ root_r
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = float(np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r) + np.trace(cov_f) - 2 * trace_root)
    return max(distance, 0.0)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int = 200,
                              seed: int = 0) -> Tuple[float, float]:
    r"""KID (Bińkowski et al. 2018): the unbiased MMD² with the kernel :math:`k(x, y) = (x^\top y / F + 1)^3`,
    averaged over ``subsets`` random subsets of ``min(subset_size, N, M)`` samples of each set.

    .. math::
        \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)}\sum_{i\ne j}(k(x_i,x_j) + k(y_i,y_j)) - \frac{2}{m^2}\sum_{i,j}k(x_i,y_j)

    Returns ``(mean, standard deviation over subsets)``; the mean is 0 in expectation for two
    samples of one distribution (it can be negative).
    """
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    m = int(min(subset_size, len(real), len(fake)))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    dim = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(int(subsets)):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities: np.ndarray, splits: int = 10) -> Tuple[float, float]:
    r"""Inception Score (Salimans et al. 2016): :math:`\exp\,\mathbb{E}_x \mathrm{KL}(p(y|x)\,\|\,p(y))`,
    mean and standard deviation over ``splits`` parts."""
    p = np.asarray(probabilities, dtype=np.float64)
    scores = []
    for part in np.array_split(p, max(1, min(int(splits), len(p)))):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- extractors
class SegmenterFeatures(nn.Module):
    """The encoder of a trained MONAI U-Net (``monai_unet`` generator): bottleneck features averaged over the plane."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        from monai.networks.layers import SkipConnection

        self.unet = unet.eval()
        skips = [m for m in unet.modules() if isinstance(m, SkipConnection)]
        if not skips:
            raise TranslateError("segmenter features: the segmenter is not a MONAI U-Net (no skip connections)")
        self.bottom = skips[-1].submodule  # the innermost block: the bottleneck
        self.multiple = int(getattr(unet, "size_multiple", 1))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        captured = {}
        handle = self.bottom.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
        try:
            h, w = images.shape[-2:]
            ph, pw = (-h) % self.multiple, (-w) % self.multiple
            self.unet(F.pad(images, (0, pw, 0, ph), mode="replicate") if ph or pw else images)
        finally:
            handle.remove()
        return captured["x"].flatten(2).mean(2)


class InceptionFeatures(nn.Module):
    """torchvision Inception-v3 with ImageNet weights from ``path``: 2048-d pool features and class probabilities."""

    def __init__(self, path: Optional[Path] = None):
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(path) if path is not None else default_inception_path()
        if not path.is_file():
            raise TranslateError(f"inception features: weights file not found: {path}; put torchvision's ImageNet "
                                 f"Inception-v3 weights ({INCEPTION_FILE}) there or set {INCEPTION_ENV}=FILE "
                                 f"(nothing is downloaded, and random weights never give a reported number)")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as err:
            raise TranslateError(f"inception features: {path} is not torchvision's Inception-v3 state dict "
                                 f"({str(err).strip().splitlines()[0][:120]})") from None
        self.net = net.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        x = ((images[:, :1] + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        captured = {}
        handle = self.net.avgpool.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
        try:
            logits = self.net(x)
        finally:
            handle.remove()
        if isinstance(logits, tuple):
            logits = logits[0]
        return captured["x"].flatten(1), torch.softmax(logits, dim=1)


def extract(extractor: Callable, images: np.ndarray, batch_size: int = 32,
            device: torch.device | str = "cpu") -> Dict[str, np.ndarray]:
    """``images (N, 1, H, W)`` -> ``{"features": (N, F)}`` (+ ``"probabilities"`` for Inception)."""
    features, probabilities = [], []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size], dtype=np.float32)).to(device)
        out = extractor(batch)
        if isinstance(out, tuple):
            features.append(out[0].cpu().numpy())
            probabilities.append(out[1].cpu().numpy())
        else:
            features.append(out.cpu().numpy())
    result = {"features": np.concatenate(features).astype(np.float64)}
    if probabilities:
        result["probabilities"] = np.concatenate(probabilities).astype(np.float64)
    return result
