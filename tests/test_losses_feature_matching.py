"""Feature matching: zero on equal features, known value, gradcheck, real detached, multi-scale."""

import pytest
import torch
from torch.autograd import gradcheck

from translate.losses.feature_matching import FeatureMatching, feature_matching_loss


def _features(shapes, dtype=torch.float32, requires_grad=False):
    return [torch.randn(*s, dtype=dtype, requires_grad=requires_grad) for s in shapes]


SHAPES_2D = [(2, 4, 8, 8), (2, 8, 4, 4), (2, 1, 3, 3)]
SHAPES_3D = [(1, 4, 4, 8, 8), (1, 8, 2, 4, 4)]


@pytest.mark.parametrize("shapes", [SHAPES_2D, SHAPES_3D])
def test_zero_for_identical_features(shapes):
    f = _features(shapes)
    assert feature_matching_loss(f, [x.clone() for x in f]).item() == 0.0


def test_known_value_mean_over_layers_and_scales():
    fake = [[torch.full((1, 2, 2, 2), 1.0), torch.full((1, 3, 1, 1), 3.0)], [torch.full((1, 2, 2, 2), 2.0)]]
    real = [[torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 1, 1)], [torch.zeros(1, 2, 2, 2)]]
    # scale 1: mean(1, 3) = 2; scale 2: 2; mean over scales = 2
    assert feature_matching_loss(fake, real).item() == pytest.approx(2.0)
    single = feature_matching_loss(fake[0], real[0])
    assert single.item() == pytest.approx(2.0)


@pytest.mark.parametrize("shapes", [[(1, 2, 3, 3), (1, 3, 2, 2)], [(1, 2, 2, 3, 3)]])
def test_gradcheck(shapes):
    fake = _features(shapes, torch.float64, requires_grad=True)
    real = _features(shapes, torch.float64)
    assert gradcheck(lambda *f: feature_matching_loss(list(f), real), tuple(fake))


def test_real_features_are_detached():
    real = _features(SHAPES_2D, requires_grad=True)
    fake = _features(SHAPES_2D, requires_grad=True)
    feature_matching_loss(fake, real).backward()
    assert all(r.grad is None for r in real)
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in fake)


def test_module_equals_function():
    fake, real = [_features(SHAPES_2D), _features(SHAPES_2D[:2])], [_features(SHAPES_2D), _features(SHAPES_2D[:2])]
    term = FeatureMatching()
    assert term.needs() == ("d_fake_features", "d_real_features")
    value = term.compute({"d_fake_features": fake, "d_real_features": real})
    torch.testing.assert_close(value, feature_matching_loss(fake, real))


def test_bad_input():
    a = _features(SHAPES_2D)
    with pytest.raises(ValueError):
        feature_matching_loss(a, a[:2])
    with pytest.raises(ValueError):
        feature_matching_loss(a, _features([(2, 4, 8, 8), (2, 8, 4, 4), (2, 1, 2, 2)]))
    with pytest.raises(TypeError):
        feature_matching_loss([], [])
    with pytest.raises(TypeError):
        feature_matching_loss(a[0], a[0])
    with pytest.raises(TypeError):
        feature_matching_loss([a[0], [a[1]]], [a[0], [a[1]]])
