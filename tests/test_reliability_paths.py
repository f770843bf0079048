"""Paths: a recipe or override cannot make `translate fit` write or delete outside ``trainer.out_dir``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from translate.cli import app
from translate.engine.run import check_out_dir
from translate.errors import TranslateError

runner = CliRunner()


def fit(tree: dict, tmp_path: Path, *extra: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return runner.invoke(app, ["fit", str(path), "--quiet", *extra])


def one_line(result, *fragments: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture()
def one_step(tiny_recipe):
    tiny_recipe["trainer"].update({"steps": 1, "val_every": 0})
    return tiny_recipe


def test_the_filesystem_root_and_home_are_refused_before_anything_is_written(one_step, tmp_path, monkeypatch):
    for root in ("/", "/tmp/..", "/.."):
        with pytest.raises(TranslateError, match="filesystem root"):
            check_out_dir(Path(root), overwrite=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    one_line(fit(one_step, tmp_path, f"trainer.out_dir={home}", "--overwrite"), "home folder")
    assert not any(home.iterdir())


def test_an_out_dir_that_is_a_file_is_refused(one_step, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    one_line(fit(one_step, tmp_path, f"trainer.out_dir={target}"), "is a file")
    assert target.read_text() == "mine"


def test_overwrite_refuses_a_folder_that_is_not_a_run(one_step, tmp_path):
    """``trainer.out_dir=x/..`` points at a folder of the user's: --overwrite must not empty its checkpoints/."""
    (tmp_path / "x").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine.pt").write_bytes(b"my weights")
    (tmp_path / "metrics.jsonl").write_text("my log\n")
    one_line(fit(one_step, tmp_path, f"trainer.out_dir={tmp_path / 'x' / '..'}", "--overwrite"),
             "not a run folder", "nothing was removed")
    assert (tmp_path / "checkpoints" / "mine.pt").read_bytes() == b"my weights"
    assert (tmp_path / "metrics.jsonl").read_text() == "my log\n"
    (tmp_path / "recipe.yaml").write_text("just: notes\n")  # a recipe.yaml that no run wrote
    one_line(fit(one_step, tmp_path, f"trainer.out_dir={tmp_path}", "--overwrite"), "not a run folder")
    assert (tmp_path / "checkpoints" / "mine.pt").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_phantom):
    import copy

    from conftest import TINY_RECIPE

    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(tiny_phantom)
    tree["trainer"].update({"steps": 1, "val_every": 0})
    folder = tmp_path_factory.mktemp("finished")
    tree["trainer"]["out_dir"] = str(folder / "run")
    assert fit(tree, folder).exit_code == 0
    return folder / "run"


@pytest.mark.parametrize("name", ["checkpoints", "metrics.jsonl", "images"])
def test_a_run_artifact_linked_outside_the_run_is_refused_and_the_outside_untouched(name, one_step, finished_run,
                                                                                     tmp_path):
    import shutil

    out = Path(one_step["trainer"]["out_dir"])
    shutil.copytree(finished_run, out)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    moved = out / name
    if moved.is_dir():
        shutil.rmtree(moved)
        os.symlink(outside, moved)
    else:
        moved.unlink()
        os.symlink(outside / "precious.txt", moved)
    for extra in (["--overwrite"], ["--resume"], []):
        one_line(fit(one_step, tmp_path, *extra), f"{name} is a symbolic link")
    assert (outside / "precious.txt").read_text() == "keep me" and [p.name for p in outside.iterdir()] == ["precious.txt"]


def test_links_inside_checkpoints_are_replaced_not_followed(one_step, tmp_path):
    """A checkpoint name that is a link to a file elsewhere: the run replaces the link, never writes through it."""
    one_step["trainer"]["steps"] = 2
    out = Path(one_step["trainer"]["out_dir"])
    assert fit(one_step, tmp_path, "--stop-after", "1").exit_code == 0
    outside = tmp_path / "precious.pt"
    outside.write_bytes(b"keep me")
    (out / "checkpoints" / "best.pt").unlink(missing_ok=True)
    os.symlink(outside, out / "checkpoints" / "step_0000002.pt")
    os.symlink(outside, out / "checkpoints" / ".last.pt.tmp-x.tmp")  # a "leftover temporary" that is a link
    assert fit(one_step, tmp_path, "--resume").exit_code == 0
    assert outside.read_bytes() == b"keep me"
    assert not (out / "checkpoints" / "step_0000002.pt").is_symlink()
    assert fit(one_step, tmp_path, "--overwrite").exit_code == 0  # a run folder: replaced as before
    assert outside.read_bytes() == b"keep me"
