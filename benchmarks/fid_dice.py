"""Seed 003's study on the phantom (and optionally the real TotalSegmentator CT): does FID predict Dice?

Calls the library pipeline (:mod:`translate.evaluation.synthesis`, the same code as
``translate benchmark synthesis``): every generator trained by its recipe through ``fit_recipe``
with one budget, ``translate synthesize`` samples, one MONAI U-Net recipe trained on each data set,
Dice / HD95 on the real test subjects, Fréchet distance and KID with the segmenter's encoder.
Writes ``benchmarks/results/fid_dice_<dataset>.{json,md,png}`` with the command and the machine.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fid_dice.py [--dataset phantom|totalseg] [--gan-steps 150] [--unet-steps 120] [--modes vanilla lsgan wgan-gp hinge]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import shutil
import sys
from pathlib import Path

import torch

from translate.evaluation.synthesis import Budget, Generator, run_pipeline, slab_root

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SHARED = REPO.parent / "shared" / "data" / "totalseg"
#: TotalSegmentator ids kept for the real CT, mapped to 1..5
TOTALSEG = {5: 1, 1: 2, 2: 3, 3: 3, 6: 4}
TOTALSEG_NAMES = {1: "liver", 2: "spleen", 3: "kidneys", 4: "stomach"}
#: joint GAN losses (seed 003's rows; seed 004 adds lsgan and wgan-gp: --modes vanilla lsgan wgan-gp hinge)
MODES = ["vanilla", "hinge"]


def generators(dataset: str, label_values: int):
    labels = [f"data.domains.a.intensity.values={label_values}"]
    joint = [f"data.domains.a.intensity.values={label_values}", "model.networks.generator.channels=16",
             "model.networks.discriminator.channels=16", "data.batch_size=8"]  # the CPU budget
    # the CPU budget: a narrower SPADE than the recipe's (0.23 instead of 0.82 CPU s per step)
    small = ["model.networks.generator.channels=[32, 16, 16]", "model.networks.generator.z_dim=8",
             "model.networks.generator.spade_hidden=16", "model.networks.discriminator.channels=8", "data.batch_size=4"]
    rows = [Generator("spade", RECIPES / "spade-ct.yaml", labels + small)]
    for mode in MODES:
        extra = [f"objective.generator.0.mode={mode}", f"objective.discriminator.0.mode={mode}"]
        if mode == "wgan-gp":
            extra.append("model.networks.discriminator.norm=layer")
        label = {"vanilla": "dcgan"}.get(mode, mode)
        rows.append(Generator(label, RECIPES / "joint-dcgan.yaml", joint + extra))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["phantom", "totalseg"], default="phantom")
    parser.add_argument("--gan-steps", type=int, default=150)
    parser.add_argument("--unet-steps", type=int, default=120)
    parser.add_argument("--n-samples", type=int, default=512)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fid_dice")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=["vanilla", "lsgan", "wgan", "wgan-gp", "hinge"])
    parser.add_argument("--no-augmentation", action="store_true", help="skip the real + classic augmentation row")
    args = parser.parse_args()
    MODES[:] = args.modes
    out = args.out / args.dataset
    seg_overrides, structures, data_root = [], None, None
    values = 10
    if args.dataset == "totalseg":
        data_root = slab_root(SHARED / "example_ct_sm.nii.gz", SHARED / "example_seg.nii.gz", out / "data",
                              labels=TOTALSEG, slabs=3, test_slabs=(1,), gap=1, crop=64)
        values = 5
        structures = TOTALSEG_NAMES
        seg_overrides = [f"data.domains.b.intensity.values={values}"]
    results = run_pipeline(generators(args.dataset, values), out, data_root=data_root,
                           budget=Budget(gan_steps=args.gan_steps, unet_steps=args.unet_steps, n_samples=args.n_samples),
                           segmenter_overrides=seg_overrides, structures=structures, progress=False,
                           dataset_name=args.dataset, mixed=["spade"],
                           augmentation=not args.no_augmentation)
    results["command"] = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["load_average"] = list(os.getloadavg())
    results["machine"] = f"2-core Intel Xeon CPU, no GPU ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"fid_dice_{args.dataset}"
    from translate.atomic import write_text_atomic
    from translate.evaluation.synthesis import _finite

    write_text_atomic(stem.with_suffix(".json"), json.dumps(_finite(results), indent=2) + "\n")
    shutil.copyfile(out / "results.md", stem.with_suffix(".md"))
    shutil.copyfile(out / "fid_vs_dice.png", stem.with_suffix(".png"))
    print(f"fid_dice: {stem}.json / .md / .png")


if __name__ == "__main__":
    main()
