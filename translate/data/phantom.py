"""The built-in paired phantom: abdomen/pelvis subjects with a T1-weighted MR, a CT and labels.

Each subject is a label map drawn by :mod:`translate.data.phantom_anatomy` (smooth random body,
organs and bones, 2x supersampled in-plane) rendered into both modalities:

.. math::
    \\mathrm{CT} = \\overline{\\mathrm{HU}[\\ell]} + \\mathcal{N}(0, \\sigma_{CT}^2), \\qquad
    \\mathrm{MR} = \\bigl|\\, g\\, b(\\mathbf{r})\\, \\overline{S[\\ell]} + \\mathcal{N}_\\mathbb{C}(0, \\sigma_{MR}^2) \\bigr|,
    \\qquad S = PD\\,(1 - e^{-TR/T_1})\\, e^{-TE/T_2}

with the overline a 2x2 in-plane average (partial volume), ``b`` a smooth bias field (about
+-20 %), ``g`` a scanner gain and the modulus of complex Gaussian noise giving Rician statistics.
Cortical bone (very short T2) and air have almost no MR signal while their HU differ by more than
1500, so MR -> CT needs context, not a per-voxel intensity mapping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk

from ..errors import TranslateError
from .phantom_anatomy import Canvas, draw_torso

TR_MS, TE_MS = 500.0, 15.0
#: a T2-weighted spin echo (long TR, long TE): fluid bright, cortical bone and air dark, fat intermediate
T2_TR_MS, T2_TE_MS = 4000.0, 100.0


class Tissue(NamedTuple):
    """One tissue class: CT ``hu`` +- ``hu_spread`` (drawn per subject) and spin-echo MR parameters."""

    label: int
    name: str
    hu: float
    hu_spread: float
    t1_ms: float
    t2_ms: float
    pd: float


TISSUES: tuple[Tissue, ...] = (
    Tissue(0, "air", -1000.0, 0.0, 1.0e4, 1.0, 0.0),
    Tissue(1, "fat", -100.0, 10.0, 260.0, 80.0, 0.90),
    Tissue(2, "soft_tissue", 40.0, 8.0, 870.0, 45.0, 0.75),
    Tissue(3, "liver", 60.0, 8.0, 500.0, 40.0, 0.70),
    Tissue(4, "kidney", 30.0, 6.0, 1000.0, 80.0, 0.85),
    Tissue(5, "spleen", 45.0, 6.0, 1050.0, 80.0, 0.85),
    Tissue(6, "fluid", 5.0, 5.0, 3000.0, 1500.0, 1.00),
    Tissue(7, "bowel_gas", -950.0, 30.0, 1.0e4, 1.0, 0.0),
    Tissue(8, "cortical_bone", 1200.0, 300.0, 1000.0, 0.5, 0.20),
    Tissue(9, "bone_marrow", 250.0, 50.0, 500.0, 60.0, 0.85),
)


def spin_echo_signal(t1_ms, t2_ms, pd, tr_ms: float = TR_MS, te_ms: float = TE_MS):
    """T1-weighted spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``, elementwise."""
    return pd * (1.0 - np.exp(-tr_ms / np.asarray(t1_ms))) * np.exp(-te_ms / np.asarray(t2_ms))


def subject_seed(seed: int, index: int) -> int:
    """The seed of subject ``index`` in a phantom drawn with ``seed``; independent of the count."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _check_grid(shape, spacing) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    if len(shape) != 3 or any(int(n) != n or n < 2 for n in shape):
        raise TranslateError(f"phantom shape {tuple(shape)}: expected 3 integers >= 2 as (z, y, x)")
    if len(spacing) != 3 or any(not s > 0 for s in spacing):
        raise TranslateError(f"phantom spacing {tuple(spacing)}: expected 3 positive mm values as (z, y, x)")
    return tuple(int(n) for n in shape), tuple(float(s) for s in spacing)


