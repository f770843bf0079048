"""Volume I/O on real CT (TotalSegmentator test files): DICOM, NIfTI, NRRD, MHA; atomic writes; bad inputs."""

from __future__ import annotations

import os

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from translate.data.io import (WRITE_EXTENSIONS, array_to_image, check_same_grid, geometry, image_to_array,
                               is_dicom_folder, read_volume, same_grid, write_volume)
from translate.errors import TranslateError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg"
DICOM = DATA / "example_ct_dicom"
CT_SM = DATA / "example_ct_sm.nii.gz"
# Under CI (CI=true) the shared data is always beside the clone: these tests run, and fail if it is not.
pytestmark = pytest.mark.skipif(not DATA.is_dir() and not os.environ.get("CI"), reason=f"real data folder {DATA} is absent")


def lps_affine(image: sitk.Image) -> np.ndarray:
    """Voxel (i, j, k) -> LPS mm, from SimpleITK spacing, origin and direction."""
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def assert_one_line_error(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("source", [DICOM, CT_SM], ids=["dicom", "nifti"])
def test_read_write_nifti_agrees_with_simpleitk_and_nibabel(source, tmp_path):
    original = read_volume(source, what="CT")
    hu = image_to_array(original)
    assert np.issubdtype(hu.dtype, np.integer)  # HU kept as integers, rescale already applied
    assert -1200 < hu.min() < -900 and hu.max() > 1000  # air and bone in HU, not raw stored values
    written = write_volume(original, tmp_path / "ct.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]

    again = sitk.ReadImage(str(written))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), hu)
    assert again.GetPixelID() == original.GetPixelID()
    assert same_grid(again, original)

    nifti = nibabel.load(str(written))
    np.testing.assert_array_equal(np.asarray(nifti.dataobj).transpose(2, 1, 0), hu)  # (x, y, z) -> (z, y, x)
    ras_from_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(nifti.affine, ras_from_lps @ lps_affine(original), atol=1e-4)


def test_dicom_series_geometry_and_detection():
    image = read_volume(DICOM)
    assert is_dicom_folder(DICOM) and not is_dicom_folder(CT_SM)
    assert image.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii"])
def test_round_trip_keeps_geometry_and_values(suffix, tmp_path):
    original = read_volume(CT_SM)
    path = write_volume(original, tmp_path / "deep" / "folder" / f"ct{suffix}")
    again = read_volume(path)
    assert again.GetPixelID() == original.GetPixelID()
    np.testing.assert_array_equal(image_to_array(again), image_to_array(original))
    for key, value in geometry(original).items():
        np.testing.assert_allclose(geometry(again)[key], value, atol=1e-5)


def test_array_to_image_copies_grid_and_checks_shape():
    reference = read_volume(CT_SM)
    body = image_to_array(reference) > -500
    mask = array_to_image(body, reference)
    assert mask.GetPixelID() == sitk.sitkUInt8 and same_grid(mask, reference)
    assert array_to_image(body, reference, dtype=np.float32).GetPixelID() == sitk.sitkFloat32
    with pytest.raises(TranslateError) as excinfo:
        array_to_image(body[:, :, :-1], reference)
    assert_one_line_error(excinfo, "(30, 101, 121)", "(30, 101, 122)")


def test_check_same_grid_names_both_and_the_property():
    image = read_volume(CT_SM)
    check_same_grid(image, image, "prediction a", "target b")
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(v + 1.0 for v in image.GetOrigin()))
    assert not same_grid(moved, image) and same_grid(moved, image, tol=1.01)
    with pytest.raises(TranslateError) as excinfo:
        check_same_grid(moved, image, "prediction a.nii", "target b.nii")
    assert_one_line_error(excinfo, "prediction a.nii", "target b.nii", "origin")
    with pytest.raises(TranslateError) as excinfo:
        check_same_grid(image[:, :, :10], image, "mask m.nii", "target b.nii")
    assert_one_line_error(excinfo, "mask m.nii", "size", "122 x 101 x 10")


def test_largest_dicom_series_is_chosen_with_a_warning(tmp_path):
    import pydicom  # a declared dependency: never skipped
    for index, source in enumerate(sorted(DICOM.iterdir())[:6]):
        dataset = pydicom.dcmread(source)
        dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1" if index < 4 else "1.2.826.0.1.3680043.2.2"
        dataset.save_as(tmp_path / f"slice{index}.dcm")
    with pytest.warns(UserWarning, match=r"1\.2\.826\.0\.1\.3680043\.2\.1 with 4 files"):
        image = read_volume(tmp_path)
    assert image.GetSize() == (512, 512, 4)


