"""The whole test suite as CI runs it (`CI=true .ci/run`, i.e. `make test`), and what ran.

    python benchmarks/test_census.py --out benchmarks/results/test_census.json

Stores how many tests passed, failed, errored and skipped under CI (where a skip is a failure
unless the test is marked ``allowed_skip``), the skipped tests with their reasons, the wall time
and the exit status of `.ci/run`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE = "2-core Intel Xeon CPU, no GPU"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    summary = Path(tempfile.mkdtemp(prefix="census_")) / "summary.json"
    env = dict(os.environ, CI="true", TRANSLATE_TEST_SUMMARY=str(summary))
    started = time.perf_counter()
    done = subprocess.run([str(REPO / ".ci" / "run")], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    ran = json.loads(summary.read_text()) if summary.is_file() else {}
    tail = [line for line in done.stdout.splitlines() if line.startswith("tests:") or "passed" in line][-4:]
    record = {"command": "python benchmarks/test_census.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "runs": "CI=true .ci/run (make test: pytest -n 2)", "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": MACHINE, "seconds": round(seconds, 1), "ci_run_exit_status": done.returncode,
              **{k: ran.get(k) for k in ("passed", "failed", "errors", "skipped", "xfailed", "skipped_tests", "failed_tests")},
              "load_average_1min_at_end": os.getloadavg()[0],
              "output_tail": tail}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(tail))
    print(json.dumps({k: record[k] for k in ("passed", "failed", "errors", "skipped", "ci_run_exit_status", "seconds")}))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
