"""MR -> CT on the built-in phantom: Pix2pix beside two baselines and a loss ablation.

Every row is trained with the same recipe (recipes/mr2ct.yaml), steps and seed, and evaluated
the same way: ``translate infer`` on every held-out test subject, then MAE (HU) / PSNR / SSIM
with the SynthRAD convention inside the body mask (CT > -500 HU). Baselines:

* ``linear``: per-voxel least squares CT ~ a * MR + b on the normalised MR of the training subjects.
* ``lut``: the best any per-voxel intensity mapping can do, a lookup table: normalised MR in 256
  bins -> mean training CT of each bin (bone and air share the dark bins).
* ``label-oracle``: not an MR method but a reference: CT = median training CT of the test
  subject's true tissue label, i.e. what anatomy alone explains.
* ``l1``: the same U-Net trained with L1 only (no discriminator).

Trained rows start from scratch each time unless ``--reuse`` is given.

Usage::

    python benchmarks/mr2ct_ablation.py [--steps 2500] [--rows linear l1 pix2pix ...] [--reuse] [--out benchmarks/results/mr2ct.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from translate.data.io import array_to_image, image_to_array, read_volume, write_volume
from translate.data.phantom import write_phantom
from translate.engine.inferer import infer_volume
from translate.engine.run import fit_recipe
from translate.metrics.paired import evaluate_volumes
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

L1 = {"name": "pixel", "kind": "l1", "weight": 100.0, "mask": "valid_mask"}
ADV = {"name": "adversarial", "mode": "lsgan", "weight": 0.1}
D_ADV = {"name": "adversarial", "mode": "lsgan", "side": "discriminator", "weight": 0.5}
#: row -> objective (None: the recipe's own), whether it keeps a discriminator, recipe overrides
ROWS = {
    "l1": {"generator": [L1], "discriminator": [], "d": False},
    "pix2pix": {"generator": None, "discriminator": None, "d": True},  # the recipe as shipped (the demo)
    "pix2pix-adv1": {"generator": [dict(ADV, weight=1.0), L1], "discriminator": [D_ADV], "d": True},
    "pix2pix+gradient": {"generator": [ADV, L1, {"name": "gradient", "weight": 10.0}], "discriminator": [D_ADV], "d": True},
    "pix2pix+ssim": {"generator": [ADV, L1, {"name": "structure", "weight": 10.0}], "discriminator": [D_ADV], "d": True},
    "pix2pix+hinge": {"generator": [dict(ADV, mode="hinge"), L1], "discriminator": [dict(D_ADV, mode="hinge")], "d": True},
    # the recipe before 2026-11-24: batch norm in the generator (pix2pix's choice)
    "pix2pix-batchnorm": {"generator": None, "discriminator": None, "d": True,
                          "overrides": ["model.networks.generator.norm=batch"]},
    # 3D U-Net + 3D PatchGAN on random patches, sliding-window inference (recipes/mr2ct-3d.yaml as shipped)
    "pix2pix-3d": {"generator": None, "discriminator": None, "d": True, "recipe": "recipes/mr2ct-3d.yaml"},
}


def predict_test(root: Path, split: dict, out_dir: Path, key: str, predict) -> list[Path]:
    """``predict(array of <key> image) -> HU`` on every test subject, written as int16 on its grid."""
    outputs = []
    for subject in split["test"]:
        image = read_volume(root / subject / f"{key}.nii.gz")
        hu = predict(image_to_array(image).astype(np.float32))
        path = out_dir / f"{subject}_sct.nii.gz"
        write_volume(array_to_image(np.rint(hu).astype(np.int16), image), path)
        outputs.append(path)
    return outputs


def linear_baseline(root: Path, split: dict, out_dir: Path) -> list[Path]:
    """Least-squares CT = a * normalised MR + b over training body voxels; applied per test subject."""
    from translate.data.intensity import MRNormalizer

    norm = MRNormalizer()
    xs, ys = [], []
    for subject in split["train"]:
        mr = image_to_array(read_volume(root / subject / "mr.nii.gz")).astype(np.float32)
        ct = image_to_array(read_volume(root / subject / "ct.nii.gz")).astype(np.float32)
        body = ct > -500
        xs.append(norm.apply(mr, norm.fit(mr))[body])
        ys.append(ct[body])
    x, y = np.concatenate(xs), np.concatenate(ys)
    a, b = np.polyfit(x, y, 1)
    return predict_test(root, split, out_dir, "mr",
                        lambda mr: np.clip(a * norm.apply(mr, norm.fit(mr)) + b, -1024, 3000))


def lut_baseline(root: Path, split: dict, out_dir: Path, bins: int = 256) -> list[Path]:
    """Per-voxel lookup table: mean training CT per bin of normalised MR (body voxels), applied per test subject."""
    from translate.data.intensity import MRNormalizer

    norm = MRNormalizer()
    edges = np.linspace(-1.5, 1.5, bins + 1)
    sums, counts = np.zeros(bins + 2), np.zeros(bins + 2)
    for subject in split["train"]:
        mr = image_to_array(read_volume(root / subject / "mr.nii.gz")).astype(np.float32)
        ct = image_to_array(read_volume(root / subject / "ct.nii.gz")).astype(np.float32)
        body = ct > -500
        index = np.digitize(norm.apply(mr, norm.fit(mr))[body], edges)
        np.add.at(sums, index, ct[body])
        np.add.at(counts, index, 1)
    table = np.where(counts > 0, sums / np.maximum(counts, 1), -1000.0)
    return predict_test(root, split, out_dir, "mr", lambda mr: table[np.digitize(norm.apply(mr, norm.fit(mr)), edges)])


def label_oracle(root: Path, split: dict, out_dir: Path) -> list[Path]:
    """Knows the test subject's true tissue labels: CT = median training CT of each label.

    Not an MR -> CT method but a reference for what anatomy alone explains: what remains is CT
    noise, partial volume and the per-subject spread of tissue HU (cortical bone 900-1500 HU).
    """
    values: dict[int, list] = {}
    for subject in split["train"]:
        labels = image_to_array(read_volume(root / subject / "labels.nii.gz"))
        ct = image_to_array(read_volume(root / subject / "ct.nii.gz")).astype(np.float32)
        for label in np.unique(labels):
            values.setdefault(int(label), []).append(ct[labels == label])
    table = np.full(256, -1000.0)
    for label, chunks in values.items():
        table[label] = np.median(np.concatenate(chunks))
    return predict_test(root, split, out_dir, "labels", lambda labels: table[labels.astype(np.int64)])


#: name -> (what it computes, function(root, split, out_dir) -> test predictions)
BASELINES = {
    "linear": ("CT = a·MR + b (least squares, per voxel)", linear_baseline),
    "lut": ("CT = table[MR bin] (best per-voxel mapping)", lut_baseline),
    "label-oracle": ("CT = median training CT of the true tissue label (not an MR method: a reference)", label_oracle),
}


def evaluate_rows(root: Path, split: dict, predictions: list[Path]) -> dict:
    per_subject = [evaluate_volumes(p, root / s / "ct.nii.gz") for p, s in zip(predictions, split["test"])]
    summary = {}
    for key in ("mae_hu", "psnr", "ssim"):
        values = np.array([m[key] for m in per_subject], dtype=float)
        summary[key] = (float(values.mean()), float(values.std()))
    summary["per_subject_mae_hu"] = {s: round(float(m["mae_hu"]), 2) for s, m in zip(split["test"], per_subject)}
    return summary


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--rows", nargs="+", default=["linear", "lut", "label-oracle", "l1", "pix2pix", "pix2pix+gradient", "pix2pix-batchnorm"],
                        choices=[*BASELINES, *ROWS])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "phantom")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "ablation")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mr2ct.md")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "mr2ct.yaml")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate runs already in --work instead of training again (wall time then excludes training)")
    args = parser.parse_args()

    if not (args.data / "split.json").is_file():
        write_phantom(args.data, subjects=40, seed=0)  # as make demo
    split = json.loads((args.data / "split.json").read_text())
    results, timings, validation, objectives = {}, {}, {}, {}
    for row in args.rows:
        out_dir = args.work / row
        started = time.perf_counter()
        if row in BASELINES:
            out_dir.mkdir(parents=True, exist_ok=True)
            predictions = BASELINES[row][1](args.data, split, out_dir)
        else:
            spec = ROWS[row]
            overrides = [f"data.root={args.data}", f"trainer.out_dir={out_dir}", *spec.get("overrides", [])]
            if args.steps:
                overrides.append(f"trainer.steps={args.steps}")
            recipe = load_recipe(REPO / spec["recipe"] if "recipe" in spec else args.recipe, overrides)
            tree = recipe.model_dump(mode="json")
            if spec["generator"] is not None:
                tree["objective"] = {"generator": spec["generator"], "discriminator": spec["discriminator"]}
            objectives[row] = tree["objective"]["generator"]
            if not spec["d"]:
                tree["model"]["networks"].pop("discriminator", None)
            recipe = load_recipe(tree=tree)
            if not (args.reuse and (out_dir / "checkpoints" / "last.pt").is_file()):
                shutil.rmtree(out_dir, ignore_errors=True)
                fit_recipe(recipe, show_progress=False)
            predictions = []
            for subject in split["test"]:
                path = out_dir / f"{subject}_sct.nii.gz"
                infer_volume(out_dir / "checkpoints" / "last.pt", args.data / subject / "mr.nii.gz", path, progress=False)
                predictions.append(path)
        timings[row] = time.perf_counter() - started
        results[row] = evaluate_rows(args.data, split, predictions)
        if row in ROWS:
            records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
            validation[row] = [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")}
                               for r in records if "val_mae_hu" in r]
        print(row, results[row], f"{timings[row]:.0f} s", flush=True)

    steps = {row: args.steps or load_recipe(REPO / ROWS[row]["recipe"] if "recipe" in ROWS[row] else args.recipe,
                                            check_paths=False).trainer.steps for row in args.rows if row in ROWS}
    lines = [
        f"MR -> CT on the phantom ({len(split['test'])} held-out subjects: {', '.join(split['test'])}); "
        f"steps {steps}, seed 0, recipe `{args.recipe.relative_to(REPO) if args.recipe.is_relative_to(REPO) else args.recipe}` "
        f"(rows with their own recipe name it in the JSON).",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, CPU only.",
        "Body mask: target CT > -500 HU. Mean ± std over subjects.",
        "",
        "| row | objective | MAE (HU) | PSNR (dB) | SSIM | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row, summary in results.items():
        objective = BASELINES[row][0] if row in BASELINES else " + ".join(
            f"{t.get('weight', 1)}·{t['name']}" + (f"({t['mode']})" if "mode" in t else "") for t in objectives[row])
        if row in ROWS and ROWS[row].get("overrides"):
            objective += "; " + ", ".join(ROWS[row]["overrides"])
        cells = [f"{summary[k][0]:.{p}f} ± {summary[k][1]:.{p}f}" for k, p in (("mae_hu", 1), ("psnr", 2), ("ssim", 3))]
        lines.append(f"| {row} | {objective} | {' | '.join(cells)} | {timings[row]:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    record = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"processor": cpu_name(), "cores": os.cpu_count(),
                          "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__},
              "steps": steps, "test_subjects": split["test"], "objectives": objectives, "results": results, "seconds": timings,
              "validation": validation}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
