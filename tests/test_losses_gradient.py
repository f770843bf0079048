"""Gradient-difference and edge-weighted losses: known values, gradcheck, module == function, bad input."""

import pytest
import torch
from torch.autograd import gradcheck

from translate.losses.gradient import EdgeWeighted, Gradient, gradient_loss, image_gradients

SHAPES = [(2, 2, 5, 6), (2, 1, 4, 5, 6)]


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ramp(shape, axis=-1):
    n = shape[axis]
    view = [1] * len(shape)
    view[axis] = n
    return torch.arange(float(n)).reshape(view).expand(shape).contiguous()


@pytest.mark.parametrize("shape", SHAPES)
def test_image_gradients_match_torch_gradient_inside(shape):
    x = rand(*shape, seed=1)
    grads = image_gradients(x)
    assert grads.shape == (shape[0], shape[1], len(shape) - 2, *shape[2:])
    spatial = list(range(2, len(shape)))
    # kornia orders the components x (last axis) first
    for component, dim in enumerate(reversed(spatial)):
        expected = torch.gradient(x, dim=dim)[0]
        inside = tuple(slice(1, -1) if d == dim else slice(None) for d in range(len(shape)))
        torch.testing.assert_close(grads[:, :, component][inside], expected[inside])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("edge_weighted", [False, True])
def test_zero_for_identical_inputs(shape, edge_weighted):
    x = rand(*shape, seed=2)
    assert gradient_loss(x, x.clone(), edge_weighted=edge_weighted).item() == 0.0


@pytest.mark.parametrize("shape", SHAPES)
def test_known_values(shape):
    x = rand(*shape, seed=3)
    # gradients ignore a constant offset
    assert gradient_loss(x, x + 3.0).item() == pytest.approx(0.0, abs=1e-6)
    # unit ramp along the last axis (length n) vs flat: |grad| is 1 inside, 1/2 at the two ends
    n, k = shape[-1], len(shape) - 2
    expected = (n - 1) / n / k
    assert gradient_loss(ramp(shape), torch.zeros(shape)).item() == pytest.approx(expected)
    assert gradient_loss(ramp(shape), torch.zeros(shape), "l2").item() == pytest.approx((n - 2 + 0.5) / n / k)
    # edge weights of a ramp target are [1/2, 1, ..., 1, 1/2]; a constant error of 1 costs their mean
    assert gradient_loss(ramp(shape) + 1, ramp(shape), edge_weighted=True).item() == pytest.approx((n - 1) / n)
    # a flat target has no edges: zero weight everywhere
    assert gradient_loss(x, torch.zeros(shape), edge_weighted=True).item() == 0.0


@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (1, 1, 3, 3, 4)])
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_gradcheck(shape, kind):
    p = rand(*shape, seed=4, dtype=torch.float64).requires_grad_(True)
    t = rand(*shape, seed=5, dtype=torch.float64).requires_grad_(True)
    assert gradcheck(lambda p, t: gradient_loss(p, t, kind), (p, t))
    # edge weights are constants of the target, so check w.r.t. the prediction
    assert gradcheck(lambda p: gradient_loss(p, t.detach(), kind, edge_weighted=True), (p,))


def test_module_equals_function():
    p, t = rand(2, 1, 6, 6, seed=6), rand(2, 1, 6, 6, seed=7)
    tensors = {"fake_b": p, "real_b": t, "out": t}
    torch.testing.assert_close(Gradient().compute(tensors), gradient_loss(p, t))
    torch.testing.assert_close(Gradient("l2", target="out").compute(tensors), gradient_loss(p, t, "l2"))
    torch.testing.assert_close(EdgeWeighted().compute(tensors), gradient_loss(p, t, edge_weighted=True))
    assert (Gradient().name, EdgeWeighted().name) == ("gradient", "edge")
    _, parts = (Gradient() + EdgeWeighted())(tensors)
    assert list(parts) == ["gradient", "edge"]


def test_bad_input():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        gradient_loss(x, torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gradient_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        gradient_loss(x, x, "charbonnier")
    with pytest.raises(ValueError, match="'l1', 'l2'"):
        Gradient("huber")
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        EdgeWeighted("charbonnier")
