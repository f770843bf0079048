"""Seed 003's study on the phantom (and optionally the real TotalSegmentator CT): does FID predict Dice?

Calls the library pipeline (:mod:`translate.evaluation.synthesis`, the same code as
``translate benchmark synthesis``): every generator trained by its recipe through ``fit_recipe``
with one budget, ``translate synthesize`` samples, one MONAI U-Net recipe trained on each data set,
Dice / HD95 on the real test subjects, Fréchet distance and KID with the segmenter's encoder.
Writes ``benchmarks/results/fid_dice_<dataset>.{json,md,png}`` with the command and the machine.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fid_dice.py [--dataset phantom|totalseg] [--gan-steps 150] [--unet-steps 600]
        [--modes nonsaturating vanilla lsgan wgan wgan-gp hinge] [--generators spade stylegan] [--name SUFFIX]

The README's tables: ``--gan-steps 4000 --n-samples 2048 --generators spade --modes --augmented-copies 4``
(SPADE, the bars; settings chosen on a development split by ``benchmarks/fid_dice_dev.py``),
``--gan-steps 500 --generators stylegan --modes nonsaturating lsgan wgan wgan-gp --name joint`` (the joint
generators: seed 003's DCGAN and StyleGAN rows, seed 004's LSGAN / WGAN / WGAN-GP) and
``--gan-steps 2000 --generators --modes lsgan wgan wgan-gp hinge --name seed004`` (seed 004's comparison).
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
#: joint GAN losses (seed 003's rows; seed 004 adds lsgan, wgan and wgan-gp). The DCGAN row is the
#: non-saturating loss (-log D(G(z))) that DCGAN's code trains with; ``vanilla`` is the saturating minimax form,
#: whose generator gradient vanishes once the critic wins (the previous table's DCGAN row: Dice 0.05)
MODES = ["nonsaturating", "hinge"]
#: the other generators: SPADE (mask-conditioned) and the joint StyleGAN2 (--generators spade stylegan)
EXTRA = ["spade", "stylegan"]


#: SPADE widths: ``small`` is the CPU-sized network of the first tables (0.23 CPU s per step under load);
#: ``recipe`` keeps the widths of recipes/spade-ct.yaml ([64, 32, 16], z 32, hidden 32, critic 16, batch 8)
SPADE_SIZES = {
    "small": ["model.networks.generator.channels=[32, 16, 16]", "model.networks.generator.z_dim=8",
              "model.networks.generator.spade_hidden=16", "model.networks.discriminator.channels=8", "data.batch_size=4"],
    "recipe": [],
}
SPADE_SIZE = ["small"]
#: the SPADE generator's upsample_first option: True (recipes/spade-ct.yaml, Park et al.'s order) puts the last
#: SPADE block at the output resolution; False (``--spade-upsample after``) is the order of the first tables
SPADE_UPSAMPLE_FIRST = [True]
#: SPADE's image domain for the MR data set (--dataset totalseg_mr)
MR_OVERRIDES: list = []


def generators(dataset: str, label_values: int):
    labels = [f"data.domains.a.intensity.values={label_values}"]
    joint = [f"data.domains.a.intensity.values={label_values}", "model.networks.generator.channels=16",
             "model.networks.discriminator.channels=16", "data.batch_size=8"]  # the CPU budget
    # the CPU budget: a narrower SPADE than the recipe's (0.23 instead of 0.82 CPU s per step)
    small = SPADE_SIZES[SPADE_SIZE[0]] + [f"model.networks.generator.upsample_first={str(SPADE_UPSAMPLE_FIRST[0]).lower()}"]
    rows = [Generator("spade", RECIPES / "spade-ct.yaml", labels + small + MR_OVERRIDES)] if "spade" in EXTRA else []
    for mode in MODES:
        extra = [f"objective.generator.0.mode={mode}", f"objective.discriminator.0.mode={mode}"]
        if mode == "wgan-gp":
            extra.append("model.networks.discriminator.norm=layer")
        label = {"nonsaturating": "dcgan", "vanilla": "minimax"}.get(mode, mode)
        rows.append(Generator(label, RECIPES / "joint-dcgan.yaml", joint + extra))
    if "stylegan" in EXTRA:  # the CPU budget: half the recipe's widths (8 at 64 x 64), batch 8 like the DCGAN rows
        rows.append(Generator("stylegan", RECIPES / "joint-stylegan.yaml",
                              [*labels, "model.networks.generator.channels=8", "model.networks.discriminator.channels=8",
                               "data.batch_size=8"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["phantom", "totalseg", "totalseg_mr"], default="phantom")
    parser.add_argument("--gan-steps", type=int, default=150)
    parser.add_argument("--unet-steps", type=int, default=600)
    parser.add_argument("--n-samples", type=int, default=512)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fid_dice")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--modes", nargs="*", default=MODES, choices=["nonsaturating", "vanilla", "lsgan", "wgan", "wgan-gp", "hinge"])
    parser.add_argument("--no-augmentation", action="store_true", help="skip the real + classic augmentation row")
    parser.add_argument("--generators", nargs="*", default=EXTRA, choices=["spade", "stylegan"],
                        help="SPADE and/or the joint StyleGAN2 besides the DCGAN-architecture --modes")
    parser.add_argument("--name", default="", help="suffix of the results files: fid_dice_<dataset>[_<name>]")
    parser.add_argument("--spade-size", choices=sorted(SPADE_SIZES), default="small",
                        help="small: the CPU-sized SPADE of the first tables; recipe: recipes/spade-ct.yaml's widths")
    parser.add_argument("--spade-upsample", choices=["first", "after"], default="first",
                        help="first: SPADE's last block at the output resolution (upsample_first: true, the recipe's); "
                             "after: upsampling after every block (the first tables)")
    parser.add_argument("--mix", choices=["concat", "balanced"], default="concat",
                        help="real + synthetic rows: every slice once (concat) or half real, half synthetic (balanced)")
    parser.add_argument("--augmented-copies", type=int, default=0,
                        help="real + classic augmentation row: 0 draws torchio online per sample; N > 0 draws N copies once")
    parser.add_argument("--unet-seeds", type=int, default=1,
                        help="train every U-Net row with K seeds (0..K-1): Dice mean and sd, rows paired by seed")
    args = parser.parse_args()
    SPADE_SIZE[0] = args.spade_size
    SPADE_UPSAMPLE_FIRST[0] = args.spade_upsample == "first"
    MODES[:] = args.modes
    EXTRA[:] = args.generators
    out = args.out / args.dataset
    seg_overrides, structures, data_root = [], None, None
    values = 10
    if args.dataset == "totalseg":
        data_root = slab_root(SHARED / "example_ct_sm.nii.gz", SHARED / "example_seg.nii.gz", out / "data",
                              labels=TOTALSEG, slabs=3, test_slabs=(1,), gap=1, crop=64)
        values = 5
        structures = TOTALSEG_NAMES
        seg_overrides = [f"data.domains.b.intensity.values={values}"]
    if args.dataset == "totalseg_mr":  # the MR example: the same organs (TotalSegmentator "total_mr" ids), 96 x 96
        data_root = slab_root(SHARED / "example_mr_sm.nii.gz", SHARED / "example_seg_mr.nii.gz", out / "data",
                              labels=TOTALSEG, slabs=3, test_slabs=(1,), gap=1, crop=96, image_key="mr", fill=0)
        values = 5
        structures = TOTALSEG_NAMES
        mr = "{name: mr_percentile}"  # per-volume percentiles: the synthetic MR's scale does not matter
        seg_overrides = [f"data.domains.b.intensity.values={values}", "data.domains.a.key=mr",
                         f"data.domains.a.intensity={mr}"]
        MR_OVERRIDES[:] = ["data.domains.b.key=mr", f"data.domains.b.intensity={mr}"]
    results = run_pipeline(generators(args.dataset, values), out, data_root=data_root,
                           budget=Budget(gan_steps=args.gan_steps, unet_steps=args.unet_steps, n_samples=args.n_samples),
                           segmenter_overrides=seg_overrides, structures=structures, progress=False,
                           dataset_name=args.dataset, mixed=["spade"] if "spade" in EXTRA else [],
                           augmentation=not args.no_augmentation, mix=args.mix,
                           augmented_copies=args.augmented_copies, unet_seeds=args.unet_seeds)
    results["command"] = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["load_average"] = list(os.getloadavg())
    results["machine"] = f"2-core Intel Xeon CPU, no GPU ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / (f"fid_dice_{args.dataset}" + (f"_{args.name}" if args.name else ""))
    from translate.atomic import write_text_atomic
    from translate.evaluation.synthesis import _finite

    write_text_atomic(stem.with_suffix(".json"), json.dumps(_finite(results), indent=2) + "\n")
    shutil.copyfile(out / "results.md", stem.with_suffix(".md"))
    shutil.copyfile(out / "fid_vs_dice.png", stem.with_suffix(".png"))
    print(f"fid_dice: {stem}.json / .md / .png")


if __name__ == "__main__":
    main()
