"""MR -> CT on real patients (ibsi_sts): the toolkit's recipes beside the trivial baselines.

Every network row goes through the toolkit's own path: ``fit_recipe`` on the recipe (the
``translate fit`` body), then ``infer_volume`` (the ``translate infer`` body) on each scored
patient's whole MR, scored by the same code as the baselines (``translate.metrics.tissue``)
inside valid & body, per tissue class and inside the tumour. The checkpoint is ``best.pt``,
picked by validation MAE on the val patients only.

    python benchmarks/real_data/prepare.py                      # pairs ../shared/data/ibsi_sts
    python benchmarks/real_data/mr2ct_real.py --on val           # tuning
    python benchmarks/real_data/mr2ct_real.py --on test          # once, after tuning
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
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from baselines import RATE_NAMES, REGIONS, load_patient, run_baselines, score_prediction, summarise  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from mr2ct_ablation import cpu_name  # noqa: E402
from unpaired import BONE_VOID, MIND_TERMS, NGF, SIGNAL_VOID, with_weights  # noqa: E402  (the phantom rows' terms)

from translate.data.io import image_to_array, read_volume  # noqa: E402
from translate.engine.checkpoint import load_checkpoint  # noqa: E402
from translate.engine.inferer import infer_volume  # noqa: E402
from translate.engine.run import fit_recipe  # noqa: E402
from translate.recipe import load_recipe  # noqa: E402

L1_ONLY = "objective={generator: [{name: pixel, kind: l1, weight: 100.0, mask: valid_mask}], discriminator: []}"
#: the real recipe's CT critic as it was until 2026-12-06, late (instance norm; the recipe's has none since)
D_B_INSTANCE = ("model.networks.d_b={name: multiscale, num_scales: 3, channels: 16, n_layers: 3, norm: instance, "
                "input_windows: [[-160, 240]]}")
#: row -> (description, recipe, extra overrides)
ROWS = {
    "pix2pix": ("recipes/mr2ct-real.yaml as shipped (Pix2pix, LSGAN + 100 L1)", "recipes/mr2ct-real.yaml", []),
    "unet-l1": ("the recipe's U-Net, L1 only (no discriminator)", "recipes/mr2ct-real.yaml",
                ["model.networks={generator: {name: unet, channels: [16, 32, 64, 128, 128], dropout: 0.0, norm: instance}}",
                 L1_ONLY]),
    "monai-unet-l1": ("MONAI residual U-Net (16-32-64-128-256, 2 res units), L1 only", "recipes/mr2ct-real.yaml",
                      ["model.networks={generator: {name: monai_unet, channels: [16, 32, 64, 128, 256], num_res_units: 2}}",
                       L1_ONLY]),
    "pix2pix-monai": ("recipes/mr2ct-real.yaml (LSGAN 0.1 + 100 L1) with the MONAI residual U-Net generator",
                      "recipes/mr2ct-real.yaml",
                      ["model.networks.generator={name: monai_unet, channels: [16, 32, 64, 128, 256], num_res_units: 2}"]),
    # unpaired: MR of split train_a, CT of train_b (disjoint halves of the training patients, prepare.py)
    "cyclegan": ("recipes/mr2ct-cyclegan-real.yaml as shipped (unpaired CycleGAN + silhouette, MR of train_a, "
                 "CT of train_b)", "recipes/mr2ct-cyclegan-real.yaml", []),
    "cyclegan-plain": ("the same without the silhouette and bone_void terms (LSGAN both ways, cycle 10, windowed CT "
                       "cycle 10)", "recipes/mr2ct-cyclegan-real.yaml", []),
    "cyclegan-nobonevoid": ("the recipe until 2026-12-06: without its bone_void term, the CT critic with instance norm",
                            "recipes/mr2ct-cyclegan-real.yaml", [D_B_INSTANCE]),
    "cyclegan-dbinstance": ("the recipe until 2026-12-06, late: the CT critic with instance norm (the bone_void records)",
                            "recipes/mr2ct-cyclegan-real.yaml", [D_B_INSTANCE]),
    "cyclegan+ngf": ("the recipe + ngf (normalised gradient fields, weight 1, both directions)",
                     "recipes/mr2ct-cyclegan-real.yaml", []),
    "cyclegan+mind": ("the recipe + mind (MIND structure consistency inside each source's body mask, weight 10 or --mind-weight, "
                      "both directions)", "recipes/mr2ct-cyclegan-real.yaml", []),
    "cyclegan+bonevoid": ("the recipe's other terms + bone_void (the CT -> MR translation dark, below -0.8, where the CT "
                          "is above 600 HU) at --bone-void-weight (at 10: the recipe as shipped since 2026-12-06; its "
                          "records until 2026-12-06, late, had the CT critic of cyclegan-dbinstance)",
                          "recipes/mr2ct-cyclegan-real.yaml", []),
    "cyclegan+signalvoid": ("the recipe + signal_void (the synthetic CT out of the soft-tissue range, -400..300 HU, where "
                            "the MR has no signal inside the limb) at --signal-void-weight",
                            "recipes/mr2ct-cyclegan-real.yaml", []),
}
#: a row's change to its recipe's generator objective (the list of term specs) -> the terms it trains with
EDITS = {
    "cyclegan-plain": lambda terms: [t for t in terms if t["name"] not in ("silhouette", "bone_void")],
    "cyclegan-nobonevoid": lambda terms: [t for t in terms if t["name"] != "bone_void"],
    "cyclegan+ngf": lambda terms: terms + NGF,
    "cyclegan+mind": lambda terms: terms + MIND_TERMS,  # weighted by --mind-weight
    "cyclegan+bonevoid": lambda terms: [t for t in terms if t["name"] != "bone_void"] + BONE_VOID,
    "cyclegan+signalvoid": lambda terms: terms + SIGNAL_VOID,
}


def row_recipe(row: str, data: Path, work: Path, overrides=(), weights=None):
    """The recipe a row trains: its recipe file with ``data.root``, ``trainer.out_dir``, the row's own overrides,
    then ``overrides``; its generator objective edited by :data:`EDITS` with the catalogue ``weights``
    (``{"mind": W, "bone_void": W, "signal_void": W}``)."""
    _, recipe_path, own = ROWS[row]
    recipe = load_recipe(REPO / recipe_path, [f"data.root={data}", f"trainer.out_dir={work}", *own, *overrides])
    if row in EDITS:
        tree = recipe.model_dump(mode="json")
        tree["objective"]["generator"] = [with_weights(term, weights or {}) for term in EDITS[row](tree["objective"]["generator"])]
        recipe = load_recipe(tree=tree)
    return recipe


def score_network(root: Path, patients, checkpoint: Path, out_dir: Path, tta: str = "none") -> dict:
    scores = {}
    for patient in patients:
        out_dir.mkdir(parents=True, exist_ok=True)
        prediction = out_dir / f"{patient}_sct.nii.gz"
        infer_volume(checkpoint, root / patient / "mr.nii.gz", prediction, progress=False, tta=tta)
        data = load_patient(root, patient)
        pred = image_to_array(read_volume(prediction)).astype(np.float32)
        scores[patient] = score_prediction(pred, data)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "ibsi_paired")
    parser.add_argument("--on", nargs="+", default=["test"], choices=["val", "test"],
                        help="splits to score (each network row is trained once)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "real")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--reuse", action="store_true", help="score runs already in --work instead of training again")
    parser.add_argument("--tta", default="none", choices=["none", "flips"],
                        help="the network rows' inference: `translate infer --tta` (flips: the mean over the recipe's "
                             "training flips)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results",
                        help="writes real_mr2ct_<split>.json and .md there")
    parser.add_argument("--name", default="real_mr2ct", help="records are written as <name>_<split>.json / .md")
    parser.add_argument("--mind-weight", type=float, default=10.0, help="weight of each mind term of the "
                        "cyclegan+mind row (one per direction)")
    parser.add_argument("--bone-void-weight", type=float, default=1.0, help="weight of the bone_void term of the "
                        "cyclegan+bonevoid row")
    parser.add_argument("--signal-void-weight", type=float, default=10.0, help="weight of the signal_void term of "
                        "the cyclegan+signalvoid row")
    parser.add_argument("overrides", nargs="*", help="recipe overrides applied to every network row")
    args = parser.parse_args(argv)
    split = json.loads((args.data / "split.json").read_text())
    records = {}
    for on in args.on:
        record = run_baselines(args.data, split, on=on)
        record["rows"] = {name: {k: v for k, v in entry.items() if k != "parameters"}
                          for name, entry in record.pop("baselines").items()}
        records[on] = record
    for row in args.rows:
        description, recipe_path, overrides = ROWS[row]
        work = args.work / row
        started = time.perf_counter()
        if not (args.reuse and (work / "checkpoints" / "last.pt").is_file()):
            shutil.rmtree(work, ignore_errors=True)
            recipe = row_recipe(row, args.data, work, args.overrides,
                                {"mind": args.mind_weight, "bone_void": args.bone_void_weight,
                                 "signal_void": args.signal_void_weight})
            summary = fit_recipe(recipe, show_progress=False, announce=lambda text: print(text, flush=True))
            summary = {**summary, "load_average_1min": os.getloadavg()[0]}
            (work / "fit_summary.json").write_text(json.dumps(summary, default=str))
        elif (work / "fit_summary.json").is_file():  # --reuse: the training time of the run being scored
            summary = json.loads((work / "fit_summary.json").read_text())
        else:
            summary = {"seconds": float("nan")}
        validation = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
        trained_objective = yaml.safe_load((work / "recipe.yaml").read_text())["objective"]["generator"]
        checkpoint = work / "checkpoints" / f"{args.checkpoint}.pt"
        checkpoint_step = int(load_checkpoint(checkpoint)["step"])
        for on, record in records.items():
            scores = score_network(args.data, split[on], checkpoint, work / (on if args.tta == "none" else f"{on}_tta"),
                                   tta=args.tta)
            record["rows"][row] = {
                "description": description, "recipe": recipe_path, "overrides": overrides + args.overrides,
                "generator_objective": trained_objective,
                "checkpoint": args.checkpoint, "checkpoint_step": checkpoint_step, "tta": args.tta,
                "train_seconds": summary["seconds"], "seconds_total": time.perf_counter() - started,
                "train_load_average_1min": summary.get("load_average_1min"),
                "validation": [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")}
                               for r in validation if "val_mae_hu" in r],
                "per_patient": scores, **summarise(scores)}
            print(on, row, {k: round(v, 1) for k, v in record["rows"][row]["mean_over_patients"].items()}, flush=True)

    for on, record in records.items():
        record.update({"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
                       "machine": {"processor": cpu_name(), "cores": os.cpu_count(),
                                   "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__}})
        out = args.out_dir / f"{args.name}_{on}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        lines = ["| row | MAE | air | soft | bone | tumour | fat | muscle | bias | fat bias | muscle bias | "
                 + " | ".join(f"{r} %" for r in RATE_NAMES) + " | train (s) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(RATE_NAMES) + "---|"]
        for name, entry in record["rows"].items():
            m = entry["mean_over_patients"]
            cells = [f"{m[f'mae{suffix}']:.1f}" for suffix in REGIONS] + [
                f"{m[key]:+.1f}" for key in ("bias_hu", "bias_fat", "bias_muscle")] + [
                f"{100 * m[r]:.1f}" if r in m else "-" for r in RATE_NAMES] + [
                f"{entry['train_seconds']:.0f}" if "train_seconds" in entry else "-"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        table = "\n".join(lines)
        out.with_suffix(".md").write_text(f"MR -> CT on ibsi_sts, scored on {on} patients {split[on]} "
                                          f"(mean over patients, HU)\n\n{table}\n")
        print(on, "\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
