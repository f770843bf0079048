"""Low-dose CT denoising on the real CT: slab-split pairs, the residual generator, both recipes train."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from translate.data.lowdose import slab_ranges, write_denoise_pairs
from translate.errors import TranslateError
from translate.nn import build_generator

REPO = Path(__file__).resolve().parents[1]
CT = REPO.parent / "shared" / "data" / "totalseg" / "example_ct.nii.gz"


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory) -> Path:
    """A 64 x 64 x 14 crop of the real abdominal CT (3 mm voxels), its geometry kept."""
    if not CT.is_file():
        pytest.fail(f"real CT {CT} is absent")
    image = sitk.ReadImage(str(CT))
    crop = sitk.Cast(image[29:93, 18:82, 50:64], sitk.sitkInt16)
    path = tmp_path_factory.mktemp("ct") / "abdomen.nii.gz"
    sitk.WriteImage(crop, str(path))
    return path


@pytest.fixture(scope="module")
def pairs(small_ct, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ct_denoise")
    write_denoise_pairs([small_ct], root, 0.25, seed=0, val_fraction=0.15, test_fraction=0.2, gap=1, progress=False)
    return root


def test_slab_ranges_leave_gaps_and_cover_in_order():
    ranges = slab_ranges(112, 0.15, 0.2, 2)
    assert ranges == {"train": (0, 69), "val": (71, 88), "test": (90, 112)}
    assert slab_ranges(10, 0.0, 0.2, 1) == {"train": (0, 7), "test": (8, 10)}
    with pytest.raises(TranslateError, match="no training slice"):
        slab_ranges(5, 0.3, 0.4, 2)
    with pytest.raises(TranslateError, match="--gap -1"):
        slab_ranges(50, 0.1, 0.2, -1)


def test_pairs_are_slabs_on_the_source_grid(pairs, small_ct):
    split = json.loads((pairs / "split.json").read_text())
    assert split == {"train": ["abdomen-train"], "val": ["abdomen-val"], "test": ["abdomen-test"]}
    record = json.loads((pairs / "lowdose.json").read_text())
    ranges = record["sources"]["abdomen"]["ranges"]
    assert ranges == {"train": [0, 7], "val": [8, 10], "test": [11, 14]}
    source = sitk.ReadImage(str(small_ct))
    hu = sitk.GetArrayFromImage(source)
    for part, (start, stop) in ranges.items():
        ct = sitk.ReadImage(str(pairs / f"abdomen-{part}" / "ct.nii.gz"))
        low = sitk.ReadImage(str(pairs / f"abdomen-{part}" / "low.nii.gz"))
        assert ct.GetPixelID() == low.GetPixelID() == sitk.sitkInt16
        assert np.array_equal(sitk.GetArrayFromImage(ct), hu[start:stop])
        assert np.allclose(ct.GetOrigin(), source.TransformIndexToPhysicalPoint((0, 0, start)))
        for key in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
            assert np.allclose(getattr(low, key)(), getattr(ct, key)()), key
        difference = sitk.GetArrayFromImage(low).astype(float) - hu[start:stop]
        body = hu[start:stop] > -200
        assert difference[body].std() > 5.0 and abs(difference[body].mean()) < 10.0


def test_residual_generator_adds_to_the_middle_slice():
    net = build_generator("residual", spatial_dims=2, in_channels=3, out_channels=1,
                          backbone={"name": "unet", "channels": [4, 8]})
    assert net.size_multiple == 4
    for p in net.backbone.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(net(x), x[:, 1:2])  # a zero residual is the identity on the centre slice
    with pytest.raises(ValueError, match="odd multiple"):  # build_model makes it a one-line TranslateError
        build_generator("residual", in_channels=2, out_channels=1, backbone={"name": "unet", "channels": [4]})


@pytest.mark.parametrize("recipe", ["ct-denoise.yaml", "ct-denoise-wgan.yaml"])
def test_recipe_trains_two_steps_and_infers_on_the_test_slab(recipe, pairs, tmp_path):
    from translate.engine.inferer import infer_volume
    from translate.engine.run import fit_recipe
    from translate.recipe import load_recipe

    spec = load_recipe(REPO / "recipes" / recipe, [
        f"data.root={pairs}", f"trainer.out_dir={tmp_path / 'run'}", "trainer.steps=2", "trainer.val_every=2",
        "trainer.checkpoint_every=2", "trainer.image_every=2", "trainer.log_every=1", "trainer.device=cpu",
        "data.batch_size=2", "data.dataset.crop_size=[32,32]"])
    summary = fit_recipe(spec, show_progress=False, announce=lambda _: None)
    assert summary["step"] == 2
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_mae_hu" in m for m in metrics)
    test = pairs / "abdomen-test"
    out = tmp_path / "denoised.nii.gz"
    infer_volume(tmp_path / "run" / "checkpoints" / "last.pt", test / "low.nii.gz", out, device="cpu", progress=False)
    denoised, low = sitk.ReadImage(str(out)), sitk.ReadImage(str(test / "low.nii.gz"))
    assert denoised.GetPixelID() == sitk.sitkInt16 and denoised.GetSize() == low.GetSize()
    assert np.allclose(denoised.GetOrigin(), low.GetOrigin())
    # two steps from a near-identity start: the output is still close to the input
    gap = np.abs(sitk.GetArrayFromImage(denoised).astype(float) - sitk.GetArrayFromImage(low))
    assert np.median(gap) < 200
