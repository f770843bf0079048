"""Shape consistency: values, gradients, frozen vs joint segmentor, checkpoints, bad input."""

import pytest
import torch

from translate.errors import TranslateError
from translate.losses.base import build_objective
from translate.losses.shape import Shape


def _batch(spatial=(16, 16), classes=3, seed=0, names=("fake_b", "labels")):
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(2, 1, *spatial, generator=g) * 2 - 1).requires_grad_(True)
    return {names[0]: image, names[1]: torch.randint(0, classes, (2, 1, *spatial), generator=g)}


@pytest.mark.parametrize("spatial_dims,spatial", [(2, (16, 16)), (3, (16, 16, 16))])
def test_finite_and_gradient_reaches_the_generator_output(spatial_dims, spatial):
    torch.manual_seed(0)
    term = Shape(num_classes=3, spatial_dims=spatial_dims)
    tensors = _batch(spatial)
    value = term.compute(tensors)
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert tensors["fake_b"].grad.abs().sum() > 0
    assert all(p.grad is not None for p in term.trainable_parameters())


def test_joint_mode_trains_the_segmentor_and_saves_it():
    term = Shape(num_classes=3)
    assert not term.frozen
    params = term.trainable_parameters()
    assert params and [id(p) for p in params] == [id(p) for p in term.segmentor.parameters()]
    assert any(k.startswith("segmentor.") for k in term.state_dict())  # resumable with the generator


@pytest.mark.parametrize("wrapped", [False, True])
def test_frozen_from_checkpoint(tmp_path, wrapped):
    torch.manual_seed(0)
    source = Shape(num_classes=3)
    state = source.segmentor.state_dict()
    path = tmp_path / "segmentor.pt"
    torch.save({"segmentor": state} if wrapped else state, path)
    term = Shape(num_classes=3, checkpoint=str(path))
    assert term.frozen and term.trainable_parameters() == []
    term.train()
    assert not term.segmentor.training  # frozen keeps eval statistics
    source.eval()
    tensors = _batch()
    torch.testing.assert_close(term.compute(tensors), source.compute(tensors))
    term.compute(tensors).backward()
    assert tensors["fake_b"].grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in term.segmentor.parameters())
    # a checkpoint may also just initialise a jointly trained segmentor
    assert Shape(num_classes=3, checkpoint=str(path), frozen=False).trainable_parameters()


def test_extra_pairs_are_segmented_too():
    torch.manual_seed(0)
    term = Shape(num_classes=3, extra_pairs=[("real_b", "labels_b")])
    assert term.needs() == ("fake_b", "labels", "real_b", "labels_b")
    a, b = _batch(seed=1), _batch(seed=2, names=("real_b", "labels_b"))
    alone = Shape(num_classes=3)
    alone.load_state_dict(term.state_dict())
    expected = (alone.compute(a) + alone.compute({"fake_b": b["real_b"], "labels": b["labels_b"]})) / 2
    torch.testing.assert_close(term.compute({**a, **b}), expected)


def test_dotted_path_segmentor_and_weights():
    term = Shape(num_classes=2, segmentor="torch.nn.Conv2d", dice_weight=0.0, ce_weight=1.0,
                 segmentor_kwargs={"in_channels": 1, "out_channels": 2, "kernel_size": 1})
    assert isinstance(term.segmentor, torch.nn.Conv2d)
    tensors = _batch(classes=2)
    logits = term.segmentor(tensors["fake_b"])
    expected = torch.nn.functional.cross_entropy(logits, tensors["labels"][:, 0])
    torch.testing.assert_close(term.compute(tensors), expected)


def test_errors(tmp_path):
    with pytest.raises(TranslateError, match="absent.pt"):
        Shape(num_classes=3, checkpoint=str(tmp_path / "absent.pt"))
    with pytest.raises(ValueError, match="checkpoint"):
        Shape(num_classes=3, frozen=True)
    with pytest.raises(ValueError):
        Shape(num_classes=1)
    torch.save({"nonsense.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(TranslateError, match="bad.pt"):
        Shape(num_classes=3, checkpoint=str(tmp_path / "bad.pt"))
    with pytest.raises(TranslateError):
        build_objective([{"name": "shape", "num_classes": 3, "checkpoint": str(tmp_path / "absent.pt")}])
    with pytest.raises(TranslateError, match="segmentor"):
        Shape(num_classes=3, segmentor="no.such.Module")
    tensors = _batch()
    tensors["labels"] = tensors["labels"][:, :, :8]
    with pytest.raises(ValueError, match="labels"):
        Shape(num_classes=3).compute(tensors)
