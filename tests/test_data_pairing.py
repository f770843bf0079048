"""Pairing a real MR with its CT: the CT's exact grid, a valid mask where the MR exists, bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from translate.cli import app
from translate.data.io import array_to_image, image_to_array, write_volume
from translate.data.pairing import pair_folder, pair_volumes
from translate.errors import TranslateError

from conftest import REPO

PATIENT = "STS_001"


@pytest.fixture()
def patient(shared_data):
    return shared_data / "ibsi_sts" / PATIENT


@pytest.fixture()
def paired(patient, tmp_path):
    summary = pair_volumes(patient / "ct.nii.gz", patient / "mr_t1.nii.gz", tmp_path / "pair",
                           extra={"tumour": patient / "tumour.nii.gz"})
    return summary, tmp_path / "pair"


def test_outputs_lie_on_the_ct_grid(paired, patient):
    summary, out = paired
    assert sorted(p.name for p in out.iterdir()) == ["ct.nii.gz", "mr.nii.gz", "tumour.nii.gz", "valid.nii.gz"]
    ct = sitk.ReadImage(str(patient / "ct.nii.gz"))
    ct_nib = nib.load(str(patient / "ct.nii.gz"))
    for name in ("ct", "mr", "valid", "tumour"):
        image = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert image.GetSize() == ct.GetSize(), name
        assert np.allclose(image.GetSpacing(), ct.GetSpacing(), atol=1e-6), name
        assert np.allclose(image.GetOrigin(), ct.GetOrigin(), atol=1e-4), name
        assert np.allclose(image.GetDirection(), ct.GetDirection(), atol=1e-6), name
        assert np.allclose(nib.load(str(out / f"{name}.nii.gz")).affine, ct_nib.affine, atol=1e-4), name
    assert sitk.ReadImage(str(out / "mr.nii.gz")).GetPixelID() == sitk.sitkFloat32
    assert sitk.ReadImage(str(out / "valid.nii.gz")).GetPixelID() == sitk.sitkUInt8
    # the CT's voxels and pixel type are untouched
    assert sitk.ReadImage(str(out / "ct.nii.gz")).GetPixelID() == ct.GetPixelID() == sitk.sitkInt16
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ct.nii.gz"))).tobytes()
    assert hashlib.sha256(written).digest() == hashlib.sha256(sitk.GetArrayFromImage(ct).tobytes()).digest()
    assert summary["size"] == list(ct.GetSize())


def test_valid_mask_is_where_the_mr_exists(paired, patient):
    summary, out = paired
    valid = image_to_array(sitk.ReadImage(str(out / "valid.nii.gz"))).astype(bool)
    mr_on_ct = image_to_array(sitk.ReadImage(str(out / "mr.nii.gz")))
    assert summary["valid_fraction"] == pytest.approx(valid.mean())
    assert 0.05 < summary["valid_fraction"] < summary["source_coverage"] <= 1.0
    assert np.all(mr_on_ct[valid] != 0)
    # every valid voxel's centre is inside the original MR box, by physical position
    mr = sitk.ReadImage(str(patient / "mr_t1.nii.gz"))
    ct = sitk.ReadImage(str(patient / "ct.nii.gz"))
    z, y, x = np.nonzero(valid)
    pick = np.linspace(0, len(z) - 1, 200).astype(int)
    for k in pick:
        point = ct.TransformIndexToPhysicalPoint((int(x[k]), int(y[k]), int(z[k])))
        index = mr.TransformPhysicalPointToContinuousIndex(point)
        assert all(-0.5 <= i <= n - 0.5 for i, n in zip(index, mr.GetSize()))
    # and there the MR really has data: values within the MR's own range
    mr_values = sitk.GetArrayFromImage(mr)
    assert mr_values.min() <= mr_on_ct[valid].min() and mr_on_ct[valid].max() <= mr_values.max()
    # the MR box is only part of the CT's: some CT voxels have no MR
    assert not valid.all()


def test_non_overlapping_pair_is_one_line_error(patient, tmp_path):
    mr = sitk.ReadImage(str(patient / "mr_t1.nii.gz"))
    far = sitk.Image(mr)
    far.SetOrigin([v + 5000.0 for v in mr.GetOrigin()])
    write_volume(far, tmp_path / "far.nii.gz")
    with pytest.raises(TranslateError, match="no overlap") as err:
        pair_volumes(patient / "ct.nii.gz", tmp_path / "far.nii.gz", tmp_path / "out")
    assert "far.nii.gz" in str(err.value) and "ct.nii.gz" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written


def test_extra_mask_on_another_grid_is_refused(patient, tmp_path):
    with pytest.raises(TranslateError, match="different grids"):
        pair_volumes(patient / "ct.nii.gz", patient / "mr_t1.nii.gz", tmp_path / "out",
                     extra={"mask": patient / "mr_t1.nii.gz"})


def test_cli_pair(patient, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "pair", str(patient / "ct.nii.gz"), str(patient / "mr_t1.nii.gz"),
                                 str(tmp_path / "pair"), "--extra", f"tumour={patient / 'tumour.nii.gz'}"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "pair" / "tumour.nii.gz").is_file() and (tmp_path / "pair" / "valid.nii.gz").is_file()
    result = runner.invoke(app, ["data", "pair", str(patient / "ct.nii.gz"), str(tmp_path / "missing.nii.gz"),
                                 str(tmp_path / "other")])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.nii.gz" in lines[0], result.stderr
    assert not (tmp_path / "other").exists()


def test_pair_folder_writes_the_training_layout(tmp_path):
    """Synthetic subjects: an MR box inside a CT box, one frame of reference."""
    rng = np.random.default_rng(0)
    for subject in ("a", "b"):
        ct = sitk.Image([12, 10, 4], sitk.sitkInt16)
        ct.SetSpacing((2.0, 2.0, 3.0))
        ct = array_to_image(rng.integers(-1000, 1000, (4, 10, 12)), ct, np.int16)
        mr = sitk.Image([6, 6, 4], sitk.sitkFloat32)
        mr.SetSpacing((2.0, 2.0, 3.0))
        mr.SetOrigin((4.0, 4.0, 0.0))
        mr = array_to_image(rng.uniform(1, 2, (4, 6, 6)), mr, np.float32)
        write_volume(ct, tmp_path / "src" / subject / "ct.nii.gz")
        write_volume(mr, tmp_path / "src" / subject / "mr_t1.nii.gz")
        write_volume(array_to_image(np.ones((4, 10, 12)), ct, np.uint8), tmp_path / "src" / subject / "tumour.nii.gz")
    split = {"train": ["a"], "val": [], "test": ["b"]}
    summaries = pair_folder(tmp_path / "src", tmp_path / "out", None, split=split)
    assert json.loads((tmp_path / "out" / "split.json").read_text()) == split
    assert set(summaries) == {"a", "b"}
    valid = image_to_array(sitk.ReadImage(str(tmp_path / "out" / "a" / "valid.nii.gz")))
    expected = np.zeros((4, 10, 12), dtype=np.uint8)
    expected[:, 3:7, 3:7] = 1  # MR covers x, y voxels 2..7; eroded by one voxel in-plane
    assert np.array_equal(valid, expected)
    from translate.data.datasets import subjects_from_folder

    assert [s["id"] for s in subjects_from_folder(tmp_path / "out", "train")] == ["a"]
    with pytest.raises(TranslateError, match="both"):
        pair_folder(tmp_path / "src", tmp_path / "out2", ["a"], split={"train": ["a"], "test": ["a"]})


def test_the_benchmark_split_is_the_seeded_shuffle(shared_data):
    spec = importlib.util.spec_from_file_location("prepare", REPO / "benchmarks" / "real_data" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    ids = sorted(p.name for p in (shared_data / "ibsi_sts").iterdir() if p.is_dir())
    split = json.loads((REPO / "benchmarks" / "real_data" / "ibsi_split.json").read_text())
    assert split == prepare.make_split(ids, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [16, 4, 4]
    assert sorted(sum(split.values(), [])) == ids