def make_subject(seed: int, shape=(32, 96, 96), spacing=(4.0, 3.0, 3.0), t2: bool = False) -> dict:
    """Draw one phantom subject; the same seed gives the same arrays.

    Args:
        seed: the subject's random seed.
        shape: grid size ``(z, y, x)`` in voxels.
        spacing: voxel size ``(z, y, x)`` in mm. In-plane anatomy is in mm (the default field of
            view is 288 mm); along z the anatomy is stretched to the grid (hips to lower thorax).
        t2: also render a T2-weighted MR (``"t2"``) of the same anatomy and tissue parameters
            (:func:`t2_weighted`); it draws from its own random stream, so the other arrays are
            the same with or without it.

    Returns:
        ``{"mr": float32, "ct": int16 HU, "labels": uint8}`` (and ``"t2": float32``), each ``(z, y, x)``, plus
        ``"spacing"``, ``"origin"`` (mm) and ``"direction"`` in SimpleITK's ``(x, y, z)`` order.
    """
    (nz, ny, nx), (sz, sy, sx) = _check_grid(shape, spacing)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A7]))

    # In-plane supersampling by 2: the sample centres of voxel i sit at +-1/4 voxel.
    x = ((np.arange(2 * nx) - (2 * nx - 1) / 2) * sx / 2).astype(np.float32)
    y = ((np.arange(2 * ny) - (2 * ny - 1) / 2) * sy / 2).astype(np.float32)
    t = ((np.arange(nz) + 0.5) / nz).astype(np.float32)
    xx, yy = _pose_and_deform(rng, x[None, None, :], y[None, :, None], t[:, None, None])
    fine = draw_torso(Canvas(xx, yy, t, x, y), rng)

    hu = np.array([tis.hu + rng.uniform(-1, 1) * tis.hu_spread for tis in TISSUES], np.float32)
    jitter = rng.uniform(0.95, 1.05, size=(3, len(TISSUES)))
    signal = spin_echo_signal([tis.t1_ms for tis in TISSUES] * jitter[0],
                              [tis.t2_ms for tis in TISSUES] * jitter[1],
                              np.clip([tis.pd for tis in TISSUES] * jitter[2], 0, 1)).astype(np.float32)

    ct = _block_mean(hu[fine]) + rng.normal(0.0, rng.uniform(10, 20), (nz, ny, nx)).astype(np.float32)
    gain = rng.uniform(400, 1600)
    clean_mr = gain * _block_mean(signal[fine]) * _bias_field(rng, (nz, ny, nx))
    sigma_mr = gain * signal[1] * rng.uniform(0.015, 0.03)
    noise = rng.normal(0.0, sigma_mr, (2, nz, ny, nx)).astype(np.float32)
    mr = np.sqrt((clean_mr + noise[0]) ** 2 + noise[1] ** 2)

    subject = {
        "mr": mr.astype(np.float32),
        "ct": np.clip(np.rint(ct), -1024, 3071).astype(np.int16),
        "labels": _majority_label(fine),
        "spacing": (sx, sy, sz),
        "origin": (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz),
        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    }
    if t2:
        subject["t2"] = t2_weighted(seed, fine, jitter)
    return subject


