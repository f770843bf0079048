"""Pixel family: known values, masks, gradcheck, module == function, named configurations, bad input."""

import pytest
import torch
from torch.autograd import gradcheck

from translate.losses.base import MissingTensorError
from translate.losses.pixel import Cycle, Identity, Pixel, SelfRegularization, pixel_loss

SHAPES = [(2, 3, 4, 5), (2, 2, 3, 4, 5)]
KINDS = ["l1", "l2", "charbonnier"]


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_zero_for_identical_inputs(shape, kind):
    x = rand(*shape)
    assert pixel_loss(x, x.clone(), kind).item() == 0.0


@pytest.mark.parametrize("shape", SHAPES)
def test_constant_images_known_values(shape):
    a, b = torch.full(shape, 0.25), torch.full(shape, -0.5)
    assert pixel_loss(a, b, "l1").item() == pytest.approx(0.75)
    assert pixel_loss(a, b, "l2").item() == pytest.approx(0.5625)
    assert pixel_loss(a, b, "charbonnier", eps=0.1).item() == pytest.approx((0.75**2 + 0.01) ** 0.5 - 0.1)
    # Charbonnier tends to L1 as eps -> 0
    assert pixel_loss(a, b, "charbonnier", eps=1e-6).item() == pytest.approx(0.75, rel=1e-5)


def test_agrees_with_torch_losses():
    p, t = rand(2, 1, 6, 6, seed=1), rand(2, 1, 6, 6, seed=2)
    torch.testing.assert_close(pixel_loss(p, t, "l1"), torch.nn.functional.l1_loss(p, t))
    torch.testing.assert_close(pixel_loss(p, t, "l2"), torch.nn.functional.mse_loss(p, t))


@pytest.mark.parametrize("shape", SHAPES)
def test_mask_means_over_masked_voxels_broadcast_over_channels(shape):
    p, t = rand(*shape, seed=3), rand(*shape, seed=4)
    mask = (rand(shape[0], 1, *shape[2:], seed=5) > 0).float()
    full_mask = mask.expand(shape).bool()
    expected = (p - t).abs()[full_mask].mean()
    torch.testing.assert_close(pixel_loss(p, t, "l1", mask=mask), expected)
    # errors outside the mask do not count
    torch.testing.assert_close(pixel_loss(p + 10 * (1 - mask), t, "l1", mask=mask), expected)
    assert pixel_loss(p, t, mask=torch.zeros_like(mask)).item() == 0.0


def test_an_empty_mask_gives_zero_gradients_at_any_weight():
    # a crop without body: the weighted term must not turn 0 / tiny into inf and then NaN in backward
    p = rand(1, 1, 8, 8, seed=6).requires_grad_(True)
    t, empty = rand(1, 1, 8, 8, seed=7), torch.zeros(1, 1, 8, 8)
    (10.0 * pixel_loss(p, t, "l1", mask=empty)).backward()
    assert torch.equal(p.grad, torch.zeros_like(p))
    soft = torch.full((1, 1, 8, 8), 1e-3)  # a faint soft mask is still a mean over it
    torch.testing.assert_close(pixel_loss(p, t, "l1", mask=soft), (p - t).abs().mean())


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (1, 1, 2, 3, 3)])
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(shape, kind):
    p = rand(*shape, seed=6, dtype=torch.float64).requires_grad_(True)
    t = rand(*shape, seed=7, dtype=torch.float64).requires_grad_(True)
    mask = (rand(shape[0], 1, *shape[2:], seed=8) > 0).double()
    assert gradcheck(lambda p, t: pixel_loss(p, t, kind), (p, t))
    assert gradcheck(lambda p, t: pixel_loss(p, t, kind, mask=mask), (p, t))


def test_module_equals_function():
    p, t, m = rand(2, 1, 4, 4, seed=9), rand(2, 1, 4, 4, seed=10), torch.ones(2, 1, 4, 4)
    m[:, :, :2] = 0
    term = Pixel("l2", pred="fake_ct", target="real_ct", mask="body_mask")
    assert term.needs() == ("fake_ct", "real_ct", "body_mask")
    t_ = {"fake_ct": p, "real_ct": t, "body_mask": m}
    torch.testing.assert_close(term.compute(t_), pixel_loss(p, t, "l2", mask=m))
    total, parts = term(t_)
    torch.testing.assert_close(total, parts["pixel"])


def test_named_configurations():
    t = {k: rand(1, 1, 4, 4, seed=i) for i, k in enumerate(
        ["real_a", "real_b", "fake_b", "rec_a", "rec_b", "idt_a", "idt_b"])}
    l1 = lambda a, b: pixel_loss(t[a], t[b])  # noqa: E731
    assert Cycle().needs() == ("rec_a", "real_a", "rec_b", "real_b")
    torch.testing.assert_close(Cycle().compute(t), l1("rec_a", "real_a") + l1("rec_b", "real_b"))
    torch.testing.assert_close(Cycle(domain="a").compute(t), l1("rec_a", "real_a"))
    torch.testing.assert_close(Cycle(domain="b").compute(t), l1("rec_b", "real_b"))
    torch.testing.assert_close(Identity(domain="a").compute(t), l1("idt_a", "real_a"))
    torch.testing.assert_close(Identity().compute(t), l1("idt_a", "real_a") + l1("idt_b", "real_b"))
    torch.testing.assert_close(SelfRegularization().compute(t), l1("fake_b", "real_a"))
    assert (Cycle().name, Identity().name, SelfRegularization().name) == ("cycle", "identity", "self_regularization")
    _, parts = (Cycle() + 0.5 * Identity() + Pixel())(t)
    assert list(parts) == ["cycle", "identity", "pixel"]


def test_bad_input():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        pixel_loss(x, torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pixel_loss(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="'l1', 'l2', 'charbonnier'"):
        pixel_loss(x, x, "huber")
    with pytest.raises(ValueError, match="'l1', 'l2', 'charbonnier'"):
        Pixel("huber")
    with pytest.raises(ValueError, match="mask"):
        pixel_loss(x, x, mask=torch.ones(1, 1, 3, 4))
    with pytest.raises(ValueError, match="domain"):
        Cycle(domain="c")
    with pytest.raises(TypeError):
        pixel_loss(x.numpy(), x)
    with pytest.raises(MissingTensorError, match="rec_b"):
        Cycle()({"rec_a": x, "real_a": x, "real_b": x})
