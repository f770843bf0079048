"""Data domains and their intensity specs: what a volume's numbers mean and how networks see them.

A recipe names each domain (``a``, ``b``, optional ``labels``) with the file key of its volumes
and an intensity spec::

    data:
      domains:
        a: {key: mr, intensity: {name: mr_percentile, lower: 0.5, upper: 99.5}}
        b: {key: ct, intensity: {name: ct_hu, window: [-1024, 2000]}}

A spec maps a native volume ``(Z, Y, X)`` to network space ``(C, Z, Y, X)`` (:meth:`forward`) and
back (:meth:`inverse`); its :meth:`to_dict` is stored in checkpoints, so inference normalises the
input with the input domain's spec and maps the output back with the output domain's, whatever
the files are called. Register your own with ``@INTENSITIES.register("name")``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import TranslateError
from ..registry import Registry
from .intensity import HUWindow, MRNormalizer, body_mask_from_mr
from .masks import body_mask_from_ct

INTENSITIES = Registry("intensity spec")

#: body threshold in HU (SynthRAD convention)
BODY_HU = -500.0


class IntensitySpec:
    """Base class. ``kind`` is ``"ct"``, ``"mr"`` or ``"labels"`` and decides the validation metrics."""

    name = "spec"
    kind = "image"
    channels = 1
    #: numpy dtype a translated volume of this domain is written with
    output_dtype: Any = np.float32

    def fit(self, volume: np.ndarray, valid: Optional[np.ndarray] = None) -> Dict[str, float]:
        """Per-volume parameters (empty for fixed maps such as the HU window), from the voxels of the
        domain's own body mask that lie inside ``valid`` (where the volume has data; None: everywhere).
        Training and inference call it the same way, so both see identical parameters."""
        return {}

    def forward(self, volume: np.ndarray, params: Dict[str, float]) -> np.ndarray:
        """Native ``(*S)`` -> network space ``(C, *S)`` float32."""
        raise NotImplementedError

    def inverse(self, x: np.ndarray, params: Optional[Dict[str, float]] = None) -> np.ndarray:
        """Network space ``(C, *S)`` -> native ``(*S)``; ``params=None`` at inference, where only the input is known."""
        raise NotImplementedError

    def pad_values(self, x: np.ndarray) -> list:
        """Per-channel values to pad a normalised array with (the domain's background)."""
        return [float(x[c].min()) if x[c].size else -1.0 for c in range(x.shape[0])]

    def network_value(self, value: float) -> float:
        """A native value (HU for CT) in network units, for maps without per-volume parameters."""
        raise ValueError(f"{self.name} normalises each volume on its own, so native values have no fixed "
                         f"network value; expected a domain with a fixed map (ct_hu)")

    def body_mask(self, volume: np.ndarray) -> np.ndarray:
        """Where the subject is, from a native volume; used when a subject has no labels or valid mask."""
        return np.ones(volume.shape, dtype=bool)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name}


@INTENSITIES.register("ct_hu")
class CTHounsfield(IntensitySpec):
    """CT in HU: a window ``[lower, upper]`` mapped linearly to [-1, 1], clipped; exact inverse.

    Args:
        window: ``[lower, upper]`` HU.
    """

    name, kind, output_dtype = "ct_hu", "ct", np.int16

    def __init__(self, window: Sequence[float] = (-1024.0, 2000.0)):
        window = [float(v) for v in window]
        if len(window) != 2 or not window[0] < window[1]:
            raise ValueError(f"ct_hu window: expected [lower, upper] with lower < upper, got {window}")
        self.window = HUWindow(lower=window[0], upper=window[1])

    def forward(self, volume, params):
        return np.ascontiguousarray(self.window.forward(np.asarray(volume, dtype=np.float32))[None], dtype=np.float32)

    def inverse(self, x, params=None):
        return self.window.inverse(np.asarray(x, dtype=np.float32)[0])

    def pad_values(self, x):
        return [-1.0]

    def network_value(self, value):
        return float(self.window.forward(np.float32(value)))

    def body_mask(self, volume):
        return body_mask_from_ct(np.asarray(volume), threshold=BODY_HU)

    def to_dict(self):
        return {"name": self.name, "window": [self.window.lower, self.window.upper]}


class _MRSpec(IntensitySpec):
    kind = "mr"
    #: an output MR has no per-volume parameters to invert with: [-1, 1] is written as [0, 1000]
    OUTPUT_SCALE = 500.0

    def body_mask(self, volume):
        return body_mask_from_mr(np.asarray(volume, dtype=np.float32))

    def _mask(self, volume, valid):
        body = self.body_mask(volume)
        return body if valid is None else body & np.asarray(valid, dtype=bool)

    def inverse(self, x, params=None):
        x = np.asarray(x, dtype=np.float32)[0]
        if params is None:
            return (np.clip(x, -1.0, 1.0) + 1.0) * self.OUTPUT_SCALE
        return self._inverse(x, params)


class _MRNormalizerSpec(_MRSpec):
    """An MR spec backed by :class:`~translate.data.intensity.MRNormalizer` (``self.norm``)."""

    norm: MRNormalizer

    def fit(self, volume, valid=None):
        return self.norm.fit(volume, self._mask(volume, valid))

    def forward(self, volume, params):
        return self.norm.apply(np.asarray(volume, dtype=np.float32), params)[None]

    def _inverse(self, x, params):
        return self.norm.inverse(x, params)


