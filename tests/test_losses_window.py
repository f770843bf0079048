"""window_pixel: the pixel loss read in an HU window (known values, clipping, gradients, recipe, bad input)."""

import pytest
import torch

from translate.data.intensity import HUWindow
from translate.losses.base import build_objective
from translate.losses.window import WindowPixel, window_pixel_loss

SPACE = HUWindow(-1024.0, 2000.0)


def hu(values, shape=(1, 1, 2, 2)):
    return SPACE.forward(torch.as_tensor(values, dtype=torch.float64).expand(*shape).clone())


@pytest.mark.parametrize("kind,expected", [("l2", (40 / 400) ** 2), ("l1", 40 / 400)])
def test_known_value_inside_the_window(kind, expected):
    loss = window_pixel_loss(hu(60.0), hu(20.0), kind)  # 40 HU apart, both inside [-160, 240]
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_outside_the_window_only_the_distance_to_its_edge_counts():
    assert window_pixel_loss(hu(1500.0), hu(700.0), "l2").item() == 0.0  # both bone: one grey level
    assert window_pixel_loss(hu(-900.0), hu(-500.0), "l1").item() == 0.0  # both air / lung
    # the target is bone, the prediction soft tissue at 140 HU: 100 HU short of the window's top
    assert window_pixel_loss(hu(140.0), hu(900.0), "l1").item() == pytest.approx(100 / 400)
    # a plain pixel loss sees the whole 760 HU
    assert window_pixel_loss(hu(140.0), hu(900.0), "l1", window=(-1024, 2000)).item() == pytest.approx(760 / 3024)


def test_weights_soft_tissue_errors_against_the_full_range():
    """The same 20 HU error costs (3024 / 400)^2 times more than in the network's full window."""
    pred, target = hu(60.0), hu(40.0)
    windowed = window_pixel_loss(pred, target, "l2")
    full = torch.nn.functional.mse_loss(pred, target) / 4  # [-1, 1] is 2 units wide
    assert (windowed / full).item() == pytest.approx((3024 / 400) ** 2, rel=1e-6)


def test_gradient_flows_inside_and_stops_where_the_prediction_is_clipped():
    pred = hu([[[[50.0, 500.0]]]], shape=(1, 1, 1, 2)).requires_grad_(True)
    window_pixel_loss(pred, hu([[[[0.0, 0.0]]]], shape=(1, 1, 1, 2)), "l2").backward()
    assert pred.grad[0, 0, 0, 0] > 0 and pred.grad[0, 0, 0, 1] == 0


def test_mask_and_space_parameters():
    pred, target = hu([[[[60.0, 400.0]]]], shape=(1, 1, 1, 2)), hu([[[[20.0, -400.0]]]], shape=(1, 1, 1, 2))
    mask = torch.tensor([[[[1.0, 0.0]]]])
    assert window_pixel_loss(pred, target, "l1", mask=mask).item() == pytest.approx(40 / 400)
    other = HUWindow(-1000.0, 1000.0)
    loss = window_pixel_loss(other.forward(torch.full((1, 1, 2, 2), 30.0)), other.forward(torch.zeros(1, 1, 2, 2)),
                             "l1", space=(-1000, 1000))
    assert loss.item() == pytest.approx(30 / 400, rel=1e-5)


def test_term_in_an_objective_from_recipe_entries():
    objective = build_objective([{"name": "window_pixel", "kind": "l2", "window": [-160, 240], "weight": 1000.0},
                                 {"name": "pixel", "kind": "l1", "weight": 10.0}])
    total, parts = objective({"fake_b": hu(60.0), "real_b": hu(20.0)})
    assert parts["window_pixel"].item() == pytest.approx(1000 * 0.01, rel=1e-6)
    assert total.item() == pytest.approx(1000 * 0.01 + 10 * 40 / 1512, rel=1e-6)
    assert WindowPixel(mask="body_mask").needs() == ("fake_b", "real_b", "body_mask")


@pytest.mark.parametrize("kwargs,match", [({"window": [240, -160]}, "lower < upper"),
                                          ({"window": [0]}, r"\[lower, upper\]"),
                                          ({"space": [100, 100]}, "lower < upper"),
                                          ({"kind": "l3"}, "l3")])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WindowPixel(**kwargs)


def test_recipe_check_refuses_a_space_that_is_not_the_target_window():
    from translate.errors import TranslateError
    from translate.recipe import load_recipe

    entry = "objective.generator=[{name: window_pixel, space: [-1000, 1000]}, {name: pixel}]"
    with pytest.raises(TranslateError, match=r"space \[-1000.0, 1000.0\] must be the ct_hu window of data.domains.b, "
                                             r"which is \[-1024.0, 2000.0\]"):
        load_recipe("recipes/ct-denoise.yaml", [entry], check_paths=False)
    good = entry.replace("[-1000, 1000]", "[-1024, 2000]")
    load_recipe("recipes/ct-denoise.yaml", [good], check_paths=False)
