"""Intensity handling with exact inverses: the CT HU window and per-volume MR normalisation.

Networks see intensities in [-1, 1]; both transforms are stored in checkpoints (``to_dict``) so
inference applies the same mapping and maps synthetic images back to HU or MR units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
import torch
from scipy import ndimage

ZSCORE_CLIP = 5.0


def _as_float(x):
    """numpy / torch input as a floating array; floats keep their precision, integers become float32."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _clip(x, lower: float, upper: float):
    if isinstance(x, torch.Tensor):
        return x.clamp(lower, upper)
    return np.clip(x, lower, upper)


@dataclass(frozen=True)
class HUWindow:
    """Linear map of a CT window ``[lower, upper]`` HU to [-1, 1], clipping outside it.

    .. math::
        x = 2\\,\\frac{\\mathrm{clip}(h, l, u) - l}{u - l} - 1, \\qquad
        h = l + \\frac{(\\mathrm{clip}(x, -1, 1) + 1)(u - l)}{2}

    Works elementwise on numpy arrays and torch tensors of any layout, e.g. ``(B, 1, H, W)``.

    Example:
        >>> w = HUWindow(lower=-1000, upper=1000)
        >>> float(w.forward(np.array(0.0))), float(w.inverse(np.array(1.0)))
        (0.0, 1000.0)
    """

    lower: float = -1024.0
    upper: float = 2000.0

    def __post_init__(self):
        if not float(self.upper) > float(self.lower):
            raise ValueError(f"HUWindow: upper ({self.upper}) must be greater than lower ({self.lower})")

    def forward(self, hu):
        """HU -> [-1, 1]."""
        hu = _clip(_as_float(hu), self.lower, self.upper)
        return (hu - self.lower) * (2.0 / (self.upper - self.lower)) - 1.0

    def inverse(self, x):
        """[-1, 1] -> HU; the exact inverse of :meth:`forward` inside the window."""
        x = _clip(_as_float(x), -1.0, 1.0)
        return (x + 1.0) * ((self.upper - self.lower) / 2.0) + self.lower

    def to_dict(self) -> dict:
        return {"lower": float(self.lower), "upper": float(self.upper)}

    @classmethod
    def from_dict(cls, state: dict) -> "HUWindow":
        return cls(lower=float(state["lower"]), upper=float(state["upper"]))


class MRNormMethod(str, Enum):
    PERCENTILE = "percentile"
    ZSCORE = "zscore"


def body_mask_from_mr(mr: np.ndarray) -> np.ndarray:
    """Body mask of an MR volume ``(z, y, x)``: threshold, largest component, holes filled.

    The threshold is half the Otsu threshold of the lightly smoothed volume, low enough to keep
    dark tissue (fluid) that touches brighter tissue; dark structures enclosed by the body (bone,
    bowel gas) are then filled slice by slice, since they may open onto the first or last slice.

    Returns:
        bool array of ``mr``'s shape.
    """
    from skimage.filters import threshold_otsu

    mr = np.asarray(mr, dtype=np.float32)
    smooth = ndimage.uniform_filter(mr, size=(1, 3, 3)) if mr.ndim == 3 else ndimage.uniform_filter(mr, 3)
    if float(smooth.max()) <= float(smooth.min()):
        return np.zeros(mr.shape, dtype=bool)
    mask = smooth > 0.5 * threshold_otsu(smooth)
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        mask = components == int(sizes.argmax())
    if mask.ndim == 3:
        return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    return ndimage.binary_fill_holes(mask)


@dataclass(frozen=True)
class MRNormalizer:
    """Per-volume MR normalisation to about [-1, 1].

    ``percentile``: the ``lower`` and ``upper`` percentiles ``p_l, p_u`` of the intensities inside
    the body map linearly to -1 and 1, and the result is clipped to [-1, 1]:
    ``x = clip(2 (m - p_l) / (p_u - p_l) - 1, -1, 1)``.
    ``zscore``: ``x = clip((m - mu) / sigma, -5, 5)`` with the mean and standard deviation inside
    the body. Per-volume parameters come from :meth:`fit`; the method and percentiles (not the
    per-volume parameters) are what a checkpoint stores.

    Args:
        method: ``"percentile"`` or ``"zscore"``.
        lower, upper: percentiles (0-100) for ``percentile``.
    """

    method: str = "percentile"
    lower: float = 0.5
    upper: float = 99.5

    def __post_init__(self):
        valid = [m.value for m in MRNormMethod]
        if self.method not in valid:
            raise ValueError(f"MRNormalizer method {self.method!r}: expected one of {valid}")
        if not 0.0 <= self.lower < self.upper <= 100.0:
            raise ValueError(f"MRNormalizer percentiles ({self.lower}, {self.upper}): expected 0 <= lower < upper <= 100")

    def fit(self, mr_array: np.ndarray, body_mask: np.ndarray | None = None) -> dict:
        """Per-volume parameters from ``mr_array`` (any layout) inside ``body_mask``.

        The mask defaults to :func:`body_mask_from_mr`; an empty mask falls back to all voxels.
        """
        mr = np.asarray(mr_array, dtype=np.float64)
        mask = body_mask_from_mr(mr) if body_mask is None else np.asarray(body_mask, dtype=bool)
        values = mr[mask] if mask.any() else mr.ravel()
        if self.method == MRNormMethod.PERCENTILE.value:
            low, high = np.percentile(values, [self.lower, self.upper])
            # A flat volume would divide by zero; any positive width keeps the map invertible.
            return {"method": self.method, "low": float(low), "high": float(max(high, low + 1e-6))}
        return {"method": self.method, "mean": float(values.mean()), "std": float(max(values.std(), 1e-6))}

    def _check(self, params: dict) -> None:
        if params.get("method") != self.method:
            raise ValueError(f"MRNormalizer({self.method!r}) given parameters fitted by {params.get('method')!r}")

    def apply(self, mr_array, params: dict):
        """MR -> normalised intensities, same layout; numpy input gives float32, tensors keep their dtype."""
        self._check(params)
        mr = _as_float(mr_array)
        if self.method == MRNormMethod.PERCENTILE.value:
            scaled = (mr - params["low"]) * (2.0 / (params["high"] - params["low"])) - 1.0
            out = _clip(scaled, -1.0, 1.0)
        else:
            out = _clip((mr - params["mean"]) * (1.0 / params["std"]), -ZSCORE_CLIP, ZSCORE_CLIP)
        return out if isinstance(out, torch.Tensor) else out.astype(np.float32, copy=False)

    def inverse(self, x, params: dict):
        """Normalised -> MR units; exact inside the clipping range."""
        self._check(params)
        x = _as_float(x)
        if self.method == MRNormMethod.PERCENTILE.value:
            return (_clip(x, -1.0, 1.0) + 1.0) * ((params["high"] - params["low"]) / 2.0) + params["low"]
        return _clip(x, -ZSCORE_CLIP, ZSCORE_CLIP) * params["std"] + params["mean"]

    def to_dict(self) -> dict:
        return {"method": self.method, "lower": float(self.lower), "upper": float(self.upper)}

    @classmethod
    def from_dict(cls, state: dict) -> "MRNormalizer":
        unknown = set(state) - set(asdict(cls()))
        if unknown:
            raise ValueError(f"MRNormalizer.from_dict: unknown keys {sorted(unknown)}; expected method, lower, upper")
        return cls(**state)
