"""Shared fixtures: a tiny phantom, a tiny recipe, and the path of the real shared data."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Two cores: parallel test workers each take one thread so they do not fight.
torch.set_num_threads(1)

TINY_RECIPE = {
    "model": {
        "name": "pix2pix",
        "spatial_dims": 2,
        "networks": {
            "generator": {"name": "unet", "channels": [8, 16, 32], "dropout": 0.5, "norm": "batch"},
            "discriminator": {"name": "patchgan", "channels": 8, "n_layers": 2, "norm": "batch"},
        },
    },
    "data": {
        "root": "WILL_BE_SET",
        "domains": {"a": {"key": "mr", "intensity": "mr_percentile"}, "b": {"key": "ct", "intensity": "ct_hu"}},
        "dataset": {"name": "paired_slices"},
        "batch_size": 2,
    },
    "objective": {
        "generator": [{"name": "adversarial", "mode": "lsgan"}, {"name": "pixel", "kind": "l1", "weight": 100}],
        "discriminator": [{"name": "adversarial", "mode": "lsgan", "side": "discriminator", "weight": 0.5}],
    },
    "trainer": {"steps": 2, "seed": 0, "device": "cpu", "out_dir": "WILL_BE_SET", "checkpoint_every": 1,
                "image_every": 1, "log_every": 1, "val_every": 1},
}


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    from translate.data.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root, subjects=3, seed=0, shape=(6, 32, 32), spacing=(4.0, 6.0, 6.0))
    return root


@pytest.fixture(scope="session")
def tiny_unpaired(tmp_path_factory) -> Path:
    """Four subjects with a T2 image; split.json also has train_a / train_b (one subject each)."""
    from translate.data.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom_unpaired")
    write_phantom(root, subjects=4, seed=0, shape=(8, 32, 32), spacing=(4.0, 9.0, 9.0), unpaired=True)
    return root


@pytest.fixture(scope="session")
def small_unpaired(tmp_path_factory) -> Path:
    """As :func:`tiny_unpaired` with 96 x 96 slices (few of them): the size of the recipes' data for critics
    that also judge the image at 1/4 resolution (``multiscale``, 3 scales of a 70 x 70 PatchGAN need >= 88 pixels)."""
    from translate.data.phantom import write_phantom

    root = tmp_path_factory.mktemp("phantom_unpaired_96")
    write_phantom(root, subjects=4, seed=0, shape=(4, 96, 96), spacing=(8.0, 3.0, 3.0), unpaired=True)
    return root


@pytest.fixture()
def tiny_recipe(tiny_phantom, tmp_path) -> dict:
    tree = copy.deepcopy(TINY_RECIPE)
    tree["data"]["root"] = str(tiny_phantom)
    tree["trainer"]["out_dir"] = str(tmp_path / "run")
    return tree


@pytest.fixture()
def shared_data() -> Path:
    """``../shared/data``; absent on a developer's own checkout (skip), never in CI (fail)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):  # CI clones with shared/ beside it: a skip there would hide untested IO
            pytest.fail(f"real data folder {SHARED_DATA} is absent in CI")
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_real(tmp_path_factory) -> Path:
    """Three real ibsi_sts patients paired by ``translate data pair`` (train / val / test one each)."""
    if not (SHARED_DATA / "ibsi_sts").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data folder {SHARED_DATA / 'ibsi_sts'} is absent in CI")
        pytest.skip(f"real data folder {SHARED_DATA / 'ibsi_sts'} is absent")
    from translate.data.pairing import pair_folder

    root = tmp_path_factory.mktemp("ibsi")
    split = {"train": ["STS_015"], "val": ["STS_008"], "test": ["STS_024"]}
    pair_folder(SHARED_DATA / "ibsi_sts", root, split=split)
    return root


@pytest.fixture(scope="session")
def tiny_real_unpaired(tmp_path_factory) -> Path:
    """Four real ibsi_sts patients paired by ``translate data pair``; split.json's ``train_a`` (MR) and
    ``train_b`` (CT) are the two training patients, one each, as ``benchmarks/real_data/prepare.py`` cuts them."""
    if not (SHARED_DATA / "ibsi_sts").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real data folder {SHARED_DATA / 'ibsi_sts'} is absent in CI")
        pytest.skip(f"real data folder {SHARED_DATA / 'ibsi_sts'} is absent")
    from translate.data.pairing import pair_folder

    root = tmp_path_factory.mktemp("ibsi_unpaired")
    split = {"train": ["STS_001", "STS_015"], "val": ["STS_008"], "test": ["STS_024"]}
    pair_folder(SHARED_DATA / "ibsi_sts", root, split=split)
    (root / "split.json").write_text(json.dumps({**split, "train_a": ["STS_015"], "train_b": ["STS_001"]}))
    return root



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skipped test is a failure (a green run must mean the checks ran), unless it is
    marked ``allowed_skip`` because it cannot run on CI's machine (e.g. it needs CUDA)."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI")
            and item.get_closest_marker("allowed_skip") is None):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"


# ----------------------------------------------------------------------------- what ran: `.ci/run` reads it
_RAN = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "xfailed": 0, "skipped_tests": [], "failed_tests": []}


def pytest_runtest_logreport(report):
    """Count outcomes (on the xdist controller too, which receives every worker's reports)."""
    if report.skipped:
        if hasattr(report, "wasxfail"):
            _RAN["xfailed"] += 1
            return
        _RAN["skipped"] += 1
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _RAN["skipped_tests"].append({"test": report.nodeid, "reason": reason,
                                      "allowed_skip": "allowed_skip" in report.keywords})
    elif report.when == "call":
        _RAN["passed" if report.passed else "failed"] += 1
        if report.failed:
            _RAN["failed_tests"].append(report.nodeid)
    elif report.failed:  # an error in set-up or tear-down
        _RAN["errors"] += 1
        _RAN["failed_tests"].append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """With ``TRANSLATE_TEST_SUMMARY=path`` set, write what ran there as JSON (controller only)."""
    import json

    target = os.environ.get("TRANSLATE_TEST_SUMMARY")
    if not target or hasattr(session.config, "workerinput"):
        return
    Path(target).write_text(json.dumps({**_RAN, "exit_status": int(exitstatus), "ci": bool(os.environ.get("CI"))},
                                       indent=1) + "\n")
