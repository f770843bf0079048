"""Why unpaired MR -> CT lags the lookup table on the phantom: diagnostic runs scored on the VAL subjects.

The actions, all on ``data/phantom-unpaired`` (``benchmarks/unpaired.py`` makes it):

``train NAME --recipe R --steps N [--set key=value ...] [--drop TERM ...] [--add JSON]``
    Trains one configuration through the toolkit's own path (recipe -> ``fit_recipe``) into
    ``runs/diag/NAME``, translates every *val* subject with ``translate infer``'s function
    (a2b, ``last.pt``) and writes ``val_summary.json`` there: MAE / bias / per-tissue MAE, the
    hallucination rates, and histograms of real and synthetic HU inside the body; plus ``diag.png``
    (one val slice: MR | real CT | synthetic CT | difference, -500..500 HU). Test subjects are never read.
``probe NAME``
    The CT critic ``d_b`` of ``runs/diag/NAME/checkpoints/last.pt`` on real CT slices whose fat and
    soft tissue (-270..180 HU) are shifted by -300..+150 HU, against its score of the model's own
    translations: a critic that scores a shifted CT as it scores the real one cannot teach the
    generator where soft tissue lies in HU.
``bone CHECKPOINT ...``
    The CT critic ``d_b`` of any checkpoint (2D or 3D) on training CT samples that hold bone, on the same
    samples with their bone (> 300 HU) set to soft tissue, and on the model's own translations; and the MR
    that ``g_ba`` makes of that bone -> ``benchmarks/results/unpaired_bone_probe.json``: whether the critic
    asks the generator for bone at all, and whether the CT -> MR half renders bone dark, as MR shows it.
``texture CHECKPOINT ...``
    How much texture a checkpoint's generator draws, on the val subjects, through ``translate infer``'s
    translator: the high-pass sd (a voxel minus the mean of its 3x3 in-plane neighbourhood) inside eroded soft
    tissue (-150..150 HU in the real CT) of the real CT, of the plain translation and of ``--tta flips`` /
    ``shifts``; and the shift spread, the mean absolute change inside the body (CT > -500 HU) of the
    translation when the MR moves by one voxel along an axis the network strides over (edge-padded, moved
    back) -> ``benchmarks/results/unpaired_texture.json``.
``baseline``
    The lookup-table baseline (fitted on the pairs of all training subjects) on the same val
    subjects, so the runs have the bar they must beat beside them.
``collect``
    Gathers every ``runs/diag/*/val_summary.json`` (with the recipe each run saved) and probe into
    ``benchmarks/results/unpaired_diagnosis.json`` and ``.md``.

Usage::

    python benchmarks/unpaired_diagnosis.py train base600 --recipe recipes/mr2ct-cyclegan.yaml --steps 600 \
        --set "model.networks.g_ab={name: unet, ...}" ... --drop identity
    python benchmarks/unpaired_diagnosis.py probe base600
    python benchmarks/unpaired_diagnosis.py collect --png base600 shape10_1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "phantom-unpaired"
RUNS = REPO / "runs" / "diag"
OUT = REPO / "benchmarks" / "results" / "unpaired_diagnosis.json"
#: HU bin edges of the histograms (inside the body, CT > -500 HU with holes filled)
EDGES = [-1100, -400, -150, -50, 0, 30, 50, 80, 150, 300, 600, 1000, 1500, 3100]
KEYS = ("mae_hu", "bias_hu", "mae_air", "mae_soft", "mae_bone", "bone_lost", "bone_to_soft", "soft_to_bone",
        "air_to_tissue")
#: soft-tissue shifts (HU) the probe applies
SHIFTS = (-300, -150, -75, 0, 75, 150)


def _edit_objective(recipe, drop, add):
    from translate.recipe import load_recipe

    if not drop and not add:
        return recipe
    tree = recipe.model_dump(mode="json")
    tree["objective"]["generator"] = [t for t in tree["objective"]["generator"] if t["name"] not in drop] + add
    return load_recipe(tree=tree)


def _score(subjects, paths) -> dict:
    """Mean metrics (``KEYS``) of synthetic CTs ``paths`` against the subjects' CTs, and HU histograms inside the body."""
    import SimpleITK as sitk

    from translate.data.masks import body_mask_from_ct
    from translate.metrics.paired import evaluate_volumes

    per_subject, real_hist, fake_hist = [], np.zeros(len(EDGES) - 1, int), np.zeros(len(EDGES) - 1, int)
    for subject, path in zip(subjects, paths):
        per_subject.append(evaluate_volumes(path, DATA / subject / "ct.nii.gz"))
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / subject / "ct.nii.gz"))).astype(float)
        fake = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(float)
        body = body_mask_from_ct(ct)
        real_hist += np.histogram(ct[body], EDGES)[0]
        fake_hist += np.histogram(fake[body], EDGES)[0]
    summary = {k: float(np.nanmean([m[k] for m in per_subject])) for k in KEYS}
    summary.update(hist_edges_hu=EDGES, hist_real=real_hist.tolist(), hist_fake=fake_hist.tolist())
    return summary


