"""Low-dose CT denoising on the real abdominal CT: classical denoisers beside the toolkit's networks.

Data: ``../shared/data/totalseg/example_ct.nii.gz`` (112 slices of 3 mm) simulated at a quarter
dose by ``translate data denoise-pairs`` (Poisson noise in the projections, FBP), cut into slabs:
train slices 0-68, validation 71-87, test 90-111 (2-slice gaps; nothing of the test slab or its
neighbours is trained on or tuned on). Rows, all scored on the test slab:

* ``input``: the quarter-dose image itself.
* ``nlm``, ``tv``: scikit-image non-local means and total variation (Chambolle), slice by slice,
  their parameters chosen by a grid on the TRAIN slabs only (best PSNR in the [-160, 240] window);
  ``nlm-3d``, ``tv-3d`` the same on the whole slab in 3D (the voxels are 3 mm isotropic).
* ``supervised``: ``recipes/ct-denoise.yaml`` without its adversarial term and discriminator (windowed
  MSE + L1 + gradient), so ``lsgan`` - ``supervised`` is what the adversarial term buys.
* ``l1``, ``l1+gradient``: the recipe's residual U-Net trained with 100 L1 (+ 100 gradient) only.
* ``lsgan``: ``recipes/ct-denoise.yaml`` as shipped (windowed MSE + L1 + gradient + LSGAN, conditional PatchGAN).
* ``wgan-gp``: ``recipes/ct-denoise-wgan.yaml`` (the same pixel terms + WGAN-GP critic).

``--split val`` scores the validation slab instead (71-87; the liver label covers 82-87): the
recipes' options were chosen that way (``benchmarks/results/ct_denoise_val.json``).

Every network row goes through ``fit_recipe`` with the same steps and seed and is applied with
``infer_volume`` (``translate infer``). Scores (:mod:`translate.metrics.denoise`) inside the body
(routine CT > -500 HU): PSNR / SSIM in the [-160, 240] window (range 400) and the full range
[-1024, 3000] (range 4024), RMSE; noise std in the liver eroded by 2 voxels (TotalSegmentator
label 5 of ``example_seg.nii.gz``, which covers slices 82-111 of this CT); the 10-90 % edge rise
distance across the liver boundary. The ``routine`` row is the reference itself (its noise and
sharpness are the targets). The dose sweep (noise std and mean HU vs dose) comes from the
simulation on a uniform water cylinder and on the real test slab's liver.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/ct_denoise.py [--steps 1500] [--rows input nlm tv supervised lsgan ...] [--reuse]
    OMP_NUM_THREADS=1 python benchmarks/ct_denoise.py --split val --rows supervised --steps 600 --no-sweep \
        --set model.networks.generator.scale=0.1 --work runs/val/e3 --out runs/val/e3.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from translate.data.io import image_to_array, read_volume
from translate.data.lowdose import simulate_volume, write_denoise_pairs
from translate.engine.inferer import infer_volume
from translate.engine.run import fit_recipe
from translate.metrics.denoise import denoise_metrics, edge_sharpness, noise_std
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "totalseg"
CT = SHARED / "example_ct.nii.gz"
LIVER = 5
DOSE, SEED = 0.25, 0
#: photons per 3 mm bin and view at which the simulated full-dose noise in the liver (ideal input) matches
#: the routine image's own (12.7 HU, texture included); the CLI default 1e5 would treat the input as 3x noisier
I0 = 1.0e6

L1 = {"name": "pixel", "kind": "l1", "weight": 100.0}
GRADIENT = {"name": "gradient", "kind": "l1", "weight": 100.0}
#: row -> recipe, generator objective (None: the recipe's own), whether the discriminator stays
NETWORKS = {
    "l1": ("recipes/ct-denoise.yaml", [L1], False),
    "l1+gradient": ("recipes/ct-denoise.yaml", [L1, GRADIENT], False),
    "supervised": ("recipes/ct-denoise.yaml", "no-adversarial", False),
    "lsgan": ("recipes/ct-denoise.yaml", None, True),
    "wgan-gp": ("recipes/ct-denoise-wgan.yaml", None, True),
}
NLM_GRID = [{"h": h, "patch_size": p, "patch_distance": 6} for p in (5, 7) for h in (10, 15, 20, 30, 40, 60, 80)]
TV_GRID = [{"weight": w} for w in (5, 10, 15, 20, 30, 45, 60, 80)]
#: 3D variants (the 2.5D networks see neighbouring slices; so may the classical denoisers)
NLM3D_GRID = [{"h": h, "patch_size": 3, "patch_distance": 3} for h in (5, 8, 12, 16, 20)]
TV3D_GRID = [{"weight": w} for w in (3, 5, 8, 12, 16, 20, 30)]
CLASSICAL = {"nlm": NLM_GRID, "tv": TV_GRID, "nlm-3d": NLM3D_GRID, "tv-3d": TV3D_GRID}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepare(root: Path) -> dict:
    record_path = root / "lowdose.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("dose") == DOSE and record.get("seed") == SEED and record.get("gap") == 2 and record.get("i0") == I0:
            return record
    shutil.rmtree(root, ignore_errors=True)
    return write_denoise_pairs([CT], root, DOSE, seed=SEED, val_fraction=0.15, test_fraction=0.2, gap=2, i0=I0,
                               progress=False)


def load(root: Path, subject: str) -> tuple:
    low = read_volume(root / subject / "low.nii.gz")
    return image_to_array(low).astype(np.float64), image_to_array(read_volume(root / subject / "ct.nii.gz")).astype(np.float64), low


def liver_on_slab(start: int, stop: int) -> np.ndarray:
    """Liver label on slices [start, stop) of example_ct: example_seg lies on example_ct_sm, a copy of
    30 consecutive slices of example_ct (found by comparing the voxels)."""
    full = image_to_array(read_volume(CT))
    small = image_to_array(read_volume(SHARED / "example_ct_sm.nii.gz"))
    offsets = [k for k in range(full.shape[0] - small.shape[0] + 1) if np.array_equal(full[k:k + small.shape[0]], small)]
    if not offsets:
        raise SystemExit("example_ct_sm.nii.gz is not a slab of example_ct.nii.gz; cannot place the liver label")
    labels = np.zeros(full.shape, dtype=np.int16)
    labels[offsets[0]:offsets[0] + small.shape[0]] = image_to_array(read_volume(SHARED / "example_seg.nii.gz"))
    return labels[start:stop] == LIVER


def classical(name: str, volume: np.ndarray, params: dict) -> np.ndarray:
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    if name == "nlm":
        return np.stack([denoise_nl_means(s, fast_mode=True, **params) for s in volume])
    if name == "tv":
        return np.stack([denoise_tv_chambolle(s, **params) for s in volume])
    if name == "nlm-3d":
        return denoise_nl_means(volume, fast_mode=True, **params)
    return denoise_tv_chambolle(volume, **params)


def tune(name: str, grid: list, low: np.ndarray, ct: np.ndarray, body: np.ndarray) -> tuple[dict, list]:
    """Best parameters by PSNR in the window on the given (training) slices."""
    trials = []
    for params in grid:
        score = denoise_metrics(classical(name, low, params), ct, body)["psnr_window"]
        trials.append({**params, "psnr_window": round(score, 3)})
    best = max(trials, key=lambda t: t["psnr_window"])
    return {k: v for k, v in best.items() if k != "psnr_window"}, trials


def score(pred: np.ndarray, ct: np.ndarray, body: np.ndarray, liver: np.ndarray, spacing) -> dict:
    eroded = np.stack([ndimage.binary_erosion(s, iterations=2) for s in liver])
    metrics = denoise_metrics(pred, ct, body)
    keep = liver.any(axis=(1, 2))
    edge = edge_sharpness(pred[keep], liver[keep], spacing=spacing, max_distance=9.0)
    metrics.update({"noise_liver_hu": noise_std(pred, eroded)["noise_std"], "mean_liver_hu": noise_std(pred, eroded)["mean_hu"],
                    "edge_rise_10_90_mm": edge["rise_10_90_mm"], "edge_contrast_hu": edge["contrast_hu"]})
    return {k: round(float(v), 4) for k, v in metrics.items()}


def train_network(row: str, root: Path, work: Path, steps: int, reuse: bool, extra: list | None = None) -> tuple[Path, dict]:
    recipe_file, objective, keep_d = NETWORKS[row]
    out_dir = work / row
    spec = load_recipe(REPO / recipe_file, [f"data.root={root}", f"trainer.out_dir={out_dir}", f"trainer.steps={steps}",
                                            "trainer.threads=1", f"trainer.val_every={max(steps // 3, 1)}",
                                            f"trainer.checkpoint_every={max(steps // 3, 1)}", *(extra or [])])
    tree = spec.model_dump(mode="json")
    if objective == "no-adversarial":  # the recipe's own generator terms less the adversarial one
        tree["objective"] = {"generator": [t for t in tree["objective"]["generator"] if t.get("name") != "adversarial"],
                             "discriminator": []}
    elif objective is not None:
        tree["objective"] = {"generator": objective, "discriminator": []}
    if not keep_d:
        tree["model"]["networks"].pop("discriminator", None)
    spec = load_recipe(tree=tree)
    summary_file = out_dir / "fit_summary.json"  # the trainer's own timing, kept for --reuse
    if not (reuse and (out_dir / "checkpoints" / "last.pt").is_file()):
        shutil.rmtree(out_dir, ignore_errors=True)
        summary = fit_recipe(spec, show_progress=False)
        summary_file.write_text(json.dumps({k: summary[k] for k in ("step", "seconds", "steps_per_second")}) + "\n")
    fitted = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    validation = [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")} for r in records if "val_mae_hu" in r]
    info = {"recipe": recipe_file, "overrides": list(extra or []), "objective": tree["objective"]["generator"], "discriminator": keep_d,
            "steps": steps, "train_seconds": fitted.get("seconds"), "steps_per_second": fitted.get("steps_per_second"),
            "validation": validation}
    return out_dir / "checkpoints" / "last.pt", info


def dose_sweep(liver: np.ndarray, routine_slab: np.ndarray, pixel_mm: float) -> dict:
    """Noise std and mean HU vs dose: a 300 mm water cylinder (ideal reference) and the real liver (routine)."""
    doses = [1.0, 0.5, 0.25, 0.125, 0.0625]
    size, pixel = 128, 2.5
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    plane = np.where(np.hypot(yy, xx) * pixel <= 150.0, 0.0, -1000.0)
    phantom = np.repeat(plane[None], 4, axis=0).astype(np.int16)
    roi = np.repeat((np.hypot(yy, xx) * pixel <= 50.0)[None], 4, axis=0)
    eroded = np.stack([ndimage.binary_erosion(s, iterations=2) for s in liver])
    sweep = {"doses": doses, "cylinder": [], "liver": []}
    for dose in doses:
        sim = simulate_volume(phantom, pixel, dose, seed=SEED, reference="ideal", i0=I0)
        sweep["cylinder"].append({k: round(v, 3) for k, v in noise_std(sim, roi).items()})
        real = routine_slab if dose == 1.0 else simulate_volume(routine_slab, pixel_mm, dose, seed=SEED, i0=I0)
        sweep["liver"].append({k: round(v, 3) for k, v in noise_std(real, eroded).items()})
    return sweep


def figures(sweep: dict, examples: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    doses = np.array(sweep["doses"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.2), dpi=100)
    for key, label, marker in (("cylinder", "water cylinder (ideal input)", "o"), ("liver", "real CT liver (routine input)", "s")):
        std = np.array([r["noise_std"] for r in sweep[key]])
        mean = np.array([r["mean_hu"] for r in sweep[key]])
        left.loglog(doses, std, marker, label=label)
        left.loglog(doses, std[0] / np.sqrt(doses), "k--" if key == "cylinder" else "k:", lw=0.8,
                    label="std at dose 1 / sqrt(dose)")
        right.semilogx(doses, mean - mean[0], marker + "-", label=label)
    left.set_xlabel("dose (fraction of routine)")
    left.set_ylabel("noise std (HU)")
    left.legend(fontsize=7)
    right.set_xlabel("dose (fraction of routine)")
    right.set_ylabel("mean HU - mean at dose 1")
    right.axhline(0, color="k", lw=0.5)
    right.set_ylim(-10, 10)
    fig.tight_layout()
    path = out.with_name(out.stem + "_dose.png")
    fig.savefig(path)
    plt.close(fig)
    written.append(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
    if examples:
        fig, axes = plt.subplots(1, len(examples), figsize=(1.9 * len(examples), 2.0), dpi=100)
        for ax, (name, image) in zip(axes, examples.items()):
            ax.imshow(np.clip(image, -160, 240), cmap="gray", vmin=-160, vmax=240)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        path = out.with_name(out.stem + "_slice.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every network row")
    parser.add_argument("--rows", nargs="+", default=["input", "nlm", "tv", "supervised", "lsgan", "wgan-gp"],
                        choices=["input", *CLASSICAL, *NETWORKS])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "ct_denoise")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "ct_denoise_bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ct_denoise.json")
    parser.add_argument("--reuse", action="store_true", help="evaluate runs already in --work instead of training")
    parser.add_argument("--no-sweep", action="store_true", help="skip the dose sweep")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="slab scored: 'val' for choosing a recipe (never the test slab), 'test' for the table")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for every network row (repeatable), e.g. optim.generator.lr=2e-4")
    args = parser.parse_args()
    torch.set_num_threads(1)

    record = prepare(args.data)
    ranges = record["sources"]["example_ct"]["ranges"]
    low_test, ct_test, low_image = load(args.data, f"example_ct-{args.split}")
    low_train, ct_train, _ = load(args.data, "example_ct-train")
    spacing = tuple(float(v) for v in low_image.GetSpacing()[:2])[::-1]
    body_test, body_train = ct_test > -500, ct_train > -500
    from translate.data.masks import body_mask_from_ct

    body_test, body_train = body_mask_from_ct(ct_test, threshold=-500.0), body_mask_from_ct(ct_train, threshold=-500.0)
    liver = liver_on_slab(*ranges[args.split])
    results = {"routine": score(ct_test, ct_test, body_test, liver, spacing)}
    results["routine"].update({"psnr_window": None, "psnr_full": None})
    info, predictions = {}, {}
    for row in args.rows:
        started = time.perf_counter()
        if row == "input":
            pred = low_test
        elif row in CLASSICAL:
            every = 2 if row in ("nlm", "tv") else 1  # 3D denoisers need contiguous slices
            params, trials = tune(row, CLASSICAL[row], low_train[::every], ct_train[::every], body_train[::every])
            pred = classical(row, low_test, params)
            info[row] = {"chosen_on_train": params, "grid_on_train": trials}
        else:
            checkpoint, info[row] = train_network(row, args.data, args.work, args.steps, args.reuse, args.overrides)
            out = args.work / row / f"{args.split}_denoised.nii.gz"
            infer_volume(checkpoint, args.data / f"example_ct-{args.split}" / "low.nii.gz", out, progress=False)
            pred = image_to_array(read_volume(out)).astype(np.float64)
        results[row] = score(pred, ct_test, body_test, liver, spacing)
        info.setdefault(row, {})["seconds"] = round(time.perf_counter() - started, 1)
        predictions[row] = pred
        print(row, results[row], flush=True)

    sweep = None if args.no_sweep else dose_sweep(liver, ct_test.astype(np.int16), spacing[0])
    slice_index = int(np.argmax(liver.sum(axis=(1, 2))))
    examples = {"routine dose": ct_test[slice_index], **{("quarter dose" if k == "input" else k): v[slice_index]
                                                          for k, v in predictions.items()}}
    written = figures(sweep, examples, args.out) if sweep is not None else []
    out = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": {"processor": cpu_name(), "cores": os.cpu_count(), "gpu": None,
                       "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__},
           "data": {"ct": "../shared/data/totalseg/example_ct.nii.gz", "dose": DOSE, "seed": SEED,
                    "simulation": {k: record[k] for k in ("i0", "electronic_noise", "filter", "reference")},
                    "slices": ranges, "scored_split": args.split, "liver_voxels_test": int(liver.sum()), "example_slice": slice_index},
           "body_mask": "routine CT > -500 HU", "results": results, "rows": info, "dose_sweep": sweep, "figures": written}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    header = "| row | PSNR [-160,240] | SSIM [-160,240] | PSNR full | SSIM full | RMSE (HU) | noise liver (HU) | edge rise (mm) |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row, m in results.items():
        cells = [m["psnr_window"], m["ssim_window"], m["psnr_full"], m["ssim_full"], m["rmse_hu"], m["noise_liver_hu"],
                 m["edge_rise_10_90_mm"]]
        lines.append(f"| {row} | " + " | ".join("-" if c is None else f"{c:.3f}" if abs(c) < 1 else f"{c:.2f}" for c in cells) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
