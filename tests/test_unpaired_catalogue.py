"""The unpaired recipes' catalogue terms are reachable from a recipe in a fresh process.

``gradient_correlation`` (Hiasa et al. 2018) was registered only when its module happened to be
imported: a recipe naming it failed with "unknown loss term" in a fresh process (the unpaired
benchmark's CycleGAN + gradient row), while the test suite, which imports the module, never saw it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
from translate.losses import LOSSES
from translate.recipe import load_recipe
names = json.loads(sys.argv[1])
missing = [n for n in names if n not in LOSSES]
tree = load_recipe(sys.argv[2], check_paths=False).model_dump(mode="json")  # a fresh clone has no data/ yet
tree["objective"]["generator"].append({"name": "gradient_correlation", "source": "real_a", "pred": "fake_b",
                                       "absolute": True})
try:
    load_recipe(tree=tree, check_paths=False)
    recipe = "ok"
except Exception as err:
    recipe = str(err)
print(json.dumps({"missing": missing, "recipe": recipe}))
"""


def test_every_registered_term_is_known_to_a_fresh_process():
    names = sorted({m for path in (REPO / "translate" / "losses").glob("*.py")
                    for m in re.findall(r'@LOSSES\.register\("([^"]+)"\)', path.read_text())})
    assert "gradient_correlation" in names
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names), str(REPO / "recipes" / "mr2ct-cyclegan.yaml")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["missing"] == [], f"terms registered in a module the package never imports: {answer['missing']}"
    assert answer["recipe"] == "ok", answer["recipe"]
