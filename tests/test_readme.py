"""The README's promises: its example runs, its loss table and recipe reference are complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from translate.losses.catalogue import catalogue, catalogue_markdown
from translate.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_compose_your_own_objective_example_runs(tmp_path):
    (example,) = [block for block in _blocks("python") if "objective" in block]
    script = tmp_path / "example.py"
    script.write_text(example)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "cycle_a" in result.stdout


def test_recipe_snippet_builds_with_a_user_term(tmp_path, tiny_phantom, monkeypatch):
    """The README's YAML objective, with its dotted path pointing at a real user module."""
    (snippet,) = [block for block in _blocks("yaml") if "objective:" in block]
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (example,) = [block for block in _blocks("python") if "class MeanHU" in block]
    (package / "losses.py").write_text(example.split("objective = ")[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = load_recipe(REPO / "recipes" / "mr2ct.yaml", [f"data.root={tiny_phantom}"]).model_dump(mode="json")
    tree["objective"] = yaml.safe_load(snippet)["objective"]
    from translate.engine.build import build_objectives

    generator_side, discriminator_side = build_objectives(load_recipe(tree=tree))
    assert generator_side.part_names == ["adversarial", "pixel", "gradient", "mean_hu"]
    assert discriminator_side.part_names == ["adversarial"]


def test_loss_table_is_the_catalogue():
    """The README table is `translate losses --markdown`, so a new term cannot go undocumented."""
    table = README.split("## Loss catalogue")[1].split("### Compose")[0]
    assert catalogue_markdown().strip() in table, "README loss table differs from `translate losses --markdown`"
    assert all(f"`{entry['name']}`" in table for entry in catalogue())


def _schema_keys(model, prefix=""):
    for name, field in model.model_fields.items():
        nested = getattr(field.annotation, "model_fields", None)
        if nested is not None and name not in ("generator", "discriminator") or (nested and prefix == "optim."):
            yield from _schema_keys(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_recipe_reference_documents_every_key():
    reference = README.split("## Recipe reference")[1].split("## Loss catalogue")[0]
    documented = set(re.findall(r"`([a-z_]+(?:\.[a-z_*]+)+)`", reference))
    for key in _schema_keys(Recipe):
        section, *_, leaf = key.split(".")
        wildcard = f"{section}.*.{leaf}"
        assert key in documented or wildcard in documented, f"README recipe reference lacks {key}"
