"""Hostile input: truncated, bit-flipped and random files for every reader (hypothesis, bounded).

Each case must end in a correct read or one one-line error naming the file: no hang, no interpreter
crash, and through the CLI no traceback (exit code 0 or 2). The volume readers (ITK, GDCM, nibabel)
first run in a separate reader process (``tests/helpers_fuzz.py``), so a crash is a failed test,
not a dead pytest; a file that read or failed cleanly there is then given to the CLI in-process.
``benchmarks/reliability_fuzz.py`` runs a larger campaign of the same cases.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import TINY_RECIPE
from helpers_fuzz import OPERATIONS, VOLUME_KINDS, ReaderProcess, make_case, one_line_naming, write_seeds
from translate.cli import app

runner = CliRunner()
#: bounded so the file runs in seconds; derandomized so a run is repeatable
FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, tiny_phantom):
    tree = copy.deepcopy(TINY_RECIPE)
    tree["trainer"].update({"val_every": 0, "steps": 1})
    return write_seeds(tmp_path_factory.mktemp("fuzz_seeds"), tree, tiny_phantom)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    process = ReaderProcess(log=tmp_path_factory.mktemp("fuzz_log") / "reader.log")
    yield process
    process.close()


def _cli_ends_cleanly(result, given_path: Path) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert errors and errors[-1].startswith("error: ") and sum(l.startswith("error: ") for l in errors) == 1, errors
        assert one_line_naming(errors[-1], given_path), errors[-1]


@pytest.mark.parametrize("kind", VOLUME_KINDS)
def test_hostile_volume_files_read_or_fail_in_one_line(kind, seeds, reader, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"fuzz_{kind}")
    outcomes = []

    @FUZZ
    @given(operation=st.sampled_from(OPERATIONS), rng=st.randoms(use_true_random=False))
    def case(operation, rng):
        given_path = make_case(kind, seeds, folder / "case", operation, rng)
        reply = reader.read(kind, given_path, timeout=60)
        assert reply["outcome"] in ("read", "error"), (operation, reply)  # not other / crash / hang
        if reply["outcome"] == "error":
            assert one_line_naming(reply["message"], given_path), reply["message"]
        outcomes.append(reply["outcome"])
        # the file did not crash the reader process: now through the CLI, which must not show a traceback
        result = runner.invoke(app, ["evaluate", str(given_path), str(seeds[kind]), "--out", str(folder / "m.json")])
        _cli_ends_cleanly(result, given_path)
        if reply["outcome"] == "error":
            assert result.exit_code == 2

    case()
    assert "error" in outcomes  # the mutations did reach the readers


@pytest.mark.parametrize("kind", ["split", "recipe"])
def test_hostile_split_and_recipe_files_through_fit(kind, seeds, tmp_path_factory):
    """``split.json`` and the recipe are parsed in Python (no C reader to crash): in-process through
    ``translate fit``; a mutation that still validates trains one step."""
    folder = tmp_path_factory.mktemp(f"fuzz_{kind}")

    @FUZZ
    @given(operation=st.sampled_from(OPERATIONS), rng=st.randoms(use_true_random=False))
    def case(operation, rng):
        given_path = make_case(kind, seeds, folder / "case", operation, rng)
        out = folder / "run"
        shutil.rmtree(out, ignore_errors=True)
        recipe, named = (seeds["recipe"], given_path / "split.json") if kind == "split" else (given_path, given_path)
        extra = [f"data.root={given_path}"] if kind == "split" else []
        result = runner.invoke(app, ["fit", str(recipe), *extra, f"trainer.out_dir={out}", "--stop-after", "1", "--quiet"])
        _cli_ends_cleanly(result, named if kind == "recipe" else given_path)

    case()


def _variant(seeds, kind: str, folder: Path, change) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / seeds[kind].name
    path.write_bytes(change(seeds[kind].read_bytes()))
    return path


def _set_fdict(data: bytes) -> bytes:
    start = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
    cmf, flg = data[start], data[start + 1]
    assert cmf == 0x78 and (cmf * 256 + flg) % 31 == 0  # the seed is zlib-compressed
    flg = (flg | 0x20) & 0xE0
    flg += (31 - (cmf * 256 + flg) % 31) % 31
    return data[:start + 1] + bytes([flg]) + data[start + 2:]


def test_the_files_the_fuzzing_found_are_refused_in_one_line(seeds, reader, tmp_path):
    """Each of these once escaped as a traceback, killed the interpreter in ITK (the lost newline) or
    hung it (the zlib stream that asks for a preset dictionary)."""
    import struct

    lost_newline = _variant(seeds, "mha", tmp_path / "a", lambda b: b.replace(b"ElementDataFile = LOCAL\n",
                                                                             b"ElementDataFile = LOCAL*"))
    bad_datatype = _variant(seeds, "nifti", tmp_path / "b", lambda b: b[:70] + struct.pack("<h", 77) + b[72:])
    short_header = _variant(seeds, "nifti", tmp_path / "c", lambda b: b[:200])
    deflate_damage = _variant(seeds, "nifti_gz", tmp_path / "d",
                              lambda b: b[:30] + bytes([b[30] ^ 0xFF]) + b[31:])
    # the zlib header's FDICT bit set (check bits still valid): ITK 5.4's MetaIO then loops forever
    needs_dictionary = _variant(seeds, "mha", tmp_path / "e", lambda b: _set_fdict(b))
    cut_stream = _variant(seeds, "mha", tmp_path / "f", lambda b: b[:-40])
    expected = {lost_newline: "damaged MetaImage header", bad_datatype: "damaged NIfTI header",
                short_header: "truncated NIfTI header", deflate_damage: "gzip",
                needs_dictionary: "damaged MetaImage compressed data", cut_stream: "damaged MetaImage compressed data"}
    for path, fragment in expected.items():
        reply = reader.read("mha" if path.suffix == ".mha" else "nifti", path)
        assert reply["outcome"] == "error" and fragment in reply["message"], (path, reply)
        assert one_line_naming(reply["message"], path)
    assert reader.read("nifti_gz", seeds["nifti_gz"])["outcome"] == "read"


def test_non_utf8_and_deeply_nested_text_files_are_one_line(seeds, tmp_path):
    from translate.data.subjects import read_split
    from translate.errors import TranslateError
    from translate.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(seeds["recipe"].read_bytes().replace(b"model", b"mod\xe9l", 1))
    with pytest.raises(TranslateError, match="not UTF-8"):
        load_recipe(recipe)
    recipe.write_text("- " * 50000)
    with pytest.raises(TranslateError, match="nested too deeply"):
        load_recipe(recipe)
    (tmp_path / "split.json").write_text("[" * 50000)
    with pytest.raises(TranslateError, match="nested too deeply"):
        read_split(tmp_path)
