"""The phantom's T2-weighted contrast and its unpaired layout leave every paired output unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from translate.data.phantom import TISSUES, make_subject, unpaired_halves, write_phantom
from translate.errors import TranslateError

TINY = {"shape": (8, 32, 32), "spacing": (16.0, 9.0, 9.0)}
LABEL = {t.name: t.label for t in TISSUES}


def test_t2_leaves_the_other_arrays_unchanged_and_inverts_fluid_contrast():
    small = {"shape": (12, 48, 48), "spacing": (10.0, 6.0, 6.0)}
    plain, with_t2 = make_subject(5, **small), make_subject(5, t2=True, **small)
    for key in ("mr", "ct", "labels"):
        np.testing.assert_array_equal(plain[key], with_t2[key])
    assert "t2" not in plain and with_t2["t2"].dtype == np.float32 and with_t2["t2"].shape == plain["mr"].shape
    labels, t1, t2 = plain["labels"], plain["mr"], with_t2["t2"]

    def median(image, name):
        return float(np.median(image[labels == LABEL[name]]))

    # T1: fluid darker than soft tissue; T2: fluid much brighter (long T2); bone cortex dark in both
    assert median(t1, "fluid") < median(t1, "soft_tissue")
    assert median(t2, "fluid") > 2 * median(t2, "soft_tissue")
    assert median(t2, "cortical_bone") < 0.6 * median(t2, "soft_tissue")  # partial volume at this coarse grid
    np.testing.assert_array_equal(make_subject(5, t2=True, **small)["t2"], t2)  # deterministic


def test_unpaired_phantom_keeps_paired_files_and_splits_training_subjects(tmp_path):
    paired = write_phantom(tmp_path / "paired", subjects=6, seed=2, **TINY)
    unpaired = write_phantom(tmp_path / "unpaired", subjects=6, seed=2, unpaired=True, **TINY)
    for path in paired.rglob("*.nii.gz"):
        assert (unpaired / path.relative_to(paired)).read_bytes() == path.read_bytes()
    split, base = (json.loads((root / "split.json").read_text()) for root in (unpaired, paired))
    assert {k: split[k] for k in ("train", "val", "test")} == base
    assert split["train_a"] and split["train_b"] and not set(split["train_a"]) & set(split["train_b"])
    assert sorted(split["train_a"] + split["train_b"]) == sorted(split["train"])
    assert all((unpaired / s / "t2.nii.gz").is_file() for s in split["train"] + split["val"] + split["test"])
    assert not list(paired.rglob("t2.nii.gz"))
    with pytest.raises(TranslateError, match="at least 2"):
        unpaired_halves(["phantom_000"], seed=0)
