"""k-space losses and Cartesian masks: known values, data consistency, MONAI Jukebox relation, gradcheck."""

import math

import numpy as np
import pytest
import torch
from monai.losses import JukeboxLoss
from torch.autograd import gradcheck

from translate.losses.base import MissingTensorError
from translate.losses.kspace import KSpace, cartesian_mask, fft_nd, kspace_loss

SHAPES = [(2, 1, 8, 10), (1, 2, 4, 6, 8)]


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_fft_nd_is_centred_and_orthonormal(shape):
    x = rand(*shape, seed=1)
    k = fft_nd(x)
    torch.testing.assert_close(k.abs().square().sum(), x.square().sum())  # Parseval
    dims = tuple(range(2, len(shape)))
    torch.testing.assert_close(k.abs(), torch.fft.fftshift(torch.fft.fftn(x, dim=dims, norm="ortho"), dim=dims).abs())
    centre = (slice(None), slice(None)) + tuple(n // 2 for n in shape[2:])
    torch.testing.assert_close(k[centre].real, x.sum(dims) / math.sqrt(math.prod(shape[2:])))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["complex", "log_magnitude"])
def test_zero_for_identical_inputs(shape, kind):
    x = rand(*shape, seed=2)
    assert kspace_loss(x, x.clone(), kind).item() == 0.0


@pytest.mark.parametrize("shape", SHAPES)
def test_constant_images_known_value(shape):
    # only DC differs, by (a - b) * sqrt(N) under the orthonormal transform
    n = math.prod(shape[2:])
    a, b = torch.full(shape, 0.5), torch.full(shape, -0.25)
    assert kspace_loss(a, b).item() == pytest.approx(0.75 * math.sqrt(n) / n, rel=1e-5)
    expected = abs(math.log1p(0.5 * math.sqrt(n)) - math.log1p(0.25 * math.sqrt(n))) / n
    assert kspace_loss(a, b, "log_magnitude").item() == pytest.approx(expected, rel=1e-5)


def test_mask_ignores_unsampled_frequencies():
    target = rand(2, 1, 16, 16, seed=3)
    width = 16
    k0 = 3  # a cosine along W lives on columns width//2 +- k0
    cosine = torch.cos(2 * math.pi * k0 * torch.arange(width) / width).expand(2, 1, 16, width)
    mask = torch.ones(16, width)
    mask[:, [width // 2 - k0, width // 2 + k0]] = 0
    assert kspace_loss(target + cosine, target, mask=mask).item() < 1e-6
    assert kspace_loss(target + cosine, target).item() > 0.05
    values = (fft_nd(target + cosine) - fft_nd(target)).abs()
    line_mask = cartesian_mask((16, 16), acceleration=4, center_fraction=0.25, seed=1)
    expected = values[line_mask.expand(2, 1, 16, 16).bool()].mean()
    torch.testing.assert_close(kspace_loss(target + cosine, target, mask=line_mask), expected)
    torch.testing.assert_close(kspace_loss(target, target + cosine, mask=torch.ones(width)),
                               kspace_loss(target, target + cosine))


def _fastmri_random_mask(num_cols, acceleration, center_fraction, seed):
    """fastMRI RandomMaskFunc (v0.1), copied for reference."""
    rng = np.random.RandomState(seed)
    num_low_freqs = int(round(num_cols * center_fraction))
    prob = (num_cols / acceleration - num_low_freqs) / (num_cols - num_low_freqs)
    mask = rng.uniform(size=num_cols) < prob
    pad = (num_cols - num_low_freqs + 1) // 2
    mask[pad:pad + num_low_freqs] = True
    return mask


@pytest.mark.parametrize("shape,acceleration,center_fraction", [((32, 320), 4, 0.08), ((4, 8, 368), 8, 0.04)])
def test_cartesian_mask_follows_fastmri(shape, acceleration, center_fraction):
    mask = cartesian_mask(shape, acceleration, center_fraction, seed=7)
    assert mask.shape == shape and mask.dtype == torch.float32
    reference = _fastmri_random_mask(shape[-1], acceleration, center_fraction, seed=7)
    assert (mask == torch.from_numpy(reference).float()).all()
    assert abs(mask.mean().item() - 1 / acceleration) < 0.06
    assert torch.equal(mask, cartesian_mask(shape, acceleration, center_fraction, seed=7))
    assert not torch.equal(mask, cartesian_mask(shape, acceleration, center_fraction, seed=8))


def test_jukebox_relation():
    # MONAI's JukeboxLoss: MSE of FFT magnitudes (FFT also over channels); one channel -> same spectrum.
    for shape in [(2, 1, 8, 10), (1, 1, 4, 6, 8)]:
        p, t = rand(*shape, seed=4), rand(*shape, seed=5)
        jukebox = JukeboxLoss(spatial_dims=len(shape) - 2)(p, t)
        torch.testing.assert_close(jukebox, (fft_nd(p).abs() - fft_nd(t).abs()).square().mean())
        # magnitude-only: a phase change (circular shift) is free for Jukebox, not for the complex kind
        shifted = torch.roll(t, shifts=1, dims=-1)
        assert JukeboxLoss(spatial_dims=len(shape) - 2)(shifted, t).item() < 1e-10
        assert kspace_loss(shifted, t, "log_magnitude").item() < 1e-6
        assert kspace_loss(shifted, t, "complex").item() > 0.1


@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (1, 1, 2, 3, 4)])
@pytest.mark.parametrize("kind", ["complex", "log_magnitude"])
def test_gradcheck(shape, kind):
    p = rand(*shape, seed=6, dtype=torch.float64).requires_grad_(True)
    t = rand(*shape, seed=7, dtype=torch.float64).requires_grad_(True)
    mask = cartesian_mask(shape[2:], acceleration=2, center_fraction=0.25).double()
    assert gradcheck(lambda p, t: kspace_loss(p, t, kind), (p, t))
    assert gradcheck(lambda p, t: kspace_loss(p, t, kind, mask), (p, t))


