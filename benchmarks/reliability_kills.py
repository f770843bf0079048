"""SIGKILL `translate fit` at random moments, resume each time, and compare with an uninterrupted run.

    python benchmarks/reliability_kills.py --kills 10 --out benchmarks/results/reliability_kills.json

A tiny phantom and a tiny recipe (checkpoint every 2 steps, logs every step) are trained once
straight through, then again as a subprocess killed with SIGKILL after a random delay (seeded)
and resumed with `--resume` until it finishes. After every kill the run folder must hold a
loadable `last.pt` (or none yet); at the end every step's logged losses must equal the
uninterrupted run's, each step logged once.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import TINY_RECIPE  # noqa: E402

from translate.data.phantom import write_phantom  # noqa: E402


def losses(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records if "g_total" in r]
    return {"steps": steps, "g_total": {r["step"]: r["g_total"] for r in records if "g_total" in r}}


def logged_steps(run: Path) -> int:
    """The last step logged in ``metrics.jsonl`` (0 before the first)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return 0
    last = 0
    for line in path.read_text().splitlines():
        try:
            last = max(last, int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):  # a line being written
            continue
    return last


def fit(recipe: Path, *extra: str, wait: bool = True):
    command = [sys.executable, "-m", "translate.cli", "fit", str(recipe), "--quiet", *extra]
    if wait:
        return subprocess.run(command, capture_output=True, text=True)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kills_"))
    phantom = write_phantom(work / "phantom", subjects=3, seed=0, shape=(6, 32, 32), spacing=(4.0, 6.0, 6.0))
    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(phantom)
    tree["trainer"].update({"steps": args.steps, "checkpoint_every": 2, "val_every": 0, "image_every": 1000,
                            "threads": 1})
    runs = {}
    for name in ("straight", "killed"):
        recipe = copy.deepcopy(tree)
        recipe["trainer"]["out_dir"] = str(work / name)
        runs[name] = work / f"{name}.yaml"
        runs[name].write_text(yaml.safe_dump(recipe))
    started = time.perf_counter()
    assert fit(runs["straight"]).returncode == 0
    duration = time.perf_counter() - started  # start-up (imports, data) + training
    killed_dir = work / "killed"
    kills, loadable, attempts = 0, 0, 0
    while attempts < 10 * args.kills and kills < args.kills:
        attempts += 1
        resume = (killed_dir / "checkpoints" / "last.pt").is_file()
        # Kill at a random moment after a random number of further steps: chosen by progress, not by
        # the straight run's wall time, so a loaded machine cannot let the run finish first.
        done = logged_steps(killed_dir)
        target = done + rng.randint(1, max(1, (args.steps - done) // (args.kills - kills + 1)))
        process = fit(runs["killed"], *(["--resume"] if resume else []), wait=False)
        while process.poll() is None and logged_steps(killed_dir) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))  # anywhere inside the step, its logging or a checkpoint write
        if process.poll() is not None:  # finished before the kill
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        last = killed_dir / "checkpoints" / "last.pt"
        if last.is_file():
            torch.load(last, weights_only=True)  # raises if a kill left it damaged
            loadable += 1
        elif any(killed_dir.glob("*")):
            # killed before the first checkpoint: start again from nothing, as a user would
            subprocess.run(["rm", "-rf", str(killed_dir)])
    while True:
        resume = (killed_dir / "checkpoints" / "last.pt").is_file()
        result = fit(runs["killed"], *(["--resume"] if resume else []))
        if result.returncode == 0:
            break
        if "already holds a run" in result.stderr:
            subprocess.run(["rm", "-rf", str(killed_dir)])
            continue
        raise SystemExit(f"resume failed: {result.stderr}")
    straight, pieced = losses(work / "straight"), losses(killed_dir)
    same = pieced["g_total"] == straight["g_total"]
    once = sorted(pieced["steps"]) == pieced["steps"] and len(set(pieced["steps"])) == len(pieced["steps"])
    record = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "straight_run_seconds": round(duration, 1), "kills": kills, "last_pt_loadable_after_kill": loadable, "steps": args.steps,
              "identical_losses_every_step": same, "each_step_logged_once": once,
              "leftover_temporaries": len(list((killed_dir / "checkpoints").glob(".*.tmp-*")))}
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    subprocess.run(["rm", "-rf", str(work)])
    return 0 if same and once else 1


if __name__ == "__main__":
    raise SystemExit(main())
