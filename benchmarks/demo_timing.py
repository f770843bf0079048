"""Time ``make demo`` from a fresh clone, installation included, and store what it printed.

    python benchmarks/demo_timing.py --out benchmarks/results/demo_timing.json

Clones this repository (its committed ``main``) into a temporary folder, runs ``make demo`` under
``/usr/bin/time -v`` and records the wall time, peak memory, the training speed and validation
curve the run logged, and the held-out subject's metrics from ``translate evaluate``'s JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mr2ct_ablation import cpu_name  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "demo_timing.json")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="demo_timing_"))
    clone = work / "translate"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    load_before = os.getloadavg()[0]
    started = time.time()
    run = subprocess.run(["/usr/bin/time", "-v", "make", "demo"], cwd=clone, capture_output=True, text=True)
    wall = time.time() - started
    log = run.stdout + run.stderr
    (work / "make_demo.log").write_text(log)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log)
    fit = re.search(r"fit: step (\d+) in ([\d.]+) s \(([\d.]+) it/s\)", log)
    validation = [{"step": int(m.group(1)), "val_mae_hu": float(m.group(2))}
                  for m in re.finditer(r"step (\d+): val_mae_hu=([\d.]+)", log)]
    metrics = sorted((clone / "runs" / "demo").glob("*.metrics.json"))
    record = {
        "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip(),
        "machine": {"processor": cpu_name(), "cores": os.cpu_count(), "load_average_1min_before": load_before},
        "exit_code": run.returncode, "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(int(rss.group(1)) / 1024, 1) if rss else None,
        "training": {"steps": int(fit.group(1)), "seconds": float(fit.group(2)), "steps_per_second": float(fit.group(3))}
        if fit else None,
        "validation": validation,
        "held_out": json.loads(metrics[0].read_text()) if metrics else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)])
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
