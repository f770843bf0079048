"""The core shared by every backbone: domains decide intensities, roles decide networks, registries decide
datasets and inferers, and recipe checks fail in one line before any data is read."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml
from typer.testing import CliRunner

from translate.cli import app
from translate.data.io import image_to_array, read_volume
from translate.engine.inferer import INFERERS, SliceInferer, SlidingWindowInferer, VolumeTranslator
from translate.errors import TranslateError
from translate.recipe import load_recipe

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _fit(tree: dict, tmp_path: Path, name: str = "recipe.yaml", *extra: str):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    result = run("fit", path, "--quiet", *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    return Path(tree["trainer"]["out_dir"]) / "checkpoints" / "last.pt"


def _test_subject(root: Path) -> str:
    return json.loads((root / "split.json").read_text())["test"][0]


def _own_forward_in_hu(checkpoint: Path, source_hu_or_signal: np.ndarray, spec_in, window) -> np.ndarray:
    """What the trainer's own network computes on each slice, mapped back with the target's window."""
    translator = VolumeTranslator.from_checkpoint(checkpoint, device="cpu")
    x = spec_in.forward(source_hu_or_signal, spec_in.fit(source_hu_or_signal))
    with torch.no_grad():
        out = translator.model.generator(torch.from_numpy(x).permute(1, 0, 2, 3).contiguous())
    return window.inverse(out.permute(1, 0, 2, 3).numpy())


def test_ct_to_ct_infers_with_the_hu_window_on_both_sides(tiny_recipe, tiny_phantom, tmp_path):
    """Denoising-style CT -> CT: the input gets the HU window, not an MR normalisation."""
    from translate.data.domains import build_intensity

    tiny_recipe["data"]["domains"] = {"a": {"key": "ct", "intensity": "ct_hu"}, "b": {"key": "ct", "intensity": "ct_hu"}}
    checkpoint = _fit(tiny_recipe, tmp_path)
    subject = _test_subject(tiny_phantom)
    out = tmp_path / "ct_out.nii.gz"
    assert run("infer", checkpoint, tiny_phantom / subject / "ct.nii.gz", out, "--quiet").exit_code == 0
    ct = image_to_array(read_volume(tiny_phantom / subject / "ct.nii.gz")).astype(np.float32)
    spec = build_intensity("ct_hu")
    expected = _own_forward_in_hu(checkpoint, ct, spec, spec)
    np.testing.assert_allclose(image_to_array(read_volume(out)), expected, atol=0.51)


def test_a_target_named_sct_still_maps_back_through_hu(tiny_recipe, tiny_phantom, tmp_path):
    """The file stem decides nothing: a CT stored as sct.nii.gz is still CT because its domain says so."""
    from translate.data.domains import build_intensity

    root = tmp_path / "renamed"
    shutil.copytree(tiny_phantom, root)
    for folder in root.iterdir():
        if folder.is_dir():
            (folder / "ct.nii.gz").rename(folder / "sct.nii.gz")
    tiny_recipe["data"]["root"] = str(root)
    tiny_recipe["data"]["domains"]["b"] = {"key": "sct", "intensity": {"name": "ct_hu", "window": [-1000, 1500]}}
    checkpoint = _fit(tiny_recipe, tmp_path)
    subject = _test_subject(root)
    out = tmp_path / "out.nii.gz"
    assert run("infer", checkpoint, root / subject / "mr.nii.gz", out, "--quiet").exit_code == 0
    mr = image_to_array(read_volume(root / subject / "mr.nii.gz")).astype(np.float32)
    expected = _own_forward_in_hu(checkpoint, mr, build_intensity("mr_percentile"),
                                  build_intensity({"name": "ct_hu", "window": [-1000, 1500]}))
    written = image_to_array(read_volume(out))
    assert written.dtype == np.int16 and written.min() >= -1000 and written.max() <= 1500
    np.testing.assert_allclose(written, expected, atol=0.51)


def test_a_user_two_generator_model_by_dotted_path_trains_and_infers_both_ways(tiny_recipe, tiny_phantom, tmp_path):
    tiny_recipe["model"] = {"name": "helpers_models.TwoWay", "spatial_dims": 2, "options": {"scale": 2.0},
                            "networks": {"g_ab": {"name": "unet", "channels": [8, 16]},
                                         "g_ba": {"name": "resnet", "channels": 8, "n_blocks": 1}}}
    tiny_recipe["objective"] = {"generator": [
        {"name": "pixel", "kind": "l1"},
        {"name": "pixel", "kind": "l1", "pred": "fake_a", "target": "real_a"}]}
    checkpoint = _fit(tiny_recipe, tmp_path)
    state = torch.load(checkpoint, weights_only=True)
    assert state["model"] == "helpers_models.TwoWay"
    assert any(k.startswith("g_ba.") for k in state["networks"]["model"])
    subject = _test_subject(tiny_phantom)
    to_ct, to_mr = tmp_path / "ct.nii.gz", tmp_path / "mr.nii.gz"
    assert run("infer", checkpoint, tiny_phantom / subject / "mr.nii.gz", to_ct, "--quiet").exit_code == 0
    result = run("infer", checkpoint, tiny_phantom / subject / "ct.nii.gz", to_mr, "--direction", "b2a", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_volume(to_ct).GetPixelID() == sitk.sitkInt16  # CT domain: int16 HU
    assert read_volume(to_mr).GetPixelID() == sitk.sitkFloat32  # MR domain: float
    assert read_volume(to_mr).GetSize() == read_volume(tiny_phantom / subject / "ct.nii.gz").GetSize()


class _PointwiseNet(torch.nn.Module):
    """Fully convolutional: two 3x3x3 convolutions (receptive field 5), no downsampling."""

    size_multiple = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(),
                                        torch.nn.Conv3d(4, 1, 3, padding=1))

    def forward(self, x):
        return self.body(x)


@torch.no_grad()
def test_sliding_window_equals_one_pass_in_one_window_and_nearly_across_seams():
    net = _PointwiseNet().eval()
    small = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    window = SlidingWindowInferer(roi_size=[8, 16, 16], overlap=0.5)
    direct = net(torch.from_numpy(small)[None])[0].numpy()
    np.testing.assert_allclose(window(net, small, torch.device("cpu")), direct, atol=1e-5)

    smooth = torch.nn.functional.avg_pool3d(torch.from_numpy(np.random.default_rng(1).standard_normal(
        (1, 1, 28, 52, 52)).astype(np.float32)), 5, stride=1)[0].numpy()  # (1, 24, 48, 48)
    whole = net(torch.from_numpy(smooth)[None])[0].numpy()
    tiled = SlidingWindowInferer(roi_size=[8, 16, 16], overlap=0.5)(net, smooth, torch.device("cpu"))
    error = np.abs(tiled - whole)
    assert tiled.shape == whole.shape
    assert error.mean() < 0.1 * whole.std() and error.max() < 2.0 * whole.std()  # only near window borders


def test_slice_inferer_pads_to_the_size_multiple_and_stacks_context():
    seen = []

    def forward(x):
        seen.append(tuple(x.shape))
        return x[:, 1:2] * 2.0  # the centre channel of 2.5D input, doubled

    volume = np.random.default_rng(0).standard_normal((1, 5, 10, 12)).astype(np.float32)
    out = SliceInferer(context_slices=1, batch_size=2, size_multiple=8)(forward, volume, torch.device("cpu"))
    assert seen[0] == (2, 3, 16, 16)
    np.testing.assert_allclose(out, volume * 2.0, atol=1e-6)
    assert set(INFERERS.names()) >= {"slices", "sliding_window"}


def test_a_model_trained_on_crops_infers_in_windows_of_the_crop_size(tiny_recipe, tmp_path):
    """Instance norm saw crop statistics in training: the default inference window is the crop,
    rounded up to the size multiple; ``inference.window: null`` keeps whole slices."""
    from translate.engine.build import build_domains, build_model
    from translate.engine.inferer import build_inferer

    def inferer_for(*overrides):
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(tiny_recipe))
        recipe = load_recipe(path, list(overrides))
        return build_inferer(recipe, build_model(recipe, build_domains(recipe)))

    assert inferer_for().window is None  # whole slices when training saw whole slices
    cropped = inferer_for("data.dataset.crop_size=[20, 24]")
    multiple = cropped.multiple
    assert cropped.window == [-(-20 // multiple) * multiple, -(-24 // multiple) * multiple]
    assert all(w % multiple == 0 and w >= c for w, c in zip(cropped.window, (20, 24)))
    assert inferer_for("data.dataset.crop_size=[20, 24]", "inference={name: slices, window: null}").window is None
    assert inferer_for("data.dataset.crop_size=[20, 24]", "inference={name: slices, window: [32, 32]}").window == [32, 32]


def test_3d_pix2pix_trains_on_patches_and_infers_by_sliding_window(tiny_recipe, tiny_phantom, tmp_path):
    tiny_recipe["model"]["spatial_dims"] = 3
    tiny_recipe["model"]["networks"]["generator"]["channels"] = [4, 8]
    tiny_recipe["model"]["networks"]["discriminator"]["channels"] = 4
    tiny_recipe["data"]["dataset"] = {"name": "paired_patches", "patch_size": [16, 32, 32], "samples_per_volume": 2}
    tiny_recipe["inference"] = {"name": "sliding_window", "overlap": 0.25}
    checkpoint = _fit(tiny_recipe, tmp_path)
    subject = _test_subject(tiny_phantom)
    out = tmp_path / "sct3d.nii.gz"
    result = run("infer", checkpoint, tiny_phantom / subject / "mr.nii.gz", out, "--quiet")
    assert result.exit_code == 0, result.output
    reference = read_volume(tiny_phantom / subject / "mr.nii.gz")
    written = read_volume(out)
    assert written.GetSize() == reference.GetSize() and written.GetSpacing() == reference.GetSpacing()
    assert read_volume(out).GetPixelID() == sitk.sitkInt16
    lines = [json.loads(line) for line in (Path(tiny_recipe["trainer"]["out_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert any("val_mae_hu" in line for line in lines)


def test_resume_replays_fresh_augmentation_exactly(tiny_recipe, tmp_path):
    """Flips drawn per (seed, draw): a run stopped after 2 steps and resumed logs the same losses."""
    tiny_recipe["trainer"].update({"steps": 4, "val_every": 0, "checkpoint_every": 10})
    straight = copy.deepcopy(tiny_recipe)
    straight["trainer"]["out_dir"] = str(tmp_path / "straight")
    _fit(straight, tmp_path, "a.yaml")
    pieced = copy.deepcopy(tiny_recipe)
    pieced["trainer"]["out_dir"] = str(tmp_path / "pieced")
    _fit(pieced, tmp_path, "b.yaml", "--stop-after", "2")
    _fit(pieced, tmp_path, "b.yaml", "--resume")

    def losses(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["g_total"] for r in records if "g_total" in r}

    a, b = losses(tmp_path / "straight"), losses(tmp_path / "pieced")
    assert a[3] == b[3] and a[4] == b[4]


def _edit(tree, path, value):
    node = tree
    for part in path[:-1]:
        node = node[part]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


@pytest.mark.parametrize("edits, fragment", [
    ([(("model", "spatial_dims"), 3)], "dataset 'paired_slices' serves 2D samples"),
    ([(("trainer", "device"), "gpu")], "expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ([(("trainer", "device"), "cuda:x")], "expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ([(("objective", "discriminator"), [])], "no discriminator-side loss trains it"),
    ([(("model", "networks", "discriminator"), None), (("objective", "generator"), [{"name": "pixel"}])],
     "the model has no discriminator network"),
    ([(("model", "networks", "discriminator"), None), (("objective", "discriminator"), [])],
     "only a discriminator produces"),
    ([(("data", "val_split"), "holdout")], "split 'holdout'"),
    ([(("model", "networks", "critic"), {"name": "patchgan"})], "has no role 'critic'"),
    ([(("model", "networks", "generator"), None)], "needs a network for role 'generator'"),
    ([(("model", "options"), {"conditionall": True})], "has no option 'conditionall'"),
    ([(("data", "domains", "a", "intensity"), "mr_fancy")], "unknown intensity spec 'mr_fancy'"),
    ([(("data", "dataset"), {"name": "paired_slices", "pad": False, "axis": 1})], "pad is false"),
    ([(("data", "hu_window"), [-1000, 1000])], "has moved to data.domains.b.intensity"),
    ([(("model", "generator"), {"name": "unet"})], "has moved to model.networks.generator"),
    ([(("trainer", "best_metric"), "val_loss")], "trainer.best_metric"),
])
def test_every_recipe_check_is_one_line_with_exit_code_2(tiny_recipe, tmp_path, edits, fragment):
    for path, value in edits:
        _edit(tiny_recipe, path, value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    result = run("fit", path, "--quiet")
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


@pytest.mark.allowed_skip
def test_cuda_request_without_cuda_is_one_line(tiny_recipe):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TranslateError, match="no CUDA device"):
        load_recipe(tree=tiny_recipe, overrides=["trainer.device=cuda:1"])


def test_init_is_per_role_and_never_touches_loaded_weights(tiny_recipe, tmp_path):
    from translate.engine.build import build_model

    recipe = load_recipe(tree=tiny_recipe)
    model = build_model(recipe)
    weights = tmp_path / "g.pt"
    torch.save(model.generator.state_dict(), weights)
    tiny_recipe["model"]["networks"]["generator"]["weights"] = str(weights)
    tiny_recipe["model"]["networks"]["discriminator"]["init"] = "xavier"
    loaded = build_model(load_recipe(tree=tiny_recipe))
    for name, tensor in model.generator.state_dict().items():
        torch.testing.assert_close(loaded.generator.state_dict()[name], tensor)
    conv = [m for m in loaded.discriminator.modules() if isinstance(m, torch.nn.Conv2d)][0]
    assert float(conv.weight.detach().std()) > 0.05  # xavier, not N(0, 0.02)
    tiny_recipe["model"]["networks"]["generator"]["weights"] = str(tmp_path / "absent.pt")
    with pytest.raises(TranslateError, match="weights: file not found"):
        build_model(load_recipe(tree=tiny_recipe))


def test_fill_outside_valid_continues_the_nearest_valid_voxel():
    from translate.data.subjects import fill_outside

    volume = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    valid = np.zeros(volume.shape, dtype=bool)
    valid[:, :, :3] = True
    filled = fill_outside(volume, valid)
    np.testing.assert_array_equal(filled[valid], volume[valid])
    np.testing.assert_array_equal(filled[:, :, 3], volume[:, :, 2])
    np.testing.assert_array_equal(filled[:, :, 4], volume[:, :, 2])
    assert fill_outside(volume, None) is volume


def test_real_pairs_train_and_infer_like_their_training_data(tiny_real, tmp_path):
    """Partial MR coverage: the inferer prepares the source exactly as the dataset did (fit + fill)."""
    from translate.data.datasets import PairedSlices
    from translate.engine.build import build_domains, build_model

    tree = load_recipe(REPO / "recipes" / "mr2ct-real.yaml", [f"data.root={tiny_real}"]).model_dump(mode="json")
    recipe = load_recipe(tree=tree)
    domains = build_domains(recipe)
    model = build_model(recipe, domains)
    dataset = PairedSlices(root=tiny_real, split="train", domains=domains, augment=False, valid_key="valid",
                           context_slices=1, size_multiple=model.size_multiple())
    subject = json.loads((tiny_real / "split.json").read_text())["train"][0]
    mr = image_to_array(read_volume(tiny_real / subject / "mr.nii.gz")).astype(np.float32)
    valid = image_to_array(read_volume(tiny_real / subject / "valid.nii.gz")) > 0
    translator = VolumeTranslator(model, domains, SliceInferer(), device="cpu", recipe=recipe)
    prepared = translator.prepare(mr, valid)
    item = dataset[0]
    s = item["slice"]
    (h0, w0) = [(p - n) // 2 for p, n in zip(dataset.plane, mr.shape[1:])]
    centre = item["real_a"][1, h0:h0 + mr.shape[1], w0:w0 + mr.shape[2]].numpy()
    np.testing.assert_allclose(centre, prepared[0, s], atol=1e-6)
    assert np.all(prepared[0][~valid] > -1.0) or not (~valid).any()  # no fake air outside the coverage


def test_a_discriminator_deeper_than_the_patch_is_one_line(tiny_recipe, tmp_path):
    tiny_recipe["model"]["spatial_dims"] = 3
    tiny_recipe["model"]["networks"]["generator"]["channels"] = [4, 8]
    tiny_recipe["model"]["networks"]["discriminator"].update({"channels": 4, "n_layers": 3})
    tiny_recipe["data"]["dataset"] = {"name": "paired_patches", "patch_size": [4, 16, 16], "samples_per_volume": 2}
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    result = run("fit", path, "--quiet")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "fail on the first batch" in errors[0] and "real_a (2, 1, 4, 16, 16)" in errors[0]


def test_val_block_holds_out_the_last_slices_when_the_split_has_no_val(tiny_recipe, tiny_phantom, tmp_path):
    from translate.engine.build import build_train_dataset
    from translate.data.subjects import held_out_block

    root = tmp_path / "noval"
    shutil.copytree(tiny_phantom, root)
    split = json.loads((root / "split.json").read_text())
    (root / "split.json").write_text(json.dumps({"train": split["train"] + split["val"], "test": split["test"]}))
    tiny_recipe["data"]["root"] = str(root)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    result = run("fit", path, "--quiet")
    assert result.exit_code == 2 and "data.val_block to hold out slices" in result.stderr

    tiny_recipe["data"]["val_block"] = 0.3
    tiny_recipe["data"]["dataset"]["context_slices"] = 1
    recipe = load_recipe(tree=tiny_recipe)
    dataset = build_train_dataset(recipe)
    start, stop = held_out_block(6, 0.3, 1)
    assert (start, stop) == (4, 3)
    assert {item[1] for item in dataset.index} == set(range(stop))  # no training input reaches slice 4
    checkpoint = _fit(tiny_recipe, tmp_path, "block.yaml")
    records = [json.loads(line) for line in (Path(tiny_recipe["trainer"]["out_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert any("val_mae_hu" in r for r in records) and checkpoint.is_file()
    assert (checkpoint.parent / "best.pt").is_file()


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint_and_resumes_exactly(tiny_recipe, tmp_path, monkeypatch):
    import os
    import signal

    from translate.engine import trainer as trainer_module

    tiny_recipe["trainer"].update({"steps": 5, "val_every": 0, "checkpoint_every": 10})
    straight = copy.deepcopy(tiny_recipe)
    straight["trainer"]["out_dir"] = str(tmp_path / "straight")
    _fit(straight, tmp_path, "a.yaml")

    original = trainer_module.Trainer.train_step

    def signalled(self, batch):
        logs = original(self, batch)
        if self.step == 1:  # during step 2 (0-based step 1): the stop lands after it
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(trainer_module.Trainer, "train_step", signalled)
    stopped = copy.deepcopy(tiny_recipe)
    stopped["trainer"]["out_dir"] = str(tmp_path / "stopped")
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(stopped))
    result = run("fit", path, "--quiet")
    assert result.exit_code == 128 + signal.SIGTERM, (result.output, result.exception)
    assert "SIGTERM at step 2" in result.stderr and "--resume" in result.stderr
    assert torch.load(tmp_path / "stopped" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(trainer_module.Trainer, "train_step", original)
    _fit(stopped, tmp_path, "b.yaml", "--resume")

    def losses(run_dir):
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["g_total"] for r in records if "g_total" in r}

    a, b = losses(tmp_path / "straight"), losses(tmp_path / "stopped")
    assert all(a[step] == b[step] for step in (3, 4, 5))


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    """benchmarks/reliability_kills.py with two kills: last.pt always loadable, identical losses."""
    import subprocess
    import sys

    out = tmp_path / "kills.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "reliability_kills.py"), "--kills", "2",
                             "--steps", "300", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.read_text())
    assert record["kills"] == 2 and record["identical_losses_every_step"] and record["each_step_logged_once"]
    assert record["leftover_temporaries"] == 0
