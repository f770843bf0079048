"""Collect the validation-slab experiments that chose the denoising recipes into one JSON and table.

Each experiment is one ``benchmarks/ct_denoise.py --split val`` run (its own JSON, holding the
command, the recipe overrides and the scores on the validation slab 71-87 of ``example_ct``); the
test slab is never scored here. Usage::

    python benchmarks/ct_denoise_val.py runs/val/*.json [--out benchmarks/results/ct_denoise_val.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("psnr_window", "ssim_window", "psnr_full", "rmse_hu", "noise_liver_hu", "edge_rise_10_90_mm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files written by ct_denoise.py --split val")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ct_denoise_val.json")
    args = parser.parse_args()
    experiments, machine = [], None
    def order(path: Path) -> tuple:  # e2 before e10
        head = path.stem.split("_")[0]
        return (0, int(head[1:]), path.stem) if head[:1] == "e" and head[1:].isdigit() else (-1, 0, path.stem)

    for path in sorted(args.runs, key=order):
        record = json.loads(path.read_text())
        machine = machine or {**record["machine"], "note": "2-core Intel Xeon CPU, no GPU, shared with other jobs"}
        if record["data"].get("scored_split") != "val":
            raise SystemExit(f"{path}: scored on {record['data'].get('scored_split')!r}, expected 'val'")
        for row, scores in record["results"].items():
            if row == "routine":
                continue
            info = record["rows"].get(row, {})
            experiments.append({"name": path.stem, "row": row, "command": record["command"],
                                "steps": info.get("steps"), "overrides": info.get("overrides", []),
                                "chosen_on_train": info.get("chosen_on_train"),
                                **{k: scores[k] for k in COLUMNS}})
    out = {"command": "python benchmarks/ct_denoise_val.py " + " ".join(str(p) for p in args.runs),
           "machine": machine, "split": "val (slices 71-87 of example_ct; liver label on 82-87)", "experiments": experiments}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| experiment | row | steps | PSNR [-160,240] | SSIM [-160,240] | PSNR full | RMSE (HU) | noise liver (HU) | edge rise (mm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in experiments:
        lines.append(f"| {e['name']} | {e['row']} | {e['steps'] or '-'} | " + " | ".join(f"{e[k]:.3f}" if k.startswith("ssim")
                                                                                      else f"{e[k]:.2f}" for k in COLUMNS) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
