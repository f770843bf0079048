"""Every trained row of ``benchmarks/unpaired.py`` is a valid recipe, with the extra terms and weights asked for."""

import sys
from pathlib import Path

import pytest

from translate.engine.build import build_domains, build_model
from translate.engine.checks import check_recipe
from translate.losses.base import build_weight

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
        default = want["weight"]["value"] if isinstance(want["weight"], dict) else want["weight"]
        assert weight == {"mind": 7.0, "geometry": 2.0}.get(want["name"], default)
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


def test_3d_rows(tmp_path):
    def row(name, weights=None):
        return unpaired.row_recipe(name, tmp_path / "data", tmp_path / name, 8, weights=weights, check_paths=False)

    def terms(recipe):
        return [t["name"] for t in recipe.objective.generator]

    now, resnet = row("cyclegan-3d"), row("cyclegan-3d-resnet")
    assert now.model.spatial_dims == 3 and terms(now)[-2:] == ["silhouette", "bone_void"]
    # the recipe's 16-channel U-Nets: "unet16" names the records made before it took them, "unet8" the ones before
    wide_unet, shipped = row("cyclegan-3d-unet16"), row("cyclegan-3d-unet8")
    assert (wide_unet.model, wide_unet.data, wide_unet.objective) == (now.model, now.data, now.objective)
    assert (shipped.data, shipped.objective) == (now.data, now.objective)
    for role in ("g_ab", "g_ba"):
        assert now.model.networks[role].name == "unet"
        assert (now.model.networks[role].channels, shipped.model.networks[role].channels) == \
            ([16, 32, 64, 128], [8, 16, 32, 64])
        assert shipped.model.networks[role].model_copy(update={"channels": [16, 32, 64, 128]}) == \
            now.model.networks[role]
    assert [row(f"cyclegan-3d-unet{c}").model.networks["g_ba"].channels[0] for c in (8, 16, 32)] == [8, 16, 32]
    wide_critics = row("cyclegan-3d-unet16-d16")
    for role in ("d_a", "d_b"):
        assert wide_critics.model.networks[role] == now.model.networks[role].model_copy(update={"channels": 16})
    assert wide_critics.model.networks["g_ab"] == now.model.networks["g_ab"]
    deep = row("cyclegan-3d-deep")  # whole-depth patches, one a step (the same voxels), three-layer critics
    assert (deep.data.dataset.patch_size, deep.data.batch_size) == ([32, 48, 48], 1) and deep.objective == now.objective
    for role in ("d_a", "d_b"):
        assert deep.model.networks[role] == now.model.networks[role].model_copy(update={"n_layers": 3})
    for mode in ("blur", "nearest", "linear"):  # the recipe with another way up in the generators' decoders
        other = row(f"cyclegan-3d-{mode}")
        assert (other.data, other.objective) == (now.data, now.objective)
        for role in ("g_ab", "g_ba"):
            assert other.model.networks[role] == now.model.networks[role].model_copy(update={"upsample": mode})
            assert getattr(now.model.networks[role], "upsample", "transposed") == "transposed"
        assert build_model(other, build_domains(other)).networks()["g_ab"].upsample == mode
    for k in (1, 2, 3):  # the recipe's U-Nets without the outermost k skips
        noskip = row(f"cyclegan-3d-noskip{k}")
        assert (noskip.data, noskip.objective) == (now.data, now.objective)
        for role in ("g_ab", "g_ba"):
            assert noskip.model.networks[role] == now.model.networks[role].model_copy(update={"outer_skips_dropped": k})
    sliced = row("cyclegan-3d-slicecritic")  # the 2D recipe's critics, slice by slice
    assert (sliced.data, sliced.objective) == (now.data, now.objective)
    assert all(sliced.model.networks[g] == now.model.networks[g] for g in ("g_ab", "g_ba"))
    critics = build_model(sliced, build_domains(sliced)).networks()
    assert critics["d_a"].critic.spatial_dims == 2 and critics["d_a"].receptive_field == 70
    assert critics["d_b"].net.critic.blocks[0][0].in_channels == 2  # the image and its abdomen window
    # the rows below were recorded with the 8-channel U-Nets: "shipped" is the recipe as they knew it
    late = build_weight(shipped.objective.generator[-1]["weight"])  # off until step 3000, 10 from step 4000
    assert (late(2999), late(3500), late(4000)) == (0.0, 5.0, 10.0)
    before = row("cyclegan-3d-nobonevoid")  # the recipe until it took bone_void: everything else as shipped
    assert (before.model, before.data) == (shipped.model, shipped.data)
    assert before.objective.generator == shipped.objective.generator[:-1]
    # the 3D recipe until 2026-12-06: 8-channel ResNets, no silhouette term, everything else as shipped
    for role in ("g_ab", "g_ba"):
        spec = resnet.model.networks[role].model_dump()
        assert (spec["name"], spec["channels"], spec["n_blocks"]) == ("resnet", 8, 6)
    assert terms(resnet) == terms(shipped)[:-2] and resnet.data == shipped.data
    assert resnet.model.networks["d_b"] == shipped.model.networks["d_b"]
    same = row("cyclegan-3d-unet+silhouette")
    assert (same.model, same.data, same.objective) == (before.model, before.data, before.objective)
    assert row("cyclegan-3d-unet").model == shipped.model and terms(row("cyclegan-3d-unet")) == terms(resnet)
    assert terms(row("cyclegan-3d+silhouette")) == terms(before)
    assert row("cyclegan-3d+silhouette").model == resnet.model
    # the 2D recipe's generators on the ResNet recipe
    wide = row("cyclegan-3d-wide")
    for role in ("g_ab", "g_ba"):
        spec = wide.model.networks[role].model_dump()
        assert (spec["channels"], spec["n_downsampling"]) == (16, 1)
    assert wide.objective == resnet.objective
    # the 2D rows' structure terms on the ResNet recipe
    for name, term in (("cyclegan-3d+ngf", "ngf"), ("cyclegan-3d+mind", "mind")):
        recipe = row(name, {term: 3.0})
        assert recipe.model == resnet.model and recipe.data == resnet.data
        added = recipe.objective.generator[len(resnet.objective.generator):]
        assert [(t["name"], t["weight"]) for t in added] == [(term, 3.0), (term, 3.0)]
    shape = row("cyclegan-3d-unet+shape")
    assert terms(shape) == [*terms(resnet), "shape"] and shape.data.dataset.labels_key == "labels"
    assert shape.objective.generator[-1]["spatial_dims"] == 3
    # the papers' 2D network sizes are never grafted onto a 3D row
    assert not [name for name in unpaired.ROWS if "-3d" in name and name.endswith("-paper")]
    # bone_void on the shipped recipes (3D and 2D): the fake MR read against the real CT, nothing else changed
    for name, base in (("cyclegan-3d+bonevoid", before), ("cyclegan+bonevoid", row("cyclegan"))):
        recipe = row(name)
        assert recipe.model == base.model and recipe.data == base.data
        assert recipe.objective.generator[:-1] == base.objective.generator
        assert {k: recipe.objective.generator[-1][k] for k in ("name", "pred", "source")} == \
            {"name": "bone_void", "pred": "fake_a", "source": "real_b"}
    assert row("cyclegan-3d+bonevoid").objective.generator[-1]["weight"] == 1.0  # from step 0, not the recipe's
    # the late row at weight 10 is the recipe (the records made before the recipe took the term); at 3, only the weight
    as_shipped = row("cyclegan-3d+bonevoid-late", {"bone_void": 10.0})
    assert (as_shipped.model, as_shipped.data, as_shipped.objective) == (shipped.model, shipped.data, shipped.objective)
    lighter = row("cyclegan-3d+bonevoid-late", {"bone_void": 3.0}).objective.generator
    assert lighter[:-1] == shipped.objective.generator[:-1]
    assert lighter[-1]["weight"] == {**shipped.objective.generator[-1]["weight"], "value": 3.0}
    # signal_void on the shipped recipes: the fake CT read against the real MR, appended, nothing else changed
    for name, base in (("cyclegan-3d+signalvoid", shipped), ("cyclegan+signalvoid", row("cyclegan"))):
        recipe = row(name, {"signal_void": 4.0})
        assert recipe.model == base.model and recipe.data == base.data
        assert recipe.objective.generator[:-1] == base.objective.generator
        assert recipe.objective.generator[-1] == {"name": "signal_void", "pred": "fake_b", "source": "real_a",
                                                  "weight": 4.0}
        assert row(name).objective.generator[-1]["weight"] == 10.0
    # the 3D recipe without the generators' dropout: nothing else changed
    nodrop = row("cyclegan-3d-nodropout")
    assert (nodrop.data, nodrop.objective) == (shipped.data, shipped.objective)
    for role in ("g_ab", "g_ba"):
        assert shipped.model.networks[role].dropout == 0.5 and nodrop.model.networks[role].dropout == 0.0
        assert nodrop.model.networks[role].model_copy(update={"dropout": 0.5}) == shipped.model.networks[role]
    assert nodrop.model.networks["d_b"] == shipped.model.networks["d_b"]


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


