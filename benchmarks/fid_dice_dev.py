"""Choose the FID/Dice pipeline's settings on a development split of the phantom's *training* subjects.

The test subjects of ``benchmarks/fid_dice.py`` are never read: the 8 training subjects of the
64 x 64 phantom are split into 6 to train (SPADE and every U-Net) and 2 held out to score on.
SPADE is trained once (the budget of the README table); each variant then samples, trains the
U-Nets and scores them through :func:`translate.evaluation.synthesis.run_pipeline`, reusing the
SPADE checkpoint. Writes ``benchmarks/results/fid_dice_dev.json`` (every variant's rows).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fid_dice_dev.py --variant base --variant styles8:n_samples=1536 ...

A variant is ``NAME[:key=value,...]`` with keys ``spade`` (``small`` | ``recipe``: the widths of
``benchmarks/fid_dice.py --spade-size``), ``upsample_first`` (``1``: ``fid_dice.py --spade-upsample first``; default ``0``, the first tables' order), ``gan_steps``, ``n_samples``, ``unet_steps``, ``mix``
(``concat`` | ``balanced``), ``augmented_copies`` (0: no classic-augmentation row), ``unet_seeds``
(every U-Net row trained with K seeds; default ``--unet-seeds``), ``dir`` (run in another
variant's folder: its samples and finished U-Nets are reused, e.g. a ``mix=balanced`` variant
retrains only the real + synthetic row). One SPADE is
trained per (size, steps) and shared by the variants that name it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from translate.atomic import write_text_atomic
from translate.data.phantom import write_phantom
from translate.evaluation.synthesis import Budget, _finite, run_pipeline

REPO = Path(__file__).resolve().parents[1]
DEV_HELD_OUT = 2


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("fid_dice", REPO / "benchmarks" / "fid_dice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dev_root(phantom: Path, out: Path) -> Path:
    """A data root over the phantom's train subjects only: the last ``DEV_HELD_OUT`` become ``test``."""
    train = json.loads((phantom / "split.json").read_text())["train"]
    out.mkdir(parents=True, exist_ok=True)
    for subject in train:
        link = out / subject
        if not link.exists():
            os.symlink((phantom / subject).resolve(), link)
    for name in ("labels.json",):
        if (phantom / name).is_file() and not (out / name).exists():
            shutil.copyfile(phantom / name, out / name)
    split = {"train": train[:-DEV_HELD_OUT], "val": [], "test": train[-DEV_HELD_OUT:]}
    text = json.dumps(split, indent=2) + "\n"
    if not (out / "split.json").is_file() or (out / "split.json").read_text() != text:
        write_text_atomic(out / "split.json", text)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], help="NAME[:key=value,...]")
    parser.add_argument("--gan-steps", type=int, default=4000)
    parser.add_argument("--unet-seeds", type=int, default=1, help="U-Net seeds per row unless a variant names unet_seeds")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fid_dice_dev")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "fid_dice_dev.json")
    args = parser.parse_args()
    phantom = REPO / "runs" / "fid_dice" / "phantom" / "data" / "phantom64"  # the same phantom as fid_dice.py
    if not (phantom / "split.json").is_file():
        write_phantom(phantom, seed=0, subjects=12, shape=(32, 64, 64), spacing=(4.0, 4.5, 4.5))
    root = dev_root(phantom, args.out / "data")
    bench = _benchmark_module()
    bench.MODES[:] = []
    bench.EXTRA[:] = ["spade"]
    previous = json.loads(args.results.read_text()) if args.results.is_file() else {"variants": {}}
    for text in args.variant or ["base"]:
        name, _, rest = text.partition(":")
        options = dict(item.split("=", 1) for item in rest.split(",") if item)
        bench.SPADE_SIZE[0] = options.get("spade", "small")
        bench.SPADE_UPSAMPLE_FIRST[0] = options.get("upsample_first", "0") == "1"
        generators = bench.generators("phantom", 10)
        gan_steps = int(options.get("gan_steps", args.gan_steps))
        gan_key = (bench.SPADE_SIZE[0], gan_steps, bench.SPADE_UPSAMPLE_FIRST[0])
        shared_gan = args.out / ("gans" if gan_key == ("small", 4000, False)
                                 else f"gans_{gan_key[0]}_{gan_steps}" + ("_upfirst" if gan_key[2] else ""))
        budget = Budget(gan_steps=gan_steps, unet_steps=int(options.get("unet_steps", 600)),
                        n_samples=int(options.get("n_samples", 512)))
        out = args.out / options.get("dir", name)  # dir=OTHER: reuse OTHER's samples and finished U-Nets
        (out / "gans").mkdir(parents=True, exist_ok=True)
        if not (out / "gans" / "spade").exists() and (shared_gan / "spade").exists():
            os.symlink((shared_gan / "spade").resolve(), out / "gans" / "spade")
        tic = time.perf_counter()
        kwargs = {}
        if "mix" in options:
            kwargs["mix"] = options["mix"]
        copies = int(options.get("augmented_copies", 0))
        if copies:
            kwargs["augmented_copies"] = copies
        kwargs["unet_seeds"] = int(options.get("unet_seeds", args.unet_seeds))
        results = run_pipeline(generators, out, data_root=root, budget=budget, progress=False, dataset_name="phantom-dev",
                               mixed=["spade"], augmentation=bool(copies), **kwargs)
        if not (shared_gan / "spade").exists():
            shared_gan.mkdir(parents=True, exist_ok=True)
            os.replace(out / "gans" / "spade", shared_gan / "spade")
            os.symlink((shared_gan / "spade").resolve(), out / "gans" / "spade")
        previous["variants"][name] = {
            "options": options, "budget": results["budget"], "rows": [
                {k: r[k] for k in ("training_data", "generator", "dice", "dice_sd", "dice_per_seed", "hd95_mm",
                                   "dice_per_structure", "dice_per_structure_sd") if k in r}
                for r in results["rows"]], "unet_seeds": results["unet_seeds"], "paired_vs_real": results["paired_vs_real"],
            "synthetic_over_real_dice": results["synthetic_over_real_dice"], "seconds": time.perf_counter() - tic,
            "stage_seconds": results["stage_seconds"], "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        for r in results["rows"]:
            print(f"dev {name}: {r['training_data']} ({r['generator']}): Dice {r['dice']:.3f} +/- {r['dice_sd']:.3f}", flush=True)
        for row, entry in results["paired_vs_real"].items():
            print(f"dev {name}: {row} - real: {entry['mean_difference']:+.3f} +/- {entry['sd_difference']:.3f} "
                  f"(p worse {entry['p_one_sided_worse']:.3f}, wins {entry['wins']}/{entry['seeds']})", flush=True)
    previous.update({"train_subjects": json.loads((root / "split.json").read_text())["train"],
                     "held_out_subjects": json.loads((root / "split.json").read_text())["test"],
                     "note": "development split of the phantom's training subjects; its test subjects are never read",
                     "commands": previous.get("commands", []) + ["OMP_NUM_THREADS=1 python " + " ".join(sys.argv)],
                     "machine": f"2-core Intel Xeon CPU, no GPU ({platform.machine()}), torch {torch.__version__}"})
    args.results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.results, json.dumps(_finite(previous), indent=2) + "\n")
    print(f"fid_dice_dev: {args.results}")


if __name__ == "__main__":
    main()
