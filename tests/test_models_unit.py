"""UNIT: shared layers are one parameter object, 2D and 3D smoke training, both directions, KL mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.data.io import read_volume
from translate.engine.build import build_model
from translate.engine.inferer import VolumeTranslator, infer_volume
from translate.engine.run import fit_recipe
from translate.errors import TranslateError
from translate.losses.kl import kl_divergence
from translate.models.unit import UNIT, UNITDecoder, UNITEncoder
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.options.latent_channels=8", "model.networks.e_a.n_blocks=1", "model.networks.e_b.n_blocks=1",
        "model.networks.dec_a.n_blocks=1", "model.networks.dec_b.n_blocks=1", "model.networks.d_a.channels=4",
        "model.networks.d_b.channels=4", "model.networks.d_a.n_layers=2", "model.networks.d_b.n_layers=2",
        "model.networks.d_a.num_scales=1", "model.networks.d_b.num_scales=1"]  # the recipes' 3 scales need >= 88 pixels


def _recipe(root: Path, out: Path, *extra: str):
    return load_recipe(REPO / "recipes" / "t1t2-unit.yaml",
                       [f"data.root={root}", f"trainer.out_dir={out}", "trainer.steps=2", "trainer.val_every=2",
                        "trainer.device=cpu", *TINY, *extra])


def test_shared_layers_are_one_parameter_object(tiny_unpaired):
    model = build_model(_recipe(tiny_unpaired, tiny_unpaired / "unused"))
    assert model.e_a.shared is model.e_b.shared and model.dec_a.shared is model.dec_b.shared
    shared = {id(p) for p in model.e_a.shared.parameters()} | {id(p) for p in model.dec_a.shared.parameters()}
    assert {id(p) for p in model.e_b.shared.parameters()} <= shared
    generator_params = list(model.parameter_groups()["generator"])
    assert len(generator_params) == len({id(p) for p in generator_params})  # counted once in the optimiser
    private = {id(p) for net in (model.e_a, model.e_b, model.dec_a, model.dec_b) for p in net.private.parameters()}
    assert len({id(p) for p in generator_params}) == len(private) + len(shared)
    # a change through one network is seen by the other
    with torch.no_grad():
        next(model.e_a.shared.parameters()).add_(1.0)
    assert torch.equal(next(model.e_a.shared.parameters()), next(model.e_b.shared.parameters()))


def test_a_windowed_ct_encoder_still_shares_its_inner_layers(tiny_unpaired):
    recipe = load_recipe(REPO / "recipes" / "mr2ct-unit.yaml",
                         [f"data.root={tiny_unpaired}", f"trainer.out_dir={tiny_unpaired / 'unused'}", *TINY,
                          "model.networks.e_b.input_windows=[[-160, 240]]",
                          "model.networks.d_b.input_windows=[[-160, 240]]"])
    model = build_model(recipe)
    assert model.e_b.net.shared is model.e_a.shared  # the wrapper's inner encoder is tied, not a copy
    first = next(m for m in model.e_b.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 2  # the CT and its soft-tissue window
    generator_params = list(model.parameter_groups()["generator"])
    assert len(generator_params) == len({id(p) for p in generator_params})


def test_unit_refuses_networks_without_matching_shared_layers():
    enc = dict(spatial_dims=2, in_channels=1, out_channels=8)
    with pytest.raises(ValueError, match="shared layers differ"):
        UNIT(UNITEncoder(**enc, n_shared=1), UNITEncoder(**enc, n_shared=2), UNITDecoder(in_channels=8),
             UNITDecoder(in_channels=8))
    with pytest.raises(ValueError, match="`shared` submodule"):
        UNIT(torch.nn.Conv2d(1, 8, 3), UNITEncoder(**enc), UNITDecoder(in_channels=8), UNITDecoder(in_channels=8))


@pytest.mark.parametrize("dims", [2, 3])
def test_unit_trains_and_translates_both_ways(dims, tiny_unpaired, tmp_path):
    extra = [] if dims == 2 else [
        "model.spatial_dims=3", "data.dataset={name: unpaired_patches, split_b: train_b, patch_size: [8, 16, 16], "
        "samples_per_volume: 2}", "model.networks.d_a.n_layers=1", "model.networks.d_b.n_layers=1",
        "inference={name: sliding_window, overlap: 0.25}"]
    summary = fit_recipe(_recipe(tiny_unpaired, tmp_path / "run", *extra), show_progress=False, announce=lambda _: None)
    assert summary["step"] == 2 and all(np.isfinite(v) for v in summary["losses"].values())
    assert {"g_kl", "g_kl_4", "g_cycle", "g_pixel_2"} <= set(summary["losses"])
    records = (tmp_path / "run/metrics.jsonl").read_text()
    assert "val_psnr" in records and "val_ssim" in records  # an MR output is scored by PSNR / SSIM
    checkpoint = tmp_path / "run/checkpoints/last.pt"
    translator = VolumeTranslator.from_checkpoint(checkpoint, device="cpu")
    assert translator.model.e_a.shared is translator.model.e_b.shared  # still one object after loading
    subject = tiny_unpaired / json.loads((tiny_unpaired / "split.json").read_text())["test"][0]
    for direction, source in (("a2b", "mr"), ("b2a", "t2")):
        out = tmp_path / f"{direction}.nii.gz"
        infer_volume(checkpoint, subject / f"{source}.nii.gz", out, direction=direction, progress=False)
        reference, written = read_volume(subject / f"{source}.nii.gz"), read_volume(out)
        assert written.GetSize() == reference.GetSize() and written.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert written.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert np.isfinite(sitk.GetArrayFromImage(written)).all()


@pytest.mark.parametrize("name", ["mr2ct-unit.yaml", "mr2ct-unit-ngf.yaml"])
def test_mr2ct_recipes_train_two_steps_and_keep_geometry_and_hu(name, tiny_unpaired, tmp_path):
    recipe = load_recipe(REPO / "recipes" / name, [f"data.root={tiny_unpaired}", f"trainer.out_dir={tmp_path / 'run'}",
                                                   "trainer.steps=2", "trainer.val_every=2", "trainer.device=cpu", *TINY])
    summary = fit_recipe(recipe, show_progress=False, announce=lambda _: None)
    assert summary["step"] == 2 and all(np.isfinite(v) for v in summary["losses"].values())
    assert ({"g_ngf", "g_ngf_2"} <= set(summary["losses"])) == ("ngf" in name)
    subject = tiny_unpaired / json.loads((tiny_unpaired / "split.json").read_text())["test"][0]
    for direction, source in (("a2b", "mr"), ("b2a", "ct")):
        out = tmp_path / f"{direction}.nii.gz"
        infer_volume(tmp_path / "run/checkpoints/last.pt", subject / f"{source}.nii.gz", out, direction=direction,
                     progress=False)
        reference, written = read_volume(subject / f"{source}.nii.gz"), read_volume(out)
        assert written.GetSize() == reference.GetSize() and written.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert written.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert written.GetDirection() == pytest.approx(reference.GetDirection())
        values = sitk.GetArrayFromImage(written)
        if direction == "a2b":  # CT in HU, int16, inside the CT domain's window
            assert written.GetPixelID() == sitk.sitkInt16 and values.min() >= -1024 and values.max() <= 2000
        else:
            assert written.GetPixelID() == sitk.sitkFloat32 and np.isfinite(values).all()


def test_kl_mean_reduction_and_bad_latent_option(tiny_unpaired):
    mu = torch.full((2, 4, 3, 3), 2.0)
    assert kl_divergence(mu, torch.zeros_like(mu), "mean").item() == pytest.approx(2.0)  # 0.5 * mean(mu^2)
    assert kl_divergence(mu, torch.zeros_like(mu)).item() == pytest.approx(2.0 * 36)
    with pytest.raises(TranslateError, match="latent_channels"):
        _recipe(tiny_unpaired, tiny_unpaired / "unused", "model.options.latent_channels=0")


def test_channels_the_toolkit_sets_are_refused_in_a_network_spec(tiny_unpaired):
    # the decoder's in_channels come from model.options.latent_channels; given twice they raised a bare TypeError
    for override, key in (("model.networks.dec_b.in_channels=8", "dec_b.in_channels"),
                          ("model.networks.e_a.out_channels=8", "e_a.out_channels")):
        with pytest.raises(TranslateError, match=rf"t1t2-unit.yaml: model\.networks\.{key}: set by the toolkit") as err:
            _recipe(tiny_unpaired, tiny_unpaired / "unused", override)  # the load-time build check finds it
        assert "\n" not in str(err.value)


def test_unit_antialias_encoder_decoder_round_trip_shapes():
    from translate.models.unit import UNITDecoder, UNITEncoder

    for spatial_dims in (2, 3):
        enc = UNITEncoder(spatial_dims, out_channels=8, n_blocks=1, antialias=True)
        dec = UNITDecoder(spatial_dims, in_channels=8, n_blocks=1, antialias=True)
        x = torch.zeros(1, 1, *(8,) * spatial_dims)
        assert enc(x).shape == (1, 8, *(2,) * spatial_dims) and dec(enc(x)).shape == x.shape
        assert not any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)) for m in dec.modules())
    plain, smooth = UNITEncoder(2, out_channels=8), UNITEncoder(2, out_channels=8, antialias=True)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in smooth.parameters()]
