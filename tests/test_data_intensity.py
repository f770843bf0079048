"""HU window and MR normalisation: exact inverses, clipping, numpy and torch, serialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translate.data.intensity import HUWindow, MRNormalizer, body_mask_from_mr
from translate.data.phantom import make_subject


@pytest.fixture(scope="module")
def subject():
    return make_subject(5, shape=(12, 64, 64), spacing=(10.0, 4.5, 4.5))


def test_hu_window_known_values():
    window = HUWindow(lower=-1000, upper=1000)
    np.testing.assert_allclose(window.forward(np.array([-1000.0, 0.0, 500.0, 1000.0])), [-1, 0, 0.5, 1])
    np.testing.assert_allclose(window.inverse(np.array([-1.0, 0.0, 1.0])), [-1000, 0, 1000])


def test_hu_window_round_trip_is_exact_inside_the_window():
    window = HUWindow()
    hu = np.linspace(-1024, 2000, 10001)
    np.testing.assert_allclose(window.inverse(window.forward(hu)), hu, rtol=0, atol=1e-4)
    hu_t = torch.from_numpy(hu)
    torch.testing.assert_close(window.inverse(window.forward(hu_t)), hu_t, rtol=0, atol=1e-4)
    # float32, as in training: about one float32 ulp of the window
    hu32 = hu.astype(np.float32)
    np.testing.assert_allclose(window.inverse(window.forward(hu32)), hu32, rtol=0, atol=1e-3)


def test_hu_window_clips():
    window = HUWindow(lower=-1024, upper=2000)
    np.testing.assert_array_equal(window.forward(np.array([-3000.0, 5000.0])), [-1.0, 1.0])
    np.testing.assert_array_equal(window.inverse(np.array([-2.0, 1.5])), [-1024.0, 2000.0])


def test_hu_window_numpy_and_torch_agree():
    window = HUWindow(lower=-500, upper=1500)
    hu = np.array([[-2000, -500, 0, 40, 1500, 3000]], dtype=np.int16)
    out_np = window.forward(hu)
    out_t = window.forward(torch.from_numpy(hu))
    assert out_np.dtype == np.float32 and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-7)
    np.testing.assert_allclose(window.inverse(out_t).numpy(), window.inverse(out_np), atol=1e-4)


def test_hu_window_serialises_and_validates():
    window = HUWindow(lower=-200, upper=300)
    assert HUWindow.from_dict(window.to_dict()) == window
    with pytest.raises(ValueError, match="upper"):
        HUWindow(lower=100, upper=100)


def test_body_mask_from_mr_matches_the_phantom_body(subject):
    mask = body_mask_from_mr(subject["mr"])
    truth = subject["labels"] > 0
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert mask.dtype == bool and dice > 0.95


def test_percentile_normaliser_maps_body_percentiles_to_unit_range(subject):
    norm = MRNormalizer()
    params = norm.fit(subject["mr"])
    out = norm.apply(subject["mr"], params)
    assert out.dtype == np.float32 and out.shape == subject["mr"].shape
    assert out.min() >= -1.0 and out.max() <= 1.0
    body = out[body_mask_from_mr(subject["mr"])]
    assert 0.002 < (body >= 1.0).mean() < 0.01  # the top 0.5 % clipped
    inside = (subject["mr"] > params["low"]) & (subject["mr"] < params["high"])
    back = norm.inverse(out, params)
    np.testing.assert_allclose(back[inside], subject["mr"][inside], rtol=1e-5, atol=1e-3)


def test_zscore_normaliser_round_trip_and_body_statistics(subject):
    norm = MRNormalizer(method="zscore")
    mask = subject["labels"] > 0
    params = norm.fit(subject["mr"], body_mask=mask)
    out = norm.apply(subject["mr"], params)
    assert abs(float(out[mask].mean())) < 0.05 and abs(float(out[mask].std()) - 1) < 0.05
    np.testing.assert_allclose(norm.inverse(out, params), subject["mr"], rtol=1e-5, atol=1e-2)


def test_normaliser_torch_matches_numpy(subject):
    norm = MRNormalizer()
    params = norm.fit(subject["mr"])
    np.testing.assert_allclose(norm.apply(torch.from_numpy(subject["mr"]), params).numpy(),
                               norm.apply(subject["mr"], params), atol=1e-6)


def test_normaliser_validates_and_serialises():
    with pytest.raises(ValueError, match=r"'percentile'.*'zscore'"):
        MRNormalizer(method="minmax")
    with pytest.raises(ValueError, match="percentiles"):
        MRNormalizer(lower=99, upper=1)
    norm = MRNormalizer(method="zscore", lower=1, upper=99)
    assert MRNormalizer.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="fitted by"):
        MRNormalizer().apply(np.ones(3), {"method": "zscore", "mean": 0.0, "std": 1.0})


def test_normaliser_survives_a_flat_volume():
    params = MRNormalizer().fit(np.zeros((4, 8, 8), dtype=np.float32))
    assert np.isfinite(MRNormalizer().apply(np.zeros((4, 8, 8)), params)).all()