def t2_weighted(seed: int, fine: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """The T2-weighted image of a subject: the same tissue T1/T2/PD (with the subject's ``jitter``)
    in a long-TR, long-TE spin echo, with its own gain, bias field and Rician noise drawn from a
    separate stream ``(seed, 0x72)`` so the T1 image, CT and labels are unchanged."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x72]))
    nz, ny, nx = fine.shape[0], fine.shape[1] // 2, fine.shape[2] // 2
    signal = spin_echo_signal([tis.t1_ms for tis in TISSUES] * jitter[0],
                              [tis.t2_ms for tis in TISSUES] * jitter[1],
                              np.clip([tis.pd for tis in TISSUES] * jitter[2], 0, 1),
                              tr_ms=T2_TR_MS, te_ms=T2_TE_MS).astype(np.float32)
    gain = rng.uniform(400, 1600)
    clean = gain * _block_mean(signal[fine]) * _bias_field(rng, (nz, ny, nx))
    sigma = gain * signal[2] * rng.uniform(0.015, 0.03)  # relative to soft tissue, as the T1 image's to fat
    noise = rng.normal(0.0, sigma, (2, nz, ny, nx)).astype(np.float32)
    return np.sqrt((clean + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)


def _pose_and_deform(rng, x, y, t):
    """Patient placement (shift, small rotation) plus a smooth displacement field, in mm.

    ``x (1, 1, X)``, ``y (1, Y, 1)``, ``t (Z, 1, 1)``; returns deformed ``x, y``, each ``(Z, Y, X)``.
    Each wave is a product of 1D factors, so only the final sums touch the full grid.
    """
    angle = float(np.deg2rad(rng.uniform(-4, 4)))
    x0, y0 = x - rng.uniform(-6, 6), y - rng.uniform(-6, 6)
    xx = np.cos(angle) * x0 + np.sin(angle) * y0 + 0 * t
    yy = -np.sin(angle) * x0 + np.cos(angle) * y0 + 0 * t
    for _ in range(3):
        kx, ky = (float(k) * 2 * np.pi / rng.uniform(150, 300) for k in rng.normal(0, 1, 2))
        amp_x, amp_y = rng.uniform(1, 3), rng.uniform(1, 3)
        phase = (rng.uniform(0, 2 * np.pi) + 2 * np.pi * rng.uniform(0.3, 1.0) * t).astype(np.float32)
        # sin(a + b + c) expanded so that each factor stays 1D: a = kx x, b = ky y, c = phase(t).
        ab_sin = np.sin(kx * x) * np.cos(ky * y) + np.cos(kx * x) * np.sin(ky * y)
        ab_cos = np.cos(kx * x) * np.cos(ky * y) - np.sin(kx * x) * np.sin(ky * y)
        xx += amp_x * (ab_sin * np.cos(phase) + ab_cos * np.sin(phase))
        yy += amp_y * (ab_cos * np.cos(phase) - ab_sin * np.sin(phase))
    return xx.astype(np.float32), yy.astype(np.float32)


def _block_mean(fine: np.ndarray) -> np.ndarray:
    """Average of each voxel's 2x2 in-plane samples: partial volume."""
    return 0.25 * (fine[:, 0::2, 0::2] + fine[:, 0::2, 1::2] + fine[:, 1::2, 0::2] + fine[:, 1::2, 1::2])


def _majority_label(fine: np.ndarray) -> np.ndarray:
    """The most frequent label among each voxel's 2x2 samples (ties go to the earlier sample)."""
    samples = [fine[:, 0::2, 0::2], fine[:, 0::2, 1::2], fine[:, 1::2, 0::2], fine[:, 1::2, 1::2]]
    votes = [sum((a == b).astype(np.uint8) for b in samples) for a in samples]
    best = np.argmax(np.stack(votes), axis=0)
    return np.choose(best, samples).astype(np.uint8)


def _bias_field(rng, shape) -> np.ndarray:
    """A smooth multiplicative field ``1 + p(x, y, z)``, p a random quadratic, max |p| in [0.1, 0.2]."""
    zn, yn, xn = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    terms = (xn, yn, zn, xn * yn, xn * zn, yn * zn, xn * xn, yn * yn)
    field = sum(c * term for c, term in zip(rng.normal(0, 1, len(terms)), terms))
    field = field * (rng.uniform(0.1, 0.2) / max(float(np.abs(field).max()), 1e-6))
    return (1.0 + field).astype(np.float32)


def write_phantom(out_dir, subjects: int = 12, seed: int = 0, shape=(32, 96, 96),
                  spacing=(4.0, 3.0, 3.0), split=(0.7, 0.15, 0.15), t2: bool = False,
                  unpaired: bool = False) -> Path:
    """Write a phantom data set; the same arguments give byte-identical files.

    Layout: ``out_dir/<subject_id>/{mr,ct,labels}.nii.gz`` on one grid,
    ``out_dir/split.json`` (``{"train": [...], "val": [...], "test": [...]}``) and
    ``out_dir/labels.json`` (label id -> tissue name). Subject ``i`` is drawn with
    :func:`subject_seed` ``(seed, i)``, so it does not depend on ``subjects``.

    Args:
        out_dir: folder to write into (created if missing).
        subjects: how many subjects.
        seed: phantom seed; also fixes the split.
        shape, spacing: ``(z, y, x)`` grid, see :func:`make_subject`.
        split: train/val/test fractions; with 3+ subjects val and test get at least one each.
        t2: also write ``t2.nii.gz``, a T2-weighted MR of the same anatomy (:func:`t2_weighted`).
        unpaired: also write ``t2.nii.gz`` and add ``train_a`` / ``train_b`` to split.json: the
            training subjects cut into two disjoint halves (:func:`unpaired_halves`), one per
            domain, so an unpaired recipe never sees a pair. ``train`` (their union), ``val`` and
            ``test`` are as without the flag; val and test subjects keep every modality, so
            results can be scored. Every file the paired phantom writes is byte-identical.

    Returns:
        ``out_dir`` as a Path.
    """
    if int(subjects) != subjects or subjects < 1:
        raise TranslateError(f"phantom subjects {subjects!r}: expected an integer >= 1")
    if len(split) != 3 or any(f < 0 for f in split) or not abs(sum(split) - 1.0) < 1e-6:
        raise TranslateError(f"phantom split {tuple(split)}: expected 3 fractions (train, val, test) summing to 1")
    _check_grid(shape, spacing)
    ids = [f"phantom_{i:03d}" for i in range(int(subjects))]
    splits = _split_ids(ids, split, seed)
    if unpaired:
        t2 = True
        splits.update(unpaired_halves(splits["train"], seed))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ("mr", "ct", "labels") + (("t2",) if t2 else ())
    for index, subject_id in enumerate(ids):
        subject = make_subject(subject_seed(seed, index), shape=shape, spacing=spacing, t2=t2)
        (out_dir / subject_id).mkdir(exist_ok=True)
        for key in keys:
            image = sitk.GetImageFromArray(subject[key])
            image.SetSpacing(subject["spacing"])
            image.SetOrigin(subject["origin"])
            image.SetDirection(subject["direction"])
            _write_image(image, out_dir / subject_id / f"{key}.nii.gz")

    _write_text(out_dir / "split.json", json.dumps(splits, indent=2) + "\n")
    _write_text(out_dir / "labels.json", json.dumps({str(t.label): t.name for t in TISSUES}, indent=2) + "\n")
    return out_dir


def unpaired_halves(train: list[str], seed: int) -> dict[str, list[str]]:
    """``{"train_a": [...], "train_b": [...]}``: ``train`` shuffled by ``seed`` and cut into two disjoint
    halves (A gets the odd one), for domain A's and domain B's images of an unpaired recipe."""
    if len(train) < 2:
        raise TranslateError(f"phantom --unpaired: {len(train)} training subject(s); disjoint A and B halves "
                             f"need at least 2 (use --subjects 4 or more)")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0xAB])).permutation(len(train))
    shuffled = [sorted(train)[i] for i in order]
    half = (len(train) + 1) // 2
    return {"train_a": sorted(shuffled[:half]), "train_b": sorted(shuffled[half:])}


def _split_ids(ids: list[str], split, seed: int) -> dict[str, list[str]]:
    """Shuffle ``ids`` by ``seed`` and cut train/val/test; 3+ subjects give each part one or more."""
    n = len(ids)
    n_val, n_test = round(split[1] * n), round(split[2] * n)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
        while n_val + n_test > n - 1:  # keep at least one training subject
            n_val, n_test = (n_val - 1, n_test) if n_val >= n_test else (n_val, n_test - 1)
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5B1])).permutation(n)
    shuffled = [ids[i] for i in order]
    return {"train": sorted(shuffled[n_val + n_test:]),
            "val": sorted(shuffled[:n_val]),
            "test": sorted(shuffled[n_val:n_val + n_test])}


def _write_image(image: sitk.Image, path: Path) -> None:
    """Write atomically: SimpleITK's gzip stream carries no timestamp, so the bytes are reproducible."""
    try:
        from .io import write_volume
    except ImportError:
        write_volume = None
    if write_volume is not None:
        write_volume(image, path)
        return
    tmp = path.with_name(f".{path.name.split('.')[0]}.{os.getpid()}.tmp.nii.gz")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
