"""The real-patient benchmark's rows (``benchmarks/real_data/mr2ct_real.py``) build the recipes they describe."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "real_data"))
import mr2ct_real  # noqa: E402


def _recipe(row, data, tmp_path, weights=None):
    return mr2ct_real.row_recipe(row, data, tmp_path / row, ["trainer.steps=8"], weights)


def _names(recipe):
    return [t["name"] for t in recipe.objective.generator]


@pytest.mark.parametrize("row", sorted(mr2ct_real.ROWS))
def test_every_row_builds(row, tiny_real_unpaired, tmp_path):
    recipe = _recipe(row, tiny_real_unpaired, tmp_path, {"mind": 3.0, "bone_void": 4.0})
    assert recipe.trainer.steps == 8 and str(recipe.trainer.out_dir) == str(tmp_path / row)
    assert str(recipe.data.root) == str(tiny_real_unpaired)


def test_the_unpaired_rows_differ_from_the_shipped_recipe_only_as_described(tiny_real_unpaired, tmp_path):
    shipped = _recipe("cyclegan", tiny_real_unpaired, tmp_path)
    assert shipped.model.networks["d_b"].norm == "none" and shipped.model.networks["d_a"].norm == "instance"
    assert "bone_void" in _names(shipped) and "silhouette" in _names(shipped)
    old_critic = _recipe("cyclegan-dbinstance", tiny_real_unpaired, tmp_path)
    assert old_critic.model.networks["d_b"].norm == "instance"
    assert old_critic.model.networks["d_b"].input_windows == shipped.model.networks["d_b"].input_windows
    assert old_critic.objective == shipped.objective and old_critic.data == shipped.data
    before_bone_void = _recipe("cyclegan-nobonevoid", tiny_real_unpaired, tmp_path)
    assert before_bone_void.model == old_critic.model and "bone_void" not in _names(before_bone_void)
    assert _names(_recipe("cyclegan-plain", tiny_real_unpaired, tmp_path)) == [n for n in _names(shipped) if n not in ("silhouette", "bone_void")]
    weighted = _recipe("cyclegan+bonevoid", tiny_real_unpaired, tmp_path, {"bone_void": 30.0})
    assert weighted.model == shipped.model
    assert [(t["name"], t["weight"]) for t in weighted.objective.generator if t["name"] == "bone_void"] == [("bone_void", 30.0)]
    voids = _recipe("cyclegan+signalvoid", tiny_real_unpaired, tmp_path, {"signal_void": 3.0})
    assert voids.model == shipped.model and voids.data == shipped.data
    assert voids.objective.generator[:-1] == shipped.objective.generator
    assert voids.objective.generator[-1] == {"name": "signal_void", "source": "real_a", "pred": "fake_b", "weight": 3.0}
