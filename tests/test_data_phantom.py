"""The built-in phantom: determinism, plausible tissue values, geometry, and the MR bone/air ambiguity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from translate.data.phantom import TISSUES, make_subject, spin_echo_signal, subject_seed, write_phantom
from translate.errors import TranslateError

TINY = {"shape": (8, 32, 32), "spacing": (16.0, 9.0, 9.0)}
NAMES = {t.name: t.label for t in TISSUES}


@pytest.fixture(scope="module")
def subjects():
    """Three subjects at the default size (each well under a second)."""
    return [make_subject(seed) for seed in range(3)]


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_subject_is_deterministic_and_seed_dependent():
    a, b, c = make_subject(7, **TINY), make_subject(7, **TINY), make_subject(8, **TINY)
    for key in ("mr", "ct", "labels"):
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    assert a["mr"].dtype == np.float32 and a["ct"].dtype == np.int16 and a["labels"].dtype == np.uint8
    assert a["mr"].shape == a["ct"].shape == a["labels"].shape == (8, 32, 32)
    assert a["spacing"] == (9.0, 9.0, 16.0)  # SimpleITK (x, y, z) order


def test_write_phantom_same_seed_gives_identical_bytes(tmp_path):
    first = _files(write_phantom(tmp_path / "a", subjects=3, seed=1, **TINY))
    second = _files(write_phantom(tmp_path / "b", subjects=3, seed=1, **TINY))
    other = _files(write_phantom(tmp_path / "c", subjects=3, seed=2, **TINY))
    assert set(first) == {"split.json", "labels.json"} | {
        f"phantom_00{i}/{key}.nii.gz" for i in range(3) for key in ("mr", "ct", "labels")}
    assert first == second
    assert first["phantom_000/ct.nii.gz"] != other["phantom_000/ct.nii.gz"]
    assert not [p for p in (tmp_path / "a").rglob("*") if "tmp" in p.name]  # no leftovers of atomic writes


def test_subjects_do_not_depend_on_the_count(tmp_path):
    write_phantom(tmp_path / "two", subjects=2, seed=3, **TINY)
    write_phantom(tmp_path / "four", subjects=4, seed=3, **TINY)
    for key in ("mr", "ct", "labels"):
        assert (tmp_path / "two/phantom_001" / f"{key}.nii.gz").read_bytes() == \
               (tmp_path / "four/phantom_001" / f"{key}.nii.gz").read_bytes()
    assert subject_seed(3, 1) != subject_seed(3, 2) != subject_seed(4, 1)


def test_files_share_geometry_and_split_partitions_subjects(tmp_path):
    root = write_phantom(tmp_path, subjects=5, seed=0, **TINY)
    images = [sitk.ReadImage(str(root / "phantom_002" / f"{key}.nii.gz")) for key in ("mr", "ct", "labels")]
    for image in images:
        assert image.GetSize() == (32, 32, 8)
        assert image.GetSpacing() == pytest.approx((9.0, 9.0, 16.0))
        assert image.GetOrigin() == pytest.approx(images[0].GetOrigin())
        assert image.GetDirection() == pytest.approx(images[0].GetDirection())
    assert images[0].GetOrigin() != pytest.approx((0.0, 0.0, 0.0))  # a real affine, centred on the body
    np.testing.assert_array_equal(sitk.GetArrayFromImage(images[1]),
                                  make_subject(subject_seed(0, 2), **TINY)["ct"])

    split = json.loads((root / "split.json").read_text())
    ids = split["train"] + split["val"] + split["test"]
    assert sorted(ids) == [f"phantom_{i:03d}" for i in range(5)] and len(set(ids)) == 5
    assert len(split["val"]) >= 1 and len(split["test"]) >= 1 and len(split["train"]) >= 1
    assert json.loads((root / "labels.json").read_text())["8"] == "cortical_bone"


def test_tissue_values_are_plausible(subjects):
    for subject in subjects:
        ct, labels = subject["ct"], subject["labels"]
        mean = {name: float(ct[labels == label].mean()) for name, label in NAMES.items()}
        assert -1010 < mean["air"] < -985
        assert -130 < mean["fat"] < -70
        assert 20 < mean["soft_tissue"] < 60
        assert 700 < mean["cortical_bone"] < 1500
        assert 150 < mean["bone_marrow"] < 450
        assert mean["bowel_gas"] < -700
    # bone density differs between subjects
    bone = [float(s["ct"][s["labels"] == NAMES["cortical_bone"]].mean()) for s in subjects]
    assert max(bone) - min(bone) > 50


def test_all_tissue_classes_present(subjects):
    for subject in subjects:
        counts = np.bincount(subject["labels"].ravel(), minlength=len(TISSUES))
        assert len(counts) == len(TISSUES) and (counts > 50).all(), counts


def test_mr_cannot_tell_cortical_bone_from_air(subjects):
    for subject in subjects:
        mr, ct, labels = subject["mr"], subject["ct"], subject["labels"]
        air, bone = labels == NAMES["air"], labels == NAMES["cortical_bone"]
        assert float(ct[bone].mean()) - float(ct[air].mean()) > 1500
        # most bone voxels are as dark as the bulk of air: no intensity threshold separates them
        assert (mr[bone] < np.percentile(mr[air], 99)).mean() > 0.5
        bins = np.linspace(0, np.percentile(mr, 99.9), 60)
        overlap = np.minimum(np.histogram(mr[air], bins)[0] / air.sum(), np.histogram(mr[bone], bins)[0] / bone.sum())
        assert overlap.sum() > 0.3
        # while T1w contrast holds elsewhere: fat brighter than muscle brighter than fluid
        means = {name: float(mr[labels == label].mean()) for name, label in NAMES.items()}
        assert means["fat"] > means["soft_tissue"] > means["fluid"] > means["air"]


def test_spin_echo_signal_known_value():
    assert spin_echo_signal(500.0, 15.0, 1.0) == pytest.approx((1 - np.exp(-1.0)) * np.exp(-1.0))
    assert spin_echo_signal(1000.0, 0.5, 0.2) < 1e-12  # cortical bone: T2 far below TE


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (8, 32)}, "shape"),
    ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
])
def test_bad_grid_is_a_one_line_error(kwargs, message):
    with pytest.raises(TranslateError, match=message):
        make_subject(0, **kwargs)


def test_bad_write_arguments(tmp_path):
    with pytest.raises(TranslateError, match="subjects"):
        write_phantom(tmp_path, subjects=0)
    with pytest.raises(TranslateError, match="split"):
        write_phantom(tmp_path, subjects=3, split=(0.5, 0.1, 0.1))
