"""Registration recovers a known rigid transform between two modalities of a synthetic volume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from translate.cli import app
from translate.data.io import array_to_image, read_volume, write_volume
from translate.data.registration import register_volumes, transform_motion
from translate.errors import TranslateError

SHAPE = (40, 48, 48)  # (Z, Y, X)
SPACING = (2.0, 2.0, 2.5)  # (x, y, z) mm, anisotropic like real CT
ANGLE_Z = math.radians(3.0)
TRANSLATION = (4.0, -3.0, 2.0)
# (centre x, y, z in mm, sigma x, y, z in mm, amplitude): asymmetric, so every rotation shows
BLOBS = [((40, 50, 50), (14, 9, 11), 1.0), ((62, 38, 40), (6, 8, 7), 0.8), ((35, 65, 58), (8, 5, 9), 0.6),
         ((55, 62, 35), (5, 5, 5), 0.7)]


def scene(x, y, z) -> np.ndarray:
    """A smooth anatomy-like function of physical position (mm)."""
    value = np.zeros_like(x)
    for (cx, cy, cz), (sx, sy, sz), amplitude in BLOBS:
        value += amplitude * np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2 + ((z - cz) / sz) ** 2))
    return value


def grid_points():
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    return x * SPACING[0], y * SPACING[1], z * SPACING[2]


def true_transform() -> sitk.Euler3DTransform:
    centre = [(n - 1) * s / 2 for n, s in zip(SHAPE[::-1], SPACING)]
    return sitk.Euler3DTransform(centre, 0.0, 0.0, ANGLE_Z, TRANSLATION)


def reference() -> sitk.Image:
    image = sitk.Image(SHAPE[::-1], sitk.sitkFloat32)
    image.SetSpacing(SPACING)
    return image


@pytest.fixture(scope="module")
def pair():
    """Fixed f(x) = g(x) ("CT"); moving m(y) = h(g(T^-1 y)) ("MR", another contrast), so m(T x) = h(f(x))."""
    x, y, z = grid_points()
    fixed = array_to_image(100.0 * scene(x, y, z), reference(), np.float32)
    inverse = true_transform().GetInverse()
    matrix = np.array(inverse.GetMatrix()).reshape(3, 3)
    offset = np.array(inverse.TransformPoint((0.0, 0.0, 0.0)))
    points = np.stack([x, y, z], axis=-1) @ matrix.T + offset
    moved_scene = scene(points[..., 0], points[..., 1], points[..., 2])
    moving = array_to_image(800.0 - 500.0 * moved_scene ** 2, reference(), np.float32)
    return moving, fixed


def linear_part(transform: sitk.Transform, at) -> tuple[np.ndarray, np.ndarray]:
    """The matrix (by finite differences) and the image of ``at``, for any transform."""
    at = np.asarray(at, dtype=np.float64)
    here = np.array(transform.TransformPoint(tuple(at)))
    columns = [np.array(transform.TransformPoint(tuple(at + step))) - here for step in np.eye(3)]
    return np.stack(columns, axis=1), here


def errors(estimate: sitk.Transform) -> tuple[float, float]:
    """(degrees of residual rotation, mm of worst displacement error over the volume's corners)."""
    truth = true_transform()
    centre = truth.GetCenter()
    m_est, _ = linear_part(estimate, centre)
    m_true, _ = linear_part(truth, centre)
    residual = m_est @ m_true.T
    angle = math.degrees(math.acos(np.clip((np.trace(residual) - 1) / 2, -1, 1)))
    extent = [(n - 1) * s for n, s in zip(SHAPE[::-1], SPACING)]
    corners = [(a, b, c) for a in (0, extent[0]) for b in (0, extent[1]) for c in (0, extent[2])] + [centre]
    worst = max(np.linalg.norm(np.subtract(estimate.TransformPoint(p), truth.TransformPoint(p))) for p in corners)
    return angle, float(worst)


def test_rigid_registration_recovers_a_known_transform(pair):
    moving, fixed = pair
    transform, moved = register_volumes(moving, fixed, kind="rigid", seed=0)
    angle, worst = errors(transform)
    assert angle < 1.0, angle
    assert worst < 1.0, worst  # translation error at the centre, and everywhere in the box
    assert moved.GetSize() == fixed.GetSize() and moved.GetSpacing() == fixed.GetSpacing()
    assert moved.GetPixelID() == moving.GetPixelID()
    # the moved MR now lines up with the CT: its contrast is h(f) up to interpolation
    expected = 800.0 - 500.0 * (sitk.GetArrayFromImage(fixed) / 100.0) ** 2
    inner = (slice(6, -6),) * 3
    assert np.abs(sitk.GetArrayFromImage(moved)[inner] - expected[inner]).mean() < 5.0
    # same seed, same transform
    again, _ = register_volumes(moving, fixed, kind="rigid", seed=0)
    assert np.allclose(again.GetParameters(), transform.GetParameters(), atol=1e-6)


def test_bad_kind_and_cli(pair, tmp_path):
    moving, fixed = pair
    with pytest.raises(TranslateError, match="kind 'elastic'"):
        register_volumes(moving, fixed, kind="elastic")
    write_volume(moving, tmp_path / "mr.nii.gz")
    write_volume(fixed, tmp_path / "ct.nii.gz")
    result = CliRunner().invoke(app, ["data", "register", str(tmp_path / "mr.nii.gz"), str(tmp_path / "ct.nii.gz"),
                                      str(tmp_path / "out" / "mr_on_ct.nii.gz"), "--iterations", "30"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "moves ct.nii.gz's box by up to" in result.output
    assert read_volume(tmp_path / "out" / "mr_on_ct.nii.gz").GetSize() == fixed.GetSize()
    transform = sitk.ReadTransform(str(tmp_path / "out" / "mr_on_ct.tfm"))
    assert transform.GetDimension() == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mr_on_ct.nii.gz", "mr_on_ct.tfm"]
    result = CliRunner().invoke(app, ["data", "register", str(tmp_path / "missing.nii.gz"),
                                      str(tmp_path / "ct.nii.gz"), str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not found" in lines[0], result.stderr


def test_transform_motion_measures_known_shifts_and_rotations(pair):
    _, fixed = pair
    size = fixed.GetSize()
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
    still = transform_motion(sitk.Euler3DTransform(), fixed)
    assert still["max_mm"] == pytest.approx(0.0, abs=1e-9) and still["rotation_degrees"] == pytest.approx(0.0, abs=1e-6)
    shifted = transform_motion(sitk.TranslationTransform(3, (3.0, 4.0, 0.0)), fixed)
    assert shifted["max_mm"] == pytest.approx(5.0) and shifted["mean_mm"] == pytest.approx(5.0)
    assert shifted["rotation_degrees"] == pytest.approx(0.0, abs=1e-6)
    turned = transform_motion(sitk.Euler3DTransform(centre, 0.0, 0.0, math.radians(10.0)), fixed)
    assert turned["rotation_degrees"] == pytest.approx(10.0, abs=1e-6)
    # a corner at distance r from the centre moves by the chord 2 r sin(5 degrees)
    corner = fixed.TransformContinuousIndexToPhysicalPoint([float(n - 1) for n in size])
    radius = math.hypot(corner[0] - centre[0], corner[1] - centre[1])
    assert turned["max_mm"] == pytest.approx(2 * radius * math.sin(math.radians(5.0)), rel=1e-6)
