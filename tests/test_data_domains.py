"""Intensity specs: exact inverses, channel layout, checkpoint round trip, and MR robustness on real data."""

from __future__ import annotations

import numpy as np
import pytest

from translate.data.domains import INTENSITIES, Domain, build_intensity, domains_from_dict
from translate.data.io import image_to_array, read_volume
from translate.errors import TranslateError


@pytest.fixture()
def mr():
    rng = np.random.default_rng(0)
    volume = np.zeros((6, 32, 32), dtype=np.float32)
    volume[:, 6:26, 6:26] = rng.uniform(200, 1000, size=(6, 20, 20))
    return volume


@pytest.mark.parametrize("name", ["mr_percentile", "mr_zscore", "mr_robust"])
def test_mr_specs_invert_exactly_inside_their_range(name, mr):
    spec = build_intensity(name)
    params = spec.fit(mr)
    x = spec.forward(mr, params)
    assert x.shape == (1, *mr.shape) and x.dtype == np.float32
    inside = (x[0] > -0.999) & (x[0] < 0.999)
    np.testing.assert_allclose(spec.inverse(x, params)[inside], mr[inside], rtol=1e-4, atol=1e-2)


def test_ct_window_and_labels_round_trip():
    ct = build_intensity({"name": "ct_hu", "window": [-1000, 1000]})
    hu = np.array([[[-1200.0, -1000.0, 0.0, 500.0, 1500.0]]])
    np.testing.assert_allclose(ct.inverse(ct.forward(hu, {})), np.clip(hu, -1000, 1000), atol=1e-3)
    labels = build_intensity({"name": "labels", "values": [0, 5, 7]})
    ids = np.array([[[0, 5, 7, 3]]])
    onehot = labels.forward(ids, {})
    assert onehot.shape == (3, 1, 1, 4) and np.all(onehot.sum(0) == 1)
    np.testing.assert_array_equal(labels.inverse(onehot), [[[0, 5, 7, 0]]])  # unknown id 3 -> background


def test_specs_survive_a_checkpoint_round_trip():
    domains = {"a": Domain("a", "mr", build_intensity({"name": "mr_robust", "upper": 98.0})),
               "b": Domain("b", "sct", build_intensity({"name": "ct_hu", "window": [-900, 1800]}))}
    again = domains_from_dict({k: d.to_dict() for k, d in domains.items()})
    assert {k: d.to_dict() for k, d in again.items()} == {k: d.to_dict() for k, d in domains.items()}
    assert set(INTENSITIES.names()) >= {"ct_hu", "mr_percentile", "mr_zscore", "mr_robust", "labels"}


@pytest.mark.parametrize("spec, fragment", [
    ("mr_fancy", "unknown intensity spec 'mr_fancy'"),
    ({"name": "ct_hu", "window": [100, -100]}, "lower < upper"),
    ({"name": "mr_robust", "upper": 20}, "percentile in (50, 100]"),
    ({"name": "labels", "values": [1]}, "at least two"),
    ({"window": [0, 1]}, "expected a name"),
])
def test_bad_specs_are_one_line(spec, fragment):
    with pytest.raises(TranslateError) as err:
        build_intensity(spec, "data.domains.a.intensity")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_mr_robust_normalises_an_8_slice_block_like_the_whole_real_volume(shared_data):
    """Issue 8: a small block of a real MR normalises as the whole volume does (within 0.05 of [-1, 1])."""

    folder = shared_data / "ibsi_sts" / "STS_029"
    mr = image_to_array(read_volume(folder / "mr_t1.nii.gz")).astype(np.float32)
    valid = mr != 0
    spec = build_intensity("mr_robust")
    whole = spec.forward(mr, spec.fit(mr, valid))[0]
    start = mr.shape[0] // 2 - 4
    block, block_valid = mr[start:start + 8], valid[start:start + 8]
    local = spec.forward(block, spec.fit(block, block_valid))[0]
    inside = block_valid & spec.body_mask(block)
    assert np.abs(local - whole[start:start + 8])[inside].mean() < 0.05
