"""Non-finite losses and gradients injected into `translate fit`: is each one caught inside its step?

    python benchmarks/reliability_nan.py --out benchmarks/results/reliability_nan.json

A tiny phantom and a tiny Pix2pix recipe (checkpoint every step) are trained through the CLI
(``translate fit``, in this process) with one fault injected per case: a loss term that goes NaN at
a given step (generator or discriminator side), a term whose value is finite but whose gradient is
infinite, a learning rate so large that training diverges on its own, and ``trainer.on_nan=skip``
with and without running out of ``trainer.max_nan_skips``. A fault counts as caught when:

- ``stop`` (the default): exit code 2, one ``error:`` line naming the step, the injected term (or,
  for the divergence, a term) and the last good checkpoint, and every checkpoint on disk is from
  before the fault with finite weights;
- ``skip``: the run finishes (or stops in one line past ``max_nan_skips``), the skipped steps are
  logged as ``nan_skips``, and the weights after a skipped step equal those before it.
"""

from __future__ import annotations

import argparse
import copy
import json
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
from helpers_fuzz import run_cli  # noqa: E402

from translate.data.phantom import write_phantom  # noqa: E402

MACHINE = "2-core Intel Xeon CPU, no GPU"
NAN_AT = "helpers_user_terms.NanAtCalls"
NAN_GRAD = "helpers_user_terms.NanGradTerm"

#: name -> (side, term spec or None, trainer overrides, expected: what the log must name, fault step)
CASES = {
    "generator loss NaN at step 3": ("generator", {"name": NAN_AT, "calls": [3]}, {}, "g_flaky_term", 3),
    "discriminator loss NaN at step 2": ("discriminator", {"name": NAN_AT, "calls": [2]}, {}, "d_flaky_term", 2),
    "generator gradient inf, loss finite": ("generator", {"name": NAN_GRAD}, {}, "g_nan_grad_term", 1),
    "discriminator gradient inf, loss finite": ("discriminator", {"name": NAN_GRAD, "key": "d_real"}, {},
                                                "d_nan_grad_term", 1),
    "divergence: learning rate 1e12": (None, None, {"optim": {"generator": {"lr": 1e12}, "discriminator": {"lr": 1e12}}},
                                       None, None),
    "skip: generator loss NaN at steps 2 and 4": ("generator", {"name": NAN_AT, "calls": [2, 4]},
                                                  {"trainer": {"on_nan": "skip", "max_nan_skips": 3}}, "g_flaky_term", 2),
    "skip: gradient inf every step, max_nan_skips 2": ("generator", {"name": NAN_GRAD},
                                                       {"trainer": {"on_nan": "skip", "max_nan_skips": 2}},
                                                       "g_nan_grad_term", 1),
}


def checkpoints(out: Path) -> dict:
    found = {}
    for path in sorted((out / "checkpoints").glob("step_*.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        found[state["step"]] = state
    return found


def finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state["networks"]["model"].values() if v.is_floating_point())


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(v, b["networks"]["model"][k]) for k, v in a["networks"]["model"].items())


def run_case(name: str, spec: tuple, phantom: Path, work: Path, steps: int) -> dict:
    side, term, overrides, expected_term, fault_step = spec
    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(phantom)
    out = work / name.replace(" ", "_").replace(":", "").replace(",", "")
    tree["trainer"].update({"steps": steps, "val_every": 0, "checkpoint_every": 1, "out_dir": str(out)})
    for section, values in overrides.items():
        for key, value in values.items():
            if isinstance(value, dict):
                tree.setdefault(section, {}).setdefault(key, {}).update(value)
            else:
                tree.setdefault(section, {})[key] = value
    if term is not None:
        tree["objective"][side].append(term)
    recipe = work / f"{out.name}.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    started = time.perf_counter()
    reply = run_cli(["fit", str(recipe), "--quiet"])
    lines = [line for line in reply["stderr"].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    saved = checkpoints(out)
    record = {"case": name, "exit_code": reply["code"], "error": errors[0] if errors else "",
              "traceback": bool(reply["traceback"]), "checkpoint_steps": sorted(saved),
              "seconds": round(time.perf_counter() - started, 1)}
    on_nan = overrides.get("trainer", {}).get("on_nan", "stop")
    all_finite = all(finite(s) for s in saved.values())
    if on_nan == "stop":
        stopped = reply["code"] == 2 and len(errors) == 1 and lines[-1] == errors[0] and not reply["traceback"]
        text = errors[0] if errors else ""
        named = "non-finite" in text and (expected_term is None or expected_term in text) and \
            ("last good checkpoint" in text or "no checkpoint was written yet" in text)
        before = fault_step is None or all(step < fault_step for step in saved)
        if fault_step is None and reply["code"] == 0:  # the divergence never went non-finite: no injection
            record.update(injected=False, caught=None)
            return record
        record.update(injected=True, caught=bool(stopped and named and before and all_finite),
                      named_in_error=named, checkpoints_before_fault=before, weights_finite=all_finite)
    else:
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] \
            if (out / "metrics.jsonl").is_file() else []
        skipped = [r["step"] for r in records if "nan_skips" in r]
        unchanged = all(same_weights(saved[s - 1], saved[s]) for s in skipped if s - 1 in saved and s in saved)
        limit = overrides["trainer"]["max_nan_skips"]
        if expected_term == "g_nan_grad_term":  # every step bad: skip `limit` steps, then stop in one line
            ok = (reply["code"] == 2 and len(errors) == 1 and f"max_nan_skips={limit}" in errors[0]
                  and skipped == list(range(1, limit + 1)))
        else:
            ok = reply["code"] == 0 and skipped == term["calls"]
        record.update(injected=True, caught=bool(ok and unchanged and all_finite and not reply["traceback"]),
                      skipped_steps=skipped, weights_unchanged_on_skipped_steps=unchanged, weights_finite=all_finite)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="nan_"))
    phantom = write_phantom(work / "phantom", subjects=3, seed=0, shape=(6, 32, 32), spacing=(4.0, 6.0, 6.0))
    started = time.perf_counter()
    results = []
    for name, spec in CASES.items():
        results.append(run_case(name, spec, Path(phantom), work, args.steps))
        print(json.dumps(results[-1]), flush=True)
    injected = [r for r in results if r["injected"]]
    record = {"command": "python benchmarks/reliability_nan.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": MACHINE,
              "seconds": round(time.perf_counter() - started, 1),
              "injected": len(injected), "caught": sum(bool(r["caught"]) for r in injected), "cases": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"non-finite injections caught: {record['caught']} / {record['injected']}")
    return 0 if record["caught"] == record["injected"] else 1


if __name__ == "__main__":
    sys.exit(main())
