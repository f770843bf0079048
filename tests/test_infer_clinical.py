"""Inference for clinical volumes: DICOM series out (read back by SimpleITK and pydicom), folders of
volumes with a broken file, and bounded memory in the slice inferer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from translate.cli import app
from translate.data.dicom import rescale_for, write_dicom_series
from translate.data.io import read_volume
from translate.errors import TranslateError

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def dicom_files(folder: Path):
    return sorted(folder.glob("*.dcm"))


def assert_same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory, tiny_phantom):
    """A 1-step CT -> CT model (the default 2D networks, tiny) on the phantom, for the CLI tests."""
    from conftest import TINY_RECIPE

    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(tiny_phantom)
    tree["data"]["domains"]["a"] = {"key": "ct", "intensity": "ct_hu"}
    tree["trainer"].update({"steps": 1, "val_every": 0})
    tmp = tmp_path_factory.mktemp("ctrun")
    tree["trainer"]["out_dir"] = str(tmp / "run")
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(tree))
    result = run("fit", tmp / "recipe.yaml", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    return tmp / "run" / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def tagged_series(tmp_path_factory):
    """The real Siemens CT series with the patient and study UIDs its anonymisation emptied filled in."""
    from conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("tagged") / "ct_dicom"
    folder.mkdir()
    # five of the 20 slices (a series of its own): inference on 512 x 512 slices stays quick
    for path in sorted((SHARED_DATA / "totalseg" / "example_ct_dicom").iterdir())[5:10]:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = "Doe^Jane", "P-0042"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SeriesNumber = 4
        ds.save_as(folder / path.name)
    return folder


def test_dicom_series_of_the_real_ct_reads_back_identical(shared_data, tagged_series, tmp_path):
    """The real Siemens series read, written as a derived series, read again: same grid, same HU,
    new UIDs, the patient and study carried over, DERIVED image type, HU through rescale tags."""
    source = tagged_series
    image = read_volume(source)
    hu = sitk.GetArrayFromImage(image)
    out = write_dicom_series(image, tmp_path / "out", kind="ct", description="translate test model",
                             reference=source)
    back = read_volume(out)
    assert_same_grid(image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), hu)
    original = pydicom.dcmread(next(source.iterdir()), stop_before_pixels=True)
    files = dicom_files(out)
    assert len(files) == hu.shape[0]
    headers = [pydicom.dcmread(f) for f in files]
    first = headers[0]
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate",
                    "PatientWeight", "IssuerOfPatientID", "PatientPosition"):
        assert first.get(keyword) == original.get(keyword), keyword
    assert first.SeriesNumber == 1004
    assert first.SeriesInstanceUID != original.SeriesInstanceUID
    assert len({h.SeriesInstanceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == len(headers)
    assert original.SOPInstanceUID not in {h.SOPInstanceUID for h in headers}
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "translate test model" and first.Modality == "CT"
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == -1024.0
    np.testing.assert_allclose([float(v) for v in first.PixelSpacing], [float(v) for v in original.PixelSpacing])
    np.testing.assert_allclose([float(v) for v in first.ImageOrientationPatient],
                               [float(v) for v in original.ImageOrientationPatient], atol=1e-6)
    assert float(first.SliceThickness) == float(original.SliceThickness)
    # pydicom's own reading: stored values x slope + intercept are the HU, slice by slice, in position order
    normal = np.cross(*np.reshape([float(v) for v in first.ImageOrientationPatient], (2, 3)))
    headers.sort(key=lambda h: float(np.dot([float(v) for v in h.ImagePositionPatient], normal)))
    for k, h in enumerate(headers):
        np.testing.assert_allclose([float(v) for v in h.ImagePositionPatient],
                                   image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-3)
        values = h.pixel_array.astype(np.float64) * float(h.RescaleSlope) + float(h.RescaleIntercept)
        np.testing.assert_array_equal(values, hu[k])


def test_dicom_from_nifti_keeps_an_oblique_grid_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(5, 12, 10)).astype(np.int16)
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, 30.5))
    rotation = sitk.VersorTransform((0.1, 0.2, 0.3), 0.4).GetMatrix()
    image.SetDirection(rotation)
    out = write_dicom_series(image, tmp_path / "seg", kind="labels", description="seg")
    back = read_volume(out)
    assert_same_grid(image, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    header = pydicom.dcmread(dicom_files(out)[0])
    assert header.PatientID == "" and header.StudyInstanceUID  # no DICOM input: a new study
    assert header.Modality == "OT" and header.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # labels: secondary capture
    # a left-handed grid (a flipped slice axis) lands on the same physical points
    flipped = sitk.Flip(image, [False, False, True])
    matrix = np.asarray(flipped.GetDirection()).reshape(3, 3)
    assert np.linalg.det(matrix) < 0
    back = read_volume(write_dicom_series(flipped, tmp_path / "flip", kind="labels"))
    resampled = sitk.Resample(back, flipped, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(resampled), sitk.GetArrayFromImage(flipped))


def test_rescale_keeps_integers_exactly_and_spans_reals():
    assert rescale_for(np.array([-1024, 3071], dtype=np.int16), "ct") == (1.0, -1024.0)
    assert rescale_for(np.array([-2000, 100], dtype=np.int16), "ct") == (1.0, -2000.0)
    assert rescale_for(np.array([0, 5], dtype=np.int16), "labels") == (1.0, 0.0)
    slope, intercept = rescale_for(np.array([0.0, 0.5, 1000.0], dtype=np.float32), "mr")
    assert intercept == 0.0 and slope == pytest.approx(1000.0 / 65535)


def test_dicom_output_is_atomic_and_never_replaces_foreign_folders(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 4), dtype=np.int16))
    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(TranslateError, match="notes.txt"):
        write_dicom_series(image, mine, kind="ct")
    assert (mine / "notes.txt").read_text() == "keep me"
    out = write_dicom_series(image, tmp_path / "series", kind="ct")
    first = {f.name for f in dicom_files(out)}
    write_dicom_series(image, out, kind="ct")  # a previous output is replaced whole
    assert {f.name for f in dicom_files(out)} == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_anonymised_series_gets_a_new_study_rather_than_empty_uids(shared_data, tmp_path):
    source = shared_data / "totalseg" / "example_ct_dicom"
    out = write_dicom_series(read_volume(source), tmp_path / "out", kind="ct", reference=source)
    header = pydicom.dcmread(dicom_files(out)[0], stop_before_pixels=True)
    assert header.StudyInstanceUID and header.FrameOfReferenceUID and header.SOPInstanceUID  # never empty UIDs
    assert header.StudyDate == "20221208" and float(header.SliceThickness) == 3.0  # 3 mm slices every 2 mm


def test_infer_writes_a_dicom_series_from_a_dicom_input(ct_run, tagged_series, tmp_path):
    source = tagged_series
    result = run("infer", ct_run, source, tmp_path / "sct_dicom", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    back = read_volume(tmp_path / "sct_dicom")
    assert_same_grid(read_volume(source), back)
    header = pydicom.dcmread(dicom_files(tmp_path / "sct_dicom")[0], stop_before_pixels=True)
    original = pydicom.dcmread(next(source.iterdir()), stop_before_pixels=True)
    assert header.StudyInstanceUID == original.StudyInstanceUID and header.PatientID == original.PatientID
    assert "pix2pix" in header.SeriesDescription and "last.pt" in header.SeriesDescription
    # the same model written as NIfTI holds the same HU
    assert run("infer", ct_run, source, tmp_path / "sct.nii.gz", "--quiet").exit_code == 0
    nifti = sitk.ReadImage(str(tmp_path / "sct.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(nifti))


def test_infer_a_folder_with_one_broken_file(ct_run, tiny_phantom, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    subjects = json.loads((tiny_phantom / "split.json").read_text())["test"] + \
        json.loads((tiny_phantom / "split.json").read_text())["train"][:1]
    (inputs / "a.nii.gz").write_bytes((tiny_phantom / subjects[0] / "ct.nii.gz").read_bytes())
    ct = read_volume(tiny_phantom / subjects[1] / "ct.nii.gz")
    sitk.WriteImage(ct, str(inputs / "b.nrrd"))
    (inputs / "broken.nii.gz").write_bytes(b"not a volume at all")
    (inputs / "readme.txt").write_text("ignored")
    series = inputs / "c_dicom"
    write_dicom_series(ct, series, kind="ct")
    result = run("infer", ct_run, inputs, tmp_path / "out", "--quiet")
    assert result.exit_code == 1, (result.output, result.exception)
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "broken.nii.gz" in skipped[0]
    assert "3 written, 1 failed" in result.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nrrd", "c_dicom"]
    assert_same_grid(read_volume(out / "b.nrrd"), ct)
    assert_same_grid(read_volume(out / "c_dicom"), ct)
    # every input fine: exit code 0; a NIfTI format forced on all of them
    (inputs / "broken.nii.gz").unlink()
    result = run("infer", ct_run, inputs, tmp_path / "out2", "--format", "nii.gz", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["a.nii.gz", "b.nii.gz", "c_dicom.nii.gz"]
    result = run("infer", ct_run, inputs / "b.nrrd", tmp_path / "x.nii.gz", "--format", "dicom", "--quiet")
    assert result.exit_code == 0 and (tmp_path / "x.nii.gz").is_dir()  # --format dicom wins over the name
    assert_same_grid(read_volume(tmp_path / "x.nii.gz"), ct)
    one_line = run("infer", ct_run, inputs, inputs, "--quiet")
    assert one_line.exit_code == 2 and "is the input folder" in one_line.stderr


def test_slice_inferer_holds_only_the_native_output():
    """With ``finish`` the inferer keeps the one-channel native output, not the C-channel network output."""
    import torch

    from translate.engine.inferer import SliceInferer

    volume = np.random.default_rng(0).normal(size=(1, 7, 9, 11)).astype(np.float32)
    five = lambda t: torch.cat([t * k for k in range(5)], dim=1)  # noqa: E731  a 5-channel "network"
    inferer = SliceInferer(axis=1, batch_size=3)
    full = inferer(five, volume, torch.device("cpu"))
    native = inferer(five, volume, torch.device("cpu"), finish=lambda x: x.argmax(0).astype(np.int16))
    assert full.shape == (5, 7, 9, 11) and native.shape == (7, 9, 11) and native.dtype == np.int16
    np.testing.assert_array_equal(native, full.argmax(0))
