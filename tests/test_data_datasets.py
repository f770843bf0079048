"""The dataset registry on a tiny phantom: paired and unpaired slices, 3D patches, split reading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.data.datasets import DATASETS, PairedPatches, PairedSlices, UnpairedSlices, subjects_from_folder
from translate.data.domains import Domain, build_intensity
from translate.data.intensity import HUWindow
from translate.data.phantom import write_phantom
from translate.errors import TranslateError

SHAPE = (8, 32, 32)
DOMAINS = {"a": Domain("a", "mr", build_intensity("mr_percentile")), "b": Domain("b", "ct", build_intensity("ct_hu"))}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("slices"), subjects=3, seed=0, shape=SHAPE, spacing=(16.0, 9.0, 9.0))


@pytest.fixture(scope="module")
def train(phantom_root):
    return subjects_from_folder(phantom_root, "train", keys=("mr", "ct", "labels"))


def _dataset(root, **kwargs):
    kwargs.setdefault("augment", False)
    return PairedSlices(root=root, split="train", domains=DOMAINS, **kwargs)


def test_registry_lists_every_dataset_with_its_dimensions():
    assert {"paired_slices", "unpaired_slices", "paired_patches"} <= set(DATASETS.names())
    for name, cls in DATASETS.items():
        assert cls.spatial_dims in (2, 3) and cls.pairing in ("paired", "unpaired"), name


def test_subjects_from_folder_lists_paths(phantom_root, train):
    split = json.loads((phantom_root / "split.json").read_text())
    assert [s["id"] for s in train] == split["train"]
    assert train[0]["ct"] == phantom_root / train[0]["id"] / "ct.nii.gz" and train[0]["ct"].is_file()


def test_2d_items(phantom_root, train):
    dataset = _dataset(phantom_root)
    assert len(dataset) == len(train) * SHAPE[0]
    item = dataset[3]
    assert item["real_a"].shape == (1, 32, 32) and item["real_b"].shape == (1, 32, 32)
    assert item["body_mask"].shape == (1, 32, 32) and item["valid_mask"].shape == (1, 32, 32)
    assert all(item[k].dtype == torch.float32 for k in ("real_a", "real_b", "body_mask"))
    assert item["subject"] == train[0]["id"] and item["slice"] == 3
    assert -1 <= item["real_a"].min() and item["real_a"].max() <= 1
    assert set(item["body_mask"].unique().tolist()) <= {0.0, 1.0} and item["body_mask"].sum() > 50


def test_target_inverts_to_the_ct(phantom_root, train):
    item = _dataset(phantom_root)[5]
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(train[0]["ct"])))[5].astype(np.float32)
    np.testing.assert_allclose(HUWindow().inverse(item["real_b"][0].numpy()), np.clip(ct, -1024, 2000), atol=0.05)


def test_a_ct_source_gets_the_hu_window_whatever_its_file_is_called(phantom_root):
    """The domain's spec decides the normalisation, not the file stem (CT -> CT denoising)."""
    ct_to_ct = {"a": Domain("a", "ct", build_intensity("ct_hu")), "b": Domain("b", "ct", build_intensity("ct_hu"))}
    item = PairedSlices(root=phantom_root, split="train", domains=ct_to_ct, augment=False)[5]
    torch.testing.assert_close(item["real_a"], item["real_b"])


def test_context_slices_are_channels_with_edges_replicated(phantom_root):
    flat, context = _dataset(phantom_root), _dataset(phantom_root, context_slices=2)
    first = context[0]["real_a"]
    assert first.shape == (5, 32, 32)
    torch.testing.assert_close(first[0], flat[0]["real_a"][0])
    torch.testing.assert_close(first[1], flat[0]["real_a"][0])
    torch.testing.assert_close(first[3], flat[1]["real_a"][0])
    middle = context[4]["real_a"]
    for channel in range(5):
        torch.testing.assert_close(middle[channel], flat[2 + channel]["real_a"][0])


def test_slicing_along_another_axis_pads_to_the_size_multiple(phantom_root, train):
    dataset = _dataset(phantom_root, axis=1, size_multiple=16)
    assert len(dataset) == len(train) * SHAPE[1]
    assert dataset[0]["real_a"].shape == (1, 16, 32)  # 8 slices padded to 16
    with pytest.raises(TranslateError, match="pad is false.*multiple of 16"):
        _dataset(phantom_root, axis=1, size_multiple=16, pad=False)


