"""Paired slice dataset and split reading, on a tiny phantom."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.data.datasets import PairedSliceDataset, subjects_from_folder
from translate.data.intensity import HUWindow, MRNormalizer
from translate.data.phantom import write_phantom
from translate.errors import TranslateError

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("slices"), subjects=3, seed=0, shape=SHAPE, spacing=(16.0, 9.0, 9.0))


@pytest.fixture(scope="module")
def train(phantom_root):
    return subjects_from_folder(phantom_root, "train", keys=("mr", "ct", "labels"))


def _dataset(subjects, **kwargs):
    return PairedSliceDataset(subjects, hu_window=HUWindow(), mr_norm=MRNormalizer(), **kwargs)


def test_subjects_from_folder_lists_paths(phantom_root, train):
    split = json.loads((phantom_root / "split.json").read_text())
    assert [s["id"] for s in train] == split["train"]
    assert train[0]["ct"] == phantom_root / train[0]["id"] / "ct.nii.gz" and train[0]["ct"].is_file()


def test_2d_items(train):
    dataset = _dataset(train)
    assert len(dataset) == len(train) * SHAPE[0]
    item = dataset[3]
    assert item["real_a"].shape == (1, 32, 32) and item["real_b"].shape == (1, 32, 32)
    assert item["body_mask"].shape == (1, 32, 32)
    assert all(item[k].dtype == torch.float32 for k in ("real_a", "real_b", "body_mask"))
    assert item["subject"] == train[0]["id"] and item["slice"] == 3
    assert -1 <= item["real_a"].min() and item["real_a"].max() <= 1
    assert set(item["body_mask"].unique().tolist()) <= {0.0, 1.0} and item["body_mask"].sum() > 50


def test_target_inverts_to_the_ct(train):
    item = _dataset(train)[5]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(train[0]["ct"])))[5].astype(np.float32)
    np.testing.assert_allclose(HUWindow().inverse(item["real_b"][0].numpy()), np.clip(ct, -1024, 2000), atol=0.05)


def test_context_slices_are_channels_with_edges_replicated(train):
    flat, context = _dataset(train), _dataset(train, context_slices=2)
    first = context[0]["real_a"]
    assert first.shape == (5, 32, 32)
    torch.testing.assert_close(first[0], flat[0]["real_a"][0])
    torch.testing.assert_close(first[1], flat[0]["real_a"][0])
    torch.testing.assert_close(first[3], flat[1]["real_a"][0])
    middle = context[4]["real_a"]
    for channel in range(5):
        torch.testing.assert_close(middle[channel], flat[2 + channel]["real_a"][0])


def test_slicing_along_another_axis(train):
    dataset = _dataset(train, axis=1)
    assert len(dataset) == len(train) * SHAPE[1]
    assert dataset[0]["real_a"].shape == (1, SHAPE[0], SHAPE[2])


def test_samples_per_epoch_order_is_fixed_by_seed(train):
    def order(seed):
        dataset = _dataset(train, samples_per_epoch=40, seed=seed)
        return [(dataset[i]["subject"], dataset[i]["slice"]) for i in range(len(dataset))]

    assert len(order(0)) == 40 and order(0) == order(0) and order(0) != order(1)
    assert len(set(order(0)[: len(train) * SHAPE[0]])) == len(train) * SHAPE[0]  # a full pass first


def test_augmentation_is_reproducible_and_flips_pairs_together(train):
    plain, augmented = _dataset(train), _dataset(train, augment=True, seed=3)
    flipped = 0
    for index in range(len(plain)):
        item, again, reference = augmented[index], augmented[index], plain[index]
        torch.testing.assert_close(item["real_a"], again["real_a"])
        matches = [dims for dims in ((), (1,), (2,), (1, 2))
                   if torch.equal(item["real_b"], reference["real_b"].flip(dims) if dims else reference["real_b"])
                   and torch.equal(item["real_a"], reference["real_a"].flip(dims) if dims else reference["real_a"])
                   and torch.equal(item["body_mask"], reference["body_mask"].flip(dims) if dims else reference["body_mask"])]
        assert matches, index
        flipped += matches[0] != ()
    assert 0 < flipped < len(plain)


def test_grid_mismatch_names_both_files(phantom_root, train, tmp_path):
    folder = tmp_path / train[0]["id"]
    shutil.copytree(phantom_root / train[0]["id"], folder)
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    ct.SetSpacing((9.0, 9.0, 12.0))
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    subject = {"id": train[0]["id"], "mr": folder / "mr.nii.gz", "ct": folder / "ct.nii.gz"}
    with pytest.raises(TranslateError) as err:
        _dataset([subject])
    message = str(err.value)
    assert "mr.nii.gz" in message and "ct.nii.gz" in message and "spacing" in message.lower()
    assert "\n" not in message


def _broken(tmp_path, phantom_root, split_text=None, remove=None):
    root = tmp_path / "data"
    shutil.copytree(phantom_root, root)
    if split_text is not None:
        (root / "split.json").write_text(split_text)
    if remove is not None:
        target = root / remove
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return root


@pytest.mark.parametrize("case, expected", [
    ("no_root", "folder not found"),
    ("no_split_file", "no split.json"),
    ("bad_json", "invalid JSON"),
    ("not_lists", "lists of subject"),
    ("unknown_split", "no split 'train'"),
    ("empty_split", "split 'train' lists no subjects"),
    ("missing_folder", "has no folder"),
    ("missing_file", "no 'ct' image"),
])
def test_split_errors_are_one_line(case, expected, tmp_path, phantom_root):
    split = json.loads((phantom_root / "split.json").read_text())
    first = split["train"][0]
    root = {
        "no_root": lambda: tmp_path / "absent",
        "no_split_file": lambda: _broken(tmp_path, phantom_root, remove="split.json"),
        "bad_json": lambda: _broken(tmp_path, phantom_root, split_text="{train: [}"),
        "not_lists": lambda: _broken(tmp_path, phantom_root, split_text='{"train": "phantom_000"}'),
        "unknown_split": lambda: _broken(tmp_path, phantom_root, split_text='{"val": ["phantom_000"]}'),
        "empty_split": lambda: _broken(tmp_path, phantom_root, split_text='{"train": [], "val": []}'),
        "missing_folder": lambda: _broken(tmp_path, phantom_root, remove=first),
        "missing_file": lambda: _broken(tmp_path, phantom_root, remove=f"{first}/ct.nii.gz"),
    }[case]()
    with pytest.raises(TranslateError, match=expected) as err:
        subjects_from_folder(root, "train")
    assert "\n" not in str(err.value)
