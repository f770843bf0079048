"""Normalised gradient fields (``ngf``): local, sign-free edge consistency between a source and its translation."""

from __future__ import annotations

import pytest
import torch

from translate.losses import LOSSES
from translate.losses.gradient_correlation import (NormalizedGradientFields, gradient_correlation,
                                                   normalized_gradient_fields)
from translate.errors import TranslateError
from translate.recipe import load_recipe


def _edge(size: int = 8, at: int = 4) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size)
    x[..., at:] = 1.0
    return x


def test_known_values_of_step_edges():
    x = _edge()
    # central differences are non-zero on 2 of 8 columns; there both unit fields are (anti)parallel and ~1 long
    assert normalized_gradient_fields(x, 1 - 3 * x, eta=1e-3).item() == pytest.approx(0.75, abs=1e-4)
    assert normalized_gradient_fields(x, x, eta=1e-3).item() == pytest.approx(0.75, abs=1e-4)
    assert normalized_gradient_fields(x, x.transpose(-1, -2), eta=1e-3).item() == pytest.approx(1.0, abs=1e-6)
    assert normalized_gradient_fields(x, torch.zeros_like(x), eta=1e-3).item() == pytest.approx(1.0, abs=1e-6)


def test_mixed_polarity_is_consistent_where_a_global_correlation_is_not():
    # two edges; the translation inverts one of them (bone: dark in MR, bright in CT) and keeps the other
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4:] = 1.0
    x[..., 12:] = 2.0
    y = torch.zeros_like(x)
    y[..., 4:] = -1.0
    y[..., 12:] = 0.0
    assert normalized_gradient_fields(x, y, eta=1e-3).item() == pytest.approx(
        normalized_gradient_fields(x, x, eta=1e-3).item(), abs=1e-5)
    assert gradient_correlation(x, y, absolute=True).item() < 0.5  # the signed sums cancel


def test_random_images_sign_and_scale_invariance_and_gradients():
    torch.manual_seed(0)
    x, noise = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    same = normalized_gradient_fields(x, x)
    assert normalized_gradient_fields(x, -5 * x + 2).item() == pytest.approx(same.item(), abs=1e-5)
    assert same < normalized_gradient_fields(x, noise)
    pred = noise.clone().requires_grad_(True)
    normalized_gradient_fields(x, pred).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    volume = torch.rand(1, 1, 6, 8, 8)  # 3D: three gradient components
    assert normalized_gradient_fields(volume, -volume).item() == pytest.approx(
        normalized_gradient_fields(volume, volume).item(), abs=1e-5)


def test_term_in_the_catalogue_and_a_recipe():
    assert LOSSES.get("ngf") is NormalizedGradientFields
    term = NormalizedGradientFields(source="real_b", pred="fake_a", eta=0.25)
    assert term.needs() == ("real_b", "fake_a")
    x = torch.rand(1, 1, 8, 8)
    assert term.compute({"real_b": x, "fake_a": -x}).item() == pytest.approx(
        normalized_gradient_fields(x, x, eta=0.25).item(), abs=1e-6)
    for bad in (0, -1.0, True, "auto"):
        with pytest.raises(ValueError, match="eta"):
            NormalizedGradientFields(eta=bad)
    tree = load_recipe("recipes/mr2ct-cyclegan.yaml", check_paths=False).model_dump(mode="json")
    tree["objective"]["generator"].append({"name": "ngf", "source": "real_a", "pred": "fake_b", "weight": 1.0})
    load_recipe(tree=tree, check_paths=False)
    tree["objective"]["generator"][-1]["eta"] = -1
    with pytest.raises(TranslateError, match="eta"):
        load_recipe(tree=tree, check_paths=False)