def train(args) -> None:
    import SimpleITK as sitk
    from PIL import Image

    from translate.engine.inferer import infer_volume
    from translate.engine.run import fit_recipe
    from translate.recipe import load_recipe

    out = RUNS / args.name
    split = json.loads((DATA / "split.json").read_text())
    recipe = load_recipe(REPO / args.recipe, [f"data.root={DATA}", f"trainer.out_dir={out}", f"trainer.steps={args.steps}",
                                              f"trainer.val_every={args.steps}", f"trainer.checkpoint_every={args.steps}",
                                              "trainer.threads=1", "trainer.image_every=100000", *args.set])
    recipe = _edit_objective(recipe, args.drop, json.loads(args.add) if args.add else [])
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    fit_recipe(recipe, show_progress=False)
    train_s = time.perf_counter() - started
    paths = []
    for subject in split["val"]:
        paths.append(out / f"{subject}_sct.nii.gz")
        infer_volume(out / "checkpoints" / "last.pt", DATA / subject / "mr.nii.gz", paths[-1], direction="a2b",
                     progress=False)
    summary = _score(split["val"], paths)
    summary.update(train_s=train_s, steps=args.steps, command=" ".join(["python", *sys.argv]),
                   val_curve=[{k: v for k, v in json.loads(line).items() if k in ("step", "val_mae_hu")}
                              for line in (out / "metrics.jsonl").read_text().splitlines() if "val_mae_hu" in line])
    (out / "val_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(args.name, {k: round(summary[k], 3) for k in KEYS}, flush=True)

    subject = split["val"][0]
    mr = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / subject / "mr.nii.gz")))
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / subject / "ct.nii.gz"))).astype(float)
    fake = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{subject}_sct.nii.gz"))).astype(float)
    z = ct.shape[0] // 2

    def grey(a, lo, hi):
        return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)

    row = np.concatenate([grey(mr[z], 0, np.percentile(mr, 99.5)), grey(ct[z], -400, 1200), grey(fake[z], -400, 1200),
                          grey(fake[z] - ct[z], -500, 500)], 1)
    Image.fromarray(row).resize((row.shape[1] * 2, row.shape[0] * 2), Image.NEAREST).save(out / "diag.png")


