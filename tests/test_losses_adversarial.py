"""Adversarial losses: formulas on hand-made logits, MONAI agreement, penalties, clipping, term wiring."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from torch.autograd import gradcheck

from translate.losses.adversarial import (Adversarial, AdversarialMode, discriminator_loss, generator_loss,
                                          gradient_penalty, r1_penalty)
from translate.losses.base import MissingTensorError

REAL = torch.tensor([[2.0, -1.0], [0.5, 0.0]]).reshape(2, 1, 2, 1)
FAKE = torch.tensor([[-2.0, 1.0], [0.25, 3.0]]).reshape(2, 1, 2, 1)
MODES = [m.value for m in AdversarialMode]


def logits(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_known_values_on_hand_made_logits():
    r, f = REAL.flatten().tolist(), FAKE.flatten().tolist()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert generator_loss(FAKE, "lsgan").item() == pytest.approx(mean([(x - 1) ** 2 for x in f]))
    assert discriminator_loss(REAL, FAKE, "lsgan").item() == pytest.approx(
        mean([(x - 1) ** 2 for x in r]) + mean([x**2 for x in f]))
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(-mean(f))
    assert discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(
        mean([max(0, 1 - x) for x in r]) + mean([max(0, 1 + x) for x in f]))
    for mode in ("wgan", "wgan-gp"):
        assert generator_loss(FAKE, mode).item() == pytest.approx(-mean(f))
        assert discriminator_loss(REAL, FAKE, mode).item() == pytest.approx(mean(f) - mean(r))
    sig = torch.sigmoid(FAKE)
    assert generator_loss(FAKE, "vanilla").item() == pytest.approx(torch.log(1 - sig).mean().item(), rel=1e-5)
    assert generator_loss(FAKE, "nonsaturating").item() == pytest.approx(-torch.log(sig).mean().item(), rel=1e-5)
    expected_d = -torch.log(torch.sigmoid(REAL)).mean() - torch.log(1 - sig).mean()
    for mode in ("vanilla", "nonsaturating"):
        assert discriminator_loss(REAL, FAKE, mode).item() == pytest.approx(expected_d.item(), rel=1e-5)


def test_perfect_discriminator_gives_zero_lsgan():
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert generator_loss(ones, "lsgan").item() == 0.0
    assert discriminator_loss(ones, zeros, "lsgan").item() == 0.0


def test_multiscale_list_is_averaged():
    scales = [logits(2, 1, 4, 4, seed=1), logits(2, 1, 2, 2, seed=2)]
    for mode in MODES:
        expected = (generator_loss(scales[0], mode) + generator_loss(scales[1], mode)) / 2
        torch.testing.assert_close(generator_loss(scales, mode), expected)
        d = discriminator_loss(scales, [s.flip(0) for s in scales], mode)
        expected_d = sum(discriminator_loss(s, s.flip(0), mode) for s in scales) / 2
        torch.testing.assert_close(d, expected_d)


def test_one_sided_label_smoothing():
    term = Adversarial("lsgan", side="discriminator", label_smoothing=0.1)
    value = term.compute({"d_real": REAL, "d_fake_detached": FAKE})
    expected = (REAL - 0.9).square().mean() + FAKE.square().mean()
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 1, 3, 3), (2, 1, 2, 3, 3)])
def test_gradcheck(mode, shape):
    real = logits(*shape, seed=3, dtype=torch.float64).requires_grad_(True)
    fake = logits(*shape, seed=4, dtype=torch.float64).requires_grad_(True)
    assert gradcheck(lambda f: generator_loss(f, mode), (fake,))
    assert gradcheck(lambda r, f: discriminator_loss(r, f, mode), (real, fake))


def test_module_equals_function():
    t = {"d_fake": FAKE, "d_real": REAL, "d_fake_detached": FAKE.flip(0)}
    for mode in MODES:
        torch.testing.assert_close(Adversarial(mode).compute(t), generator_loss(FAKE, mode))
        d = Adversarial(mode, side="discriminator", gp_weight=0.0)
        torch.testing.assert_close(d.compute(t), discriminator_loss(REAL, FAKE.flip(0), mode))
    total, parts = Adversarial("hinge", fake="g_out", name="adv")({"g_out": FAKE})
    torch.testing.assert_close(total, parts["adv"])


def test_needs_lists_exactly_what_is_read():
    assert Adversarial().needs() == ("d_fake",)
    assert Adversarial(side="discriminator").needs() == ("d_real", "d_fake_detached")
    assert Adversarial("wgan-gp").needs() == ("d_fake",)
    assert Adversarial("wgan-gp", side="discriminator", gp_weight=0).needs() == ("d_real", "d_fake_detached")
    assert Adversarial("wgan-gp", side="discriminator").needs() == (
        "d_real", "d_fake_detached", "critic", "real_b", "fake_b")
    assert Adversarial("hinge", side="discriminator", r1_weight=5.0).needs() == (
        "d_real", "d_fake_detached", "critic", "real_b")


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="'vanilla', 'nonsaturating', 'lsgan', 'wgan', 'wgan-gp', 'hinge'"):
        generator_loss(FAKE, "minimax")
    with pytest.raises(ValueError, match="lsgan"):
        Adversarial("lsgn")
    with pytest.raises(ValueError, match="side"):
        Adversarial(side="both")
    with pytest.raises(ValueError, match="discriminator side"):
        Adversarial(label_smoothing=0.1)
    with pytest.raises(ValueError, match="hinge"):
        Adversarial("hinge", side="discriminator", label_smoothing=0.1)
    with pytest.raises(ValueError):
        Adversarial(side="discriminator", label_smoothing=1.0)
    with pytest.raises(TypeError):
        generator_loss([], "lsgan")
    with pytest.raises(MissingTensorError, match="d_fake_detached"):
        Adversarial(side="discriminator")({"d_fake": FAKE, "d_real": REAL})
    with pytest.raises(ValueError, match="shape"):
        gradient_penalty(lambda x: x.sum((1, 2, 3)), torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


# ----------------------------------------------------------------------------- MONAI agreement
def _monai_d(loss, real, fake):
    return loss(real, target_is_real=True, for_discriminator=True) + loss(fake, target_is_real=False,
                                                                         for_discriminator=True)


@pytest.mark.parametrize("multiscale", [False, True])
def test_agrees_with_monai_patch_adversarial_loss(multiscale):
    real, fake = logits(2, 1, 5, 5, seed=5), logits(2, 1, 5, 5, seed=6)
    if multiscale:
        real, fake = [real, logits(2, 1, 3, 3, seed=7)], [fake, logits(2, 1, 3, 3, seed=8)]
    each = (lambda fn, x: [fn(s) for s in x]) if multiscale else (lambda fn, x: fn(x))

    # least squares: MONAI's default squashes logits with LeakyReLU(0.05) first; without it they match.
    plain = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)
    torch.testing.assert_close(plain(fake, True, False), generator_loss(fake, "lsgan"))
    torch.testing.assert_close(_monai_d(plain, real, fake), discriminator_loss(real, fake, "lsgan"))
    leaky = PatchAdversarialLoss(criterion="least_squares")
    squash = lambda x: F.leaky_relu(x, 0.05)  # noqa: E731
    torch.testing.assert_close(_monai_d(leaky, real, fake),
                               discriminator_loss(each(squash, real), each(squash, fake), "lsgan"))

    # bce (sigmoid + BCELoss) is our nonsaturating mode.
    bce = PatchAdversarialLoss(criterion="bce")
    torch.testing.assert_close(bce(fake, True, False), generator_loss(fake, "nonsaturating"))
    torch.testing.assert_close(_monai_d(bce, real, fake), discriminator_loss(real, fake, "nonsaturating"))

    # hinge: MONAI applies tanh to the logits, and its generator side is relu(1 - tanh(x)) = 1 - tanh(x)
    # rather than -x, i.e. our hinge on tanh(x) plus a constant 1.
    hinge = PatchAdversarialLoss(criterion="hinge")
    t_real, t_fake = each(torch.tanh, real), each(torch.tanh, fake)
    torch.testing.assert_close(_monai_d(hinge, real, fake), discriminator_loss(t_real, t_fake, "hinge"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(hinge(fake, True, False), 1 + generator_loss(t_fake, "hinge"))


# ----------------------------------------------------------------------------- penalties
def linear_critic(w):
    return lambda x: (w * x).flatten(1).sum(1)


@pytest.mark.parametrize("shape", [(3, 1, 4, 4), (3, 2, 2, 3, 3)])
def test_gradient_penalty_zero_for_unit_norm_critic(shape):
    w = logits(1, *shape[1:], seed=9)
    real, fake = logits(*shape, seed=10), logits(*shape, seed=11)
    assert gradient_penalty(linear_critic(w / w.norm()), real, fake).item() < 1e-6
    # ||grad|| = 2 everywhere -> (2 - 1)^2 = 1
    torch.testing.assert_close(gradient_penalty(linear_critic(2 * w / w.norm()), real, fake), torch.tensor(1.0))
    assert gradient_penalty(lambda x: x.square().flatten(1).sum(1), real, fake).item() > 0


def test_gradient_penalty_gradcheck_and_grad_reaches_critic():
    real, fake = logits(2, 1, 3, 3, seed=12, dtype=torch.float64), logits(2, 1, 3, 3, seed=13, dtype=torch.float64)
    w = logits(1, 1, 3, 3, seed=14, dtype=torch.float64).requires_grad_(True)
    assert gradcheck(lambda w: gradient_penalty(linear_critic(w), real, fake), (w,))
    assert gradcheck(lambda w: r1_penalty(linear_critic(w), real), (w,))
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    gradient_penalty(conv, real.float(), fake.float(), target_norm=5.0).backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_r1_known_value_and_patch_critic():
    w = logits(1, 1, 4, 4, seed=15)
    real = logits(2, 1, 4, 4, seed=16)
    torch.testing.assert_close(r1_penalty(linear_critic(w), real), w.square().sum())
    # a patch critic's outputs are averaged per sample: identity critic over 16 pixels -> grad 1/16 each
    torch.testing.assert_close(r1_penalty(lambda x: x, real), torch.tensor(16 / 256))


def test_wgan_gp_term_adds_weighted_penalty():
    w = logits(1, 1, 4, 4, seed=17)
    critic = linear_critic(2 * w / w.norm())
    t = {"d_real": REAL, "d_fake_detached": FAKE, "critic": critic,
         "real_b": logits(2, 1, 4, 4, seed=18), "fake_b": logits(2, 1, 4, 4, seed=19)}
    value = Adversarial("wgan-gp", side="discriminator").compute(t)
    torch.testing.assert_close(value, discriminator_loss(REAL, FAKE, "wgan") + 10.0)
    r1 = Adversarial("lsgan", side="discriminator", r1_weight=0.5).compute(t)
    torch.testing.assert_close(r1, discriminator_loss(REAL, FAKE, "lsgan") + 0.5 * 4.0)


def test_wgan_clipping_clamps_discriminator_parameters():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 1, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(100)
    term = Adversarial("wgan", side="discriminator")
    assert term.clip_value == 0.01
    term.after_optimizer_step(net)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())
    assert any((p.abs() == 0.01).any() for p in net.parameters())
    before = [p.clone() for p in net.parameters()]
    Adversarial("lsgan", side="discriminator").after_optimizer_step(net)
    Adversarial("wgan").after_optimizer_step(net)  # generator side: never clips
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    with pytest.raises(ValueError):
        Adversarial("wgan", side="discriminator", clip_value=-1.0)
