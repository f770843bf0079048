"""Low-dose CT simulation: noise grows as 1/sqrt(dose) on a uniform cylinder, the mean HU stays,
geometry and int16 HU survive, seeds replay, a DICOM series in gives a volume out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from translate.cli import app
from translate.data.lowdose import MU_WATER, hu_to_mu, simulate_volume
from translate.errors import TranslateError

REPO = Path(__file__).resolve().parents[1]
DICOM = REPO.parent / "shared" / "data" / "totalseg" / "example_ct_dicom"
runner = CliRunner()

SIZE, PIXEL, RADIUS, TISSUE = 64, 4.0, 25, 40.0  # a 200 mm water-like cylinder in a 256 mm field


def cylinder(slices: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    plane = np.where(np.hypot(yy, xx) <= RADIUS, TISSUE, -1000.0)
    return np.repeat(plane[None], slices, axis=0).astype(np.int16)


def roi() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    return np.hypot(yy, xx) <= 12


def noise(volume: np.ndarray) -> tuple[float, float]:
    values = volume[:, roi()].astype(np.float64)
    return float(np.mean(values.std(axis=1))), float(values.mean())


def test_hu_to_mu_is_water_at_zero_and_never_negative():
    assert hu_to_mu(np.array(0.0)) == pytest.approx(MU_WATER)
    assert hu_to_mu(np.array(-1000.0)) == 0.0 and hu_to_mu(np.array(-3024.0)) == 0.0
    assert hu_to_mu(np.array(1000.0)) == pytest.approx(2 * MU_WATER)


def test_noise_grows_as_one_over_sqrt_dose_and_the_mean_stays():
    phantom = cylinder()
    stds, means = {}, {}
    for dose in (1.0, 0.25, 0.0625):
        stds[dose], means[dose] = noise(simulate_volume(phantom, PIXEL, dose, seed=1, reference="ideal"))
    assert 3.0 < stds[1.0] < 100.0, stds  # a visible but sane noise at full dose
    for dose in (0.25, 0.0625):
        assert stds[dose] / stds[1.0] == pytest.approx(1.0 / np.sqrt(dose), rel=0.15), stds
        assert abs(means[dose] - TISSUE) < 5.0, means
    assert abs(means[1.0] - TISSUE) < 3.0, means


def test_routine_reference_adds_only_the_missing_noise():
    """From an acquisition already at full dose, 'routine' reaches the noise of a real quarter dose."""
    full = simulate_volume(cylinder(), PIXEL, 1.0, seed=3, reference="ideal")
    quarter = simulate_volume(full, PIXEL, 0.25, seed=4, reference="routine")
    std_full, _ = noise(full)
    std_quarter, mean_quarter = noise(quarter)
    assert std_quarter / std_full == pytest.approx(2.0, rel=0.15), (std_full, std_quarter)
    assert abs(mean_quarter - TISSUE) < 5.0
    assert np.array_equal(simulate_volume(full, PIXEL, 1.0, reference="routine"), full)  # full dose: unchanged


def test_electronic_noise_adds_noise_and_hann_smooths():
    phantom = cylinder(2)
    plain, _ = noise(simulate_volume(phantom, PIXEL, 0.25, seed=0, reference="ideal"))
    electronic, _ = noise(simulate_volume(phantom, PIXEL, 0.25, seed=0, reference="ideal", electronic_noise=40.0))
    hann, _ = noise(simulate_volume(phantom, PIXEL, 0.25, seed=0, reference="ideal", filter_name="hann"))
    assert electronic > 1.05 * plain and hann < 0.9 * plain


def test_seed_replays_and_changes_the_noise():
    phantom = cylinder(2)
    a = simulate_volume(phantom, PIXEL, 0.5, seed=7, reference="ideal")
    assert a.dtype == np.int16
    assert np.array_equal(a, simulate_volume(phantom, PIXEL, 0.5, seed=7, reference="ideal"))
    assert not np.array_equal(a, simulate_volume(phantom, PIXEL, 0.5, seed=8, reference="ideal"))


def test_outside_the_reconstruction_field_is_kept():
    phantom = cylinder(1)
    phantom[0, :3] = -3024  # scanner padding
    out = simulate_volume(phantom, PIXEL, 0.25, seed=0, reference="ideal")
    assert np.all(out[0, :3] == -3024)


def test_cli_keeps_geometry_and_int16(tmp_path):
    image = sitk.GetImageFromArray(cylinder(3))
    image.SetSpacing((PIXEL, PIXEL, 5.0))
    image.SetOrigin((-120.0, 30.5, 7.0))
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(source))
    out = tmp_path / "low.nrrd"
    result = runner.invoke(app, ["data", "lowdose", str(source), str(out), "--dose", "0.25", "--seed", "2",
                                 "--reference", "ideal", "--filter", "hann", "--quiet"])
    assert result.exit_code == 0, result.output
    low = sitk.ReadImage(str(out))
    assert low.GetPixelID() == sitk.sitkInt16
    for key in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(low, key)(), getattr(image, key)()), key
    expected = simulate_volume(cylinder(3), PIXEL, 0.25, seed=2, reference="ideal", filter_name="hann")
    assert np.array_equal(sitk.GetArrayFromImage(low), expected)


@pytest.mark.parametrize("args, fragment", [
    (["--dose", "1.5"], "--dose 1.5"), (["--dose", "0"], "--dose 0"), (["--filter", "box"], "--filter 'box'"),
    (["--reference", "clean"], "--reference 'clean'"), (["--i0", "-1"], "--i0"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, fragment):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(cylinder(2)), str(source))
    result = runner.invoke(app, ["data", "lowdose", str(source), str(tmp_path / "low.nii.gz"), "--quiet", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "low.nii.gz").exists()


def test_non_square_pixels_are_refused(tmp_path):
    from translate.data.lowdose import simulate_file

    image = sitk.GetImageFromArray(cylinder(2))
    image.SetSpacing((1.0, 2.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    with pytest.raises(TranslateError, match="square pixels"):
        simulate_file(tmp_path / "ct.nii.gz", tmp_path / "low.nii.gz", 0.25, progress=False)


def test_real_dicom_series_in_volume_out(tmp_path):
    """Three real CT slices (the shared Siemens series, downsampled 8x in-plane to stay fast)."""
    import pydicom

    if not DICOM.is_dir():
        pytest.fail(f"real DICOM series {DICOM} is absent")
    folder = tmp_path / "series"
    folder.mkdir()
    for index, path in enumerate(sorted(DICOM.iterdir())[:3]):
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array[::8, ::8].copy()
        ds.PixelData, ds.Rows, ds.Columns = pixels.tobytes(), pixels.shape[0], pixels.shape[1]
        ds.PixelSpacing = [float(v) * 8 for v in ds.PixelSpacing]
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian  # stored decompressed
        ds.save_as(folder / f"slice{index}.dcm")
    out = tmp_path / "low.nii.gz"
    result = runner.invoke(app, ["data", "lowdose", str(folder), str(out), "--dose", "0.25", "--quiet"])
    assert result.exit_code == 0, result.output
    source, low = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))), sitk.ReadImage(str(out))
    assert low.GetSize() == (64, 64, 3) and low.GetPixelID() == sitk.sitkInt16
    for key in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(low, key)(), getattr(source, key)(), atol=1e-4), key
    before, after = sitk.GetArrayFromImage(source).astype(float), sitk.GetArrayFromImage(low).astype(float)
    body = before > -200
    difference = (after - before)[body]
    assert 1.0 < difference.std() < 300.0 and abs(difference.mean()) < 10.0