def tta(args) -> None:
    """Score ``runs/diag/NAME/checkpoints/last.pt`` on the val subjects through ``translate infer --tta flips``."""
    from translate.engine.inferer import infer_volume

    out = RUNS / args.name
    split = json.loads((DATA / "split.json").read_text())
    paths = []
    for subject in split["val"]:
        paths.append(out / f"{subject}_sct_tta.nii.gz")
        infer_volume(out / "checkpoints" / "last.pt", DATA / subject / "mr.nii.gz", paths[-1], direction="a2b",
                     progress=False, tta="flips")
    summary = _score(split["val"], paths)
    summary.update(command=" ".join(["python", *sys.argv]))
    (out / "tta_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(args.name, "flip TTA", {k: round(summary[k], 3) for k in KEYS}, flush=True)


def tissues(args) -> None:
    """Per-tissue mean, spread (sd) and MAE of the synthetic HU on the val subjects, by the phantom's labels, for
    each run's plain (``*_sct``) and flip-TTA (``*_sct_tta``) translations -> ``unpaired_diagnosis_tissues.json``."""
    import SimpleITK as sitk

    split = json.loads((DATA / "split.json").read_text())
    names = json.loads((DATA / "labels.json").read_text())
    record = {"what": "per-tissue HU of synthetic CTs on the VAL subjects (labels of the phantom)",
              "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"), "runs": {}}
    for name in args.names:
        for suffix in ("sct", "sct_tta"):
            paths = [RUNS / name / f"{subject}_{suffix}.nii.gz" for subject in split["val"]]
            if not all(p.is_file() for p in paths):
                continue
            sums: dict = {}
            for subject, path in zip(split["val"], paths):
                ct = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / subject / "ct.nii.gz"))).astype(float)
                labels = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / subject / "labels.nii.gz")))
                fake = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(float)
                for label in np.unique(labels[labels > 0]):
                    inside = labels == label
                    n, real, pred, sq, err = sums.get(int(label), (0, 0.0, 0.0, 0.0, 0.0))
                    sums[int(label)] = (n + int(inside.sum()), real + ct[inside].sum(), pred + fake[inside].sum(),
                                        sq + (fake[inside] ** 2).sum(), err + np.abs(fake[inside] - ct[inside]).sum())
            table = {}
            for label, (n, real, pred, sq, err) in sorted(sums.items()):
                mean = pred / n
                table[names[str(label)]] = {"voxels": n, "real_mean_hu": round(real / n, 1), "mean_hu": round(mean, 1),
                                            "sd_hu": round(float(np.sqrt(max(sq / n - mean ** 2, 0.0))), 1),
                                            "mae_hu": round(err / n, 1)}
            record["runs"][f"{name} ({'flip TTA' if suffix.endswith('tta') else 'plain'})"] = table
    out = OUT.with_name("unpaired_diagnosis_tissues.json")
    out.write_text(json.dumps(record, indent=1) + "\n")
    for run, table in record["runs"].items():
        print(run, {k: (v["mean_hu"], v["sd_hu"], v["mae_hu"]) for k, v in table.items()})


def _trained(checkpoint: Path):
    """(recipe, domains, model in eval mode with the trained, not averaged, weights, its training dataset, step)."""
    from translate.data.domains import domains_from_dict
    from translate.engine.build import build_model, build_train_dataset
    from translate.engine.checkpoint import load_checkpoint, load_network_state
    from translate.recipe import Recipe

    state = load_checkpoint(checkpoint)
    recipe, domains = Recipe.model_validate(state["recipe"]), domains_from_dict(state["domains"])
    model = build_model(recipe, domains, initialise=False)
    load_network_state(model, state["networks"]["model"], recipe.model.name, checkpoint)
    model.eval()
    return recipe, domains, model, build_train_dataset(recipe, model, domains), int(state.get("step", 0))


def _critic_mean(critic, x: torch.Tensor) -> torch.Tensor:
    """Mean score per sample ``(B,)`` of a PatchGAN or of a multi-scale critic (mean over its scales)."""
    from translate.losses.adversarial import _scales  # a tensor of logits, or one per scale

    return torch.stack([o.flatten(1).mean(1) for o in _scales(critic(x), "d_b")]).mean(0)