@INTENSITIES.register("mr_percentile")
class MRPercentile(_MRNormalizerSpec):
    """Per-volume percentiles ``lower``/``upper`` inside the body mapped to -1 and 1, clipped."""

    name = "mr_percentile"

    def __init__(self, lower: float = 0.5, upper: float = 99.5):
        self.norm = MRNormalizer(method="percentile", lower=float(lower), upper=float(upper))

    def to_dict(self):
        return {"name": self.name, "lower": self.norm.lower, "upper": self.norm.upper}


@INTENSITIES.register("mr_zscore")
class MRZScore(_MRNormalizerSpec):
    """Per-volume mean and standard deviation inside the body: ``clip((m - mu) / sigma, -5, 5)``."""

    name = "mr_zscore"

    def __init__(self):
        self.norm = MRNormalizer(method="zscore")


@INTENSITIES.register("mr_robust")
class MRRobust(_MRSpec):
    r"""Scale-only MR normalisation: zero stays zero, the ``upper`` percentile of the body maps to 1.

    .. math::
        x = \mathrm{clip}\left(2\,\frac{m}{p_{u}} - 1, -1, 1\right)

    MR magnitude has a physical zero (air), so one statistic suffices, and it is taken from the
    bright end of the body (fat, in T1), which nearly every block of a body or limb contains. The
    median or the lower percentiles that ``mr_percentile`` and ``mr_zscore`` use move with the
    fat fraction and with whatever a crop happens to contain; on the ibsi_sts MR the body median
    ranges from 299 to 746 between patients while fat stays near 900 (``benchmarks/real_data``).

    Args:
        upper: percentile (0-100) of the body voxels that maps to 1.
    """

    name = "mr_robust"

    def __init__(self, upper: float = 99.0):
        if not 50.0 < float(upper) <= 100.0:
            raise ValueError(f"mr_robust upper: expected a percentile in (50, 100], got {upper}")
        self.upper = float(upper)

    def fit(self, volume, valid=None):
        volume = np.asarray(volume, dtype=np.float64)
        mask = self._mask(volume, valid)
        values = volume[mask] if mask.any() else volume.ravel()
        return {"scale": float(max(np.percentile(values, self.upper), 1e-6))}

    def forward(self, volume, params):
        x = np.asarray(volume, dtype=np.float32) * (2.0 / params["scale"]) - 1.0
        return np.clip(x, -1.0, 1.0).astype(np.float32)[None]

    def _inverse(self, x, params):
        return (np.clip(x, -1.0, 1.0) + 1.0) * (0.5 * params["scale"])

    def to_dict(self):
        return {"name": self.name, "upper": self.upper}


@INTENSITIES.register("labels")
class LabelMap(IntensitySpec):
    """An integer label map: one-hot channels in, argmax back to the label ids out.

    Args:
        values: the label ids, in channel order; the first is the background. An int ``n``
            means ``0 .. n-1``. Voxels with other ids count as background.
    """

    name, kind, output_dtype = "labels", "labels", np.int16

    def __init__(self, values: Sequence[int] | int = 2):
        values = list(range(int(values))) if isinstance(values, (int, np.integer)) else [int(v) for v in values]
        if len(values) < 2 or len(set(values)) != len(values):
            raise ValueError(f"labels values: expected at least two distinct label ids, got {values}")
        self.values = values
        self.channels = len(values)

    def forward(self, volume, params):
        volume = np.asarray(volume)
        out = np.zeros((self.channels, *volume.shape), dtype=np.float32)
        for channel, value in enumerate(self.values):
            out[channel][volume == value] = 1.0
        out[0][out.sum(axis=0) == 0] = 1.0
        return out

    def inverse(self, x, params=None):
        index = np.asarray(x).argmax(axis=0)
        return np.asarray(self.values, dtype=np.int16)[index]

    def pad_values(self, x):
        return [1.0] + [0.0] * (self.channels - 1)

    def body_mask(self, volume):
        return np.asarray(volume) != self.values[0]

    def to_dict(self):
        return {"name": self.name, "values": list(self.values)}


def build_intensity(spec: Any, where: str = "intensity") -> IntensitySpec:
    """``"ct_hu"`` or ``{"name": "ct_hu", "window": [...]}`` -> an :class:`IntensitySpec`."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise TranslateError(f"{where}: expected a name ({', '.join(INTENSITIES.names())}) or "
                             f"{{name: ..., parameters}}, got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    if name not in INTENSITIES and "." not in str(name):
        raise TranslateError(f"{where}: unknown intensity spec {name!r}; expected one of {INTENSITIES.names()}")
    cls = INTENSITIES.get(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise TranslateError(f"{where} ({name}): {err}") from None


class Domain:
    """One data domain: the file key of its volumes and its intensity spec."""

    def __init__(self, name: str, key: str, intensity: IntensitySpec):
        self.name, self.key, self.intensity = name, key, intensity

    @property
    def channels(self) -> int:
        return self.intensity.channels

    def to_dict(self) -> Dict[str, Any]:
        return {"key": self.key, "intensity": self.intensity.to_dict()}

    @classmethod
    def from_dict(cls, name: str, state: Dict[str, Any], where: str = "domain") -> "Domain":
        return cls(name, str(state["key"]), build_intensity(state["intensity"], f"{where}.intensity"))


def domains_from_dict(state: Dict[str, Any], where: str = "data.domains") -> Dict[str, Domain]:
    return {name: Domain.from_dict(name, spec, f"{where}.{name}") for name, spec in state.items()}