def test_markdown_puts_each_tta_row_under_its_row():
    record = _record({"steps": 10, "batch_size": 1})
    scores = record["results"]["r"]
    for label in ("flip and shift TTA", "shift TTA", "flip TTA"):  # stored in another order
        record["results"][f"r + {label}"], record["seconds"][f"r + {label}"] = scores, 1.0
        record["steps"][f"r + {label}"] = record["steps"]["r"]
    record["results"]["q"], record["seconds"]["q"], record["steps"]["q"] = scores, 1.0, record["steps"]["r"]
    rows = [line.split(" | ")[0].lstrip("| ") for line in unpaired.markdown(record).splitlines() if line.startswith("| ")]
    assert rows[1:] == ["r", "r + flip TTA", "r + shift TTA", "r + flip and shift TTA", "q"]
    assert list(unpaired.TTA_ROWS) == ["flips", "shifts", "flips+shifts"]


def test_2d_unet_rows(tmp_path):
    """The 2D recipe with the 3D recipe's U-Net generators: the same everything else, the same U-Net spec."""
    def row(name):
        return unpaired.row_recipe(name, tmp_path / "data", tmp_path / name, 8, check_paths=False)

    plain, three_d = row("cyclegan"), row("cyclegan-3d")
    for name, dropout, dropped in (("cyclegan-unet", 0.5, 0), ("cyclegan-unet-nodropout", 0.0, 0),
                                   ("cyclegan-unet-noskip1", 0.5, 1), ("cyclegan-unet-noskip3", 0.5, 3)):
        recipe = row(name)
        assert (recipe.data, recipe.objective, recipe.model.spatial_dims) == (plain.data, plain.objective, 2)
        assert recipe.model.networks["d_b"] == plain.model.networks["d_b"]
        for role in ("g_ab", "g_ba"):
            spec = recipe.model.networks[role]
            fields = spec.model_dump()
            assert (fields.pop("dropout"), fields.pop("outer_skips_dropped", 0)) == (dropout, dropped)
            expected = three_d.model.networks[role].model_dump()
            expected.pop("dropout")
            assert fields == expected