def test_module_equals_function():
    p, t = rand(2, 1, 8, 8, seed=8), rand(2, 1, 8, 8, seed=9)
    mask = cartesian_mask((8, 8), seed=3)
    tensors = {"fake_b": p, "real_b": t, "kspace_mask": mask}
    torch.testing.assert_close(KSpace().compute(tensors), kspace_loss(p, t))
    term = KSpace("log_magnitude", mask="kspace_mask")
    assert term.needs() == ("fake_b", "real_b", "kspace_mask")
    torch.testing.assert_close(term.compute(tensors), kspace_loss(p, t, "log_magnitude", mask))
    total, parts = term(tensors)
    torch.testing.assert_close(total, parts["kspace"])


def test_bad_input():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        kspace_loss(x, torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        fft_nd(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="'complex', 'log_magnitude'"):
        kspace_loss(x, x, "magnitude")
    with pytest.raises(ValueError, match="broadcast"):
        kspace_loss(x, x, mask=torch.ones(8, 7))
    with pytest.raises(ValueError, match="broadcast"):
        kspace_loss(x, x, mask=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="acceleration"):
        cartesian_mask((8, 8), acceleration=0.5)
    with pytest.raises(ValueError, match="center_fraction"):
        cartesian_mask((8, 8), center_fraction=1.5)
    with pytest.raises(MissingTensorError, match="kspace_mask"):
        KSpace(mask="kspace_mask")({"fake_b": x, "real_b": x})


def _centred_dft_numpy(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal DFT over the spatial axes, written from the definition: an explicit DFT
    matrix per axis whose frequency and position indices both run from -n//2 (DC at index n//2)."""
    out = x.astype(np.complex128)
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        index = np.arange(n) - n // 2
        matrix = np.exp(-2j * np.pi * np.outer(index, index) / n) / np.sqrt(n)
        out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out


@pytest.mark.parametrize("shape", [(2, 1, 8, 10), (1, 2, 5, 7), (1, 1, 4, 6, 5)])
@pytest.mark.parametrize("kind", ["complex", "log_magnitude"])
def test_kspace_loss_equals_an_independent_numpy_implementation(shape, kind):
    """``kspace_loss`` itself (not its FFT helper) against the formula in numpy, with and without a mask,
    on even and odd sizes (where a wrong centring would show)."""
    p, t = rand(*shape, seed=10).numpy(), rand(*shape, seed=11).numpy()
    kp, kt = _centred_dft_numpy(p), _centred_dft_numpy(t)
    values = np.abs(kp - kt) if kind == "complex" else np.abs(np.log1p(np.abs(kp)) - np.log1p(np.abs(kt)))
    mask = (np.random.default_rng(0).uniform(size=shape[2:]) < 0.5).astype(np.float64)
    mask.flat[0] = 1.0
    weights = np.broadcast_to(mask, values.shape)
    for m, expected in ((None, values.mean()), (mask, (values * weights).sum() / weights.sum())):
        got = kspace_loss(torch.from_numpy(p), torch.from_numpy(t), kind,
                          mask=None if m is None else torch.from_numpy(m).float())
        assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-7), (kind, m is not None)