def test_subjects_of_different_sizes_train_together(tmp_path):
    root = tmp_path / "mixed"
    write_phantom(root, subjects=3, seed=1, shape=(4, 32, 32), spacing=(16.0, 9.0, 9.0))
    split = json.loads((root / "split.json").read_text())
    other = write_phantom(tmp_path / "big", subjects=1, seed=2, shape=(4, 40, 48), spacing=(16.0, 9.0, 9.0))
    shutil.copytree(other / "phantom_000", root / "big_000")
    split["train"].append("big_000")
    (root / "split.json").write_text(json.dumps(split))
    dataset = _dataset(root, size_multiple=16)
    shapes = {tuple(dataset[i]["real_a"].shape) for i in range(len(dataset))}
    assert shapes == {(1, 48, 48)}
    batch = torch.utils.data.default_collate([dataset[0], dataset[len(dataset) - 1]])
    assert batch["real_b"].shape == (2, 1, 48, 48)
    # the padding is background: -1 in network space, outside the body mask
    small = dataset[0]
    assert float(small["real_b"][0, 0, 0]) == -1.0 and float(small["body_mask"][0, :8].sum()) == 0.0


def _matching_flip(item, reference):
    for dims in ((), (1,), (2,), (1, 2)):
        same = all(torch.equal(item[k], reference[k].flip(dims) if dims else reference[k])
                   for k in ("real_a", "real_b", "body_mask"))
        if same:
            return dims
    return None


def test_flips_are_drawn_afresh_per_draw_and_replay(phantom_root):
    plain, augmented = _dataset(phantom_root), _dataset(phantom_root, augment=True, seed=3)
    flipped, differs = 0, 0
    for index in range(len(plain)):
        reference = plain[index]
        first, again = augmented[(index, index)], augmented[(index, index)]
        torch.testing.assert_close(first["real_a"], again["real_a"])  # same draw, same flip
        dims = _matching_flip(first, reference)
        assert dims is not None, index  # image and target flipped together
        flipped += dims != ()
        later = [_matching_flip(augmented[(index, index + k * len(plain))], reference) for k in range(1, 4)]
        differs += any(d != dims for d in later)  # the same slice in later epochs
    assert 0 < flipped < len(plain)
    assert differs > len(plain) // 2


def test_torchio_transforms_by_name(phantom_root):
    dataset = _dataset(phantom_root, augment=True, flips=[], transforms=[{"name": "RandomGamma", "log_gamma": 0.3}])
    plain = _dataset(phantom_root)
    item, again = dataset[(4, 17)], dataset[(4, 17)]
    torch.testing.assert_close(item["real_a"], again["real_a"])
    assert not torch.equal(item["real_a"], plain[4]["real_a"])  # intensity transform on the source
    torch.testing.assert_close(item["real_b"], plain[4]["real_b"])  # never on the target's HU
    with pytest.raises(TranslateError, match="not a torchio transform"):
        _dataset(phantom_root, augment=True, transforms=[{"name": "RandomTeleport"}])


def test_unpaired_slices_draw_b_independently(phantom_root):
    dataset = UnpairedSlices(root=phantom_root, split="train", split_b="val", domains=DOMAINS, augment=False)
    item = dataset[(0, 0)]
    assert item["real_a"].shape == (1, 32, 32) and item["real_b"].shape == (1, 32, 32)
    val_ids = json.loads((phantom_root / "split.json").read_text())["val"]
    assert item["subject_b"] in val_ids and item["subject_a"] not in val_ids
    partners = {(dataset[(0, d)]["subject_b"], dataset[(0, d)]["slice_b"]) for d in range(20)}
    assert len(partners) > 5


def test_paired_patches_with_torchio_samplers(phantom_root, train):
    dataset = PairedPatches(root=phantom_root, split="train", domains=DOMAINS, patch_size=[4, 16, 16],
                            samples_per_volume=3, size_multiple=4, augment=False)
    assert len(dataset) == 3 * len(train)
    item = dataset[(1, 5)]
    assert item["real_a"].shape == (1, 4, 16, 16) and item["real_b"].shape == (1, 4, 16, 16)
    torch.testing.assert_close(item["real_a"], dataset[(1, 5)]["real_a"])  # replayable
    assert not torch.equal(item["real_a"], dataset[(1, 6)]["real_a"])  # another draw, another place
    label = PairedPatches(root=phantom_root, split="train", domains=DOMAINS, patch_size=[4, 8, 8], sampler="label",
                          label_probabilities={1: 1.0}, size_multiple=4, augment=False)
    assert all(label[(0, d)]["body_mask"][0, 2, 4, 4] == 1 for d in range(10))  # centres inside the body
    with pytest.raises(TranslateError, match="multiple of 8"):
        PairedPatches(root=phantom_root, split="train", domains=DOMAINS, patch_size=[4, 16, 16], size_multiple=8)