def test_atomic_write_leaves_no_temp_and_keeps_existing_output(tmp_path, monkeypatch):
    image = read_volume(CT_SM)
    output = write_volume(image, tmp_path / "fake_ct.nii.gz")
    before = output.read_bytes()

    def half_written(img, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("ITK ERROR: NiftiImageIO(0x1): disk full")

    monkeypatch.setattr(sitk, "WriteImage", half_written)
    with pytest.raises(TranslateError) as excinfo:
        write_volume(image[:, :, :5], output)
    assert_one_line_error(excinfo, str(output), "disk full")
    assert output.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fake_ct.nii.gz"]


def test_write_rejects_unknown_extension(tmp_path):
    with pytest.raises(TranslateError) as excinfo:
        write_volume(read_volume(CT_SM), tmp_path / "ct.png")
    assert_one_line_error(excinfo, "ct.png", *WRITE_EXTENSIONS)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("keep", [0.5, 0.0005], ids=["data-cut", "header-cut"])
def test_truncated_nifti_is_refused(keep, tmp_path):
    data = CT_SM.read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TranslateError) as excinfo:
        read_volume(path, what="target CT")
    assert_one_line_error(excinfo, "cannot read target CT", str(path), "expected NIfTI, NRRD, MHA")


def test_truncated_uncompressed_nifti_is_refused(tmp_path):
    full = write_volume(read_volume(CT_SM), tmp_path / "full.nii")
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(TranslateError) as excinfo:
        read_volume(cut)
    assert_one_line_error(excinfo, "cut.nii", "truncated")


def test_inflated_length_counts_every_gzip_member_wherever_the_reads_split():
    import gzip
    import io

    from translate.data.io import _inflated_length

    class Reads(io.BytesIO):  # hands out the given pieces, one per read, whatever size is asked
        def __init__(self, pieces):
            super().__init__()
            self.pieces = list(pieces)

        def read(self, size=-1):
            return self.pieces.pop(0) if self.pieces else b""

    first, second = gzip.compress(b"a" * 5000), gzip.compress(b"b" * 3000)
    # a member ending exactly where a read ends, one split inside a read, and both in one read
    for pieces in ([first, second], [first[:10], first[10:] + second[:7], second[7:]], [first + second]):
        assert _inflated_length(Reads(pieces), wbits=31, members=True) == 8000
    assert _inflated_length(Reads([first, second]), wbits=31) == 5000  # one stream: what follows is not counted
    assert _inflated_length(Reads([first, second[:-9]]), wbits=31, members=True) is None  # second member cut short


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(TranslateError) as excinfo:
        read_volume(tmp_path / "missing.nii.gz", what="source MR")
    assert_one_line_error(excinfo, "source MR file not found", "missing.nii.gz")

    (tmp_path / "empty").mkdir()
    with pytest.raises(TranslateError) as excinfo:
        read_volume(tmp_path / "empty")
    assert_one_line_error(excinfo, "empty")

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(TranslateError) as excinfo:
        read_volume(tmp_path / "notes")
    assert_one_line_error(excinfo, "no DICOM series")

    slice_2d = sitk.GetImageFromArray(image_to_array(read_volume(CT_SM))[10])
    sitk.WriteImage(slice_2d, str(tmp_path / "slice.nii.gz"))
    with pytest.raises(TranslateError) as excinfo:
        read_volume(tmp_path / "slice.nii.gz", what="CT")
    assert_one_line_error(excinfo, "CT", "slice.nii.gz is 2D", "122 x 101", "expected a 3D volume")

    hu = image_to_array(read_volume(CT_SM)).astype(np.float32)
    hu[3, 40, 50], hu[7, 1, 2] = np.nan, -np.inf
    for name in ("nan.nrrd", "nan.nii.gz"):  # ITK's NIfTI reader alone would turn NaN/Inf into 0
        sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / name))
        with pytest.raises(TranslateError) as excinfo:
            read_volume(tmp_path / name)
        assert_one_line_error(excinfo, f"{name} contains 2 NaN/Inf voxels")

    rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(TranslateError) as excinfo:
        read_volume(tmp_path / "rgb.mha")
    assert_one_line_error(excinfo, "rgb.mha has 3 components")


def test_a_dicom_series_with_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    import shutil

    series = DATA / "example_ct_dicom"
    folder = tmp_path / "gap"
    shutil.copytree(series, folder)
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    Path(files[len(files) // 2]).unlink()
    with pytest.raises(TranslateError) as err:
        read_volume(folder)
    message = str(err.value)
    assert "not evenly spaced" in message and "4.00 mm" in message and "2.00 mm" in message and "\n" not in message
    assert read_volume(series).GetSize()[2] == len(files)  # the complete series still reads
