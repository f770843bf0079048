"""Every trained row of ``benchmarks/unpaired.py`` is a valid recipe, with the extra terms and weights asked for."""

import sys
from pathlib import Path

import pytest

from translate.engine.checks import check_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import unpaired  # noqa: E402


@pytest.mark.parametrize("row", sorted(r for r in unpaired.ROWS if not r.endswith("-paper")))
def test_row_builds_a_valid_recipe(row, tmp_path):
    recipe = unpaired.row_recipe(row, tmp_path / "data", tmp_path / row, 8, ["trainer.seed=3"],
                                 {"mind": 7.0, "geometry": 2.0}, check_paths=False)
    check_recipe(recipe, row, check_data=False)
    assert (recipe.trainer.steps, recipe.trainer.seed, recipe.trainer.threads) == (8, 3, 1)
    extra = unpaired.ROWS[row].get("extra", [])
    added = recipe.objective.generator[len(recipe.objective.generator) - len(extra):]
    assert [t["name"] for t in added] == [t["name"] for t in extra]  # the extra terms come last, in order
    for want, got in zip(extra, added):
        weight = got["weight"]["value"] if isinstance(got["weight"], dict) else got["weight"]
        assert weight == {"mind": 7.0, "geometry": 2.0}.get(want["name"], want["weight"])
        assert got.get("mask") == want.get("mask")


def test_rows_with_mind_and_their_partners():
    assert [t["name"] for t in unpaired.ROWS["cyclegan+ngf+mind"]["extra"]] == ["ngf", "ngf", "mind", "mind"]
    assert [t["name"] for t in unpaired.ROWS["unit+shape+mind"]["extra"]] == ["shape", "mind", "mind"]
    assert unpaired.ROWS["unit+shape+mind"]["overrides"] == unpaired.ROWS["unit+shape"]["overrides"]


def test_shape_rows_with_and_without_the_recipes_mind_terms(tmp_path):
    def generator_terms(row, mind=10.0):
        recipe = unpaired.row_recipe(row, tmp_path, tmp_path / row, 8, [], {"mind": mind}, check_paths=False)
        return recipe.objective.generator

    shipped = generator_terms("cyclegan+shape")
    assert [t["name"] for t in shipped][-3:] == ["shape", "mind", "mind"]
    assert all(t["weight"] == 10.0 for t in shipped if t["name"] == "mind")
    # '+mind' at weight 10 is the recipe as shipped; at another weight it replaces the recipe's terms, not adds
    assert generator_terms("cyclegan+shape+mind") == shipped
    assert [t["weight"] for t in generator_terms("cyclegan+shape+mind", 3.0) if t["name"] == "mind"] == [3.0, 3.0]
    assert generator_terms("cyclegan+shape-nomind") == [t for t in shipped if t["name"] != "mind"]
    assert "mind" not in [t["name"] for t in generator_terms("cyclegan+shape+geometry-warmup")]


def test_rows_that_name_a_shipped_recipe_have_its_objective(tmp_path):
    def terms(row, weights=None):
        return unpaired.row_recipe(row, tmp_path, tmp_path / row, 8, [], weights or {},
                                   check_paths=False).model_dump(mode="json")["objective"]

    # the gradient recipes are plain CycleGAN plus NGF at weight 3 and UNIT plus NGF at weight 5, in the row's order
    assert terms("cyclegan-ngf") == terms("cyclegan+ngf", {"ngf": 3.0}) != terms("cyclegan+ngf")
    assert terms("unit-ngf") == terms("unit+ngf", {"ngf": 5.0}) != terms("unit+ngf")
    # UNIT's recipe took the windowed cycle: the records' "unit+wcycle" is now "unit", not a doubled term
    assert terms("unit+wcycle") == terms("unit")
    windows = [t["pred"] for t in terms("unit")["generator"] if t["name"] == "window_pixel"]
    assert windows == ["recon_b", "rec_b"]  # "window_pixel:rec_b" dropped one of the two, then added it last
    shaped = [t["name"] for t in terms("unit+shape+mind+wcycle", {"mind": 10.0})["generator"]]
    assert shaped[-4:] == ["shape", "mind", "mind", "window_pixel"]


def test_wide_3d_row_has_the_2d_recipes_generators(tmp_path):
    recipe = unpaired.row_recipe("cyclegan-3d-wide", tmp_path / "data", tmp_path / "w", 8, check_paths=False)
    shipped = unpaired.row_recipe("cyclegan-3d", tmp_path / "data", tmp_path / "s", 8, check_paths=False)
    assert recipe.model.spatial_dims == 3
    for role in ("g_ab", "g_ba"):
        spec = recipe.model.networks[role].model_dump()
        assert (spec["channels"], spec["n_downsampling"]) == (16, 1)
    assert recipe.model.networks["d_b"] == shipped.model.networks["d_b"]
    assert recipe.objective == shipped.objective


def test_3d_rows_with_structure_terms(tmp_path):
    shipped = unpaired.row_recipe("cyclegan-3d", tmp_path / "data", tmp_path / "s", 8, check_paths=False)
    for row, name in (("cyclegan-3d+ngf", "ngf"), ("cyclegan-3d+mind", "mind")):
        recipe = unpaired.row_recipe(row, tmp_path / "data", tmp_path / row, 8, weights={name: 3.0},
                                     check_paths=False)
        assert recipe.model == shipped.model and recipe.data == shipped.data
        added = recipe.objective.generator[len(shipped.objective.generator):]
        assert [(t["name"], t["weight"]) for t in added] == [(name, 3.0), (name, 3.0)]
    # the papers' 2D network sizes are never grafted onto a 3D row
    assert not [row for row in unpaired.ROWS if "-3d" in row and row.endswith("-paper")]


def _record(steps: dict) -> dict:
    scores = {k: (0.1, 0.0) for k in unpaired.KEYS}
    return {"test_subjects": ["s"], "machine": {"description": "m"}, "command": "c", "results": {"r": scores},
            "seconds": {"r": 1.0}, "steps": {"r": steps}}


def test_markdown_says_where_a_stopped_row_stood():
    stopped = unpaired.markdown(_record({"steps": 4000, "batch_size": 2, "checkpoint": "last.pt",
                                         "checkpoint_step": 2712}))
    assert "| r | 2712 of 4000 × 2 |" in stopped
    finished = unpaired.markdown(_record({"steps": 4000, "batch_size": 2, "checkpoint": "last.pt",
                                          "checkpoint_step": 4000}))
    assert "| r | 4000 × 2 |" in finished
    best = unpaired.markdown(_record({"steps": 4000, "batch_size": 2, "checkpoint": "best.pt", "checkpoint_step": 3000}))
    assert "| r | 4000 × 2 |" in best  # best.pt is an earlier step by design, not a stop
