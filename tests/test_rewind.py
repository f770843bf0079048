"""trainer.rewind_factor: a validation far worse than the best sends the run back to best.pt on a fresh random
stream; the rewind is logged, kept in checkpoints and resumed exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from translate.engine import run as run_module
from translate.engine.run import fit_recipe
from translate.engine.trainer import Trainer
from translate.errors import TranslateError
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.networks.g_ab.channels=4", "model.networks.g_ba.channels=4", "model.networks.g_ab.n_blocks=1",
        "model.networks.g_ba.n_blocks=1", "model.networks.d_a.channels=4", "model.networks.d_b.channels=4",
        "model.networks.d_a.n_layers=2", "model.networks.d_b.n_layers=2", "trainer.device=cpu", "trainer.log_every=1",
        "trainer.steps=6", "trainer.val_every=2", "trainer.checkpoint_every=2"]
#: (step, rewinds so far) -> the scripted validation score: a collapse at step 4 of the first pass
SCRIPT = {(2, 0): 10.0, (4, 0): 30.0, (6, 0): 7.0, (4, 1): 9.0, (6, 1): 8.0}


@pytest.fixture
def scripted(monkeypatch):
    """The runs' validator answers from SCRIPT by the trainer's step and rewind count (so a resumed run hears
    the same scores); the real validator is tested elsewhere."""
    holder = {}

    class Recording(Trainer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            holder["trainer"] = self

    def validator(recipe, domains):
        return lambda model, device: {"val_mae_hu": SCRIPT[(holder["trainer"].step, holder["trainer"].rewinds)]}

    monkeypatch.setattr(run_module, "Trainer", Recording)
    monkeypatch.setattr(run_module, "build_validator", validator)
    return holder


def _fit(root: Path, out: Path, *extra: str, **kwargs):
    recipe = load_recipe(REPO / "recipes" / "mr2ct-cyclegan.yaml",
                         [f"data.root={root}", f"trainer.out_dir={out}", *TINY, *extra])
    return fit_recipe(recipe, show_progress=False, announce=lambda _: None, **kwargs)


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same_networks(a: dict, b: dict) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.items() if not k.endswith("_extra_state"))


def test_a_collapse_rewinds_to_best_on_a_fresh_stream(tiny_unpaired, tmp_path, scripted, capsys):
    summary = _fit(tiny_unpaired, tmp_path / "guarded", "trainer.rewind_factor=1.5")
    plain = _fit(tiny_unpaired, tmp_path / "plain")
    assert summary["rewinds"] == 1 and plain["rewinds"] == 0 and summary["step"] == 6
    assert "val_mae_hu 30 at step 4 is worse than 1.5 x the best 10 (step 2): rewound to best.pt" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "guarded/metrics.jsonl").read_text().splitlines()]
    rewind = [r for r in records if "rewound_from" in r]
    assert rewind == [{"step": 2, "rewound_from": 4, "rewound_val_mae_hu": 30.0, "rewinds": 1}]
    # the collapsed pass's records after step 2 are gone; the val curve is the one the run kept
    assert [(r["step"], r["val_mae_hu"]) for r in records if "val_mae_hu" in r] == [(2, 10.0), (4, 9.0), (6, 8.0)]
    steps = [r["step"] for r in records if "g_total" in r]
    assert steps == sorted(steps) and steps.count(3) == 1
    guarded = {k: _state(tmp_path / f"guarded/checkpoints/step_{k:07d}.pt") for k in (2, 4)}
    unguarded = {k: _state(tmp_path / f"plain/checkpoints/step_{k:07d}.pt") for k in (2, 4)}
    # the rewind restarts from the step-2 weights (rewritten with the rewind count) ...
    assert guarded[2]["rewinds"] == 1 and unguarded[2]["rewinds"] == 0
    assert _same_networks(guarded[2]["networks"]["model"], unguarded[2]["networks"]["model"])
    # ... and replays steps 3-4 on other batches and noise: not the collapsed pass again
    assert not _same_networks(guarded[4]["networks"]["model"], unguarded[4]["networks"]["model"])
    assert _state(tmp_path / "guarded/checkpoints/best.pt")["step"] == 6
    assert _state(tmp_path / "plain/checkpoints/best.pt")["step"] == 6  # its 7.0 at step 6 on the first pass


def test_rewinds_are_bounded_and_resume_exactly(tiny_unpaired, tmp_path, scripted):
    assert _fit(tiny_unpaired, tmp_path / "none", "trainer.rewind_factor=1.5", "trainer.max_rewinds=0")["rewinds"] == 0
    assert _fit(tiny_unpaired, tmp_path / "lenient", "trainer.rewind_factor=4")["rewinds"] == 0  # 30 < 4 x 10
    straight = _fit(tiny_unpaired, tmp_path / "straight", "trainer.rewind_factor=1.5")
    _fit(tiny_unpaired, tmp_path / "pieced", "trainer.rewind_factor=1.5", stop_after=5)
    assert _state(tmp_path / "pieced/checkpoints/last.pt")["rewinds"] == 1
    pieced = _fit(tiny_unpaired, tmp_path / "pieced", "trainer.rewind_factor=1.5", resume=True)
    assert straight["rewinds"] == pieced["rewinds"] == 1
    a, b = (_state(tmp_path / f"{run}/checkpoints/last.pt")["networks"]["model"] for run in ("straight", "pieced"))
    assert _same_networks(a, b)


def test_rewind_settings_are_checked(tiny_unpaired, tmp_path):
    with pytest.raises(TranslateError, match="trainer.rewind_factor"):
        load_recipe(REPO / "recipes" / "mr2ct-cyclegan.yaml", ["trainer.rewind_factor=1.0"])
    with pytest.raises(TranslateError, match="trainer.rewind_factor needs validations"):
        _fit(tiny_unpaired, tmp_path / "noval", "trainer.rewind_factor=1.5", "trainer.val_every=0")
