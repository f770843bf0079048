"""Adversarial segmentation on the real TotalSegmentator CT: Dice and HD95 per organ on the held-out
slab, with and without the adversarial term, same budget.

    OMP_NUM_THREADS=1 python benchmarks/seg_adversarial.py --out benchmarks/results/seg_adversarial.json

Path: `translate data slabs` (example_ct_sm + example_seg, liver / spleen / kidneys / vertebrae,
test slab of 6 slices in the middle with a 1-slice gap each side), then for each variant
`recipes/seg-adversarial.yaml` -> `load_recipe` -> `fit_recipe` (the `translate fit` body; the
no-adversary variant is the same recipe with the discriminator and its terms removed), then
`translate infer` (CLI subprocess) of `best.pt` (best validation Dice on the val slab) on the
test slab, scored with MONAI's `compute_dice` and `compute_hausdorff_distance(percentile=95)` in mm
(3D, on the slab, with its spacing). Same steps, seed, data and schedule for every variant.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOTALSEG = REPO.parent / "shared" / "data" / "totalseg"
GROUPS = ["liver=5", "spleen=1", "kidney_right=2", "kidney_left=3", "vertebrae=26-50"]


def prepare(root: Path) -> dict:
    if not (root / "labels.json").is_file():
        command = [sys.executable, "-m", "translate.cli", "data", "slabs", str(TOTALSEG / "example_ct_sm.nii.gz"),
                   str(TOTALSEG / "example_seg.nii.gz"), str(root)]
        for group in GROUPS:
            command += ["--group", group]
        subprocess.run(command, check=True)
    return json.loads((root / "labels.json").read_text())


def variant_tree(base: dict, name: str) -> dict:
    tree = copy.deepcopy(base)
    if name == "dice_ce":
        tree["model"]["networks"].pop("discriminator")
        tree["objective"]["generator"] = [t for t in tree["objective"]["generator"] if t["name"] != "adversarial"]
        tree["objective"]["discriminator"] = []
    elif name == "segan_l1":
        tree["objective"]["generator"] = [t for t in tree["objective"]["generator"] if t["name"] != "adversarial"]
        tree["objective"]["generator"].append({"name": "segan_l1", "weight": 1.0})
        tree["objective"]["discriminator"] = [{"name": "segan_l1", "side": "discriminator", "clip_value": 0.05}]
    return tree


def score(prediction: Path, target: Path, legend: dict) -> dict:
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    from translate.data.io import read_volume

    pred_image, true_image = read_volume(prediction), read_volume(target)
    import SimpleITK as sitk

    pred = sitk.GetArrayFromImage(pred_image).astype(np.int64)
    true = sitk.GetArrayFromImage(true_image).astype(np.int64)
    spacing = list(true_image.GetSpacing())[::-1]  # (z, y, x), as the arrays
    results = {}
    for key, name in legend.items():
        if key == "0":
            continue
        p = torch.from_numpy(pred == int(key))[None, None]
        t = torch.from_numpy(true == int(key))[None, None]
        dice = float(compute_dice(p.float(), t.float(), include_background=True, ignore_empty=False)[0, 0])
        if p.any() and t.any():
            hd95 = float(compute_hausdorff_distance(p.float(), t.float(), include_background=True, percentile=95,
                                                    spacing=spacing)[0, 0])
        else:
            hd95 = None  # undefined when either mask is empty
        results[name] = {"dice": round(dice, 4), "hd95_mm": None if hd95 is None else round(hd95, 2),
                         "true_voxels": int(t.sum()), "predicted_voxels": int(p.sum())}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["dice_ce", "dice_ce+adversarial"],
                        choices=["dice_ce", "dice_ce+adversarial", "segan_l1"])
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's trainer.steps")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "seg_totalseg")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_seg")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from translate.engine.run import fit_recipe
    from translate.recipe import load_recipe

    summary = prepare(args.data)
    base = yaml.safe_load((REPO / "recipes" / "seg-adversarial.yaml").read_text())
    base["data"]["root"] = str(args.data)
    if args.steps is not None:
        base["trainer"]["steps"] = args.steps
    rows = {}
    for name in args.variants:
        tree = variant_tree(base, name)
        out = args.runs / name.replace("+", "_")
        tree["trainer"]["out_dir"] = str(out)
        recipe = load_recipe(tree=tree)
        started = time.perf_counter()
        result = fit_recipe(recipe, show_progress=False, overwrite=True, announce=lambda text: print(text, flush=True))
        seconds = time.perf_counter() - started
        checkpoint = out / "checkpoints" / "best.pt"
        prediction = out / "test_labels.nii.gz"
        subprocess.run([sys.executable, "-m", "translate.cli", "infer", str(checkpoint),
                        str(args.data / "test" / "ct.nii.gz"), str(prediction), "--quiet"], check=True)
        organs = score(prediction, args.data / "test" / "labels.nii.gz", summary["labels"])
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        validations = [{"step": r["step"], "val_dice": round(r["val_dice"], 4)} for r in records if "val_dice" in r]
        best = max(validations, key=lambda v: v["val_dice"]) if validations else None
        dices = [o["dice"] for o in organs.values()]
        hds = [o["hd95_mm"] for o in organs.values() if o["hd95_mm"] is not None]
        rows[name] = {"steps": result["step"], "train_seconds": round(seconds, 1), "best_checkpoint": best,
                      "organs": organs, "mean_dice": round(float(np.mean(dices)), 4),
                      "mean_hd95_mm": round(float(np.mean(hds)), 2) if hds else None,
                      "validation": validations,
                      "objective": {"generator": tree["objective"]["generator"],
                                    "discriminator": tree["objective"]["discriminator"]}}
        print(f"{name}: mean Dice {rows[name]['mean_dice']}, mean HD95 {rows[name]['mean_hd95_mm']} mm, "
              f"{result['step']} steps in {seconds:.0f} s", flush=True)
    record = {
        "what": "2D adversarial segmentation of the real TotalSegmentator example CT (example_ct_sm, 3 mm): "
                "Dice and HD95 per organ on the held-out test slab, best.pt by validation Dice on the val slab",
        "data": {"slabs": summary["slabs"], "labels": summary["labels"], "source_ids": summary["source_ids"],
                 "note": "one patient; labels produced by the TotalSegmentator model (not manual); "
                         "test slab = 6 axial slices, 1-slice gaps, never trained on"},
        "recipe": "recipes/seg-adversarial.yaml", "rows": rows,
        "command": "OMP_NUM_THREADS=1 python benchmarks/seg_adversarial.py" + (
            f" --steps {args.steps}" if args.steps else "") + (
            f" --variants {' '.join(args.variants)}" if args.variants != ["dice_ce", "dice_ce+adversarial"] else "") + (
            f" --out {args.out}" if args.out else ""),
        "machine": "2-core Intel Xeon CPU, no GPU (shared with other jobs: times are indicative)",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
        "seeds": "one seed (0) per variant: differences smaller than seed-to-seed spread are not established",
    }
    if args.out:
        from translate.atomic import write_text_atomic

        write_text_atomic(args.out, json.dumps(record, indent=2, allow_nan=False) + "\n")
        lines = ["| variant | steps | train s | " + " | ".join(f"{o} Dice / HD95 mm" for o in next(iter(rows.values()))["organs"])
                 + " | mean Dice | mean HD95 mm |", "|---" * (5 + len(next(iter(rows.values()))["organs"])) + "|"]
        for name, row in rows.items():
            cells = [f"{o['dice']:.3f} / " + ("-" if o["hd95_mm"] is None else f"{o['hd95_mm']:.1f}")
                     for o in row["organs"].values()]
            lines.append(f"| {name} | {row['steps']} | {row['train_seconds']:.0f} | " + " | ".join(cells)
                         + f" | {row['mean_dice']:.3f} | {row['mean_hd95_mm']} |")
        write_text_atomic(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
