"""Print how many tests ran and skipped (from the JSON tests/conftest.py writes) and fail when a test
in a file that reads the real data (``../shared/data``) skipped: under CI every one of them must run."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
#: how a test file reaches the real data
REAL_DATA = re.compile(r"SHARED_DATA|shared_data|tiny_real|\"shared\"")


def real_data_files() -> set:
    return {path.name for path in TESTS.glob("test_*.py") if REAL_DATA.search(path.read_text())}


def main(path: str) -> int:
    try:
        ran = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        print(f"tests: no summary at {path} (did pytest start?)")
        return 1
    print(f"tests: {ran['passed']} passed, {ran['failed']} failed, {ran['errors']} errors, "
          f"{ran['skipped']} skipped, {ran['xfailed']} xfailed")
    real = real_data_files()
    bad = []
    for skip in ran["skipped_tests"]:
        file = skip["test"].split("::")[0].rsplit("/", 1)[-1]
        hidden = file in real and not skip["allowed_skip"]
        bad += [skip] if hidden else []
        print(f"  skipped{' (REAL-DATA FILE)' if hidden else ''}: {skip['test']}: {skip['reason']}")
    if bad:
        print(f"tests: {len(bad)} test(s) in the real-data files ({', '.join(sorted(real))}) skipped; "
              f"every one must run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
