"""Non-finite losses and gradients: caught inside the step, before any update, named by term;
``trainer.on_nan: stop | skip`` with ``trainer.max_nan_skips``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from translate.cli import app
from translate.errors import TranslateError
from translate.recipe import load_recipe

runner = CliRunner()


def fit(tree: dict, tmp_path: Path, *extra: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return runner.invoke(app, ["fit", str(path), "--quiet", *extra])


def error_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def _plain(tiny_recipe: dict, steps: int) -> dict:
    tiny_recipe["trainer"].update({"steps": steps, "val_every": 0, "checkpoint_every": 1})
    return tiny_recipe


def test_a_loss_that_goes_nan_later_names_the_term_and_the_last_good_checkpoint(tiny_recipe, tmp_path):
    tree = _plain(tiny_recipe, 4)
    tree["objective"]["generator"].append({"name": "helpers_user_terms.NanAtCalls", "calls": [3]})
    line = error_line(fit(tree, tmp_path))
    out = Path(tree["trainer"]["out_dir"])
    assert "non-finite loss at step 3 in g_flaky_term" in line, line
    assert f"{out / 'checkpoints' / 'last.pt'} (step 2)" in line and "trainer.on_nan=skip" in line, line
    assert "g_pixel" not in line and "g_adversarial" not in line  # only the term that went non-finite
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2  # nothing was saved after the fault
    assert all(torch.isfinite(v).all() for v in state["networks"]["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("side", ["generator", "discriminator"])
def test_a_non_finite_gradient_with_a_finite_loss_is_caught_before_the_update(side, tiny_recipe, tmp_path):
    tree = _plain(tiny_recipe, 2)
    key = "fake_b" if side == "generator" else "d_real"
    tree["objective"][side].append({"name": "helpers_user_terms.NanGradTerm", "key": key})
    result = fit(tree, tmp_path)
    line = error_line(result)
    prefix = "g_" if side == "generator" else "d_"
    assert f"non-finite gradient at step 1 in {prefix}nan_grad_term;" in line, line
    assert "no checkpoint was written yet" in line
    assert not (Path(tree["trainer"]["out_dir"]) / "checkpoints" / "last.pt").exists()


def test_skip_mode_skips_the_update_counts_and_logs_it(tiny_recipe, tmp_path):
    tree = _plain(tiny_recipe, 5)
    tree["trainer"].update({"on_nan": "skip", "max_nan_skips": 2})
    tree["objective"]["generator"].append({"name": "helpers_user_terms.NanAtCalls", "calls": [2, 3]})
    result = fit(tree, tmp_path)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "step 2: non-finite loss at step 2 in g_flaky_term; update skipped (1 of at most 2)" in result.stderr
    out = Path(tree["trainer"]["out_dir"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "nan_skips" in r] == [2, 3]
    assert [r["step"] for r in records if "g_total" in r] == [1, 4, 5]
    ckpt = out / "checkpoints"
    one, three = (torch.load(ckpt / f"step_000000{k}.pt", weights_only=True) for k in (1, 3))
    # steps 2 and 3 changed nothing: weights, batch-norm statistics and optimiser state are step 1's
    for key, value in one["networks"]["model"].items():
        assert torch.equal(value, three["networks"]["model"][key]), key
    assert torch.load(ckpt / "last.pt", weights_only=True)["nan_skips"] == 2
    five = torch.load(ckpt / "last.pt", weights_only=True)
    assert any(not torch.equal(v, five["networks"]["model"][k]) for k, v in one["networks"]["model"].items()
               if v.is_floating_point())  # the good steps after them did train


def test_skip_mode_stops_after_max_nan_skips_in_one_line(tiny_recipe, tmp_path):
    tree = _plain(tiny_recipe, 5)
    tree["trainer"].update({"on_nan": "skip", "max_nan_skips": 2})
    tree["objective"]["generator"].append({"name": "helpers_user_terms.NanGradTerm"})
    line = error_line(fit(tree, tmp_path))
    assert "non-finite gradient at step 3 in g_nan_grad_term" in line and "more than trainer.max_nan_skips=2" in line, line


def test_on_nan_is_checked_at_load_and_may_change_on_resume(tiny_recipe, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe))
    with pytest.raises(TranslateError, match="trainer.on_nan"):
        load_recipe(path, ["trainer.on_nan=ignore"])
    with pytest.raises(TranslateError, match="trainer.max_nan_skips"):
        load_recipe(path, ["trainer.max_nan_skips=-1"])
    tree = _plain(tiny_recipe, 3)
    assert fit(tree, tmp_path, "--stop-after", "1").exit_code == 0
    result = fit(tree, tmp_path, "--resume", "trainer.on_nan=skip", "trainer.max_nan_skips=3")
    assert result.exit_code == 0, (result.output, result.exception)
    error_line(fit(tree, tmp_path, "--resume", "trainer.seed=4"))  # other keys are still refused
