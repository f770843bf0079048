"""Hostile files through the CLI: truncated, bit-flipped and random files for every reader.

    python benchmarks/reliability_fuzz.py --per-kind 200 --out benchmarks/results/reliability_fuzz.json

Small valid seeds (NIfTI .nii.gz and .nii, NRRD, MHA, a DICOM series, a tiny phantom's
``split.json``, a recipe; with ``../shared/data`` also three slices of the real CT DICOM series)
are mutated (``tests/helpers_fuzz.py``: truncation, 1-8 bit flips mostly in the header, random
runs, insertions, deletions, whole-random files, flips behind the gzip layer) and given to the
CLI: ``translate evaluate MUTATED SEED`` for volumes, ``translate fit`` for ``split.json`` and the
recipe (a mutation that still validates trains one step). The CLI runs in a separate process that
is replaced when it crashes or hangs, with glibc's checking allocator so heap corruption aborts at
the read that caused it. Every case is classified:

- ``read``: exit code 0 (the file was read, a correct file or a damaged one whose damage is data);
- ``one_line_error``: exit code 2, one ``error:`` line naming the file, no traceback;
- ``bad_error`` (exit 2 but more lines or the file not named), ``traceback``, ``crash``, ``hang``:
  failures of the toolkit.

A sample of cases is also run through the installed ``translate`` executable, to show the
in-process CLI and the console script agree.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import SHARED_DATA, TINY_RECIPE  # noqa: E402
from helpers_fuzz import KINDS, OPERATIONS, VOLUME_KINDS, ReaderProcess, make_case, one_line_naming, write_seeds  # noqa: E402

MACHINE = "2-core Intel Xeon CPU, no GPU"


def classify(reply: dict, named: Path) -> str:
    if reply.get("outcome") in ("crash", "hang"):
        return reply["outcome"]
    if reply.get("traceback"):
        return "traceback"
    if reply["code"] == 0:
        return "read"
    lines = [line for line in reply["stderr"].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if reply["code"] == 2 and len(errors) == 1 and lines[-1] == errors[0] and one_line_naming(errors[0], named):
        return "one_line_error"
    return "bad_error"


def argv_for(kind: str, given: Path, seeds: dict, work: Path) -> tuple[list, Path]:
    """The CLI call for a case and the path its error must name."""
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    if kind == "split":
        return (["fit", str(seeds["recipe"]), f"data.root={given}", f"trainer.out_dir={out}", "--stop-after", "1",
                 "--quiet"], given)
    if kind == "recipe":
        return ["fit", str(given), f"trainer.out_dir={out}", "--stop-after", "1", "--quiet"], given
    return ["evaluate", str(given), str(seeds[kind]), "--out", str(work / "metrics.json")], given


def summary(args, argv, started, results, findings, agree, sitk, nibabel, pydicom, yaml) -> dict:
    totals = {key: sum(r[key] for r in results.values())
              for key in ("tried", "read", "one_line_error", "bad_error", "traceback", "crash", "hang")}
    return {
        "command": "python benchmarks/reliability_fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": MACHINE,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": {"python": platform.python_version(), "SimpleITK": sitk.Version.VersionString(),
                     "nibabel": nibabel.__version__, "pydicom": pydicom.__version__, "pyyaml": yaml.__version__},
        "per_kind": results, "totals": totals,
        "failures": totals["bad_error"] + totals["traceback"] + totals["crash"] + totals["hang"],
        "console_script_sample": agree, "findings": dict(findings),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200, help="mutated files per reader")
    parser.add_argument("--real-per-kind", type=int, default=40,
                        help="mutated slices of the real 512 x 512 DICOM series (each evaluate takes seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--executable-kinds", default="nifti_gz,split,recipe",
                        help="kinds whose first case is also run through `python -m translate.cli` in a fresh process")
    parser.add_argument("--kinds", default=None, help="comma-separated subset of the kinds (default: all)")
    parser.add_argument("--merge", action="store_true",
                        help="replace only these kinds' results in an existing --out JSON (each keeps its command)")
    parser.add_argument("--sample-timeout", type=float, default=900.0,
                        help="seconds for one fresh `python -m translate.cli` (imports included)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import nibabel
    import pydicom
    import SimpleITK as sitk
    import yaml

    from translate.data.phantom import write_phantom

    work = Path(tempfile.mkdtemp(prefix="fuzz_"))
    phantom = write_phantom(work / "phantom", subjects=3, seed=0, shape=(6, 32, 32), spacing=(4.0, 6.0, 6.0))
    tree = copy.deepcopy(TINY_RECIPE)
    tree["trainer"].update({"val_every": 0, "steps": 1})
    seeds = write_seeds(work / "seeds", tree, Path(phantom))
    kinds = list(KINDS)
    real_series = SHARED_DATA / "totalseg" / "example_ct_dicom"
    if real_series.is_dir():  # three real CT slices (512 x 512, Siemens): a real GDCM parse
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(real_series))[:3]
        (work / "seeds" / "dicom_real").mkdir()
        for name in files:
            shutil.copy(name, work / "seeds" / "dicom_real")
        seeds["dicom_real"] = work / "seeds" / "dicom_real"
        kinds.insert(len(VOLUME_KINDS), "dicom_real")
    if args.kinds:
        kinds = [kind for kind in kinds if kind in args.kinds.split(",")]

    rng = random.Random(args.seed)
    process = ReaderProcess(preload="cli", log=work / "cli.log")
    started = time.perf_counter()
    results, findings = {}, collections.defaultdict(list)
    sample = []
    for kind in kinds:
        counts = collections.Counter()
        operations = collections.Counter()
        kind_started = time.perf_counter()
        tried = args.real_per_kind if kind == "dicom_real" else args.per_kind
        for index in range(tried):
            operation = OPERATIONS[index % len(OPERATIONS)]
            case_seed = rng.randrange(2**32)
            given = make_case("dicom" if kind == "dicom_real" else kind, seeds if kind != "dicom_real" else
                              {**seeds, "dicom": seeds["dicom_real"]}, work / "case", operation, case_seed)
            command, named = argv_for(kind, given, seeds, work)
            reply = process.cli(command, timeout=args.timeout)
            outcome = classify(reply, named)
            counts[outcome] += 1
            operations[operation] += 1
            if outcome not in ("read", "one_line_error"):
                kept = work / "findings" / f"{kind}_{index}"
                shutil.copytree(work / "case", kept)
                findings[kind].append({"index": index, "operation": operation, "seed": case_seed, "outcome": outcome,
                                       "stderr": reply.get("stderr", "")[-300:], "traceback": reply.get("traceback", "")[-600:],
                                       "kept": str(kept)})
            if index == 0 and kind in args.executable_kinds.split(","):
                sample.append((kind, operation, case_seed, reply.get("code"), outcome))
        results[kind] = {"tried": tried, **{k: counts.get(k, 0) for k in
                         ("read", "one_line_error", "bad_error", "traceback", "crash", "hang")},
                         "operations": dict(operations), "seconds": round(time.perf_counter() - kind_started, 1)}
        print(kind, results[kind], flush=True)
        if args.out and not args.merge:  # partial results survive an interrupted campaign
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(summary(args, argv, started, results, findings, [], sitk, nibabel,
                                                   pydicom, yaml), indent=2) + "\n")
    process.close()

    # the same cases through the console script, in fresh processes
    agree = []
    for kind, operation, case_seed, code, outcome in sample:
        given = make_case("dicom" if kind == "dicom_real" else kind, seeds if kind != "dicom_real" else
                          {**seeds, "dicom": seeds["dicom_real"]}, work / "case", operation, case_seed)
        command, named = argv_for(kind, given, seeds, work)
        done = subprocess.run([sys.executable, "-m", "translate.cli", *command], capture_output=True, text=True,
                              timeout=args.sample_timeout)
        same = done.returncode == code and "Traceback" not in done.stderr
        agree.append({"kind": kind, "operation": operation, "in_process_exit": code, "executable_exit": done.returncode,
                      "agree": same})

    record = summary(args, argv, started, results, findings, [], sitk, nibabel, pydicom, yaml)
    if args.out and not args.merge:  # written now, in case the console-script sample below is cut short
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")

    record = summary(args, argv, started, results, findings, agree, sitk, nibabel, pydicom, yaml)
    if args.merge and args.out and args.out.is_file():  # earlier kinds kept, with the command that measured them
        earlier = json.loads(args.out.read_text())
        command = record["command"]
        for kind, result in earlier["per_kind"].items():
            result.setdefault("command", earlier["command"])
        for kind, result in results.items():
            result["command"] = command
        merged_results = {**earlier["per_kind"], **results}
        merged_findings = {**earlier.get("findings", {}), **dict(findings)}
        for kind in results:
            if kind not in findings:
                merged_findings.pop(kind, None)
        merged_agree = [a for a in earlier.get("console_script_sample", []) if a["kind"] not in results] + agree
        record = summary(args, argv, started, merged_results, merged_findings, merged_agree, sitk, nibabel, pydicom, yaml)
        record["command"] = "several: see each per_kind entry's command"
    totals = record["totals"]
    text = json.dumps(record, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(totals))
    print(f"console script agrees on {sum(a['agree'] for a in agree)} / {len(agree)} sampled cases")
    shutil.rmtree(work / "case", ignore_errors=True)
    if not record["failures"]:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"findings kept under {work / 'findings'}")
    return 0 if not record["failures"] and all(a["agree"] for a in agree) else 1


if __name__ == "__main__":
    sys.exit(main())
