"""Perceptual and style losses: weights handling, 2D/3D, gradients, and agreement with ``lpips``."""

import pytest
import torch
from torch.autograd import gradcheck

from translate.errors import TranslateError
from translate.losses.base import Objective
from translate.losses.perceptual import (Perceptual, Style, VGGFeatures, gram_matrix, imagenet_checkpoint_path,
                                         perceptual_loss, style_loss)

LAYERS = ("relu1_2", "relu2_2")


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGGFeatures(layers=LAYERS, weights=None)


def _images(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1, torch.rand(*shape, generator=g) * 2 - 1


def _torchvision_state(features: VGGFeatures) -> dict:
    state = {f"features.{k}": v.clone() for k, v in features.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a real checkpoint carries the classifier too
    return state


@pytest.mark.parametrize("loss", [perceptual_loss, style_loss])
@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 3, 16, 16), (1, 1, 4, 8, 8)])
def test_zero_for_identical_positive_otherwise(vgg, loss, shape):
    x, y = _images(*shape)
    assert loss(x, x.clone(), vgg).item() == 0.0
    assert loss(x, y, vgg).item() > 0.0


def test_gradient_flows_to_prediction_only(vgg):
    x, y = _images(1, 1, 16, 16)
    x.requires_grad_(True)
    (perceptual_loss(x, y, vgg) + 1e6 * style_loss(x, y, vgg)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())


def test_gradcheck_float64_tiny():
    torch.manual_seed(0)
    vgg = VGGFeatures(layers=("relu1_1",), weights=None).double()
    x, y = (t.double() for t in _images(1, 1, 3, 3))
    x.requires_grad_(True)
    assert gradcheck(lambda p: perceptual_loss(p, y, vgg, kind="l2"), (x,))
    assert gradcheck(lambda p: style_loss(p, y, vgg), (x,))


@pytest.mark.parametrize("loss", [perceptual_loss, style_loss])
def test_3d_is_mean_of_2d_over_the_three_planes(vgg, loss):
    x, y = _images(2, 1, 4, 6, 8)
    planes = []
    for axis in (2, 3, 4):
        per_slice = [loss(x.select(axis, i), y.select(axis, i), vgg) for i in range(x.shape[axis])]
        planes.append(torch.stack(per_slice).mean())
    torch.testing.assert_close(loss(x, y, vgg), torch.stack(planes).mean())


def test_3d_slice_subsampling_is_deterministic(vgg):
    x, y = _images(1, 1, 4, 6, 8)
    value = perceptual_loss(x, y, vgg, max_slices_per_plane=2)
    assert value == perceptual_loss(x, y, vgg, max_slices_per_plane=2)
    planes = []
    for axis in (2, 3, 4):
        ends = (0, x.shape[axis] - 1)  # two evenly spaced slices: the first and the last
        planes.append(torch.stack([perceptual_loss(x.select(axis, i), y.select(axis, i), vgg) for i in ends]).mean())
    torch.testing.assert_close(value, torch.stack(planes).mean())


def test_layer_weights_and_kind(vgg):
    x, y = _images(1, 1, 16, 16)
    only_first = perceptual_loss(x, y, vgg, layer_weights=(1.0, 0.0), kind="l2")
    fx, fy = vgg(x), vgg(y)
    torch.testing.assert_close(only_first, (fx["relu1_2"] - fy["relu1_2"]).pow(2).mean())


def test_gram_matrix_known_value():
    g = gram_matrix(torch.ones(1, 2, 2, 2))
    torch.testing.assert_close(g, torch.full((1, 2, 2), 0.5))


def test_missing_imagenet_weights_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "vgg16-397923af.pth"
    assert imagenet_checkpoint_path("vgg16")[0] == expected
    with pytest.raises(TranslateError, match=str(expected)):
        Perceptual(layers=LAYERS)
    with pytest.raises(TranslateError, match="vgg19-dcbb9e9d.pth"):
        Style(arch="vgg19", layers=LAYERS)


def test_imagenet_weights_read_from_the_hub_cache(monkeypatch, tmp_path, vgg):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(_torchvision_state(vgg), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    x, _ = _images(1, 1, 16, 16)
    loaded = VGGFeatures(layers=LAYERS, weights="imagenet")
    torch.testing.assert_close(loaded(x), vgg(x))


def test_explicit_weights_path(tmp_path, vgg):
    path = tmp_path / "vgg.pth"
    torch.save(_torchvision_state(vgg), path)
    x, y = _images(1, 1, 16, 16)
    term = Perceptual(layers=LAYERS, weights=str(path))
    torch.testing.assert_close(term.compute({"fake_b": x, "real_b": y}), perceptual_loss(x, y, vgg))
    with pytest.raises(TranslateError, match="not found"):
        VGGFeatures(layers=LAYERS, weights=str(tmp_path / "absent.pth"))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "partial.pth")
    with pytest.raises(TranslateError, match="missing keys"):
        VGGFeatures(layers=LAYERS, weights=str(tmp_path / "partial.pth"))


