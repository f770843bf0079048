"""The compact StyleGAN2 joint generator and the catalogue's R1 term."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.errors import TranslateError
from translate.losses.base import build_objective
from translate.models.stylegan import (ModulatedConv2d, StyleGAN2Discriminator, StyleGAN2Generator,
                                       minibatch_stddev)

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.networks.generator.image_size=32", "model.options.image_size=32", "model.networks.generator.channels=4",
        "model.networks.generator.mapping_layers=2", "model.networks.discriminator.channels=4",
        "model.networks.discriminator.n_layers=3", "data.batch_size=4", "trainer.steps=2", "trainer.device=cpu",
        "model.options.z_dim=8"]


def test_demodulation_gives_unit_norm_filters_whatever_the_style():
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 5, 3, w_dim=4)
    x = torch.zeros(2, 3, 8, 8)
    x[:, :, 4, 4] = 1.0  # an impulse per input channel: the output at the centre reads the filter taps
    w = torch.randn(2, 4) * torch.tensor([[1.0], [50.0]])  # very different styles
    out = conv(torch.randn(2, 3, 8, 8), w)
    assert out.shape == (2, 5, 8, 8)
    # per sample and output channel, the sum over inputs and taps of the squared weights is 1
    taps = torch.stack([conv(torch.zeros(2, 3, 8, 8).index_put_((torch.arange(2), torch.full((2,), c), torch.full((2,), 4),
                                                                  torch.full((2,), 4)), torch.ones(2)), w)[:, :, 3:6, 3:6]
                        for c in range(3)], 2)  # (B, out, in, 3, 3)
    norms = taps.square().sum(dim=(2, 3, 4))
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    undemodulated = ModulatedConv2d(3, 5, 1, w_dim=4, demodulate=False)
    assert undemodulated(x, w).abs().sum() > 0


def test_generator_shapes_noise_mixing_and_truncation():
    torch.manual_seed(0)
    g = StyleGAN2Generator(in_channels=8, out_channels=3, image_size=16, channels=4, mapping_layers=2)
    z = torch.randn(3, 8)
    assert g(z).shape == (3, 3, 16, 16) and g.num_ws == 5
    g.eval()
    for layer in [g.conv0, *g.ups, *g.convs]:
        layer.noise.strength.data.fill_(1.0)
    assert not torch.allclose(g(z), g(z))  # noise inputs: same z, different details
    for layer in [g.conv0, *g.ups, *g.convs]:
        layer.noise.strength.data.zero_()
    assert torch.allclose(g(z), g(z))
    g.w_avg.copy_(torch.randn(8))
    g.truncation = 0.0  # psi 0: every z maps to the mean w, one image
    out = g(torch.randn(4, 8))
    assert torch.allclose(out[0], out[3], atol=1e-5)
    g.train()
    before = g.w_avg.clone()
    g(z)
    assert not torch.equal(before, g.w_avg)  # the running mean of w moves in training
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Generator(image_size=48)


def test_discriminator_and_minibatch_stddev():
    d = StyleGAN2Discriminator(in_channels=3, channels=4, n_layers=3)
    logits, features = d(torch.randn(6, 3, 32, 32), return_features=True)
    assert logits.shape == (6, 1) and len(features) == 3 and features[-1].shape[-1] == 4
    x = torch.randn(4, 2, 3, 3)
    same = minibatch_stddev(torch.ones(4, 2, 3, 3))
    assert torch.allclose(same[:, 2], torch.full((4, 3, 3), 1e-4), atol=1e-4)  # identical samples: std ~ 0
    assert float(minibatch_stddev(x)[:, 2].mean()) > 0.3
    assert minibatch_stddev(torch.randn(1, 2, 3, 3))[:, 2].abs().max() < 1e-3  # batch of one


def test_r1_term_is_in_the_catalogue_and_matches_the_gradient():
    objective = build_objective([{"name": "r1", "gamma": 4.0, "real_image": "real_joint"}])
    real = torch.randn(3, 2, 4, 4)
    weight = torch.randn(2, 4, 4)
    value, parts = objective({"critic": lambda x: (weight * x).flatten(1).sum(1), "real_joint": real})
    # D(x) = <w, x>: the gradient is w for every sample, R1 = gamma / 2 * ||w||^2
    assert torch.allclose(value, 2.0 * weight.square().sum(), rtol=1e-5)
    assert "r1" in parts
    with pytest.raises(TranslateError, match=r"objective\[0\] \(r1\): r1 gamma: expected a positive number, got 0"):
        build_objective([{"name": "r1", "gamma": 0}])


def test_joint_stylegan_trains_and_samples(tiny_phantom, tmp_path):
    from translate.engine.run import fit_recipe
    from translate.recipe import load_recipe
    from translate.synthesis import synthesize

    spec = load_recipe(REPO / "recipes" / "joint-stylegan.yaml",
                       [f"data.root={tiny_phantom}", f"trainer.out_dir={tmp_path / 'run'}", *TINY])
    fit_recipe(spec, show_progress=False, announce=lambda text: None)
    losses = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(losses["g_adversarial"]) and np.isfinite(losses["d_r1"]) and losses["d_r1"] >= 0
    summary = synthesize(tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "syn", n=5, seed=0, progress=False)
    assert summary["model"] == "joint_gan" and summary["samples"] == ["sample_0000"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "syn" / "sample_0000" / "labels.nii.gz")))
    assert labels.shape == (5, 32, 32) and set(np.unique(labels)) <= set(range(10))
