"""Loss composition: arithmetic, part names, missing tensors, schedules, recipes, user terms."""

from pathlib import Path

import pytest
import torch

from translate.errors import TranslateError
from translate.losses.adversarial import Adversarial
from translate.losses.base import LinearWarmup, MissingTensorError, Objective, build_objective, build_weight, check_choice
from translate.losses.gradient import Gradient
from translate.losses.pixel import Pixel, PixelKind


@pytest.fixture()
def tensors():
    g = torch.Generator().manual_seed(0)
    return {"fake_b": torch.randn(2, 1, 8, 8, generator=g), "real_b": torch.randn(2, 1, 8, 8, generator=g),
            "d_fake": torch.randn(2, 1, 3, 3, generator=g)}


def test_sum_of_weighted_parts(tensors):
    total, parts = (Adversarial("lsgan") + 10 * Pixel())(tensors)
    assert list(parts) == ["adversarial", "pixel"]
    torch.testing.assert_close(total, parts["adversarial"] + parts["pixel"])
    torch.testing.assert_close(parts["pixel"], 10 * Pixel().compute(tensors))
    assert not parts["pixel"].requires_grad


def test_scalar_multiplication_commutes_and_nests(tensors):
    a = (Pixel() * 3)(tensors)[0]
    b = (3 * Pixel())(tensors)[0]
    c = (2 * (1.5 * Pixel()))(tensors)[0]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert sum([Pixel(), Gradient()]).part_names == ["pixel", "gradient"]


def test_repeated_terms_get_unique_names(tensors):
    objective = Pixel() + Pixel("l2") + Pixel("charbonnier")
    assert objective.part_names == ["pixel", "pixel_2", "pixel_3"]
    total, parts = objective(tensors)
    assert set(parts) == {"pixel", "pixel_2", "pixel_3"}
    torch.testing.assert_close(total, sum(parts.values()))


def test_missing_tensor_names_missing_and_available(tensors):
    del tensors["real_b"]
    with pytest.raises(MissingTensorError) as err:
        (Adversarial() + Pixel())(tensors)
    assert "real_b" in str(err.value) and "d_fake" in str(err.value) and "fake_b" in str(err.value)


def test_linear_warmup_weight_follows_step(tensors):
    objective = LinearWarmup(10.0, steps=100) * Pixel()
    value = Pixel().compute(tensors)
    torch.testing.assert_close(objective(tensors, step=0)[0], 0 * value)
    torch.testing.assert_close(objective(tensors, step=50)[0], 5 * value)
    torch.testing.assert_close(objective(tensors, step=500)[0], 10 * value)


def test_linear_warmup_begin_delays_the_ramp():
    weight = LinearWarmup(10.0, steps=100, begin=1000)
    assert [weight(s) for s in (0, 999, 1000, 1050, 1100, 5000)] == [0.0, 0.0, 0.0, 5.0, 10.0, 10.0]
    assert weight(None) == 10.0  # outside training (e.g. reporting the weight): the full value
    assert LinearWarmup(4.0, steps=0, begin=10)(9) == 0.0 and LinearWarmup(4.0, steps=0, begin=10)(10) == 4.0
    with pytest.raises(ValueError, match="begin"):
        LinearWarmup(1.0, steps=10, begin=-1)
    with pytest.raises(TranslateError, match="objective.weight: LinearWarmup begin must be >= 0"):  # one line, no traceback
        build_weight({"schedule": "linear_warmup", "value": 2, "steps": 10, "begin": -5}, "objective.weight")
    late = build_weight({"schedule": "linear_warmup", "value": 2, "steps": 10, "begin": 20})
    assert (late(19), late(25), late(30)) == (0.0, 1.0, 2.0)


def test_build_objective_from_recipe_entries(tensors):
    objective = build_objective([
        {"name": "adversarial", "mode": "lsgan"},
        {"name": "pixel", "kind": "l1", "weight": 100},
        {"name": "gradient", "weight": {"schedule": "linear_warmup", "value": 10, "steps": 10}},
    ])
    assert objective.part_names == ["adversarial", "pixel", "gradient"]
    _, early = objective(tensors, step=0)
    _, late = objective(tensors, step=10)
    assert early["gradient"].item() == 0.0 and late["gradient"].item() > 0.0
    torch.testing.assert_close(late["pixel"], 100 * Pixel().compute(tensors))


def test_build_objective_user_term_by_dotted_path(tensors, monkeypatch):
    # the repository root makes ``tests`` importable (a namespace package) however pytest is launched
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    objective = build_objective([{"name": "tests.helpers_user_terms.MyTerm", "scale": 2.0, "weight": 3}])
    assert objective.part_names == ["my_term"]
    expected = 6.0 * (tensors["fake_b"].mean() - tensors["real_b"].mean()).abs()
    torch.testing.assert_close(objective(tensors)[0], expected)


@pytest.mark.parametrize("spec", [{"kind": "l1"}, {"name": "pixel", "kind": "l3"}, {"name": "nope"},
                                  {"name": "pixel", "weight": "ten"}])
def test_build_objective_bad_entries(spec):
    with pytest.raises(TranslateError):
        build_objective([spec])


def test_objective_rejects_non_terms():
    with pytest.raises(TypeError):
        Objective([(1.0, torch.nn.L1Loss())])


def test_check_choice_lists_valid_values():
    assert check_choice(PixelKind, "L2", "kind") == PixelKind.L2
    with pytest.raises(ValueError, match="'l1', 'l2', 'charbonnier'"):
        check_choice(PixelKind, "l3", "kind")


def test_missing_tensor_names_the_term_and_what_it_needs():
    from translate.losses import Adversarial, MissingTensorError, Pixel

    objective = Pixel() + Adversarial("lsgan", fake="d_fake_typo")
    with pytest.raises(MissingTensorError) as info:
        objective({"fake_b": torch.zeros(1, 1, 4, 4), "real_b": torch.zeros(1, 1, 4, 4)})
    message = str(info.value)
    assert message.startswith("objective: ") and "\n" not in message
    assert "adversarial needs ['d_fake_typo']" in message and "pixel" not in message.split("but")[0]
