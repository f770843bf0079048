"""SPADE and the joint (image, mask) GANs: networks, smoke training through recipes, `translate synthesize`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.errors import TranslateError
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

TINY_SPADE = ["model.networks.generator.channels=[16, 8]", "model.networks.generator.z_dim=8",
              "model.networks.generator.encoder_channels=[8, 8]", "model.networks.generator.spade_hidden=8",
              "model.networks.discriminator.channels=8", "model.networks.discriminator.n_layers=2",
              "data.batch_size=2", "trainer.steps=2", "trainer.device=cpu", "trainer.checkpoint_every=1"]
TINY_JOINT = ["model.networks.generator.image_size=32", "model.options.image_size=32",
              "model.networks.generator.channels=8", "model.networks.discriminator.channels=8",
              "model.networks.discriminator.n_layers=3", "data.batch_size=2", "trainer.steps=1",
              "trainer.device=cpu", "model.options.z_dim=8"]


def _fit(recipe: str, root: Path, out: Path, extra=()):
    from translate.engine.run import fit_recipe

    overrides = [f"data.root={root}", f"trainer.out_dir={out}"] + list(extra)
    spec = load_recipe(REPO / "recipes" / recipe, overrides)
    fit_recipe(spec, show_progress=False, announce=lambda text: None)
    return out / "checkpoints" / "last.pt"


def test_spade_generator_is_fully_convolutional_and_styles_vary():
    from translate.nn.generators.spade import SPADEGenerator

    torch.manual_seed(0)
    g = SPADEGenerator(spatial_dims=2, in_channels=3, out_channels=1, channels=[16, 8], z_dim=4,
                       style_encoder=True, encoder_channels=[8], spade_hidden=8).eval()
    seg = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 24, 40)), 3).permute(0, 3, 1, 2).float()
    z = torch.randn(2, 4)
    out = g(seg, z)
    assert out.shape == (2, 1, 24, 40) and out.abs().max() <= 1
    assert torch.equal(out, g(seg, z))
    assert (g(seg, z) - g(seg, torch.randn(2, 4))).abs().mean() > 1e-4  # one mask, several images
    mu, logvar = g.encode(torch.randn(3, 1, 48, 16))
    assert mu.shape == logvar.shape == (3, 4)
    g3 = SPADEGenerator(spatial_dims=3, in_channels=2, out_channels=1, channels=[8, 4], z_dim=4, spade_hidden=4)
    assert g3(torch.rand(1, 2, 8, 12, 16)).shape == (1, 1, 8, 12, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(seg[..., :22, :])


def test_spade_needs_a_generator_with_an_encoder_for_style_encoder(tiny_phantom):
    with pytest.raises(TranslateError, match="style_encoder"):
        from translate.engine.build import build_model

        build_model(load_recipe(REPO / "recipes" / "spade-ct.yaml",
                                [f"data.root={tiny_phantom}", "model.networks.generator.style_encoder=false"]))


def _label_file(path: Path) -> sitk.Image:
    labels = np.zeros((3, 32, 32), np.uint8)
    labels[:, 8:24, 8:24] = 3
    labels[:, 12:16, 12:20] = 8
    labels[1, 0:2, 0:2] = 12  # an id the model was not trained on: kept in the written mask
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((1.5, 2.0, 3.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path))
    return image


def test_spade_trains_and_synthesize_keeps_geometry_labels_and_seed(tiny_phantom, tmp_path):
    from typer.testing import CliRunner

    from translate.cli import app

    checkpoint = _fit("spade-ct.yaml", tiny_phantom, tmp_path / "run", TINY_SPADE)
    losses = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"g_adversarial", "g_feature_matching", "g_kl", "d_adversarial"} <= set(losses)
    mask = _label_file(tmp_path / "mask.nii.gz")
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(app, ["synthesize", str(checkpoint), str(tmp_path / name), "--masks",
                                     str(tmp_path / "mask.nii.gz"), "--n", "2", "--seed", "3", "--quiet"])
        assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert split["train"] == ["mask_s00", "mask_s01"]
    images = []
    for sample in split["train"]:
        ct = sitk.ReadImage(str(tmp_path / "a" / sample / "ct.nii.gz"))
        labels = sitk.ReadImage(str(tmp_path / "a" / sample / "labels.nii.gz"))
        for image in (ct, labels):
            assert image.GetSpacing() == mask.GetSpacing() and image.GetOrigin() == mask.GetOrigin()
            assert image.GetDirection() == mask.GetDirection()
        assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(mask))
        assert ct.GetPixelID() == sitk.sitkInt16
        images.append(sitk.GetArrayFromImage(ct))
        again = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / sample / "ct.nii.gz")))
        assert np.array_equal(again, images[-1])  # same seed, same images
    assert np.abs(images[0].astype(float) - images[1]).mean() > 0  # two styles of one mask differ
    result = runner.invoke(app, ["synthesize", str(checkpoint), str(tmp_path / "a"), "--quiet"])
    assert result.exit_code == 2 and "already holds" in result.output
    # without --masks: the training masks of the checkpoint's data root
    default = runner.invoke(app, ["synthesize", str(checkpoint), str(tmp_path / "c"), "--quiet"])
    assert default.exit_code == 0, default.output
    trained = json.loads((tiny_phantom / "split.json").read_text())["train"]
    assert json.loads((tmp_path / "c" / "split.json").read_text())["train"] == [f"{s}_s00" for s in trained]


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "wgan", "wgan-gp", "hinge"])
def test_joint_gan_trains_with_every_adversarial_mode(mode, tiny_phantom, tmp_path):
    extra = TINY_JOINT + [f"objective.generator.0.mode={mode}", f"objective.discriminator.0.mode={mode}"]
    if mode == "wgan-gp":
        extra.append("model.networks.discriminator.norm=layer")
    _fit("joint-dcgan.yaml", tiny_phantom, tmp_path / "run", extra)
    losses = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(losses["g_adversarial"]) and np.isfinite(losses["d_adversarial"])
    if mode == "wgan":  # weight clipping reached the critic
        state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["networks"]["model"]
        critic = [v for k, v in state.items() if k.startswith("discriminator.") and "running_" not in k and v.is_floating_point()]
        assert max(float(v.abs().max()) for v in critic) <= 0.01 + 1e-6


def test_joint_gan_tricks_and_noise_sampling(tiny_phantom, tmp_path):
    from translate.synthesis import synthesize

    extra = TINY_JOINT + ["model.options.diffaugment=[translation, cutout, brightness]",
                          "model.networks.discriminator.spectral_norm=true",
                          "model.networks.generator.spectral_norm=true",
                          "objective.discriminator.0.label_smoothing=0.1",
                          "objective.generator=[{name: adversarial, mode: vanilla}, {name: feature_matching, weight: 1.0}]"]
    checkpoint = _fit("joint-dcgan.yaml", tiny_phantom, tmp_path / "run", extra)
    losses = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "g_feature_matching" in losses
    summary = synthesize(checkpoint, tmp_path / "syn", n=40, seed=1, progress=False)
    assert summary["samples"] == ["sample_0000", "sample_0001"]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "syn" / "sample_0001" / "ct.nii.gz")))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "syn" / "sample_0000" / "labels.nii.gz")))
    assert ct.shape == (8, 32, 32) and labels.shape == (32, 32, 32)
    assert set(np.unique(labels)) <= set(range(10)) and ct.min() >= -1024
    with pytest.raises(TranslateError, match="takes no masks"):
        synthesize(checkpoint, tmp_path / "other", masks=tiny_phantom, progress=False)


def test_overrides_reach_list_entries_and_a_bad_index_is_one_line(tiny_phantom):
    spec = load_recipe(REPO / "recipes" / "joint-dcgan.yaml",
                       [f"data.root={tiny_phantom}", "objective.generator.0.mode=hinge"], check_paths=False)
    assert spec.objective.generator[0]["mode"] == "hinge"
    with pytest.raises(TranslateError, match="not an index of a list of 1 entries"):
        load_recipe(REPO / "recipes" / "joint-dcgan.yaml", ["objective.generator.5.mode=hinge"], check_paths=False)
