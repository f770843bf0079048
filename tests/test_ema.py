"""trainer.ema: an exponential moving average of the generator's weights, in checkpoints, resumed exactly,
used by validation and inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from translate.engine.inferer import VolumeTranslator
from translate.engine.run import fit_recipe
from translate.errors import TranslateError
from translate.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.networks.g_ab.channels=4", "model.networks.g_ba.channels=4", "model.networks.g_ab.n_blocks=1",
        "model.networks.g_ba.n_blocks=1", "model.networks.d_a.channels=4", "model.networks.d_b.channels=4",
        "model.networks.d_a.n_layers=2", "model.networks.d_b.n_layers=2", "trainer.device=cpu", "trainer.log_every=1"]


def _recipe(root: Path, out: Path, *extra: str):
    return load_recipe(REPO / "recipes" / "mr2ct-cyclegan.yaml",
                       [f"data.root={root}", f"trainer.out_dir={out}", *TINY, *extra])


def _networks(path: Path) -> dict:
    return torch.load(path, weights_only=True)["networks"]


def test_ema_follows_the_recurrence_and_averages_only_the_generators(tiny_unpaired, tmp_path):
    decay = 0.5
    fit_recipe(_recipe(tiny_unpaired, tmp_path / "run", "trainer.steps=3", "trainer.val_every=0",
                       "trainer.checkpoint_every=1", f"trainer.ema={decay}"), show_progress=False, announce=lambda _: None)
    steps = [_networks(tmp_path / f"run/checkpoints/step_{k:07d}.pt") for k in (1, 2, 3)]
    key = "g_ab.model.0.weight" if "g_ab.model.0.weight" in steps[0]["model"] else next(
        k for k in steps[0]["model"] if k.startswith("g_ab.") and k.endswith("weight"))
    for k in (1, 2):  # the (k+1)-th update: d = min(decay, (1 + k) / (10 + k)) with k steps done before it
        d = min(decay, (1.0 + k) / (10.0 + k))
        expected = steps[k - 1]["model_ema"][key] + (1 - d) * (steps[k]["model"][key] - steps[k - 1]["model_ema"][key])
        torch.testing.assert_close(steps[k]["model_ema"][key], expected)
    last = steps[-1]
    assert not torch.equal(last["model_ema"][key], last["model"][key])  # averaged, not a copy
    discriminator = next(k for k in last["model"] if k.startswith("d_b."))
    assert torch.equal(last["model_ema"][discriminator], last["model"][discriminator])  # critics are not averaged
    translator = VolumeTranslator.from_checkpoint(tmp_path / "run/checkpoints/last.pt", device="cpu")
    torch.testing.assert_close(translator.model.state_dict()[key], last["model_ema"][key])  # inference: the average


def test_ema_resumes_exactly_and_validation_sees_the_average(tiny_unpaired, tmp_path):
    common = ["trainer.steps=4", "trainer.val_every=2", "trainer.checkpoint_every=10", "trainer.ema=0.9"]
    fit_recipe(_recipe(tiny_unpaired, tmp_path / "straight", *common), show_progress=False, announce=lambda _: None)
    pieced = _recipe(tiny_unpaired, tmp_path / "pieced", *common)
    fit_recipe(pieced, stop_after=2, show_progress=False, announce=lambda _: None)
    fit_recipe(pieced, resume=True, show_progress=False, announce=lambda _: None)
    a, b = _networks(tmp_path / "straight/checkpoints/last.pt"), _networks(tmp_path / "pieced/checkpoints/last.pt")
    for part in ("model", "model_ema"):
        for key, value in a[part].items():
            if not key.endswith("_extra_state"):
                assert torch.equal(value, b[part][key]), (part, key)
    # the same run without averaging: identical raw weights (averaging never feeds back into training), but
    # validation scored other weights, and resuming it with trainer.ema is refused in one line
    fit_recipe(_recipe(tiny_unpaired, tmp_path / "plain", *common[:-1]), show_progress=False, announce=lambda _: None)
    plain = _networks(tmp_path / "plain/checkpoints/last.pt")
    assert "model_ema" not in plain
    assert all(torch.equal(v, plain["model"][k]) for k, v in a["model"].items() if not k.endswith("_extra_state"))

    def val(run):
        return [line for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines() if "val_mae_hu" in line]

    assert len(val("straight")) == len(val("plain")) == 2 and val("straight") != val("plain")
    with pytest.raises(TranslateError, match="recipe key 'trainer.ema' differs"):
        fit_recipe(_recipe(tiny_unpaired, tmp_path / "plain", *common), resume=True, show_progress=False,
                   announce=lambda _: None)
    with pytest.raises(TranslateError, match="trainer.ema"):
        _recipe(tiny_unpaired, tmp_path / "bad", "trainer.ema=1.5")
