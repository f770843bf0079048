"""End to end through the command line: fit -> infer -> evaluate, resume, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from typer.testing import CliRunner

from translate.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_recipe(tree: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


def test_help_is_quick_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "translate.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("fit", "infer", "evaluate", "data", "losses"):
        assert command in out.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_phantom):
    """One 2-step run shared by the tests that only read its outputs."""
    from conftest import TINY_RECIPE
    import copy

    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(tiny_phantom)
    tmp = tmp_path_factory.mktemp("trained")
    tree["trainer"]["out_dir"] = str(tmp / "run")
    recipe = write_recipe(tree, tmp / "recipe.yaml")
    result = run("fit", recipe, "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    return tmp / "run", tiny_phantom


def test_fit_writes_a_complete_run(trained):
    out, _ = trained
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "checkpoints" / "step_0000002.pt").is_file()
    assert yaml.safe_load((out / "recipe.yaml").read_text())["trainer"]["steps"] == 2
    assert sorted(p.name for p in (out / "images").glob("*.png")) == ["step_0000001.png", "step_0000002.png"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "g_total" in r]
    assert [r["step"] for r in losses] == [1, 2]
    assert {"g_total", "g_adversarial", "g_pixel", "d_total", "d_adversarial"} <= set(losses[0])
    validations = [r for r in records if "val_mae_hu" in r]
    assert [r["step"] for r in validations] == [1, 2]
    assert all(0 < r["val_mae_hu"] < 3000 and 0 <= r["val_ssim"] <= 1 for r in validations)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_val"] == pytest.approx(min(r["val_mae_hu"] for r in validations), abs=1e-5)
    assert list(out.glob("checkpoints/.*")) == []  # no temporary files left
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["model"] == "pix2pix" and state["step"] == 2


def test_infer_keeps_the_input_grid_and_writes_hu(trained, tmp_path):
    out, phantom = trained
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    source = phantom / subject / "mr.nii.gz"
    result = run("infer", out / "checkpoints" / "last.pt", source, tmp_path / "sct.nii.gz", "--quiet", "--batch-size", "4")
    assert result.exit_code == 0, (result.output, result.exception)
    ref, pred = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "sct.nii.gz"))
    assert pred.GetSize() == ref.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(nib.load(tmp_path / "sct.nii.gz").affine, nib.load(source).affine, atol=1e-4)
    hu = sitk.GetArrayFromImage(pred)
    assert hu.dtype == np.int16 and -1024 <= hu.min() and hu.max() <= 2000


def test_infer_on_an_odd_sized_volume_along_another_axis(trained, tmp_path):
    out, _ = trained
    mr = sitk.GetImageFromArray(np.random.default_rng(0).random((5, 21, 27)).astype(np.float32) * 500)
    mr.SetSpacing((0.8, 0.9, 2.5))
    mr.SetOrigin((10.0, -20.0, 30.0))
    sitk.WriteImage(mr, str(tmp_path / "odd.nrrd"))
    result = run("infer", out / "checkpoints" / "last.pt", tmp_path / "odd.nrrd", tmp_path / "odd_ct.mha",
                 "--quiet", "--axis", "2")
    assert result.exit_code == 0, (result.output, result.exception)
    pred = sitk.ReadImage(str(tmp_path / "odd_ct.mha"))
    assert pred.GetSize() == mr.GetSize() and pred.GetOrigin() == mr.GetOrigin()


@pytest.mark.parametrize("name", ["example_mr_sm.nii.gz", "example_ct_dicom"])
def test_infer_on_real_volumes_keeps_their_grid(trained, shared_data, tmp_path, name):
    """A real MR NIfTI and a real DICOM series folder in; NIfTI out on exactly their grid."""
    out, _ = trained
    source = shared_data / "totalseg" / name
    result = run("infer", out / "checkpoints" / "last.pt", source, tmp_path / "sct.nii.gz", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    if source.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(source)))
        ref = reader.Execute()
    else:
        ref = sitk.ReadImage(str(source))
        np.testing.assert_allclose(nib.load(tmp_path / "sct.nii.gz").affine, nib.load(source).affine, atol=1e-4)
    pred = sitk.ReadImage(str(tmp_path / "sct.nii.gz"))
    assert pred.GetSize() == ref.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), ref.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(pred.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(pred.GetDirection(), ref.GetDirection(), atol=1e-6)


def test_evaluate_prints_table_and_json(trained, tmp_path):
    out, phantom = trained
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    run("infer", out / "checkpoints" / "last.pt", phantom / subject / "mr.nii.gz", tmp_path / "sct.nii.gz", "--quiet")
    result = run("evaluate", tmp_path / "sct.nii.gz", phantom / subject / "ct.nii.gz")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "MAE (HU)" in result.stdout and "SSIM" in result.stdout
    metrics = json.loads((tmp_path / "sct.metrics.json").read_text())
    assert metrics["mae_hu"] > 0 and 0 < metrics["ssim"] <= 1
    # per tissue class and inside a named region (here the phantom's labels > 0 = the body)
    result = run("evaluate", tmp_path / "sct.nii.gz", phantom / subject / "ct.nii.gz",
                 "--region", f"labelled={phantom / subject / 'labels.nii.gz'}", "--out", tmp_path / "r.json")
    assert result.exit_code == 0, (result.output, result.exception)
    regional = json.loads((tmp_path / "r.json").read_text())
    assert {"mae_soft", "mae_bone", "mae_air", "bias_hu", "bias_soft", "mae_labelled", "bias_labelled"} <= set(regional)
    assert "bias in labelled (HU)" in result.stdout
    assert regional["voxels_soft"] + regional["voxels_bone"] + regional["voxels_air"] == regional["voxels"]
    one_line_error(run("evaluate", tmp_path / "sct.nii.gz", phantom / subject / "ct.nii.gz", "--region", "x"),
                   "expected NAME=MASK")


def test_resume_continues_with_identical_losses(tiny_recipe, tmp_path):
    tiny_recipe["trainer"].update(steps=4, checkpoint_every=2, image_every=100)
    straight = dict(tiny_recipe, trainer=dict(tiny_recipe["trainer"], out_dir=str(tmp_path / "straight")))
    split = dict(tiny_recipe, trainer=dict(tiny_recipe["trainer"], out_dir=str(tmp_path / "split")))
    a = write_recipe(straight, tmp_path / "a.yaml")
    b = write_recipe(split, tmp_path / "b.yaml")
    assert run("fit", a, "--quiet").exit_code == 0
    assert run("fit", b, "--quiet", "--stop-after", "2").exit_code == 0
    assert not (tmp_path / "split" / "checkpoints" / "step_0000004.pt").exists()
    again = run("fit", b, "--quiet")
    one_line_error(again, "already holds a run", "--resume")
    resumed = run("fit", b, "--quiet", "--resume")
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)

    def losses(folder):
        return {r["step"]: r for r in map(json.loads, (tmp_path / folder / "metrics.jsonl").read_text().splitlines())}

    full, parts = losses("straight"), losses("split")
    assert sorted(parts) == [1, 2, 3, 4]
    for step in (3, 4):
        assert parts[step] == full[step], step


def test_resume_without_a_checkpoint(tiny_recipe, tmp_path):
    one_line_error(run("fit", write_recipe(tiny_recipe, tmp_path / "r.yaml"), "--resume", "--quiet"), "--resume: no checkpoint")


def test_fit_bad_inputs(tiny_recipe, tmp_path):
    one_line_error(run("fit", tmp_path / "missing.yaml"), "recipe file not found")
    recipe = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    one_line_error(run("fit", recipe, "trainer.stepz=3"), "unknown key 'trainer.stepz'")
    one_line_error(run("fit", recipe, "objective.generator=[{name: nonsense}]"), "nonsense")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fit_refuses_a_batch_larger_than_the_data(tiny_recipe, tmp_path):
    tiny_recipe["data"]["batch_size"] = 1000
    result = run("fit", write_recipe(tiny_recipe, tmp_path / "r.yaml"), "--quiet")
    one_line_error(result, "data.batch_size=1000", "expected at least one batch")
    assert not (Path(tiny_recipe["trainer"]["out_dir"]) / "checkpoints").exists()


def test_fit_refuses_pairs_on_different_grids(tiny_recipe, tiny_phantom, tmp_path):
    import shutil

    root = tmp_path / "phantom"
    shutil.copytree(tiny_phantom, root)
    subject = json.loads((root / "split.json").read_text())["train"][0]
    ct = sitk.ReadImage(str(root / subject / "ct.nii.gz"))
    sitk.WriteImage(ct[:, :, :-1], str(root / subject / "ct.nii.gz"))
    result = run("fit", write_recipe(tiny_recipe, tmp_path / "r.yaml"), f"data.root={root}", "--quiet")
    one_line_error(result, subject)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_infer_bad_inputs(trained, tmp_path):
    out, phantom = trained
    ckpt = out / "checkpoints" / "last.pt"
    target = tmp_path / "out.nii.gz"
    one_line_error(run("infer", ckpt, tmp_path / "nope.nii.gz", target), "not found")
    truncated = tmp_path / "cut.nii.gz"
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    truncated.write_bytes((phantom / subject / "mr.nii.gz").read_bytes()[:300])
    one_line_error(run("infer", ckpt, truncated, target), "cut.nii.gz")
    flat = sitk.GetImageFromArray(np.zeros((16, 16), np.float32))
    sitk.WriteImage(flat, str(tmp_path / "flat.nii.gz"))
    one_line_error(run("infer", ckpt, tmp_path / "flat.nii.gz", target), "2D")
    nan = np.ones((4, 16, 16), np.float32)
    nan[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.nii.gz"))
    one_line_error(run("infer", ckpt, tmp_path / "nan.nii.gz", target), "NaN")
    assert not target.exists() and not list(tmp_path.glob(".out*"))


def test_infer_refuses_foreign_checkpoints(trained, tmp_path):
    out, phantom = trained
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    source = phantom / subject / "mr.nii.gz"
    target = tmp_path / "out.nii.gz"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    one_line_error(run("infer", tmp_path / "other.pt", source, target), "not a translate checkpoint")
    (tmp_path / "text.pt").write_text("hello")
    one_line_error(run("infer", tmp_path / "text.pt", source, target), "cannot read checkpoint", "not a PyTorch checkpoint")
    assert "weights_only" not in run("infer", tmp_path / "text.pt", source, target).stderr  # torch's advice, not the cause
    whole = (out / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])  # an interrupted copy
    one_line_error(run("infer", tmp_path / "cut.pt", source, target), "cannot read checkpoint", "truncated")
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    state["recipe"]["model"]["networks"]["generator"]["channels"] = [4, 8, 16]
    torch.save(state, tmp_path / "mismatch.pt")
    one_line_error(run("infer", tmp_path / "mismatch.pt", source, target), "do not fit")
    assert not target.exists()


def test_evaluate_grid_mismatch(trained, tmp_path):
    _, phantom = trained
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    ct = sitk.ReadImage(str(phantom / subject / "ct.nii.gz"))
    sitk.WriteImage(ct[:, :, :-1], str(tmp_path / "short.nii.gz"))
    one_line_error(run("evaluate", tmp_path / "short.nii.gz", phantom / subject / "ct.nii.gz"), "short.nii.gz")


def test_losses_command_lists_the_catalogue():
    result = run("losses")
    assert result.exit_code == 0, (result.output, result.exception)
    for name in ("adversarial", "pixel", "cycle", "gradient", "structure", "perceptual", "shape", "kspace", "kl"):
        assert name in result.stdout


def test_phantom_command(tmp_path):
    result = run("data", "phantom", tmp_path / "ph", "--subjects", "3", "--seed", "1")
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "ph" / "split.json").is_file()


@pytest.fixture(scope="module")
def tiny_denoise(tiny_phantom, tmp_path_factory):
    """Low-dose / routine-dose slabs of one phantom CT, the layout of the denoising recipes (key ``low``)."""
    from translate.data.lowdose import write_denoise_pairs

    root = tmp_path_factory.mktemp("denoise")
    write_denoise_pairs([sorted(tiny_phantom.glob("*/ct.nii.gz"))[0]], root, 0.25, val_fraction=0.3, test_fraction=0.3,
                        gap=0, progress=False)  # 6 slices: 2 train, 2 val, 2 test
    for subject in root.glob("ct-*"):  # the test below infers from each test subject's mr.nii.gz
        (subject / "mr.nii.gz").write_bytes((subject / "low.nii.gz").read_bytes())
    return root


#: label map -> image and (image, mask) from noise: trained and sampled in tests/test_synthesis_models.py
SYNTHESIS_RECIPES = ("spade-ct.yaml", "joint-dcgan.yaml")
SYNTHESIS_RECIPES += ("joint-stylegan.yaml",)  # trained and sampled in tests/test_stylegan.py


@pytest.mark.parametrize("recipe", sorted(p for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml")
                                          if p.name not in SYNTHESIS_RECIPES), ids=lambda p: p.name)
def test_every_shipped_recipe_trains_and_infers(recipe, request, tmp_path):
    """Each recipe as shipped, for one step on the tiny phantom (real paired patients for the recipes
    that read a valid mask), then a whole-volume inference."""
    tiny_phantom = request.getfixturevalue("tiny_real" if "valid_key: valid" in recipe.read_text() else "tiny_phantom")
    if "train_a" in recipe.read_text():  # unpaired recipes read the disjoint train_a / train_b halves
        tiny_phantom = request.getfixturevalue(
            "tiny_real_unpaired" if "valid_key: valid" in recipe.read_text()
            else "small_unpaired" if "num_scales: 3" in recipe.read_text() else "tiny_unpaired")
    if "key: low" in recipe.read_text():  # denoising: low-dose -> routine-dose CT
        tiny_phantom = request.getfixturevalue("tiny_denoise")
    out = tmp_path / "run"
    result = run("fit", recipe, f"data.root={tiny_phantom}", f"trainer.out_dir={out}", "trainer.steps=1",
                 "trainer.val_every=1", "data.batch_size=2", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    subject = json.loads((tiny_phantom / "split.json").read_text())["test"][0]
    result = run("infer", out / "checkpoints" / "last.pt", tiny_phantom / subject / "mr.nii.gz",
                 tmp_path / "sct.nii.gz", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    assert sitk.ReadImage(str(tmp_path / "sct.nii.gz")).GetSize() == sitk.ReadImage(
        str(tiny_phantom / subject / "mr.nii.gz")).GetSize()


def test_version_strict_json_umask_and_refusals(trained, tmp_path):
    import os

    out, phantom = trained
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("translate ")
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    source = phantom / subject / "mr.nii.gz"
    checkpoint = out / "checkpoints" / "last.pt"
    copy = tmp_path / "mr.nii.gz"
    copy.write_bytes(source.read_bytes())
    one_line_error(run("infer", checkpoint, copy, copy), "is the input volume")
    assert copy.read_bytes() == source.read_bytes()
    one_line_error(run("infer", checkpoint, source, tmp_path / "out.png"), "unknown extension")
    previous = os.umask(0o022)
    try:
        assert run("infer", checkpoint, source, tmp_path / "sct.nii.gz", "--quiet").exit_code == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "sct.nii.gz").stat().st_mode & 0o777 == 0o644  # the user's umask, not mkstemp's 0600
    ct = phantom / subject / "ct.nii.gz"
    assert run("evaluate", ct, ct, "--out", tmp_path / "same.json").exit_code == 0
    assert json.loads((tmp_path / "same.json").read_text())["psnr"] is None  # strict JSON, no Infinity


def test_a_non_finite_loss_is_one_line_naming_the_term(tiny_recipe, tmp_path):
    tiny_recipe["objective"]["generator"].append({"name": "helpers_user_terms.NanTerm"})
    result = run("fit", write_recipe(tiny_recipe, tmp_path / "nan.yaml"), "--quiet")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "non-finite loss at step 1" in errors[0] and "g_nan_term" in errors[0]


def test_run_folder_is_protected_and_resume_keeps_one_record_per_step(tiny_recipe, tmp_path):
    tiny_recipe["trainer"].update({"steps": 4, "val_every": 0, "checkpoint_every": 2})
    recipe = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    out = Path(tiny_recipe["trainer"]["out_dir"])
    assert run("fit", recipe, "--quiet", "--stop-after", "3").exit_code == 0  # checkpoints at 2 and 3
    # as if killed during step 3's write and after logging step 3: a leftover temporary, last.pt at step 2
    (out / "checkpoints" / "step_0000002.pt").replace(out / "checkpoints" / "last.pt")
    (out / "checkpoints" / ".last.pt.tmp-abc.tmp").write_bytes(b"half")
    one_line_error(run("fit", recipe, "--quiet"), "already holds a run", "--overwrite")
    one_line_error(run("fit", recipe, "trainer.seed=5", "--resume", "--quiet"), "recipe key 'trainer.seed' differs")
    assert run("fit", recipe, "--resume", "--quiet").exit_code == 0
    assert not list((out / "checkpoints").glob(".*.tmp-*"))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "g_total" in json.loads(line)]
    assert steps == [1, 2, 3, 4]  # step 3 was replayed, not logged twice
    (out / "notes.txt").write_text("mine")
    assert run("fit", recipe, "--overwrite", "--quiet").exit_code == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only what a run writes


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous_one(tiny_recipe, tmp_path, monkeypatch):
    import errno

    from translate.engine import checkpoint as checkpoint_module

    tiny_recipe["trainer"].update({"steps": 3, "val_every": 0, "checkpoint_every": 1})
    recipe = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    out = Path(tiny_recipe["trainer"]["out_dir"])
    assert run("fit", recipe, "--quiet", "--stop-after", "1").exit_code == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    original = checkpoint_module.torch.save

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    result = run("fit", recipe, "--resume", "--quiet")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "No space left on device" in errors[0] and "intact" in errors[0]
    monkeypatch.setattr(checkpoint_module.torch, "save", original)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert not list((out / "checkpoints").glob(".*.tmp-*"))


class _Planted:
    """Unpickling this would run code (create a file): a checkpoint must never be loaded that way."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(trained, tmp_path):
    out, phantom = trained
    marker = tmp_path / "ran.txt"
    planted = tmp_path / "planted.pt"
    torch.save({"format": "translate-checkpoint", "version": 2, "payload": _Planted(str(marker))}, planted)
    subject = json.loads((phantom / "split.json").read_text())["test"][0]
    one_line_error(run("infer", planted, phantom / subject / "mr.nii.gz", tmp_path / "x.nii.gz"), "cannot read checkpoint")
    assert not marker.exists() and not (tmp_path / "x.nii.gz").exists()
