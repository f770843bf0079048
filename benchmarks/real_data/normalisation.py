"""How stable is each MR normalisation on a small block of a volume? (issue 8, intensity robustness)

For every ibsi_sts patient: normalise the whole paired MR and, separately, blocks of 8 consecutive
slices (every block with valid voxels), each fitted on its own; report the mean absolute
difference of the normalised values inside the block's valid body, in network units ([-1, 1]).

    python benchmarks/real_data/normalisation.py --out benchmarks/results/mr_normalisation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

from translate.data.domains import build_intensity  # noqa: E402
from translate.data.io import image_to_array, read_volume  # noqa: E402

SPECS = ("mr_robust", "mr_percentile", "mr_zscore")


def block_differences(mr: np.ndarray, valid: np.ndarray, spec, block: int = 8) -> list:
    whole = spec.forward(mr, spec.fit(mr, valid))[0]
    out = []
    for start in range(0, mr.shape[0] - block + 1, block):
        part, part_valid = mr[start:start + block], valid[start:start + block]
        if part_valid.sum() < 1000:
            continue
        local = spec.forward(part, spec.fit(part, part_valid))[0]
        inside = part_valid & spec.body_mask(part)
        out.append(float(np.abs(local - whole[start:start + block])[inside].mean()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "ibsi_paired")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mr_normalisation.json")
    args = parser.parse_args(argv)
    results = {name: {} for name in SPECS}
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        mr = image_to_array(read_volume(folder / "mr.nii.gz")).astype(np.float32)
        valid = image_to_array(read_volume(folder / "valid.nii.gz")) > 0
        for name in SPECS:
            results[name][folder.name] = block_differences(mr, valid, build_intensity(name))
    summary = {name: {"blocks": sum(len(v) for v in per.values()),
                      "mean_abs_difference": float(np.mean([x for v in per.values() for x in v])),
                      "worst_block": float(np.max([x for v in per.values() for x in v]))}
               for name, per in results.items()}
    record = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "block_slices": 8, "summary": summary, "per_patient": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
