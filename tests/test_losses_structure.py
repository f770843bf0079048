"""1 - SSIM: known values, agreement with MONAI and scikit-image, gradcheck, module == function, bad input."""

import pytest
import torch
from monai.metrics import SSIMMetric
from skimage.metrics import structural_similarity
from torch.autograd import gradcheck

from translate.losses.structure import Structure, ssim_loss


def image(*shape, seed=0, dtype=torch.float32):
    """Smooth-ish content in [-1, 1], as the models produce."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return (x * 2 - 1).clamp(-1, 1)


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 2, 12, 12, 12)])
def test_zero_for_identical_inputs(shape):
    x = image(*shape)
    assert abs(ssim_loss(x, x.clone()).item()) < 1e-6


def test_constant_images_known_value():
    a, b, data_range = 0.2, -0.4, 2.0
    c1 = (0.01 * data_range) ** 2
    shifted_a, shifted_b = a + 1, b + 1  # intensity_min = -1
    expected = 1 - (2 * shifted_a * shifted_b + c1) / (shifted_a**2 + shifted_b**2 + c1)
    value = ssim_loss(torch.full((1, 1, 11, 11), a, dtype=torch.float64), torch.full((1, 1, 11, 11), b, dtype=torch.float64))
    assert value.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", [(2, 1, 24, 20), (2, 2, 24, 20), (1, 1, 13, 14, 15)])
@pytest.mark.parametrize("intensity_min", [-1.0, 0.0])
def test_agrees_with_monai_ssim_metric(shape, intensity_min):
    p, t = image(*shape, seed=1), image(*shape, seed=2)
    metric = SSIMMetric(spatial_dims=len(shape) - 2, data_range=2.0, win_size=11, kernel_sigma=1.5)
    expected = 1 - metric(p - intensity_min, t - intensity_min).mean()
    torch.testing.assert_close(ssim_loss(p, t, intensity_min=intensity_min), expected, atol=1e-5, rtol=1e-5)


def test_agrees_with_scikit_image():
    p, t = image(1, 1, 32, 32, seed=3, dtype=torch.float64), image(1, 1, 32, 32, seed=4, dtype=torch.float64)
    expected = structural_similarity((p[0, 0] + 1).numpy(), (t[0, 0] + 1).numpy(), data_range=2.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim_loss(p, t).item() == pytest.approx(1 - expected, abs=1e-6)


def test_shift_protects_the_luminance_term_near_zero():
    # a small mean offset around 0 costs almost the whole luminance factor without the shift
    x = torch.zeros(1, 1, 11, 11)
    assert ssim_loss(x, x + 0.1, intensity_min=-1.0).item() < 0.01
    assert ssim_loss(x, x + 0.1, intensity_min=0.0).item() > 0.9


@pytest.mark.parametrize("shape", [(1, 1, 5, 5), (1, 1, 4, 4, 4)])
def test_gradcheck(shape):
    p = image(*shape, seed=5, dtype=torch.float64).requires_grad_(True)
    t = image(*shape, seed=6, dtype=torch.float64).requires_grad_(True)
    assert gradcheck(lambda p, t: ssim_loss(p, t, window=3), (p, t))


def test_module_equals_function():
    p, t = image(2, 1, 16, 16, seed=7), image(2, 1, 16, 16, seed=8)
    tensors = {"fake_b": p, "real_b": t}
    torch.testing.assert_close(Structure().compute(tensors), ssim_loss(p, t))
    torch.testing.assert_close(Structure(data_range=1.0, window=7, intensity_min=0.0).compute(tensors),
                               ssim_loss(p, t, 1.0, 7, 0.0))
    total, parts = Structure(name="ssim")(tensors)
    torch.testing.assert_close(total, parts["ssim"])


def test_bad_input():
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="shape"):
        ssim_loss(x, torch.zeros(1, 1, 16, 15))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim_loss(torch.zeros(16, 16), torch.zeros(16, 16))
    with pytest.raises(ValueError, match="odd"):
        ssim_loss(x, x, window=4)
    with pytest.raises(ValueError, match="smaller odd window"):
        ssim_loss(torch.zeros(1, 1, 6, 32, 32), torch.zeros(1, 1, 6, 32, 32))
    with pytest.raises(ValueError, match="data_range"):
        ssim_loss(x, x, data_range=0.0)
    with pytest.raises(ValueError):
        Structure(window=10)