@torch.no_grad()
def probe(args) -> None:
    out = RUNS / args.name
    recipe, domains, model, dataset, _ = _trained(out / "checkpoints" / "last.pt")
    items = [dataset[i] for i in range(0, len(dataset), max(len(dataset) // 24, 1))]
    real_b = torch.stack([it["real_b"] for it in items])
    body = torch.stack([it["body_mask_b"] for it in items]) > 0
    window = domains["b"].intensity.window
    scale = 2.0 / (window.upper - window.lower)  # HU -> network units
    soft = body & (real_b > (-270 - window.lower) * scale - 1) & (real_b < (180 - window.lower) * scale - 1)
    scores = {}
    for shift in SHIFTS:
        shifted = real_b.clone()
        shifted[soft] += shift * scale
        scores[f"{shift:+d}"] = float(model.d_b(shifted).mean())
    fakes = float(model.d_b(model.g_ab(torch.stack([it["real_a"] for it in items]))).mean())
    result = {"d_b_mean_logit_soft_tissue_shift_hu": scores, "d_b_mean_logit_own_translations": fakes,
              "d_b_norm": recipe.model.networks["d_b"].model_dump().get("norm"), "slices": len(items),
              "command": " ".join(["python", *sys.argv])}
    (out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    print(args.name, result)


@torch.no_grad()
def _samples_above(dataset, level: float, min_voxels: int, samples: int, stride: int = 1):
    """``(real_b, real_a)``: the first ``samples`` training items (every ``stride``-th) whose CT sample has at least
    ``min_voxels`` voxels above ``level`` (network units), each stacked with the MR sample of the same item."""
    real_b, real_a = [], []
    for i in range(0, len(dataset), stride):
        item = dataset[i]
        if int((item["real_b"] > level).sum()) >= min_voxels:
            real_b.append(item["real_b"])
            real_a.append(item["real_a"])
        if len(real_b) == samples:
            break
    return torch.stack(real_b), torch.stack(real_a)


def _checkpoint_record(name: str, what: str) -> tuple[Path, dict]:
    """``benchmarks/results/<name>`` and its record of per-checkpoint entries (empty if new), with ``what`` set."""
    out = OUT.with_name(name)
    record = json.loads(out.read_text()) if out.is_file() else {"checkpoints": {}}
    record["what"] = what
    return out, record


def bone(args) -> None:
    """Does the CT critic ``d_b`` of each checkpoint care about bone? Its mean score on training CT samples that
    hold bone (> 300 HU), on the same samples with that bone set to soft tissue (40 HU), and on the generator's
    own translations of training MR samples; and the mean MR that ``g_ba`` makes of those CT samples' cortical bone
    (> 600 HU) and soft tissue (0..100 HU) -> ``unpaired_bone_probe.json`` (each checkpoint's entry, with the
    command that made it, replaced)."""
    out, record = _checkpoint_record(
        "unpaired_bone_probe.json",
        "mean score of the CT critic d_b (LSGAN: 1 real, 0 fake) on training CT samples holding bone, "
        "the same with bone (> 300 HU) set to 40 HU, and the model's own translations of training MR; "
        "mean g_ba output (MR network units: air -1, fat about 1) on those CT samples' cortical bone "
        "(> 600 HU) and soft tissue (0..100 HU)")
    from translate.data.intensity import HUWindow

    torch.manual_seed(0)
    for checkpoint in args.checkpoints:
        recipe, domains, model, dataset, step = _trained(Path(checkpoint))
        window = domains["b"].intensity.window
        # HU levels in the CT's network units: bone, cortical bone, the soft tissue bone is set to, soft tissue's range
        bone_at, cortex_at, soft, soft_lo, soft_hi = (
            float(v) for v in HUWindow(window.lower, window.upper).forward(torch.tensor([300.0, 600.0, 40.0, 0.0, 100.0])))
        real_b, real_a = _samples_above(dataset, bone_at, args.min_voxels, args.samples)
        nobone = torch.where(real_b > bone_at, torch.full_like(real_b, soft), real_b)
        scores = {"real": _critic_mean(model.d_b, real_b), "real_bone_to_soft": _critic_mean(model.d_b, nobone),
                  "own_translations": _critic_mean(model.d_b, model.g_ab(real_a))}
        entry = {k: round(float(v.mean()), 4) for k, v in scores.items()}
        # the other half: what the CT -> MR generator makes of that bone (MR network units; air -1, fat about 1)
        fake_a = model.g_ba(real_b)
        for name, inside in (("fake_mr_at_cortical_bone", real_b > cortex_at),
                             ("fake_mr_at_soft_tissue", (real_b > soft_lo) & (real_b < soft_hi))):
            entry[name] = round(float(fake_a[inside].mean()), 4)
        entry.update(real_above_bone_to_soft=round(float((scores["real"] > scores["real_bone_to_soft"]).float().mean()), 3),
                     samples=len(real_b), sample_shape=list(real_b.shape[1:]), step=step,
                     d_b=recipe.model.networks["d_b"].model_dump(exclude_none=True),
                     discriminator_lr=recipe.optim.discriminator.lr, command=" ".join(["python", *sys.argv]),
                     date=time.strftime("%Y-%m-%d %H:%M"))
        record["checkpoints"][str(checkpoint)] = entry
        print(checkpoint, entry, flush=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


@torch.no_grad()
def cycle(args) -> None:
    """Does the CT cycle hide bone in a faint signal of the fake MR (steganography)? For each checkpoint, on training
    CT samples holding cortical bone (> 600 HU): the median HU that ``g_ab(g_ba(b))`` gives the bone, the same with
    Gaussian noise added to the fake MR, and with the fake MR at the bone set to a flat -0.95 (the real MR's voids);
    and the median HU ``g_ab`` gives the signal voids of training MR samples (``signal_voids``) ->
    ``unpaired_cycle_probe.json`` (each checkpoint's entry, with the command that made it, replaced)."""
    from translate.data.intensity import HUWindow
    from translate.losses.silhouette import signal_voids

    out, record = _checkpoint_record(
        "unpaired_cycle_probe.json",
        "median HU of the CT cycle g_ab(g_ba(b)) at cortical bone (> 600 HU) of training CT samples: as is, "
        "with Gaussian noise of sd sigma (MR network units) on the fake MR, with the fake MR at the bone set "
        "to -0.95; median HU of g_ab on the signal voids of training MR samples")
    for checkpoint in args.checkpoints:
        torch.manual_seed(0)
        recipe, domains, model, dataset, step = _trained(Path(checkpoint))
        window = domains["b"].intensity.window
        hu = HUWindow(window.lower, window.upper)
        cortex_at = float(hu.forward(torch.tensor(600.0)))
        real_b, real_a = _samples_above(dataset, cortex_at, args.min_voxels, args.samples, args.stride)
        bone = real_b > cortex_at
        fake_a = model.g_ba(real_b)

        def median_hu(ct, where):
            return round(float(hu.inverse(ct)[where].median()), 1)

        entry = {"real_ct_at_bone": median_hu(real_b, bone), "fake_mr_at_bone": round(float(fake_a[bone].mean()), 4),
                 "cycle_at_bone": median_hu(model.g_ab(fake_a), bone)}
        for sigma in (0.02, 0.05, 0.1):
            entry[f"cycle_at_bone_noise_{sigma}"] = median_hu(model.g_ab(fake_a + sigma * torch.randn_like(fake_a)), bone)
        entry["cycle_at_bone_flat_mr"] = median_hu(model.g_ab(torch.where(bone, torch.full_like(fake_a, -0.95), fake_a)),
                                                   bone)
        voids = signal_voids(real_a) > 0
        entry["g_ab_at_mr_voids"] = median_hu(model.g_ab(real_a), voids)
        entry.update(samples=len(real_b), sample_shape=list(real_b.shape[1:]), step=step,
                     command=" ".join(["python", *sys.argv]), date=time.strftime("%Y-%m-%d %H:%M"))
        record["checkpoints"][str(checkpoint)] = entry
        print(checkpoint, entry, flush=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


def texture(args) -> None:
    """High-pass sd and shift spread of each checkpoint's a2b translations of the val subjects (module docstring)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from translate.engine.inferer import load_translator

    out, record = _checkpoint_record(
        "unpaired_texture.json",
        "texture of the a2b translation on the phantom's val subjects: high-pass sd (voxel minus the mean of "
        "its 3x3 in-plane neighbourhood, HU) inside soft tissue (-150..150 HU in the real CT, eroded twice) "
        "of the real CT, the plain translation and the --tta flips / shifts translations; shift spread: the "
        "mean |change| (HU) inside the body (CT > -500) when the MR moves by one voxel along an axis")
    split = json.loads((args.data / "split.json").read_text())

    def high_pass(x):
        return x - ndimage.uniform_filter(x, size=(1, 3, 3))

    for checkpoint in args.checkpoints:
        translator = load_translator(checkpoint)  # one load; set_tta switches the mode
        axes = [a for a, moved in enumerate(translator.set_tta("shifts").shift_sets()[-1]) if moved]
        sums: dict = {}
        for subject in split["val"]:
            mr = sitk.GetArrayFromImage(sitk.ReadImage(str(args.data / subject / "mr.nii.gz"))).astype(np.float32)
            ct = sitk.GetArrayFromImage(sitk.ReadImage(str(args.data / subject / "ct.nii.gz"))).astype(np.float32)
            soft = ndimage.binary_erosion((ct > -150) & (ct < 150), iterations=2)
            body = ct > -500
            values = {"real_ct": high_pass(ct)[soft].std()}
            for mode in ("flips", "shifts", "none"):  # "none" last: the moves below are plain passes
                fake = translator.set_tta(mode).translate_array(mr)
                values[f"{mode}_translation"] = high_pass(fake)[soft].std()
            for axis in axes:
                pad = [(1 if a == axis else 0, 0) for a in range(3)]
                moved = translator.translate_array(np.pad(mr, pad, mode="edge"))[tuple(slice(p[0], None) for p in pad)]
                values[f"shift_spread_axis{axis}"] = np.abs(moved - fake)[body].mean()
            for key, value in values.items():
                sums.setdefault(key, []).append(float(value))
        entry = {k if k.startswith("shift_spread") else f"high_pass_sd_{k}": round(float(np.mean(v)), 1)
                 for k, v in sums.items()}
        entry["shift_spread"] = round(float(np.mean([v for k, v in entry.items() if k.startswith("shift_spread_axis")])), 1)
        entry.update(subjects=split["val"], step=translator.step, command=" ".join(["python", *sys.argv]),
                     date=time.strftime("%Y-%m-%d %H:%M"))
        record["checkpoints"][str(checkpoint)] = entry
        print(checkpoint, entry, flush=True)
    out.write_text(json.dumps(record, indent=1) + "\n")


def voids(args) -> None:
    """What the MR's signal voids (``signal_voids``: at or below -0.8 inside the closed body, the silhouette's level
    and closing) are in the registered real CT, on the val and test subjects of the phantom (3D, as the 3D recipe
    closes, and slice by slice, as the 2D recipes do) and of the real limbs (slice by slice, inside the MR's valid
    mask) -> ``unpaired_voids.json``: the share of air (< -400 HU), soft tissue or fat and bone (> 300 HU)."""
    import nibabel as nib

    from translate.data.domains import build_intensity
    from translate.losses.silhouette import signal_voids

    def share(root: Path, spec: dict, dims: int, valid: bool) -> dict:
        intensity, split = build_intensity(spec), json.loads((root / "split.json").read_text())
        counts = {"air": 0, "soft_or_fat": 0, "bone": 0}
        for subject in split["val"] + split["test"]:
            mr = nib.load(str(root / subject / "mr.nii.gz")).get_fdata().astype(np.float32)
            ct = nib.load(str(root / subject / "ct.nii.gz")).get_fdata().astype(np.float32)
            inside = nib.load(str(root / subject / "valid.nii.gz")).get_fdata() > 0 if valid else None
            x = torch.as_tensor(intensity.forward(mr, intensity.fit(mr, inside))[0])
            if dims == 3:
                mask = signal_voids(x[None, None])[0, 0].numpy() > 0
            else:  # axial slices: the last axis of the nibabel array
                mask = np.stack([signal_voids(x[..., k][None, None])[0, 0].numpy() > 0 for k in range(x.shape[-1])], -1)
            if inside is not None:
                mask &= inside
            hu = ct[mask]
            counts["air"] += int((hu < -400).sum())
            counts["bone"] += int((hu > 300).sum())
            counts["soft_or_fat"] += int(((hu >= -400) & (hu <= 300)).sum())
        total = sum(counts.values())
        return {"voxels": total, **{k: round(100.0 * v / max(total, 1), 1) for k, v in counts.items()}}

    record = {"what": "share (%) of the MR's signal voids inside the body that the registered CT shows as air "
                      "(< -400 HU), soft tissue or fat, and bone (> 300 HU); val + test subjects",
              "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "phantom, 3D": share(args.phantom, {"name": "mr_percentile", "lower": 0.5, "upper": 99.5}, 3, False),
              "phantom, slices": share(args.phantom, {"name": "mr_percentile", "lower": 0.5, "upper": 99.5}, 2, False),
              "real limbs (ibsi_sts), slices": share(args.real, {"name": "mr_robust", "upper": 99.0}, 2, True)}
    OUT.with_name("unpaired_voids.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


def baseline(args) -> None:
    """The lookup-table baseline of the unpaired table (``mr2ct_ablation.lut_baseline``: mean training CT
    per bin of normalised MR, fitted on the pairs of all training subjects), scored on the val subjects."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mr2ct_ablation import lut_baseline

    out = RUNS / "lut_val"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    split = json.loads((DATA / "split.json").read_text())
    fit = {"train": split["train_a"] + split["train_b"], "test": split["val"]}
    summary = _score(split["val"], lut_baseline(DATA, fit, out))
    summary.update(steps=0, command=" ".join(["python", *sys.argv]), fitted_on="pairs of train_a + train_b")
    (out / "val_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("lut_val", {k: round(summary[k], 3) for k in KEYS}, flush=True)


def _windows(network: dict) -> str:
    return ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in network.get("input_windows") or []) or "-"


def collect(args) -> None:
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mr2ct_ablation import cpu_name

    # runs of earlier sessions whose folders are gone stay in the record as they were measured
    runs = json.loads(OUT.read_text())["runs"] if OUT.is_file() else {}
    for summary in sorted(RUNS.glob("*/val_summary.json")):
        run = summary.parent
        entry = json.loads(summary.read_text())
        if (run / "recipe.yaml").is_file():
            recipe = yaml.safe_load((run / "recipe.yaml").read_text())
            nets = recipe["model"]["networks"]
            entry["recipe"] = {"critic_norm": nets["d_b"].get("norm"), "generator": nets.get("g_ab", nets.get("dec_b")),
                               "generator_ba": nets.get("g_ba", nets.get("e_b")), "critic_b": nets["d_b"],  # UNIT: e_b reads CT
                               "objective": recipe["objective"]["generator"], "optim": recipe["optim"],
                               "batch_size": recipe["data"]["batch_size"], "ema": recipe["trainer"].get("ema"),
                               "model_options": recipe["model"].get("options")}
        if (run / "probe.json").is_file():
            entry["probe"] = json.loads((run / "probe.json").read_text())
        if (run / "tta_summary.json").is_file():
            entry["tta"] = json.loads((run / "tta_summary.json").read_text())
        runs[run.name] = entry
    record = {"what": "diagnostic unpaired MR -> CT runs, scored on the 6 VAL subjects (never test)",
              "command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"description": "2-core Intel Xeon CPU, no GPU (shared with other jobs)",
                          "processor": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__},
              "runs": runs}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    lines = ["Diagnostic unpaired MR -> CT runs on the phantom's 6 val subjects; 2-core Intel Xeon CPU, no GPU.", "",
             "| run | steps | generator | lr | generator terms (weight) | critic norm | windows d_b / g_ba or e_b (HU) | EMA | MAE (HU) | MAE, flip TTA (HU) | bias (HU) | soft MAE | bone→soft % | air→tissue % | d_b(real) | d_b(real, soft −150 HU) | d_b(own fakes) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(runs.items(), key=lambda item: "recipe" in item[1]):
        if "recipe" not in r:  # a baseline fitted on pairs
            lines.append(f"| {name} | fitted on pairs | - | - | - | - | - | - | {r['mae_hu']:.1f} | - | {r['bias_hu']:.1f} | "
                         f"{r['mae_soft']:.1f} | {100 * r['bone_to_soft']:.1f} | {100 * r['air_to_tissue']:.1f} | | | |")
            continue
        p = r.get("probe", {})
        s = p.get("d_b_mean_logit_soft_tissue_shift_hu", {})
        cells = [f"{s[k]:.3f}" if k in s else "" for k in ("+0", "-150")]
        fake = f"{p['d_b_mean_logit_own_translations']:.3f}" if p else ""
        terms = ", ".join(f"{t['name']}{'_' + t['domain'] if t.get('domain') not in (None, 'both') else ''} "
                          f"{t.get('weight', 1.0):g}" for t in r["recipe"]["objective"] if t["name"] != "adversarial")
        rec = r["recipe"]
        windows = f"{_windows(rec.get('critic_b', {}))} / {_windows(rec.get('generator_ba', {}))}"
        tta_mae = f"{r['tta']['mae_hu']:.1f}" if "tta" in r else ""
        lines.append(f"| {name} | {r['steps']} | {rec['generator']['name']} | {rec['optim']['generator']['lr']:g} | {terms} | "
                     f"{rec['critic_norm']} | {windows} | {rec.get('ema') or '-'} | {r['mae_hu']:.1f} | {tta_mae} | "
                     f"{r['bias_hu']:.1f} | {r['mae_soft']:.1f} | {100 * r['bone_to_soft']:.1f} | "
                     f"{100 * r['air_to_tissue']:.1f} | {' | '.join(cells)} | {fake} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    from PIL import Image, ImageDraw

    shown = [name for name in args.png if (RUNS / name / "diag.png").is_file()]
    if shown:  # one val slice per run: MR | real CT | synthetic CT | difference (-500..500 HU)
        rows = [Image.open(RUNS / name / "diag.png").convert("L") for name in shown]
        sheet = Image.new("L", (max(r.width for r in rows), sum(r.height + 14 for r in rows)), 255)
        y = 0
        for name, row in zip(shown, rows):
            ImageDraw.Draw(sheet).text((4, y + 1), f"{name}: MR | real CT | synthetic CT | synthetic - real", fill=0)
            sheet.paste(row, (0, y + 14))
            y += row.height + 14
        sheet.save(OUT.with_suffix(".png"), optimize=True)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train")
    t.add_argument("name")
    t.add_argument("--recipe", required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    t.add_argument("--drop", nargs="*", default=[], help="generator terms to remove, by name")
    t.add_argument("--add", default="", help="JSON list of generator terms to add")
    p = sub.add_parser("probe")
    p.add_argument("name")
    sub.add_parser("tta", help="score a run's last.pt on val through translate infer --tta flips").add_argument("name")
    sub.add_parser("tissues", help="per-tissue HU mean / sd / MAE of runs' val translations").add_argument("names", nargs="+")
    b = sub.add_parser("bone", help="the CT critic's score on real CT with and without its bone, per checkpoint")
    b.add_argument("checkpoints", nargs="+")
    b.add_argument("--samples", type=int, default=48, help="training CT samples holding bone to score")
    b.add_argument("--min-voxels", type=int, default=100, help="bone voxels a sample needs")
    y = sub.add_parser("cycle", help="does the CT cycle hide bone in the fake MR? per checkpoint")
    y.add_argument("checkpoints", nargs="+")
    y.add_argument("--samples", type=int, default=24, help="training CT samples holding cortical bone")
    y.add_argument("--min-voxels", type=int, default=50, help="cortical bone voxels a sample needs")
    y.add_argument("--stride", type=int, default=7, help="every stride-th training sample is looked at")
    v = sub.add_parser("voids", help="what the MR's signal voids are in the real CT (phantom and real limbs)")
    v.add_argument("--phantom", type=Path, default=DATA)
    v.add_argument("--real", type=Path, default=REPO / "data" / "ibsi_paired")
    x = sub.add_parser("texture", help="high-pass sd and shift spread of checkpoints' val translations")
    x.add_argument("checkpoints", nargs="+")
    x.add_argument("--data", type=Path, default=DATA)
    sub.add_parser("baseline", help="the lookup-table baseline on the val subjects")
    c = sub.add_parser("collect")
    c.add_argument("--png", nargs="*", default=[], help="runs whose val slice goes into unpaired_diagnosis.png")
    args = parser.parse_args()
    {"train": train, "probe": probe, "collect": collect, "baseline": baseline, "tta": tta,
     "tissues": tissues, "bone": bone, "cycle": cycle, "voids": voids, "texture": texture}[args.action](args)


if __name__ == "__main__":
    main()
