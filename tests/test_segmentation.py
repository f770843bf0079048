"""Adversarial segmentation: the slab split of the real labelled CT, the model's named tensors, the
Dice + CE and SegAN terms, and recipes/seg-adversarial.yaml trained for 2 steps then inferred."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
import yaml
from typer.testing import CliRunner

from translate.cli import app
from translate.data.io import read_volume
from translate.errors import TranslateError
from translate.losses import Adversarial, DiceCE, SegANL1
from translate.models.segmentation import AdversarialSegmentation
from translate.nn import build_discriminator, build_generator

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "seg-adversarial.yaml"
GROUPS = ["liver=5", "spleen=1", "kidney_right=2", "kidney_left=3", "vertebrae=26-50"]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def slabs(tmp_path_factory):
    from conftest import SHARED_DATA

    totalseg = SHARED_DATA / "totalseg"
    out = tmp_path_factory.mktemp("seg") / "slabs"
    args = ["data", "slabs", totalseg / "example_ct_sm.nii.gz", totalseg / "example_seg.nii.gz", out]
    for group in GROUPS:
        args += ["--group", group]
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_slabs_hold_out_test_slices_and_their_neighbours(slabs, shared_data):
    summary = json.loads((slabs / "labels.json").read_text())
    assert summary["labels"] == {"0": "background", "1": "liver", "2": "spleen", "3": "kidney_right",
                                 "4": "kidney_left", "5": "vertebrae"}
    split = json.loads((slabs / "split.json").read_text())
    assert split == {"train": ["train_lo", "train_hi"], "val": ["val"], "test": ["test"]}
    z = {}  # physical slice positions of every slab, from the files themselves
    for name in ("train_lo", "train_hi", "val", "test"):
        image = read_volume(slabs / name / "ct.nii.gz")
        labels = read_volume(slabs / name / "labels.nii.gz")
        assert image.GetOrigin() == labels.GetOrigin()
        z[name] = [image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(image.GetSize()[2])]
    spacing = 3.0
    train = np.array(z["train_lo"] + z["train_hi"])
    for held in ("test", "val"):
        distance = np.abs(train[:, None] - np.array(z[held])[None, :]).min()
        assert distance > spacing + 1e-3, (held, distance)  # not the slice, not its neighbour
    assert not set(np.round(z["test"], 3)) & set(np.round(z["val"], 3))
    # the labels are the source ids grouped: vertebrae 26-50 became 5, the liver 5 became 1
    source = sitk.GetArrayFromImage(read_volume(shared_data / "totalseg" / "example_seg.nii.gz"))
    lo, hi = summary["slabs"]["test"]
    test = sitk.GetArrayFromImage(read_volume(slabs / "test" / "labels.nii.gz"))
    np.testing.assert_array_equal(test == 5, np.isin(source[lo:hi], range(26, 51)))
    np.testing.assert_array_equal(test == 1, source[lo:hi] == 5)
    # the original CT's HU are untouched
    ct = sitk.GetArrayFromImage(read_volume(shared_data / "totalseg" / "example_ct_sm.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(slabs / "test" / "ct.nii.gz")), ct[lo:hi])


def test_slab_and_group_errors_are_one_line(tmp_path):
    from translate.data.slabs import parse_group, slab_bounds

    assert parse_group("vertebrae=26-28,30") == ("vertebrae", [26, 27, 28, 30])
    for bad in ("liver", "=5", "liver=5-3", "liver=x"):
        with pytest.raises(TranslateError, match="--group"):
            parse_group(bad)
    with pytest.raises(TranslateError, match="cannot hold a test slab"):
        slab_bounds(8, 0.4, 0.4, 1, 0.5)
    with pytest.raises(TranslateError, match="no training slab"):
        slab_bounds(6, 0.5, 0.0, 1, 0.5)
    assert slab_bounds(30, 0.2, 0.15, 1, 0.5) == {"test": (12, 18), "val": (19, 23), "train_lo": (0, 11),
                                                   "train_hi": (24, 30)}


def tiny_model(discriminator_input="product", classes=3, context=1):
    segmenter = build_generator("monai_unet", spatial_dims=2, in_channels=context, out_channels=classes,
                                channels=[4, 8], num_res_units=1, final_activation="none")
    critic_in = classes if discriminator_input == "product" else 1 + classes
    critic = build_discriminator("patchgan", spatial_dims=2, in_channels=critic_in, channels=4, n_layers=1)
    return AdversarialSegmentation(segmenter=segmenter, discriminator=critic, discriminator_input=discriminator_input)


@pytest.mark.parametrize("mode", ["product", "concat"])
def test_the_critic_sees_image_and_soft_mask_pairs(mode):
    torch.manual_seed(0)
    model = tiny_model(mode, context=3)  # 2.5D: the critic sees the centre slice only
    labels = torch.randint(0, 3, (2, 16, 16))
    batch = {"real_a": torch.rand(2, 3, 16, 16) * 2 - 1,
             "real_b": torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()}
    g = model.generator_tensors(batch, needs=("d_fake", "d_fake_features", "d_real_features"))
    assert g["logits_b"].shape == (2, 3, 16, 16)
    torch.testing.assert_close(g["fake_b"].sum(1), torch.ones(2, 16, 16))
    pair = model.pair(batch["real_a"], batch["real_b"])
    assert pair.shape[1] == (3 if mode == "product" else 4)
    if mode == "product":  # the image (in [0, 1]) inside each class's mask, zero elsewhere
        image = (batch["real_a"][:, 1:2] + 1) / 2
        torch.testing.assert_close(pair.sum(1, keepdim=True), image)
    d = model.discriminator_tensors(batch, g, needs=("d_real_features", "d_fake_features_detached"))
    assert {"d_real", "d_fake_detached", "critic", "d_fake_features_detached"} <= set(d)
    # SegAN: the segmenter lowers the feature L1, the critic raises it
    g_loss = SegANL1().compute(g)
    d_loss = SegANL1(side="discriminator", clip_value=0.05).compute(d)
    assert g_loss > 0 and d_loss < 0
    g_loss.backward()
    assert model.segmenter.net.model[0].conv.unit0.conv.weight.grad is not None
    SegANL1(side="discriminator", clip_value=0.05).after_optimizer_step(model.discriminator)
    assert max(p.abs().max() for p in model.discriminator.parameters()) <= 0.05


def test_dice_ce_composes_with_the_adversarial_term():
    y = torch.zeros(1, 3, 8, 8)
    y[:, 0] = 1
    y[:, 0, :4], y[:, 1, :4] = 0, 1
    good = {"logits_b": 30 * (2 * y - 1), "real_b": y, "d_fake": torch.ones(1, 1, 2, 2)}
    bad = {**good, "logits_b": -good["logits_b"]}
    objective = DiceCE() + 0.1 * Adversarial("lsgan")
    assert objective.part_names == ["dice_ce", "adversarial"]
    low, _ = objective(good)
    high, parts = objective(bad)
    assert float(low) < 1e-3 < float(high) and float(parts["adversarial"]) == 0.0
    ids = {"logits_b": good["logits_b"], "real_b": y.argmax(1, keepdim=True).float()}  # integer labels too
    assert float(DiceCE().compute(ids)) < 1e-3
    with pytest.raises(ValueError, match="dice_weight"):
        DiceCE(dice_weight=0, ce_weight=0)


def test_the_recipe_trains_on_real_crops_and_infers_integer_labels_on_the_input_grid(slabs, tmp_path):
    values = yaml.safe_load(RECIPE.read_text())["data"]["domains"]["b"]["intensity"]["values"]
    out = tmp_path / "run"
    result = run("fit", RECIPE, f"data.root={slabs}", f"trainer.out_dir={out}", "trainer.steps=2",
                 "trainer.val_every=2", "data.batch_size=2", "data.dataset.crop_size=[32, 32]", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_dice" in m for m in metrics) and any("g_dice_ce" in m for m in metrics)
    assert (out / "checkpoints" / "best.pt").is_file()
    source = slabs / "test" / "ct.nii.gz"
    result = run("infer", out / "checkpoints" / "best.pt", source, tmp_path / "seg.nii.gz", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    seg, ct = read_volume(tmp_path / "seg.nii.gz"), read_volume(source)
    assert seg.GetSize() == ct.GetSize() and seg.GetOrigin() == ct.GetOrigin()
    assert seg.GetSpacing() == ct.GetSpacing() and seg.GetDirection() == ct.GetDirection()
    array = sitk.GetArrayFromImage(seg)
    assert np.issubdtype(array.dtype, np.integer) and set(np.unique(array)) <= set(values)
    # the same label map as a DICOM series: label ids exactly, secondary capture
    result = run("infer", out / "checkpoints" / "best.pt", source, tmp_path / "seg_dicom", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    back = read_volume(tmp_path / "seg_dicom")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    header = pydicom.dcmread(next((tmp_path / "seg_dicom").iterdir()), stop_before_pixels=True)
    assert header.Modality == "OT" and "adversarial_segmentation" in header.SeriesDescription


def test_segan_variant_trains_through_the_recipe_with_a_clipped_critic(slabs, tmp_path):
    out = tmp_path / "segan"
    result = run("fit", RECIPE, f"data.root={slabs}", f"trainer.out_dir={out}", "trainer.steps=1",
                 "trainer.val_every=0", "data.batch_size=2", "data.dataset.crop_size=[32, 32]",
                 "objective.generator=[{name: dice_ce}, {name: segan_l1}]",
                 "objective.discriminator=[{name: segan_l1, side: discriminator, clip_value: 0.05}]", "--quiet")
    assert result.exit_code == 0, (result.output, result.exception)
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["g_segan_l1"] > 0 and record["d_segan_l1"] < 0
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["networks"]["model"]
    critic = [v for k, v in state.items() if k.startswith("discriminator.") and v.is_floating_point()]
    assert critic and max(float(v.abs().max()) for v in critic) <= 0.05 + 1e-6
    # a SegAN term without a critic is refused at load, in one line
    result = run("fit", RECIPE, f"data.root={slabs}", f"trainer.out_dir={tmp_path / 'x'}",
                 "model.networks={segmenter: {name: monai_unet, final_activation: none}}",
                 "objective.generator=[{name: dice_ce}, {name: segan_l1}]", "objective.discriminator=[]", "--quiet")
    assert result.exit_code == 2 and "d_fake_features" in result.stderr
