"""Collect the validation curves of training runs into one JSON (the tuning record behind a recipe).

    python benchmarks/real_data/collect_runs.py runs/g1="pix2pix, body_only" runs/g2="L1 only, body_only" \\
        --out benchmarks/results/real_tuning.json

Each argument is ``RUN_DIR`` or ``RUN_DIR=label``; the label says what the run changed (including
code changes that the resolved recipe cannot show). Stored per run: the label, the resolved
recipe's objective, optimiser, data section and steps, and every validation record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml


def collect(run: Path) -> dict:
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    validation = [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")} for r in records
                  if any(k.startswith("val_") for k in r)]
    return {"objective": recipe["objective"], "optim": recipe["optim"], "data": recipe["data"],
            "generator": recipe["model"]["networks"]["generator"], "steps": recipe["trainer"]["steps"],
            "validation": validation,
            "best_val_mae_hu": min((v["val_mae_hu"] for v in validation if "val_mae_hu" in v), default=None)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=label")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        folder, _, label = spec.partition("=")
        runs[folder] = {"label": label, **collect(Path(folder))}
    record = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for folder, run in runs.items():
        curve = ", ".join(f"{v['step']}: {v['val_mae_hu']:.1f}" for v in run["validation"] if "val_mae_hu" in v)
        print(f"{folder} ({run['label']}): {curve}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
