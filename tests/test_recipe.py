from pathlib import Path

import pytest
import yaml

from translate.errors import TranslateError
from translate.recipe import apply_overrides, load_recipe, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_parse_override_types():
    assert parse_override("trainer.steps=200") == (["trainer", "steps"], 200)
    assert parse_override("data.dataset.crop_size=[96, 96]") == (["data", "dataset", "crop_size"], [96, 96])
    assert parse_override("trainer.device=cpu") == (["trainer", "device"], "cpu")
    with pytest.raises(TranslateError, match="KEY.PATH=VALUE"):
        parse_override("trainer.steps")


def test_overrides_create_and_replace():
    tree = apply_overrides({"trainer": {"steps": 5}}, ["trainer.steps=7", "data.root=/x"])
    assert tree == {"trainer": {"steps": 7}, "data": {"root": "/x"}}


def test_every_shipped_recipe_validates():
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes, "no recipes shipped"
    for path in recipes:
        recipe = load_recipe(path, check_paths=False)
        assert recipe.trainer.steps > 0


def test_unknown_key_is_one_line(tiny_recipe, tmp_path):
    tiny_recipe["trainer"]["stepz"] = 3
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    with pytest.raises(TranslateError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: unknown key 'trainer.stepz'"


def test_wrong_type_names_key_and_value(tiny_recipe):
    with pytest.raises(TranslateError, match=r"'trainer.steps'.*'many'"):
        load_recipe(tree=tiny_recipe, overrides=["trainer.steps=many"])


def test_missing_section(tiny_recipe):
    del tiny_recipe["objective"]
    with pytest.raises(TranslateError, match="missing required key 'objective'"):
        load_recipe(tree=tiny_recipe)


def test_missing_data_root(tiny_recipe, tmp_path):
    with pytest.raises(TranslateError, match="data.root: folder not found"):
        load_recipe(tree=tiny_recipe, overrides=[f"data.root={tmp_path / 'nowhere'}"])


def test_empty_data_folder(tiny_recipe, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TranslateError, match="has no split.json"):
        load_recipe(tree=tiny_recipe, overrides=[f"data.root={empty}"])


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(TranslateError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TranslateError, match="not valid YAML"):
        load_recipe(bad)


def test_bad_window_order(tiny_recipe):
    with pytest.raises(TranslateError, match=r"data.domains.b.intensity \(ct_hu\): ct_hu window.*lower < upper"):
        load_recipe(tree=tiny_recipe, overrides=["data.domains.b.intensity={name: ct_hu, window: [2000, -1000]}"])


def test_old_format_keys_say_where_they_moved(tiny_recipe):
    with pytest.raises(TranslateError, match=r"'data.context_slices' has moved to data.dataset.context_slices"):
        load_recipe(tree=tiny_recipe, overrides=["data.context_slices=1"])