def test_grid_mismatch_names_both_files(phantom_root, train, tmp_path):
    folder = tmp_path / train[0]["id"]
    shutil.copytree(phantom_root / train[0]["id"], folder)
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    ct.SetSpacing((9.0, 9.0, 12.0))
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    (tmp_path / "split.json").write_text(json.dumps({"train": [train[0]["id"]]}))
    with pytest.raises(TranslateError) as err:
        _dataset(tmp_path)
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


def test_body_only_restricts_the_valid_mask_to_the_body(phantom_root):
    plain, body_only = _dataset(phantom_root), _dataset(phantom_root, body_only=True)
    for index in (0, 3, len(plain) - 1):
        assert torch.all(plain[index]["valid_mask"] == 1)
        torch.testing.assert_close(body_only[index]["valid_mask"], body_only[index]["body_mask"])


def _unpaired_with_valid(phantom_root, tmp_path):
    """A copy whose training subjects (domain A) carry a valid mask: a 6 x 6 square on slices 2-4 only;
    the val subjects (domain B) have no valid file at all."""
    root = tmp_path / "unpaired_valid"
    shutil.copytree(phantom_root, root)
    split = json.loads((root / "split.json").read_text())
    for subject in split["train"]:
        mr = sitk.ReadImage(str(root / subject / "mr.nii.gz"))
        valid = np.zeros(SHAPE, dtype=np.uint8)
        valid[2:5, 14:20, 12:18] = 1
        image = sitk.GetImageFromArray(valid)
        image.CopyInformation(mr)
        sitk.WriteImage(image, str(root / subject / "valid.nii.gz"))
    return root, split


def test_unpaired_slices_crop_each_side_and_keep_a_inside_valid(phantom_root, tmp_path):
    root, split = _unpaired_with_valid(phantom_root, tmp_path)
    whole = UnpairedSlices(root=root, split="train", split_b="val", domains=DOMAINS, flips=[], valid_key="valid")
    cropped = UnpairedSlices(root=root, split="train", split_b="val", domains=DOMAINS, flips=[], valid_key="valid",
                             crop_size=[16, 16])
    # A slices without MR data are dropped; B (no valid file) keeps every slice
    assert len(whole) == len(cropped) == 3 * len(split["train"])
    assert {s for _, s in whole.index["a"]} == {2, 3, 4}
    assert len(whole.index["b"]) == SHAPE[0] * len(split["val"])
    valid = np.zeros(SHAPE[1:], dtype=bool)
    valid[14:20, 12:18] = True
    for draw in range(12):
        full, item = whole[(1, draw)], cropped[(1, draw)]
        assert item["real_a"].shape == item["real_b"].shape == item["body_mask"].shape[:1] + (16, 16)
        # the A crop is the window of the whole slice centred on a voxel inside valid & body
        a = full["real_a"][0].numpy()
        windows = [(y, x) for y in range(17) for x in range(17)
                   if np.array_equal(a[y:y + 16, x:x + 16], item["real_a"][0].numpy())]
        assert windows and any(valid[y + 8, x + 8] for y, x in windows)
    # without augmentation: the centre crop, the same every time
    fixed = UnpairedSlices(root=root, split="train", split_b="val", domains=DOMAINS, augment=False,
                           valid_key="valid", crop_size=[16, 16])
    torch.testing.assert_close(fixed[0]["real_a"], whole[(0, None)]["real_a"][:, 8:24, 8:24])


def test_unpaired_slices_errors_are_one_line(phantom_root, tmp_path):
    root, split = _unpaired_with_valid(phantom_root, tmp_path)
    with pytest.raises(TranslateError, match=r"crop_size: expected \[H, W\], each a multiple of 8"):
        UnpairedSlices(root=root, split="train", split_b="val", domains=DOMAINS, crop_size=[12, 16], size_multiple=8)
    for subject in split["train"]:
        sitk.WriteImage(sitk.Image(SHAPE[::-1], sitk.sitkUInt8), str(root / subject / "valid.nii.gz"))
    with pytest.raises(TranslateError, match="no slice of domain 'a' has data inside 'valid'"):
        UnpairedSlices(root=root, split="train", split_b="val", domains=DOMAINS, valid_key="valid")
