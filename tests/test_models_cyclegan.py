"""CycleGAN: the image pool's mix and its resume, 2D / 3D smoke training of the recipes, both
directions of a checkpoint, the cycle loss falling, and gradient consistency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.data.io import read_volume
from translate.engine.inferer import infer_volume
from translate.engine.run import fit_recipe
from translate.errors import TranslateError
from translate.losses.gradient_correlation import GradientCorrelation, gradient_correlation
from translate.models.cyclegan import ImagePool
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

#: tiny sizes for the shipped recipes (same components, far fewer channels)
TINY_2D = ["model.networks.g_ab.channels=4", "model.networks.g_ba.channels=4", "model.networks.g_ab.n_blocks=1",
           "model.networks.g_ba.n_blocks=1", "model.networks.d_a.channels=4", "model.networks.d_b.channels=4",
           "model.networks.d_a.n_layers=2", "model.networks.d_b.n_layers=2"]
#: the 3D recipe has U-Net generators: two levels of 4 and 8 channels
TINY_3D = ["model.networks.g_ab.channels=[4,8]", "model.networks.g_ba.channels=[4,8]", "model.networks.d_a.channels=4",
           "model.networks.d_b.channels=4", "model.networks.d_a.n_layers=1", "model.networks.d_b.n_layers=1",
           "data.dataset.patch_size=[8,16,16]", "data.dataset.samples_per_volume=2"]


def _recipe(name: str, root: Path, out: Path, *extra: str):
    return load_recipe(REPO / "recipes" / name, [f"data.root={root}", f"trainer.out_dir={out}", "trainer.steps=2",
                                                 "trainer.val_every=2", "trainer.device=cpu", *extra])


def _losses(run_dir: Path, key: str = "g_total") -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in records if key in r}


# ----------------------------------------------------------------------------- image pool
def test_pool_fills_then_returns_half_current_half_past():
    torch.manual_seed(0)
    pool = ImagePool(size=10)
    first = torch.arange(10.0).reshape(10, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 10  # filling: every image comes back
    stored_before = {float(x) for x in first.flatten()}
    fresh = torch.arange(100.0, 4100.0).reshape(2000, 2, 1, 1, 1)  # 2000 batches of 2 new ids
    from_past, seen = 0, set(stored_before)
    for batch in fresh:
        out = pool.query(batch)
        for given, got in zip(batch.flatten(), out.flatten()):
            if float(got) != float(given):
                assert float(got) in seen  # a past image, one that was stored before
                from_past += 1
            seen.add(float(given))
        assert len(pool) == 10
    fraction = from_past / 4000
    assert abs(fraction - 0.5) < 0.03, fraction  # binomial sd 0.008: the documented 1/2 mix


def test_pool_size_zero_passes_through_and_state_round_trips():
    assert torch.equal(ImagePool(0).query(torch.ones(3, 1, 2, 2)), torch.ones(3, 1, 2, 2))
    pool = ImagePool(4)
    pool.query(torch.randn(3, 1, 2, 2))
    copy = ImagePool(4)
    copy.load_state_dict(pool.state_dict())
    assert len(copy) == 3 and all(torch.equal(a, b) for a, b in zip(pool.images, copy.images))
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)


def test_pool_and_training_resume_exactly(tiny_unpaired, tmp_path):
    """Stopped after 2 steps and resumed: the same losses, weights and pool as an uninterrupted run."""
    common = ["trainer.steps=4", "trainer.val_every=0", "trainer.checkpoint_every=10", "trainer.log_every=1",
              "model.options.pool_size=3",
              *TINY_2D]
    straight = _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "straight", *common)
    fit_recipe(straight, show_progress=False, announce=lambda _: None)
    pieced = _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "pieced", *common)
    fit_recipe(pieced, stop_after=2, show_progress=False, announce=lambda _: None)
    fit_recipe(pieced, resume=True, show_progress=False, announce=lambda _: None)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "pieced")
    a = torch.load(tmp_path / "straight/checkpoints/last.pt", weights_only=True)["networks"]["model"]
    b = torch.load(tmp_path / "pieced/checkpoints/last.pt", weights_only=True)["networks"]["model"]
    assert a.keys() == b.keys() and "pool_b._extra_state" in a
    assert len(a["pool_b._extra_state"]["images"]) == 3  # full after 4 steps of batch 2
    for key in a:
        if key.endswith("_extra_state"):
            assert torch.equal(a[key]["images"], b[key]["images"]), key
        else:
            assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------- recipes and inference
@pytest.mark.parametrize("name, extra", [
    ("mr2ct-cyclegan.yaml", TINY_2D),
    ("mr2ct-cyclegan-shape.yaml", TINY_2D),
    ("mr2ct-cyclegan-ngf.yaml", TINY_2D),
    ("mr2ct-cyclegan-3d.yaml", TINY_3D),
])
def test_recipes_train_two_steps_and_translate_both_ways(name, extra, tiny_unpaired, tmp_path):
    recipe = _recipe(name, tiny_unpaired, tmp_path / "run", *extra)
    summary = fit_recipe(recipe, show_progress=False, announce=lambda _: None)
    assert summary["step"] == 2 and all(np.isfinite(v) for v in summary["losses"].values())
    if "shape" in name:
        assert "g_shape" in summary["losses"]
    if "ngf" in name:
        assert {"g_ngf", "g_ngf_2"} <= set(summary["losses"])
    assert any("val_mae_hu" in line for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines())
    subject = tiny_unpaired / json.loads((tiny_unpaired / "split.json").read_text())["test"][0]
    checkpoint = tmp_path / "run/checkpoints/last.pt"
    for direction, source in (("a2b", "mr"), ("b2a", "ct")):
        out = tmp_path / f"{direction}.nii.gz"
        infer_volume(checkpoint, subject / f"{source}.nii.gz", out, direction=direction, progress=False)
        reference, written = read_volume(subject / f"{source}.nii.gz"), read_volume(out)
        assert written.GetSize() == reference.GetSize()
        assert written.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert written.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert written.GetDirection() == pytest.approx(reference.GetDirection())
        values = sitk.GetArrayFromImage(written)
        if direction == "a2b":  # CT in HU, int16, inside the domain's window
            assert written.GetPixelID() == sitk.sitkInt16
            assert values.min() >= -1024 and values.max() <= 2000
        else:  # MR in the MR domain's units, float
            assert written.GetPixelID() == sitk.sitkFloat32 and np.isfinite(values).all()


def test_unpaired_halves_never_share_a_subject(tiny_unpaired):
    from translate.data.unpaired import UnpairedPatches
    from translate.engine.build import build_domains

    recipe = _recipe("mr2ct-cyclegan-3d.yaml", tiny_unpaired, tiny_unpaired / "unused", *TINY_3D)
    split = json.loads((tiny_unpaired / "split.json").read_text())
    assert not set(split["train_a"]) & set(split["train_b"])
    assert set(split["train_a"]) | set(split["train_b"]) == set(split["train"])
    dataset = UnpairedPatches(root=tiny_unpaired, split="train_a", split_b="train_b", domains=build_domains(recipe),
                              patch_size=[8, 16, 16], samples_per_volume=3, labels_key="labels", size_multiple=4)
    for draw in range(6):
        item = dataset[(draw % len(dataset), draw)]
        assert item["subject_a"] in split["train_a"] and item["subject_b"] in split["train_b"]
        assert item["real_a"].shape == item["labels_a"].shape == (1, 8, 16, 16)
    assert torch.equal(dataset[(1, 5)]["real_b"], dataset[(1, 5)]["real_b"])  # replayable per draw


def test_direction_and_context_errors_are_one_line(tiny_unpaired, tmp_path):
    # caught when the recipe loads (its networks are built on the meta device), before any training
    with pytest.raises(TranslateError, match="context_slices: 0"):
        _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "run", *TINY_2D, "data.dataset.context_slices=1")
    with pytest.raises(TranslateError, match="pool_size"):
        _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "run", "model.options.pool_size=-2")


def test_cycle_loss_falls_on_a_tiny_problem(tiny_unpaired, tmp_path):
    """Cycle terms alone (no discriminators), a few dozen steps: the cycle loss must fall."""
    tree = _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "run", *TINY_2D).model_dump(mode="json")
    for role in ("d_a", "d_b"):
        tree["model"]["networks"].pop(role)
    tree["objective"] = {"generator": [{"name": "cycle", "weight": 10.0}], "discriminator": []}
    tree["trainer"].update(steps=30, val_every=0, log_every=1, checkpoint_every=100)
    tree["optim"]["generator"]["lr"] = 2e-3
    fit_recipe(load_recipe(tree=tree), show_progress=False, announce=lambda _: None)
    cycle = _losses(tmp_path / "run", "g_cycle")
    first, last = np.mean([cycle[s] for s in range(1, 6)]), np.mean([cycle[s] for s in range(26, 31)])
    assert last < 0.5 * first, (first, last)


# ----------------------------------------------------------------------------- gradient consistency
def test_gradient_correlation_known_values():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    assert gradient_correlation(x, 3 * x + 2).item() == pytest.approx(1.0, abs=1e-5)
    assert gradient_correlation(x, -x).item() == pytest.approx(-1.0, abs=1e-5)
    assert gradient_correlation(x, -x, absolute=True).item() == pytest.approx(1.0, abs=1e-5)
    assert abs(gradient_correlation(x, torch.randn(2, 1, 16, 16)).item()) < 0.2
    x3 = torch.randn(1, 1, 8, 8, 8)
    assert GradientCorrelation().compute({"real_a": x3, "fake_b": 2 * x3}).item() == pytest.approx(0.0, abs=1e-5)
    y = torch.randn(1, 1, 16, 16, requires_grad=True)
    (1 - gradient_correlation(x[:1], y)).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


# ----------------------------------------------------------------------------- critic intensity windows
def test_windowed_input_adds_one_clipped_channel_per_window_and_keeps_gradients():
    from translate.nn.windows import WindowedInput

    critic = WindowedInput(torch.nn.Identity(), [(-0.5, 0.0), (0.5, 1.0)])
    x = torch.tensor([[[-1.0, -0.25, 0.75]]], requires_grad=True)
    out = critic(x)
    assert out.tolist() == [[[-1.0, -0.25, 0.75], [-1.0, 0.0, 1.0], [-1.0, -1.0, 0.0]]]
    out.sum().backward()
    assert x.grad.tolist() == [[[1.0, 1.0 + 4.0, 1.0 + 4.0]]]  # through the copy, and the window where unclipped
    with pytest.raises(ValueError, match="lower < upper"):
        WindowedInput(torch.nn.Identity(), [(1.0, 0.0)])


def test_ct_critic_sees_hu_windows_and_keeps_them_through_a_checkpoint(tiny_unpaired, tmp_path):
    from translate.engine.build import build_model
    from translate.engine.inferer import VolumeTranslator

    recipe = _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "run", *TINY_2D,
                     "model.networks.d_b.input_windows=[[-160, 240], [300, 1500]]",
                     "model.networks.g_ba.input_windows=[[-160, 240]]")
    model = build_model(recipe)
    window = (2000.0 + 1024.0) / 2  # ct_hu [-1024, 2000]: HU h -> (h + 1024) / 1512 - 1
    expected = [(h + 1024) / window - 1 for h in (-160, 240, 300, 1500)]
    assert model.d_b.bounds.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    first = next(m for m in model.d_b.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3  # the CT, then each window
    assert next(m for m in model.g_ba.net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == 2
    assert model.g_ba.size_multiple == model.g_ba.net.size_multiple == model.size_multiple()
    fit_recipe(recipe, show_progress=False, announce=lambda _: None)
    loaded = VolumeTranslator.from_checkpoint(tmp_path / "run/checkpoints/last.pt", device="cpu").model
    assert torch.equal(loaded.d_b.bounds, model.d_b.bounds)
    saved = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["networks"]["model"]
    assert torch.equal(saved["d_b.bounds"], model.d_b.bounds) and "d_b.net.head.weight" in saved
    subject = tiny_unpaired / json.loads((tiny_unpaired / "split.json").read_text())["test"][0]
    infer_volume(tmp_path / "run/checkpoints/last.pt", subject / "ct.nii.gz", tmp_path / "mr.nii.gz", direction="b2a",
                 progress=False)
    assert read_volume(tmp_path / "mr.nii.gz").GetSize() == read_volume(subject / "ct.nii.gz").GetSize()
    for role, extra in (("d_a", "model.networks.d_a.input_windows=[[0, 100]]"),):
        with pytest.raises(TranslateError, match=f"model.networks.{role}.input_windows: domain 'a': mr_percentile"):
            _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "bad", *TINY_2D, extra)
    with pytest.raises(TranslateError, match="input_windows.*lower < upper"):
        _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path / "bad", *TINY_2D,
                "model.networks.d_b.input_windows=[[240, -160]]")


def test_only_networks_reading_one_domain_take_windows(tiny_phantom, tmp_path):
    with pytest.raises(TranslateError, match="model.networks.discriminator.input_windows: only a network whose input is one"):
        load_recipe(REPO / "recipes/mr2ct.yaml", [f"data.root={tiny_phantom}", f"trainer.out_dir={tmp_path}",
                                                  "model.networks.discriminator.input_windows=[[-160, 240]]"])


def test_cycle_noise_reaches_only_the_cycle_and_only_in_training(tiny_unpaired, tmp_path):
    from translate.engine.build import build_model

    def tensors(noise: float, training: bool):
        torch.manual_seed(0)
        model = build_model(_recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path, *TINY_2D,
                                    f"model.options.cycle_noise={noise}"))
        model.train(training)
        batch = {"real_a": torch.rand(1, 1, 16, 16) * 2 - 1, "real_b": torch.rand(1, 1, 16, 16) * 2 - 1}
        torch.manual_seed(1)
        with torch.no_grad():
            return model, model.generator_tensors(batch)

    _, clean = tensors(0.0, True)
    model, noisy = tensors(0.2, True)
    assert model.cycle_noise == 0.2
    assert torch.equal(clean["fake_b"], noisy["fake_b"]) and torch.equal(clean["fake_a"], noisy["fake_a"])
    assert not torch.allclose(clean["rec_a"], noisy["rec_a"]) and not torch.allclose(clean["rec_b"], noisy["rec_b"])
    _, evaluated = tensors(0.2, False)  # eval mode: no noise
    _, evaluated_clean = tensors(0.0, False)
    assert torch.equal(evaluated["rec_a"], evaluated_clean["rec_a"])
    for bad in ("-0.1", "1.5", "true", "lots"):
        with pytest.raises(TranslateError, match="cycle_noise"):
            _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path, f"model.options.cycle_noise={bad}")


# ----------------------------------------------------------------------------- geometry consistency (GcGAN)


class _Shift(torch.nn.Module):
    """A generator that is not flip-equivariant: it adds the image shifted one voxel along the last axis."""

    def forward(self, x):
        return x + torch.roll(x, 1, dims=-1)


def test_geometry_tensors_are_the_flipped_translation_flipped_back(tiny_unpaired, tmp_path):
    from translate.engine.build import build_model

    model = build_model(_recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path, *TINY_2D,
                                "model.options.geometry_flips=[1]"))
    model.g_ab = _Shift()
    real_a = torch.rand(1, 1, 8, 8)
    batch = {"real_a": real_a, "real_b": torch.rand(1, 1, 8, 8) * 2 - 1}
    with torch.no_grad():
        out = model.generator_tensors(batch, needs={"geo_fake_b", "geo_fake_a"})
    expected = torch.flip(_Shift()(torch.flip(real_a, [3])), [3])  # only axis 1 (dim 3) may be flipped
    assert torch.equal(out["geo_fake_b"], expected) and not torch.allclose(out["geo_fake_b"], out["fake_b"])
    assert "geo_fake_b" not in model.generator_tensors(batch)  # computed only when a term reads it

    # a pointwise generator commutes with every flip: the two agree exactly; all three subsets of [0, 1] are drawn
    model.g_ab, model.geometry_flips = torch.nn.Conv2d(1, 1, 1), None
    drawn = set()
    torch.manual_seed(0)
    for _ in range(30):
        drawn.add(tuple(model._geometry_dims(real_a)))
        with torch.no_grad():
            out = model.generator_tensors(batch, needs={"geo_fake_b"})
        assert torch.allclose(out["geo_fake_b"], out["fake_b"], atol=1e-6)
    assert drawn == {(2,), (3,), (2, 3)}


def test_geometry_term_values_and_training_in_2d_and_3d(tiny_unpaired, tmp_path):
    from translate.losses import Geometry

    t = {"geo_fake_b": torch.ones(1, 1, 4, 4), "fake_b": torch.zeros(1, 1, 4, 4),
         "geo_fake_a": torch.full((1, 1, 4, 4), 0.5), "fake_a": torch.zeros(1, 1, 4, 4)}
    assert Geometry(domain="b").compute(t).item() == 1.0
    assert Geometry().compute(t).item() == 1.5
    assert Geometry(kind="l2", domain="a").compute(t).item() == 0.25
    with pytest.raises(ValueError, match="domain"):
        Geometry(domain="c")

    for name, tiny in (("mr2ct-cyclegan.yaml", TINY_2D), ("mr2ct-cyclegan-3d.yaml", TINY_3D)):
        out = tmp_path / name
        recipe = _recipe(name, tiny_unpaired, out, *tiny)
        tree = recipe.model_dump(mode="json")
        tree["objective"]["generator"].append({"name": "geometry", "weight": 10.0})
        fit_recipe(load_recipe(tree=tree), show_progress=False)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        geometry = [r["g_geometry"] for r in records if "g_geometry" in r]
        assert geometry and all(np.isfinite(geometry)) and max(geometry) > 0


def test_geometry_flips_errors_are_one_line(tiny_unpaired, tmp_path):
    for bad in ("[]", "[0, 0]", "[3]", "[-1]", "true", "[0.5]"):
        with pytest.raises(TranslateError, match="model.options: geometry_flips"):
            _recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path, f"model.options.geometry_flips={bad}")
    from translate.engine.build import build_model

    model = build_model(_recipe("mr2ct-cyclegan.yaml", tiny_unpaired, tmp_path, *TINY_2D,
                                "model.options.geometry_flips=[2]"))
    with pytest.raises(TranslateError, match=r"geometry_flips: \[2\]; the images have 2 spatial axes"):
        model.generator_tensors({"real_a": torch.rand(1, 1, 8, 8), "real_b": torch.rand(1, 1, 8, 8)},
                                needs={"geo_fake_b"})
