"""MIND structure consistency (``mind``): a source and its translation keep their self-similarity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from translate.errors import TranslateError
from translate.losses import LOSSES, MIND
from translate.losses.mind import mind_descriptor
from translate.recipe import load_recipe


def _reference_mind(image: np.ndarray, radius: int, sigma: float, clamp: float = 1e3) -> np.ndarray:
    """MIND of one 2D image written out voxel by voxel (Heinrich et al. 2012, eqs. 1-3)."""
    h, w = image.shape
    r = max(1, int(round(2 * sigma)))
    taps = np.arange(-r, r + 1)
    g = np.exp(-taps ** 2 / (2 * sigma ** 2))
    g /= g.sum()

    def at(y: int, x: int) -> float:  # replicate edges
        return image[min(max(y, 0), h - 1), min(max(x, 0), w - 1)]

    offsets = [(-radius, 0), (radius, 0), (0, -radius), (0, radius)]  # axis 0 (-, +), axis 1 (-, +)
    sq = np.zeros((len(offsets), h, w))
    for k, (oy, ox) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                sq[k, y, x] = (at(y, x) - at(y + oy, x + ox)) ** 2
    d = np.zeros_like(sq)
    for k in range(len(offsets)):
        for y in range(h):
            for x in range(w):
                d[k, y, x] = sum(g[i] * g[j] * sq[k, min(max(y + a, 0), h - 1), min(max(x + b, 0), w - 1)]
                                 for i, a in enumerate(taps) for j, b in enumerate(taps))
    v = d.mean(0)
    scale = v.mean()
    v = np.clip(v, scale / clamp, scale * clamp)
    mind = np.exp(-d / v)
    return mind / mind.max(0, keepdims=True)


def test_matches_a_voxel_by_voxel_reference():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(11, 13)).cumsum(0).astype(np.float32)  # some structure, some noise
    for radius, sigma in ((1, 0.5), (2, 0.8)):
        ours = mind_descriptor(torch.from_numpy(image)[None, None], radius, sigma)[0].numpy()
        assert ours.shape == (4, 11, 13)
        np.testing.assert_allclose(ours, _reference_mind(image, radius, sigma), rtol=1e-4, atol=1e-5)


def test_invariant_to_scale_offset_and_inversion_in_2d_and_3d():
    torch.manual_seed(0)
    for shape in ((2, 1, 16, 16), (1, 2, 6, 10, 10)):
        x = torch.rand(shape)
        ref = mind_descriptor(x)
        assert ref.shape[1] == shape[1] * 2 * (len(shape) - 2)  # four neighbours in 2D, six in 3D
        assert ((ref > 0) & (ref <= 1 + 1e-6)).all()
        for a, b in ((3.0, 1.0), (-0.5, 2.0), (-1000.0, 40.0)):
            assert torch.allclose(mind_descriptor(a * x + b), ref, atol=1e-4)
        assert (mind_descriptor(x.roll(3, -1)) - ref).abs().mean() > 0.1


def test_the_real_mr_and_ct_of_one_subject_agree_better_aligned_than_shifted():
    # one phantom subject: its MR and CT are different modalities of the same anatomy
    from translate.data.phantom import make_subject

    subject = make_subject(5, shape=(4, 64, 64), spacing=(4.0, 4.5, 4.5))
    mr = torch.from_numpy(subject["mr"][2:3])[None] / float(np.percentile(subject["mr"], 99.5))
    ct = torch.from_numpy(subject["ct"][2:3].astype(np.float32))[None] / 1000.0
    body = torch.from_numpy((subject["labels"][2:3] > 0).astype(np.float32))[None]
    term = MIND(pred="fake_b", mask="body_mask_a")
    aligned = term.compute({"real_a": mr, "fake_b": ct, "body_mask_a": body})
    for dy, dx in ((0, 2), (3, 0), (2, -2)):
        shifted = term.compute({"real_a": mr, "fake_b": ct.roll((dy, dx), (-2, -1)), "body_mask_a": body})
        assert shifted > 1.5 * aligned
    flat = torch.where(body > 0, 0.0, -1.0)  # only the silhouette: every inner structure lost
    assert term.compute({"real_a": mr, "fake_b": flat, "body_mask_a": body}) > 1.5 * aligned


def test_mask_gradients_and_options():
    torch.manual_seed(1)
    x, y = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., :6] = 1
    # inside the mask only: the same image there, noise outside
    mixed = torch.where(mask > 0, x, y)
    inside = MIND(mask="m").compute({"real_a": x, "fake_b": mixed, "m": mask})
    everywhere = MIND().compute({"real_a": x, "fake_b": mixed})
    assert inside < everywhere
    pred = y.clone().requires_grad_(True)
    MIND(mask="m").compute({"real_a": x, "fake_b": pred, "m": mask}).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    pred.grad = None
    (10.0 * MIND(mask="m").compute({"real_a": x, "fake_b": pred, "m": torch.zeros_like(mask)})).backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))  # a crop without body (real data): no NaN at weight 10
    flat = MIND().compute({"real_a": torch.zeros(1, 1, 8, 8), "fake_b": torch.zeros(1, 1, 8, 8)})
    assert math.isfinite(flat.item()) and flat.item() == 0.0
    for bad in ({"radius": 0}, {"radius": 1.5}, {"radius": True}, {"sigma": 0}, {"sigma": "wide"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MIND(**bad)
    with pytest.raises(ValueError, match="mask"):
        MIND(mask="m").compute({"real_a": x, "fake_b": y, "m": torch.ones(1, 12, 12)})


def test_term_in_the_catalogue_and_a_recipe():
    assert LOSSES.get("mind") is MIND
    assert MIND(source="real_b", pred="fake_a", mask="body_mask_b").needs() == ("real_b", "fake_a", "body_mask_b")
    tree = load_recipe("recipes/mr2ct-cyclegan.yaml", check_paths=False).model_dump(mode="json")
    tree["objective"]["generator"].append({"name": "mind", "mask": "body_mask_a", "weight": 5.0})
    load_recipe(tree=tree, check_paths=False)
    tree["objective"]["generator"][-1]["radius"] = 0
    with pytest.raises(TranslateError, match="radius"):
        load_recipe(tree=tree, check_paths=False)