def test_vgg_not_in_state_dict_but_moves_and_stays_eval():
    term = Perceptual(layers=("relu1_1",), weights=None)
    assert dict(term.state_dict()) == {}
    assert dict(Objective([(1.0, term)]).state_dict()) == {}
    term.train()
    assert not term.vgg.training
    term.to(torch.float64)  # the device path is the same _apply; dtype is testable on CPU
    assert all(p.dtype == torch.float64 for p in term.vgg.parameters())
    assert term.vgg.mean.dtype == torch.float64


def test_module_equals_function(vgg):
    x, y = _images(1, 1, 8, 8, 8)
    for cls, fn in ((Perceptual, perceptual_loss), (Style, style_loss)):
        term = cls(layers=LAYERS, weights=None, pred="p", target="t", max_slices_per_plane=3)
        object.__setattr__(term, "vgg", vgg)  # same weights for both sides
        assert term.needs() == ("p", "t")
        torch.testing.assert_close(term.compute({"p": x, "t": y}), fn(x, y, vgg, max_slices_per_plane=3))


def test_bad_input(vgg):
    x, y = _images(1, 2, 8, 8)
    with pytest.raises(ValueError, match="1 or 3"):
        perceptual_loss(x, y, vgg)
    with pytest.raises(ValueError):
        perceptual_loss(x[:, :1], y[:, :1, :4], vgg)
    with pytest.raises(ValueError):
        perceptual_loss(x[:, :1, 0], y[:, :1, 0], vgg)
    with pytest.raises(ValueError, match="relu1_2"):
        VGGFeatures(layers=("relu9_9",), weights=None)
    with pytest.raises(ValueError):
        VGGFeatures(arch="resnet", weights=None)
    with pytest.raises(ValueError):
        Perceptual(layers=LAYERS, weights=None, kind="huber")
    with pytest.raises(ValueError):
        perceptual_loss(x[:, :1], y[:, :1], vgg, layer_weights=(1.0,))


def test_vgg19_layer_names():
    vgg = VGGFeatures(arch="vgg19", layers=("relu1_1", "conv1_2"), weights=None)
    out = vgg(torch.zeros(1, 3, 4, 4))
    assert list(out) == ["relu1_1", "conv1_2"] and out["conv1_2"].shape == (1, 64, 4, 4)


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips passes torchvision's deprecated `pretrained`
@pytest.mark.parametrize("channels", [1, 3])
def test_agrees_with_lpips_vgg16_preprocessing_features_and_value(channels):
    """The whole path against the ``lpips`` package on the same random VGG16 weights: raw images in
    [-1, 1] go through lpips' own ``ScalingLayer`` and trunk (``LPIPS(net="vgg", pnet_rand=True)``),
    and through ours (grayscale repeated to RGB, [0, 1], ImageNet mean/std); features and the
    perceptual loss value (l1 and l2, weighted layers) must agree."""
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    peer = lpips.LPIPS(net="vgg", lpips=False, pnet_rand=True, pretrained=False, verbose=False).eval()
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    ours = VGGFeatures(layers=layers, weights=None)
    state = {k.split(".", 1)[1]: v for k, v in peer.net.state_dict().items()}  # "slice2.5.weight" -> "5.weight"
    ours.features.load_state_dict(state)
    x, y = _images(2, channels, 24, 24)
    rgb = lambda t: t.expand(-1, 3, -1, -1)  # noqa: E731 - lpips takes RGB: grayscale repeated, as ours does
    with torch.no_grad():
        theirs_x, theirs_y = peer.net(peer.scaling_layer(rgb(x))), peer.net(peer.scaling_layer(rgb(y)))
        mine_x = ours(x)
    for name in layers:
        torch.testing.assert_close(mine_x[name], getattr(theirs_x, name), rtol=1e-4, atol=1e-5)
    weights = (0.5, 1.0, 0.25, 2.0, 1.5)
    for kind, power in (("l1", 1), ("l2", 2)):
        expected = sum(w * (getattr(theirs_x, n) - getattr(theirs_y, n)).abs().pow(power).mean()
                       for w, n in zip(weights, layers))
        with torch.no_grad():
            value = perceptual_loss(x, y, ours, layer_weights=weights, kind=kind)
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-6)
    # and lpips' own number on these features: its baseline distance, from its unit-normalised features
    with torch.no_grad():
        baseline = peer(rgb(x), rgb(y)).flatten()
        unit = lambda f: f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # noqa: E731
        from_ours = sum((unit(mine_x[n]) - unit(ours(y)[n])).pow(2).sum(1).mean((1, 2)) for n in layers)
    torch.testing.assert_close(from_ours, baseline, rtol=1e-4, atol=1e-6)
