"""Test-time augmentation (``translate infer --tta flips|shifts|flips+shifts``): the mean over the training flips,
flipped back, and over one-voxel moves of the input, moved back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from translate.cli import app
from translate.engine.inferer import infer_volume, load_translator, tta_flip_sets
from translate.engine.run import fit_recipe
from translate.errors import TranslateError
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.networks.g_ab.channels=4", "model.networks.g_ba.channels=4", "model.networks.g_ab.n_blocks=1",
        "model.networks.g_ba.n_blocks=1", "model.networks.d_a.channels=4", "model.networks.d_b.channels=4",
        "model.networks.d_a.n_layers=2", "model.networks.d_b.n_layers=2"]


@pytest.fixture(scope="module")
def checkpoint(tiny_unpaired, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tta_run")
    recipe = load_recipe(REPO / "recipes" / "mr2ct-cyclegan.yaml",
                         [f"data.root={tiny_unpaired}", f"trainer.out_dir={out}", "trainer.steps=2", "trainer.val_every=0",
                          "trainer.device=cpu", *TINY])
    fit_recipe(recipe, show_progress=False, announce=lambda _: None)
    return out / "checkpoints" / "last.pt"


def _mr(root: Path) -> Path:
    subject = json.loads((root / "split.json").read_text())["test"][0]
    return root / subject / "mr.nii.gz"


def test_flip_sets_are_every_combination_of_the_training_flips():
    two_d = load_recipe(REPO / "recipes" / "mr2ct-cyclegan.yaml", check_paths=False)  # flips [0, 1] of (H, W)
    assert tta_flip_sets(two_d, "none") == [()]
    assert tta_flip_sets(two_d, "flips") == [(), (-2,), (-1,), (-2, -1)]
    three_d = load_recipe(REPO / "recipes" / "mr2ct-cyclegan-3d.yaml", check_paths=False)  # flips [1, 2] of (D, H, W)
    assert tta_flip_sets(three_d, "flips") == [(), (-2,), (-1,), (-2, -1)]
    one = load_recipe(REPO / "recipes" / "joint-dcgan.yaml", check_paths=False)  # left-right only
    assert tta_flip_sets(one, "flips") == [(), (-1,)]
    no_flips = load_recipe(REPO / "recipes" / "seg-adversarial.yaml", check_paths=False)  # a mirrored slice swaps the kidneys
    with pytest.raises(TranslateError, match=r"--tta flips: .*trains without flips \(data.dataset.flips: \[\]\)"):
        tta_flip_sets(no_flips, "flips")
    with pytest.raises(TranslateError, match="--tta 'rotations': expected one of none, flips, shifts, flips\\+shifts"):
        tta_flip_sets(two_d, "rotations")
    # shifts need no training flips: a recipe without them gets one orientation, and flips+shifts is still refused
    assert tta_flip_sets(no_flips, "shifts") == [()] and tta_flip_sets(two_d, "flips+shifts") == tta_flip_sets(two_d, "flips")
    with pytest.raises(TranslateError, match=r"--tta flips\+shifts: .*trains without flips"):
        tta_flip_sets(no_flips, "flips+shifts")


def test_tta_is_the_mean_of_the_flipped_back_passes(checkpoint, tiny_unpaired):
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(_mr(tiny_unpaired)))).astype(np.float32)
    plain = load_translator(checkpoint, device="cpu")
    manual = np.mean([np.flip(plain.translate_array(np.flip(source, axes).copy()), axes)
                      for axes in [(), (1,), (2,), (1, 2)]], axis=0)  # the slices' (H, W) are the volume's (y, x)
    averaged = load_translator(checkpoint, device="cpu", tta="flips").translate_array(source)
    np.testing.assert_allclose(averaged, manual, atol=0.05)  # HU; float32 sums in another order
    assert np.abs(averaged - plain.translate_array(source)).max() > 1.0  # the passes differ: the mean is not a no-op
    assert len(load_translator(checkpoint, device="cpu", tta="flips").flip_sets) == 4


def test_cli_tta_writes_on_the_input_grid_and_refuses_a_bad_value(checkpoint, tiny_unpaired, tmp_path):
    runner = CliRunner()
    out = tmp_path / "sct.nii.gz"
    result = runner.invoke(app, ["infer", str(checkpoint), str(_mr(tiny_unpaired)), str(out), "--tta", "flips",
                                 "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    source, written = sitk.ReadImage(str(_mr(tiny_unpaired))), sitk.ReadImage(str(out))
    assert written.GetSize() == source.GetSize() and written.GetSpacing() == source.GetSpacing()
    assert written.GetOrigin() == source.GetOrigin() and written.GetDirection() == source.GetDirection()
    bad = tmp_path / "bad.nii.gz"
    result = runner.invoke(app, ["infer", str(checkpoint), str(_mr(tiny_unpaired)), str(bad), "--tta", "rotate"])
    assert result.exit_code == 2 and "--tta 'rotate': expected one of none, flips" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not bad.exists()
    summary = infer_volume(checkpoint, _mr(tiny_unpaired), tmp_path / "plain.nii.gz", device="cpu", progress=False)
    assert summary["tta_passes"] == 1


def test_shift_sets_move_only_the_axes_the_network_strides_over(checkpoint):
    two_d = load_translator(checkpoint, device="cpu", tta="shifts")  # slices along z: y and x move
    assert two_d.shift_sets() == [(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1)] and two_d.passes == 4
    assert load_translator(checkpoint, device="cpu", tta="flips+shifts").passes == 16
    assert load_translator(checkpoint, device="cpu", axis=2, tta="shifts").shift_sets() == \
        [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert load_translator(checkpoint, device="cpu").shift_sets() == [(0, 0, 0)]


def test_shift_tta_is_the_mean_of_the_moved_back_passes(checkpoint, tiny_unpaired):
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(_mr(tiny_unpaired)))).astype(np.float32)
    plain = load_translator(checkpoint, device="cpu")
    x = plain.prepare(source)
    passes = []
    for dy, dx in [(0, 0), (1, 0), (0, 1), (1, 1)]:  # edge-padded at the front, the same voxels cut off again
        moved = np.pad(x, [(0, 0), (0, 0), (dy, 0), (dx, 0)], mode="edge")
        passes.append(plain.translate_network(moved)[:, :, dy:, dx:])
    assert all(p.shape == passes[0].shape for p in passes)
    manual = plain.target.intensity.inverse(np.mean(passes, axis=0))
    shifted = load_translator(checkpoint, device="cpu", tta="shifts")
    averaged = shifted.translate_array(source)
    np.testing.assert_allclose(averaged, manual, atol=0.05)
    # a one-voxel move changes the generator's output (its stride-2 grid): the mean is not a no-op
    assert np.abs(averaged - plain.translate_array(source)).max() > 1.0
    # the file path (int16 HU) is the rounded mean, on the input's grid
    out = shifted.to_output(shifted.translate_network(x))
    assert out.dtype == np.int16 and out.shape == source.shape
    np.testing.assert_array_less(np.abs(out - np.rint(np.clip(averaged, -32768, 32767))), 1.01)


def test_cli_shift_tta_on_the_input_grid(checkpoint, tiny_unpaired, tmp_path):
    out = tmp_path / "sct_shifts.nii.gz"
    result = CliRunner().invoke(app, ["infer", str(checkpoint), str(_mr(tiny_unpaired)), str(out), "--tta",
                                      "flips+shifts", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    source, written = sitk.ReadImage(str(_mr(tiny_unpaired))), sitk.ReadImage(str(out))
    assert written.GetSize() == source.GetSize() and written.GetSpacing() == source.GetSpacing()
    assert written.GetOrigin() == source.GetOrigin() and written.GetDirection() == source.GetDirection()
    summary = infer_volume(checkpoint, _mr(tiny_unpaired), tmp_path / "s.nii.gz", device="cpu", progress=False,
                           tta="shifts")
    assert summary["tta_passes"] == 4
