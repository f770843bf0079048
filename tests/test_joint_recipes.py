"""The FID/Dice benchmark's generator rows and the joint DCGAN recipe's loss."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from translate.losses.adversarial import generator_loss
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def _fid_dice():
    spec = importlib.util.spec_from_file_location("fid_dice", REPO / "benchmarks" / "fid_dice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dcgan_recipe_trains_with_the_non_saturating_loss():
    spec = load_recipe(REPO / "recipes" / "joint-dcgan.yaml", check_paths=False)
    assert spec.objective.generator[0]["mode"] == "nonsaturating"
    # why: once the critic wins (logit -8 on fakes) the minimax generator loss has almost no gradient
    logits = torch.full((4, 1), -8.0, requires_grad=True)
    (minimax,) = torch.autograd.grad(generator_loss(logits, "vanilla"), logits)
    (nonsat,) = torch.autograd.grad(generator_loss(logits, "nonsaturating"), logits)
    assert minimax.abs().max() < 1e-3 < nonsat.abs().max()


def test_benchmark_rows_load_as_recipes():
    fid_dice = _fid_dice()
    fid_dice.MODES[:] = ["nonsaturating", "wgan-gp"]
    fid_dice.EXTRA[:] = ["spade", "stylegan"]
    rows = fid_dice.generators("phantom", 10)
    assert [g.label for g in rows] == ["spade", "dcgan", "wgan-gp", "stylegan"]
    for g in rows:
        spec = load_recipe(g.recipe, g.overrides, check_paths=False)
        assert spec.data.domains["a"].intensity["values"] == 10
    wgan_gp = load_recipe(rows[2].recipe, rows[2].overrides, check_paths=False)
    assert wgan_gp.model.networks["discriminator"].norm == "layer"
    assert wgan_gp.objective.discriminator[0]["mode"] == "wgan-gp"
