"""KL divergence: known values, closed form, gradcheck, module == function, bad input."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from translate.losses.base import MissingTensorError
from translate.losses.kl import KL, kl_divergence


def test_zero_for_standard_normal():
    assert kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8)).item() == 0.0


def test_matches_closed_form_for_known_mu_sigma():
    mu, sigma = 0.5, 2.0
    z = 4
    per_dim = math.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5
    value = kl_divergence(torch.full((2, z), mu), torch.full((2, z), math.log(sigma**2)))
    assert value.item() == pytest.approx(z * per_dim, rel=1e-6)


def test_matches_torch_distributions_spatial_latent():
    torch.manual_seed(0)
    mu, logvar = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(posterior, prior).flatten(1).sum(1).mean()
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)


@pytest.mark.parametrize("shape", [(2, 5), (1, 2, 3, 3), (1, 2, 2, 3, 3)])
def test_gradcheck(shape):
    mu = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert gradcheck(kl_divergence, (mu, logvar))


def test_module_equals_function():
    mu, logvar = torch.randn(2, 6), torch.randn(2, 6)
    term = KL(mu="m", logvar="lv")
    assert term.needs() == ("m", "lv")
    torch.testing.assert_close(term.compute({"m": mu, "lv": logvar}), kl_divergence(mu, logvar))
    total, parts = term({"m": mu, "lv": logvar})
    torch.testing.assert_close(total, parts["kl"])


def test_bad_input():
    with pytest.raises(ValueError):
        kl_divergence(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError):
        kl_divergence(torch.zeros(4), torch.zeros(4))
    with pytest.raises(TypeError):
        kl_divergence([0.0], torch.zeros(1, 1))
    with pytest.raises(MissingTensorError, match="mu"):
        KL()({"logvar": torch.zeros(1, 2)})
