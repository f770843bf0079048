"""The FID/Dice pipeline's options: balanced real + synthetic mixing and classic augmentation drawn once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from translate.errors import TranslateError

REPO = Path(__file__).resolve().parents[1]


def _root(path: Path, subjects: dict) -> Path:
    """A data root whose subjects hold a ``labels`` volume of the given number of slices."""
    for name, slices in subjects.items():
        (path / name).mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((slices, 4, 4), np.uint8)), str(path / name / "labels.nii.gz"))
    (path / "split.json").write_text(json.dumps({"train": list(subjects), "val": [], "test": []}))
    return path


def test_balanced_mix_repeats_the_real_subjects_to_half_of_the_slices(tmp_path):
    from translate.evaluation.synthesis import merged_root

    real = _root(tmp_path / "real", {"r0": 4, "r1": 4})
    synthetic = _root(tmp_path / "synthetic", {f"s{i}": 8 for i in range(4)})
    concat = json.loads((merged_root(real, synthetic, tmp_path / "concat") / "split.json").read_text())["train"]
    assert sorted(concat) == ["real_r0", "real_r1"] + [f"synthetic_s{i}" for i in range(4)]
    root = merged_root(real, synthetic, tmp_path / "balanced", mix="balanced")
    train = json.loads((root / "split.json").read_text())["train"]
    real_entries = [s for s in train if s.startswith("real")]
    assert len(real_entries) == 8 and len(set(real_entries)) == 8  # 8 slices x 4 = 32 = the synthetic slices
    assert len([s for s in train if s.startswith("synthetic_")]) == 4
    assert all((root / s / "labels.nii.gz").is_file() for s in train)
    assert (root / "real3_r1").resolve() == (real / "r1").resolve()
    with pytest.raises(TranslateError, match="--mix 'half'"):
        merged_root(real, synthetic, tmp_path / "bad", mix="half")


def test_augmented_copies_keep_label_ids_geometry_and_types_and_are_drawn_once(tiny_phantom, tmp_path):
    from translate.evaluation.synthesis import augmented_root

    out = augmented_root(tiny_phantom, tmp_path / "aug", 2, "ct", "labels", seed=0, announce=lambda text: None)
    split = json.loads((out / "split.json").read_text())
    real_ids = json.loads((tiny_phantom / "split.json").read_text())["train"]
    assert split["train"] == [f"real_{s}" for s in real_ids] + [f"aug{k}_{s}" for k in range(2) for s in real_ids]
    changed = 0
    for subject in real_ids:
        for key in ("ct", "labels"):
            source = sitk.ReadImage(str(tiny_phantom / subject / f"{key}.nii.gz"))
            copy = sitk.ReadImage(str(out / f"aug0_{subject}" / f"{key}.nii.gz"))
            assert copy.GetSpacing() == source.GetSpacing() and copy.GetOrigin() == source.GetOrigin()
            assert copy.GetDirection() == source.GetDirection()
            assert copy.GetPixelID() == source.GetPixelID() and copy.GetSize() == source.GetSize()
            a, b = sitk.GetArrayFromImage(source), sitk.GetArrayFromImage(copy)
            if key == "labels":
                assert set(np.unique(b)) <= set(np.unique(a))  # nearest neighbour: ids stay ids
            else:
                assert b.min() >= a.min() - 1 and b.max() <= a.max() + 1  # linear: no new extremes
            changed += int((a != b).any())
    assert changed  # the copies are deformed
    first = (out / "aug1_" f"{real_ids[0]}" / "ct.nii.gz").stat().st_mtime_ns
    augmented_root(tiny_phantom, tmp_path / "aug", 2, "ct", "labels", seed=0, announce=lambda text: None)
    assert (out / f"aug1_{real_ids[0]}" / "ct.nii.gz").stat().st_mtime_ns == first  # reused, not redrawn
    with pytest.raises(TranslateError, match="--augmented-copies"):
        augmented_root(tiny_phantom, tmp_path / "bad", 0, "ct", "labels")


def test_pipeline_with_a_balanced_mix_and_precomputed_augmentation(tiny_phantom, tmp_path):
    from translate.evaluation.synthesis import Budget, Generator, run_pipeline

    joint = Generator("dcgan", REPO / "recipes" / "joint-dcgan.yaml", [
        "model.networks.generator.image_size=32", "model.options.image_size=32", "model.networks.generator.channels=4",
        "model.networks.discriminator.channels=4", "model.networks.discriminator.n_layers=2", "data.batch_size=2",
        "model.options.z_dim=4"])
    out = tmp_path / "bench"
    results = run_pipeline([joint], out, data_root=tiny_phantom, budget=Budget(1, 1, 24, 2),
                           segmenter_overrides=["model.networks.generator.channels=[4, 8]"], progress=False,
                           announce=lambda text: None, mix="balanced", augmented_copies=1)
    assert [(r["training_data"], r["generator"]) for r in results["rows"]] == [
        ("real", "-"), ("real + classic augmentation", "-"), ("synthetic", "dcgan"), ("real + synthetic", "dcgan")]
    assert results["mix"] == "balanced" and results["augmented_copies"] == 1
    assert (out / "segmenters" / "real_classic_augmentation_1copies" / "checkpoints" / "last.pt").is_file()
    assert (out / "segmenters" / "real_synthetic_dcgan_balanced" / "checkpoints" / "last.pt").is_file()
    train = json.loads((out / "mixed" / "dcgan_balanced" / "split.json").read_text())["train"]
    # 24 synthetic slices against one 6-slice real subject: the real subject listed 4 times
    assert sorted(s for s in train if s.startswith("real")) == ["real1_phantom_001", "real2_phantom_001",
                                                                "real3_phantom_001", "real_phantom_001"]
    with pytest.raises(TranslateError, match="--mix 'both'"):
        run_pipeline([joint], out, data_root=tiny_phantom, mix="both")


def test_benchmark_command_rejects_an_unknown_mix_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from translate.cli import app

    result = CliRunner().invoke(app, ["benchmark", "synthesis", "recipes/joint-dcgan.yaml", "--out", str(tmp_path),
                                      "--mix", "half"])
    assert result.exit_code == 2 and "--mix 'half': expected one of concat, balanced" in result.output
    assert "Traceback" not in result.output


def test_spade_upsample_first_modulates_at_the_output_resolution():
    import torch

    from translate.nn.generators.spade import SPADEGenerator

    torch.manual_seed(0)
    late = SPADEGenerator(2, 3, 1, [8, 8], z_dim=2, spade_hidden=4)
    early = SPADEGenerator(2, 3, 1, [8, 8], z_dim=2, spade_hidden=4, upsample_first=True)
    early.load_state_dict(late.state_dict())  # same parameters, only the order of upsampling differs
    assert (late.size_multiple, early.size_multiple) == (4, 2)
    labels = torch.zeros(1, 3, 16, 16)
    labels[:, 0] = 1
    moved = labels.clone()
    moved[:, :, 7, 7] = torch.tensor([0.0, 0.0, 1.0])  # one pixel of another label
    z = torch.zeros(1, 2)
    early.eval(), late.eval()
    with torch.no_grad():
        change_early = (early(moved, z) - early(labels, z)).abs()[0, 0]
        change_late = (late(moved, z) - late(labels, z)).abs()[0, 0]
    assert early(torch.zeros(1, 3, 6, 10), z).shape == (1, 1, 6, 10)
    # upsampling first, the one-pixel label is seen at full resolution: its own pixel changes most
    assert change_early.argmax() // 16 in (6, 7, 8) and change_early.argmax() % 16 in (6, 7, 8)
    assert change_early.max() > 1e-3
    # upsampling after every block, the last modulation reads the labels at half resolution (nearest):
    # a one-pixel structure at an odd index never reaches the generator
    assert change_late.max() == 0
    with pytest.raises(ValueError, match="upsample_first"):
        SPADEGenerator(2, 3, 1, [8], upsample_first="yes")


def test_slab_root_of_the_real_mr_writes_mr_images_padded_with_zero(shared_data, tmp_path):
    from translate.evaluation.synthesis import slab_root

    folder = shared_data / "totalseg"
    root = slab_root(folder / "example_mr_sm.nii.gz", folder / "example_seg_mr.nii.gz", tmp_path / "mr",
                     labels={5: 1, 1: 2, 2: 3, 3: 3, 6: 4}, slabs=3, test_slabs=(1,), gap=1, crop=96,
                     image_key="mr", fill=0)
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_mr_sm.nii.gz")))  # (20, 91, 117)
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "slab_0" / "mr.nii.gz")))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "slab_0" / "labels.nii.gz")))
    assert image.shape[1:] == (96, 96) and not (root / "slab_0" / "ct.nii.gz").exists()
    assert (image[:, :2] == 0).all()  # 91 rows padded to 96 with the MR's background, not -1024
    assert np.array_equal(image[:, 2:93], source[:image.shape[0], :, 10:106])  # centre crop of 117 columns
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4} and (labels == 1).any()
