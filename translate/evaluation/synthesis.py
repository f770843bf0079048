"""The FID/Dice pipeline (seed 003): judge synthetic (image, mask) data by what a segmenter learns from it.

1. Real subjects split into train / test (the data root's ``train`` split; ``val`` + ``test`` are the test set).
2. Every generator recipe trained on the train split with the same budget (``fit_recipe``).
3. Synthetic pairs sampled from each (``translate synthesize``): SPADE from the train masks with
   random styles, joint generators from noise, about ``n_samples`` 2D pairs each.
4. One segmenter recipe (``recipes/segmenter-unet.yaml``: a MONAI U-Net), one budget, trained on
   real; real + classic augmentation (flips, rotations, elastic; torchio); synthetic only, per
   generator; real + synthetic, per generator.
5. Dice and HD95 per structure on the real test subjects; Fréchet distance and KID between the
   synthetic and the real training images through each feature extractor (``segmenter``: the
   encoder of the U-Net trained on real data; ``inception``: local ImageNet weights, plus the
   Inception Score).
6. ``results.json``, ``results.md`` (seed 003 Table 2's columns) and ``fid_vs_dice.png``.

Every stage leaves its outputs in ``out_dir``; a rerun reuses finished stages (a checkpoint at the
budget's last step, a synthetic data root with its ``split.json``).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..atomic import write_text_atomic
from ..errors import TranslateError

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"

#: classic augmentation of the "real + augmentation" row (torchio, on 2D slices)
CLASSIC_AUGMENTATION = [
    {"name": "RandomAffine", "scales": 0.0, "degrees": [0, 0, 15], "p": 0.75},
    {"name": "RandomElasticDeformation", "num_control_points": [7, 7, 5], "max_displacement": [4, 4, 0], "p": 0.5},
]
#: how the "real + synthetic" rows mix the two (see :func:`merged_root`)
MIXES = ("concat", "balanced")


def _check_mix(mix: str) -> None:
    if mix not in MIXES:
        raise TranslateError(f"--mix {mix!r}: expected one of {', '.join(MIXES)}")


@dataclass
class Generator:
    """One generator row: a recipe, its overrides and a row label."""

    label: str
    recipe: Path
    overrides: List[str] = field(default_factory=list)


@dataclass
class Budget:
    gan_steps: int = 600
    unet_steps: int = 400
    n_samples: int = 512
    batch_size: int = 8


def parse_generator(text: str) -> Generator:
    """``LABEL=RECIPE[,override,...]`` or ``RECIPE`` -> :class:`Generator`."""
    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    parts = [p for p in rest.split(",") if p]
    if not parts:
        raise TranslateError(f"generator {text!r}: expected RECIPE or LABEL=RECIPE[,key=value,...]")
    recipe = Path(parts[0])
    if not recipe.is_file() and (REPO_RECIPES / recipe.name).is_file() and not recipe.parent.name:
        recipe = REPO_RECIPES / recipe.name
    if not recipe.is_file():
        raise TranslateError(f"generator {text!r}: recipe file not found: {parts[0]}")
    stem = recipe.name.removesuffix(".yaml")
    return Generator(label or stem, recipe, parts[1:])


# ----------------------------------------------------------------------------- data
def real_test_ids(root: Path) -> List[str]:
    from ..data.subjects import read_split

    split = read_split(root)
    ids = list(split.get("val", [])) + list(split.get("test", []))
    if not ids:
        raise TranslateError(f"{root / 'split.json'}: no val or test subjects to score the segmenters on")
    return ids


def slab_root(ct: Path, seg: Path, out: Path, labels: Dict[int, int], slabs: int = 3, test_slabs: Sequence[int] = (1,),
              gap: int = 1, crop: int = 64, image_key: str = "ct", fill: float = -1024) -> Path:
    """A data root from one CT and its label volume: axial slabs as subjects, whole slabs train or test.

    The volume is cut into ``slabs`` contiguous slabs along z; ``gap`` slices each side of every cut
    belong to neither slab, so no test slice has a training neighbour. Labels are mapped by ``labels`` (others ->
    0) and the plane centre-cropped / padded to ``crop`` x ``crop`` (the image padded with ``fill``).
    The image is written as ``<image_key>.nii.gz`` (``ct``; ``mr`` for an MR volume, ``fill=0``).
    """
    import SimpleITK as sitk

    from ..data.io import array_to_image, image_to_array, read_volume, write_volume

    ct_image, seg_image = read_volume(ct, what=image_key), read_volume(seg, what="labels")
    ct_array, seg_array = image_to_array(ct_image), image_to_array(seg_image)
    mapped = np.zeros(seg_array.shape, np.uint8)
    for source, target in labels.items():
        mapped[seg_array == source] = target
    z = ct_array.shape[0]
    edges = np.linspace(0, z, slabs + 1).round().astype(int)
    ids: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
    for k in range(slabs):
        start, stop = edges[k] + (gap if k else 0), edges[k + 1] - (gap if k < slabs - 1 else 0)
        subject = f"slab_{k}"
        arrays = {image_key: ct_array[start:stop], "labels": mapped[start:stop]}
        for key, array in arrays.items():
            array = _crop_plane(array, crop, fill if key == image_key else 0)
            reference = sitk.GetImageFromArray(array)
            reference.SetSpacing(ct_image.GetSpacing())
            reference.SetDirection(ct_image.GetDirection())
            reference.SetOrigin(ct_image.TransformIndexToPhysicalPoint((0, 0, int(start))))
            write_volume(array_to_image(array, reference), out / subject / f"{key}.nii.gz")
        ids["test" if k in test_slabs else "train"].append(subject)
    write_text_atomic(out / "split.json", json.dumps(ids, indent=2) + "\n")
    return out


def _crop_plane(array: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full((array.shape[0], size, size), fill, dtype=array.dtype)
    h, w = array.shape[1:]
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    crop = array[:, top:top + size, left:left + size]
    ot, ol = (size - crop.shape[1]) // 2, (size - crop.shape[2]) // 2
    out[:, ot:ot + crop.shape[1], ol:ol + crop.shape[2]] = crop
    return out


def merged_root(real: Path, synthetic: Path, out: Path, mix: str = "concat") -> Path:
    """A data root whose train split is the real train subjects plus every synthetic sample (symlinks).

    ``mix``: ``concat`` lists every real and synthetic subject once (each slice equally likely, so
    the larger synthetic set dominates the batches); ``balanced`` repeats the real subjects until
    they hold as many slices as the synthetic ones, so every epoch, and every batch on average, is
    half real, half synthetic (the synthetic data adds variety without outvoting the real images).
    """
    from ..data.subjects import read_split

    _check_mix(mix)
    out.mkdir(parents=True, exist_ok=True)
    real_ids = read_split(real)["train"]
    synthetic_ids = read_split(synthetic)["train"]
    repeats = 1
    if mix == "balanced":
        real_slices = sum(_subject_slices(Path(real, s)) for s in real_ids)
        synthetic_slices = sum(_subject_slices(Path(synthetic, s)) for s in synthetic_ids)
        repeats = max(1, round(synthetic_slices / max(real_slices, 1)))
    real_names = [(f"real_{s}" if r == 0 else f"real{r}_{s}", s) for r in range(repeats) for s in real_ids]
    for source, pairs in ((real, real_names), (synthetic, [(f"synthetic_{s}", s) for s in synthetic_ids])):
        for name, subject in pairs:
            link = out / name
            if not link.exists():
                os.symlink(Path(source, subject).resolve(), link)
    train = [name for name, _ in real_names] + [f"synthetic_{s}" for s in synthetic_ids]
    text = json.dumps({"train": train, "val": [], "test": []}, indent=2) + "\n"
    if not (out / "split.json").is_file() or (out / "split.json").read_text(encoding="utf-8") != text:  # unchanged: keep its time
        write_text_atomic(out / "split.json", text)
    return out


def _subject_slices(folder: Path) -> int:
    """Axial slices of a subject folder (its first image's header; 0 for an empty folder)."""
    import SimpleITK as sitk

    for path in sorted(Path(folder).iterdir()):
        if path.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = reader.GetSize()
            return int(size[2]) if len(size) > 2 else 1
    return 0


def augmented_root(real: Path, out: Path, copies: int, image_key: str, labels_key: str, seed: int = 0,
                   transforms: Sequence[Dict[str, Any]] = CLASSIC_AUGMENTATION,
                   announce: Callable[[str], None] = print) -> Path:
    """A data root with the real train subjects plus ``copies`` augmented copies of each, drawn once.

    Every axial slice of every copy gets its own draw of ``transforms`` (torchio; the label map as
    a ``LabelMap``, so nearest-neighbour and the label ids stay ids; the image interpolated
    linearly), written on the subject's grid with the subject's pixel types. Drawing a fixed set of
    augmented copies once costs one pass of torchio instead of one per training sample, which is
    what makes elastic deformation affordable on a CPU; random flips stay online in the recipe.
    The copies are reused while ``split.json`` is newer than the real data's.
    """
    from ..data.augment import apply_transforms, build_transforms, draw_seed
    from ..data.io import array_to_image, image_to_array, read_volume, write_volume
    from ..data.subjects import find_image, read_split

    if int(copies) != copies or copies < 1:
        raise TranslateError(f"--augmented-copies: expected a positive integer, got {copies!r}")
    out = Path(out)
    real_ids = read_split(real)["train"]
    names = [f"aug{k}_{s}" for k in range(copies) for s in real_ids]
    train = [f"real_{s}" for s in real_ids] + names
    text = json.dumps({"train": train, "val": [], "test": []}, indent=2) + "\n"
    recipe = json.dumps({"augmented_copies": copies, "seed": seed, "transforms": list(transforms)}, indent=2) + "\n"
    split, made = out / "split.json", out / "augmentation.json"
    if (split.is_file() and split.read_text(encoding="utf-8") == text and made.is_file() and made.read_text(encoding="utf-8") == recipe
            and _newer(split, Path(real) / "split.json")):
        return out
    if split.is_file():
        split.unlink()  # the copies change: the split is written again last
    out.mkdir(parents=True, exist_ok=True)
    transform = build_transforms(transforms, where="augmentation")
    tic = time.perf_counter()
    for index, subject in enumerate(real_ids):
        link = out / f"real_{subject}"
        if not link.exists():
            os.symlink(Path(real, subject).resolve(), link)
        paths = {key: find_image(Path(real) / subject, key) for key in (image_key, labels_key)}
        for key, path in paths.items():
            if path is None:
                raise TranslateError(f"{real}/{subject}: no {key!r} image to augment")
        images = {key: read_volume(path, what=key) for key, path in paths.items()}
        arrays = {key: image_to_array(image) for key, image in images.items()}
        for k in range(copies):
            moved = {key: np.empty_like(array) for key, array in arrays.items()}
            for z in range(arrays[image_key].shape[0]):
                sample = {"image": arrays[image_key][z][None].astype(np.float32),
                          "labels": arrays[labels_key][z][None].astype(np.float32)}
                draw = (k * len(real_ids) + index) * 100_000 + z
                result = apply_transforms(transform, sample, draw_seed(seed, draw, 3), spatial_dims=2)
                image_dtype = arrays[image_key].dtype
                value = result["image"][0]
                moved[image_key][z] = np.rint(value) if np.issubdtype(image_dtype, np.integer) else value
                moved[labels_key][z] = np.rint(result["labels"][0])
            for key, path in paths.items():
                target = out / f"aug{k}_{subject}" / path.name
                write_volume(array_to_image(moved[key].astype(arrays[key].dtype), images[key]), target)
    write_text_atomic(made, recipe)
    write_text_atomic(split, text)
    announce(f"benchmark: {copies} augmented copies of {len(real_ids)} subjects in {time.perf_counter() - tic:.0f} s -> {out}")
    return out


def slices_of(root: Path, ids: Sequence[str], image_key: str, spec) -> np.ndarray:
    """Every axial slice of the subjects' images in network space: ``(N, 1, H, W)``."""
    from ..data.io import image_to_array, read_volume
    from ..data.subjects import find_image, normalise_volume

    planes = []
    for subject in ids:
        path = find_image(Path(root) / subject, image_key)
        if path is None:
            raise TranslateError(f"{root}/{subject}: no {image_key!r} image")
        volume = normalise_volume(image_to_array(read_volume(path, what=image_key)), spec)
        planes.append(np.moveaxis(volume, 1, 0))
    shapes = {p.shape[2:] for p in planes}
    if len(shapes) > 1:
        size = tuple(max(s[i] for s in shapes) for i in range(2))
        planes = [_pad_planes(p, size) for p in planes]
    return np.concatenate(planes).astype(np.float32)


def _pad_planes(planes: np.ndarray, size) -> np.ndarray:
    out = np.full((*planes.shape[:2], *size), float(planes.min()), np.float32)
    h, w = planes.shape[2:]
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    out[:, :, top:top + h, left:left + w] = planes
    return out


# ----------------------------------------------------------------------------- scoring
def segmentation_scores(checkpoint: Path, root: Path, ids: Sequence[str], names: Dict[int, str],
                        device: str = "cpu") -> Dict[str, Any]:
    """Dice and HD95 (mm) per structure of a segmenter checkpoint on real subjects, averaged over subjects.

    A structure absent from a subject's reference and prediction is left out of that subject's
    mean; one present in only one of them scores Dice 0 (HD95 left out: it is undefined).
    """
    from monai.metrics import compute_dice, compute_hausdorff_distance

    from ..data.io import image_to_array, read_volume
    from ..data.subjects import find_image
    from ..engine.inferer import VolumeTranslator

    translator = VolumeTranslator.from_checkpoint(checkpoint, device=device)
    image_key, labels_key = translator.source.key, translator.target.key
    dice: Dict[str, List[float]] = {name: [] for name in names.values()}
    hd95: Dict[str, List[float]] = {name: [] for name in names.values()}
    for subject in ids:
        image = read_volume(find_image(Path(root) / subject, image_key), what="CT")
        reference = image_to_array(read_volume(find_image(Path(root) / subject, labels_key), what="labels"))
        prediction = translator.translate_array(image_to_array(image).astype(np.float32))
        spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
        for label, name in names.items():
            truth, guess = reference == label, prediction == label
            if not truth.any() and not guess.any():
                continue
            t = torch.from_numpy(truth[None, None].astype(np.float32))
            g = torch.from_numpy(guess[None, None].astype(np.float32))
            dice[name].append(float(compute_dice(g, t, include_background=True, ignore_empty=False)[0, 0]))
            if truth.any() and guess.any():
                hd95[name].append(float(compute_hausdorff_distance(g, t, include_background=True, percentile=95,
                                                                   spacing=spacing)[0, 0]))
    per_dice = {k: float(np.mean(v)) for k, v in dice.items() if v}
    per_hd = {k: float(np.mean(v)) for k, v in hd95.items() if v}
    return {"dice": float(np.mean(list(per_dice.values()))) if per_dice else float("nan"),
            "hd95_mm": float(np.mean(list(per_hd.values()))) if per_hd else float("nan"),
            "dice_per_structure": per_dice, "hd95_per_structure_mm": per_hd}


def build_extractor(name: str, segmenter_checkpoint: Optional[Path], inception_weights: Optional[Path],
                    device: str = "cpu"):
    from .distances import InceptionFeatures, SegmenterFeatures

    if name == "segmenter":
        from ..engine.inferer import VolumeTranslator

        translator = VolumeTranslator.from_checkpoint(segmenter_checkpoint, device=device)
        return SegmenterFeatures(translator.model.generator).to(device)
    if name == "inception":
        return InceptionFeatures(inception_weights).to(device)
    raise TranslateError(f"--extractor {name!r}: expected 'segmenter' or 'inception'")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Rank correlation (average ranks for ties); nan for fewer than 3 points."""
    if len(x) < 3:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _mean_sd(values: Sequence[float]) -> tuple:
    """Mean and sample sd (ddof 1; nan for one value) of the finite values; (nan, nan) when none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")


def seed_summary(per_seed: Sequence[Dict[str, Any]], seeds: Sequence[int]) -> Dict[str, Any]:
    """One row from the :func:`segmentation_scores` of the same training data under several U-Net seeds.

    ``dice`` / ``hd95_mm`` and the per-structure values are means over seeds (a structure left out
    by one seed is averaged over the others); ``*_sd`` their sample sd (null for one seed);
    ``dice_per_seed`` in the order of ``seeds``.
    """
    dice, dice_sd = _mean_sd([s["dice"] for s in per_seed])
    hd95, hd95_sd = _mean_sd([s["hd95_mm"] for s in per_seed])
    names = list(dict.fromkeys(n for s in per_seed for n in s["dice_per_structure"]))
    hd_names = list(dict.fromkeys(n for s in per_seed for n in s["hd95_per_structure_mm"]))
    per = {n: _mean_sd([s["dice_per_structure"].get(n, float("nan")) for s in per_seed]) for n in names}
    per_hd = {n: _mean_sd([s["hd95_per_structure_mm"].get(n, float("nan")) for s in per_seed]) for n in hd_names}
    return {"dice": dice, "hd95_mm": hd95, "dice_per_structure": {n: v[0] for n, v in per.items()},
            "hd95_per_structure_mm": {n: v[0] for n, v in per_hd.items()},
            "seeds": list(seeds), "dice_sd": dice_sd, "hd95_mm_sd": hd95_sd,
            "dice_per_seed": [float(s["dice"]) for s in per_seed],
            "hd95_mm_per_seed": [float(s["hd95_mm"]) for s in per_seed],
            "dice_per_structure_sd": {n: v[1] for n, v in per.items()},
            "dice_per_structure_per_seed": {n: [s["dice_per_structure"].get(n) for s in per_seed] for n in names}}


def paired_comparison(row: Sequence[float], reference: Sequence[float]) -> Dict[str, Any]:
    """Dice of a row against the reference row, seed by seed (the same U-Net seed in both).

    ``mean_difference`` (row − reference) with its sample sd, the paired t statistic on n − 1
    degrees of freedom, ``p_two_sided`` and ``p_one_sided_worse`` (the alternative: the row is
    worse), and how many seeds the row wins / loses. With one seed only the difference is known.
    """
    from scipy.stats import ttest_rel

    if len(row) != len(reference):
        raise TranslateError(f"paired comparison: {len(row)} seeds against {len(reference)}")
    d = np.asarray(row, float) - np.asarray(reference, float)
    n = int(len(d))
    mean = float(d.mean()) if n else float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    t_stat = p_two = p_worse = float("nan")
    if n > 1 and sd > 0:
        two, less = ttest_rel(row, reference), ttest_rel(row, reference, alternative="less")
        t_stat, p_two, p_worse = float(two.statistic), float(two.pvalue), float(less.pvalue)
    elif n > 1:  # every seed differs by the same amount: no spread, the t statistic is 0 or infinite
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_two, p_worse = (1.0, 0.5) if mean == 0 else (0.0, float(mean < 0))
    return {"seeds": n, "differences": [float(v) for v in d], "mean_difference": mean, "sd_difference": sd,
            "t": float(t_stat), "p_two_sided": p_two, "p_one_sided_worse": p_worse,
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}


# ----------------------------------------------------------------------------- pipeline
def run_pipeline(generators: Sequence[Generator], out_dir: Path, *, data_root: Optional[Path] = None,
                 budget: Budget = Budget(), extractors: Sequence[str] = ("segmenter",),
                 inception_weights: Optional[Path] = None, segmenter_recipe: Optional[Path] = None,
                 segmenter_overrides: Sequence[str] = (), seed: int = 0, device: str = "cpu",
                 structures: Optional[Dict[int, str]] = None, progress: bool = True,
                 announce: Callable[[str], None] = print, phantom: Dict[str, Any] | None = None,
                 dataset_name: str = "phantom", mixed: Optional[Sequence[str]] = None,
                 augmentation: bool = True, mix: str = "concat", augmented_copies: int = 0,
                 unet_seeds: int = 1) -> Dict[str, Any]:
    """Run the whole pipeline; returns the results dict also written to ``out_dir/results.json``.

    ``mixed``: labels of the generators that get a "real + synthetic" row (default: every one);
    ``augmentation``: train the "real + classic augmentation" row (torchio elastic is slow on a CPU);
    ``mix``: ``concat`` or ``balanced`` (half real, half synthetic; :func:`merged_root`);
    ``augmented_copies``: 0 draws the classic augmentation online for every sample; N > 0 draws N
    augmented copies of every real training slice once (:func:`augmented_root`), flips stay online;
    ``unet_seeds``: every segmenter row trained K times (``trainer.seed`` = seed, seed + 1, ...; the
    generators and their samples once): Dice is the mean over seeds with its sd, and every row is
    compared with the real row seed by seed (:func:`paired_comparison`).
    """
    _check_mix(mix)
    if int(unet_seeds) != unet_seeds or unet_seeds < 1:
        raise TranslateError(f"--unet-seeds: expected a positive integer, got {unet_seeds!r}")
    if int(augmented_copies) != augmented_copies or augmented_copies < 0:
        raise TranslateError(f"--augmented-copies: expected an integer >= 0, got {augmented_copies!r}")
    from ..engine.run import fit_recipe
    from ..recipe import load_recipe
    from ..synthesis import synthesize

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_seen = [g.label for g in generators]
    if len(set(labels_seen)) != len(labels_seen):
        raise TranslateError(f"generator labels must differ, got {labels_seen}")
    for name in extractors:
        if name not in ("segmenter", "inception"):
            raise TranslateError(f"--extractor {name!r}: expected 'segmenter' or 'inception'")
    if "inception" in extractors:  # fail before hours of training, not after
        from .distances import InceptionFeatures

        InceptionFeatures(inception_weights)
    if data_root is None:
        from ..data.phantom import write_phantom

        data_root = out_dir / "data" / "phantom64"
        if not (data_root / "split.json").is_file():
            announce(f"benchmark: writing the 64 x 64 phantom -> {data_root}")
            write_phantom(data_root, seed=seed, **(phantom or dict(subjects=12, shape=(32, 64, 64),
                                                                    spacing=(4.0, 4.5, 4.5))))
    data_root = Path(data_root)
    test_ids = real_test_ids(data_root)
    segmenter_recipe = Path(segmenter_recipe or REPO_RECIPES / "segmenter-unet.yaml")
    common = [f"trainer.seed={seed}", f"trainer.device={device}", "trainer.val_every=0"]
    timings: Dict[str, float] = {}

    def fit(recipe_path: Path, overrides: Sequence[str], run_dir: Path, steps: int, what: str,
            data: Sequence[Path] = (), train_seed: Optional[int] = None) -> Path:
        last = run_dir / "checkpoints" / "last.pt"
        if last.is_file() and all(_newer(last, d) for d in data):  # a checkpoint older than its data is stale
            state = torch.load(last, map_location="cpu", weights_only=True)
            if int(state.get("step", -1)) == steps:
                announce(f"benchmark: {what}: reusing {last}")
                return last
        spec = load_recipe(recipe_path, list(overrides) + [f"trainer.out_dir={run_dir}", f"trainer.steps={steps}",
                                                           f"trainer.checkpoint_every={steps}",
                                                           f"trainer.image_every={steps}"] + common
                           + ([] if train_seed is None else [f"trainer.seed={train_seed}"]))
        tic = time.perf_counter()
        summary = fit_recipe(spec, show_progress=progress, overwrite=True, announce=announce)
        timings[what] = time.perf_counter() - tic
        return Path(summary["checkpoint"])

    # 1-3: generators and their samples
    train_ids = json.loads((data_root / "split.json").read_text(encoding="utf-8"))["train"]
    synthetic: Dict[str, Path] = {}
    generator_steps: Dict[str, int] = {}
    for g in generators:
        checkpoint = fit(g.recipe, [f"data.root={data_root}", *g.overrides], out_dir / "gans" / g.label,
                         budget.gan_steps, f"generator {g.label}", data=[data_root / "split.json"])
        generator_steps[g.label] = budget.gan_steps
        root = out_dir / "synthetic" / g.label
        stamp = json.dumps({"n_samples": budget.n_samples, "seed": seed})
        if (not (root / "split.json").is_file() or not _newer(root / "split.json", checkpoint)
                or not (root / "samples.json").is_file() or (root / "samples.json").read_text(encoding="utf-8") != stamp):
            if root.exists():
                import shutil

                shutil.rmtree(root)
            model_name = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
            tic = time.perf_counter()
            if model_name == "joint_gan":
                synthesize(checkpoint, root, n=budget.n_samples, seed=seed, device=device, progress=progress)
            else:
                from ..data.subjects import subjects_from_folder

                spec = load_recipe(g.recipe, [f"data.root={data_root}", *g.overrides])
                key = spec.data.domains["a"].key
                masks = [Path(s[key]) for s in subjects_from_folder(data_root, "train", keys=[key])]
                slices = sum(_slices(m) for m in masks)
                per_mask = max(1, math.ceil(budget.n_samples / max(slices, 1)))
                synthesize(checkpoint, root, mask_list=masks, n=per_mask, seed=seed, device=device, progress=progress)
            timings[f"synthesize {g.label}"] = time.perf_counter() - tic
            write_text_atomic(root / "samples.json", stamp)
        synthetic[g.label] = root

    # 4: segmenters
    seg = load_recipe(segmenter_recipe, [f"data.root={data_root}", *segmenter_overrides], check_paths=False)
    image_key, labels_key = seg.data.domains["a"].key, seg.data.domains["b"].key
    from ..data.domains import build_intensity

    image_spec = build_intensity(seg.data.domains["a"].intensity)
    if structures is None:
        values = build_intensity(seg.data.domains["b"].intensity).values
        names_file = data_root / "labels.json"
        names = json.loads(names_file.read_text(encoding="utf-8")) if names_file.is_file() else {}
        structures = {int(v): names.get(str(v), f"label_{v}") for v in values[1:]}
    seg_base = [*segmenter_overrides, f"data.batch_size={budget.batch_size}"]
    runs: List[Dict[str, Any]] = [
        {"training_data": "real", "generator": "-", "root": data_root, "extra": [], "data": [data_root / "split.json"]},
        {"training_data": "real + classic augmentation", "generator": "-", "root": data_root,
         "data": [data_root / "split.json"], "extra": ["data.dataset.flips=[0, 1]", f"data.dataset.transforms={json.dumps(CLASSIC_AUGMENTATION)}"]},
    ]
    if not augmentation:
        runs.pop()
    elif augmented_copies:
        root = augmented_root(data_root, out_dir / "augmented", augmented_copies, image_key, labels_key, seed=seed,
                              announce=announce)
        runs[-1].update(root=root, extra=["data.dataset.flips=[0, 1]"], data=[root / "split.json"],
                        variant=f"_{augmented_copies}copies")
    for g in generators:
        runs.append({"training_data": "synthetic", "generator": g.label, "root": synthetic[g.label], "extra": [],
                     "data": [synthetic[g.label] / "split.json"]})
    for g in generators:
        if mixed is not None and g.label not in mixed:
            continue
        root = merged_root(data_root, synthetic[g.label], out_dir / "mixed" / (g.label + ("" if mix == "concat" else f"_{mix}")),
                           mix=mix)
        runs.append({"training_data": "real + synthetic", "generator": g.label, "root": root, "extra": [],
                     "data": [data_root / "split.json", synthetic[g.label] / "split.json"],
                     "variant": "" if mix == "concat" else f"_{mix}"})
    rows = []
    segmenter_checkpoints: Dict[str, Path] = {}
    unet_seed_list = [seed + k for k in range(int(unet_seeds))]
    for run in runs:
        slug = run["training_data"].replace(" + ", "_").replace(" ", "_") + ("" if run["generator"] == "-" else f"_{run['generator']}")
        slug += run.get("variant", "")  # a balanced mix / precomputed copies train in their own folder
        per_seed = []
        for k, unet_seed in enumerate(unet_seed_list):  # the first seed keeps the folder of a one-seed run
            run_slug = slug if k == 0 else f"{slug}_seed{unet_seed}"
            checkpoint = fit(segmenter_recipe, [f"data.root={run['root']}", *seg_base, *run["extra"]],
                             out_dir / "segmenters" / run_slug, budget.unet_steps, f"segmenter {run_slug}",
                             data=run["data"], train_seed=unet_seed)
            if k == 0:
                segmenter_checkpoints[slug] = checkpoint
            scores = segmentation_scores(checkpoint, data_root, test_ids, structures, device=device)
            announce(f"benchmark: {run['training_data']} ({run['generator']}), U-Net seed {unet_seed}: "
                     f"Dice {scores['dice']:.3f}, HD95 {scores['hd95_mm']:.1f} mm")
            per_seed.append(scores)
        rows.append({"training_data": run["training_data"], "generator": run["generator"],
                     **seed_summary(per_seed, unet_seed_list)})

    # 5: distances, synthetic vs real training images
    real_images = slices_of(data_root, train_ids, image_key, image_spec)
    distances: Dict[str, Dict[str, Any]] = {g.label: {} for g in generators}
    for name in extractors:
        extractor = build_extractor(name, segmenter_checkpoints["real"], inception_weights, device)
        from .distances import extract, frechet_distance, inception_score, kernel_inception_distance

        real = extract(extractor, real_images, device=device)
        for g in generators:
            ids = json.loads((synthetic[g.label] / "split.json").read_text(encoding="utf-8"))["train"]
            fake = extract(extractor, slices_of(synthetic[g.label], ids, image_key, image_spec), device=device)
            kid, kid_std = kernel_inception_distance(real["features"], fake["features"], seed=seed)
            entry = {f"fid_{name}": frechet_distance(real["features"], fake["features"]),
                     f"kid_{name}": kid, f"kid_{name}_std": kid_std, "synthetic_images": int(len(fake["features"]))}
            if "probabilities" in fake:
                entry["inception_score"], entry["inception_score_std"] = inception_score(fake["probabilities"])
            distances[g.label].update(entry)
        if "probabilities" in real:
            distances.setdefault("_real", {})["inception_score"] = inception_score(real["probabilities"])[0]
    for row in rows:
        if row["training_data"] == "synthetic":
            row.update(distances[row["generator"]])

    # 6: summary
    synthetic_rows = [r for r in rows if r["training_data"] == "synthetic"]
    real_row = next(r for r in rows if r["training_data"] == "real")
    real_dice = real_row["dice"]
    paired = {f"{r['training_data']} ({r['generator']})": paired_comparison(r["dice_per_seed"], real_row["dice_per_seed"])
              for r in rows if r is not real_row}
    mixed_rows = [r for r in rows if r["training_data"] == "real + synthetic"]
    ranking = {}
    for name in extractors:
        fids = [r[f"fid_{name}"] for r in synthetic_rows]
        dices = [r["dice"] for r in synthetic_rows]
        order_fid = [r["generator"] for r in sorted(synthetic_rows, key=lambda r: r[f"fid_{name}"])]
        order_dice = [r["generator"] for r in sorted(synthetic_rows, key=lambda r: -r["dice"])]
        ranking[name] = {"order_by_fid": order_fid, "order_by_dice": order_dice, "same_order": order_fid == order_dice,
                         "spearman_fid_vs_dice": spearman(fids, dices)}
    results = {
        "dataset": dataset_name, "data_root": str(data_root), "train_subjects": train_ids, "test_subjects": test_ids,
        "real_train_slices": int(len(real_images)), "budget": asdict(budget), "seed": seed, "extractors": list(extractors),
        "generators": [{"label": g.label, "recipe": str(g.recipe), "overrides": g.overrides,
                        "steps": generator_steps[g.label]} for g in generators],
        "segmenter_recipe": str(segmenter_recipe), "structures": {str(k): v for k, v in structures.items()},
        "mix": mix, "augmented_copies": augmented_copies if augmentation else None,
        "unet_seeds": unet_seed_list,
        "rows": rows, "synthetic_over_real_dice": {r["generator"]: r["dice"] / real_dice for r in synthetic_rows},
        "paired_vs_real": paired,
        "real_plus_synthetic_not_worse": {r["generator"]: {
            "real_plus_synthetic_dice": r["dice"], "real_dice": real_dice, "not_worse_on_mean": bool(r["dice"] >= real_dice),
            **{k: paired[f"{r['training_data']} ({r['generator']})"][k] for k in ("mean_difference", "sd_difference", "p_one_sided_worse")}}
            for r in mixed_rows},
        "fid_ranks_like_dice": ranking, "stage_seconds": timings, "seconds": time.perf_counter() - started,
    }
    write_text_atomic(out_dir / "results.json", json.dumps(_finite(results), indent=2) + "\n")
    write_text_atomic(out_dir / "results.md", markdown_table(results))
    scatter_png(results, out_dir / "fid_vs_dice.png")
    announce(f"benchmark: results -> {out_dir / 'results.md'}, {out_dir / 'results.json'}, {out_dir / 'fid_vs_dice.png'}")
    return results


def _newer(path: Path, than: Optional[Path]) -> bool:
    """``path`` was written after ``than`` (or ``than`` is None): a stage's output is only reused then."""
    return than is None or not Path(than).exists() or Path(path).stat().st_mtime_ns >= Path(than).stat().st_mtime_ns


def _slices(path: Path) -> int:
    from ..data.io import read_volume

    return int(read_volume(path, what="mask").GetSize()[2])


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(results: Dict[str, Any]) -> str:
    """Seed 003 Table 2's columns: training data, generator, FID (per extractor), KID, [IS], Dice (+ HD95)."""
    extractors = results["extractors"]
    head = ["training data", "generator"]
    for name in extractors:
        head += [f"FID ({name})", f"KID ({name})"]
    if "inception" in extractors:
        head.append("IS")
    head += ["Dice", "HD95 (mm)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["rows"]:
        cells = [row["training_data"], row["generator"]]
        for name in extractors:
            cells += [_fmt(row.get(f"fid_{name}"), 2), _fmt(row.get(f"kid_{name}"), 4)]
        if "inception" in extractors:
            cells.append(_fmt(row.get("inception_score"), 2))
        cells += [_pm(row["dice"], row.get("dice_sd")), _pm(row["hd95_mm"], row.get("hd95_mm_sd"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = results.get("unet_seeds") or []
    if len(seeds) > 1:
        lines += ["", f"Dice and HD95: mean ± sd over {len(seeds)} U-Net seeds ({', '.join(map(str, seeds))}); "
                      "the generators and their samples are the same for every seed."]
    structures = list(results["structures"].values())
    lines += ["", "Dice per structure:", "", "| training data | generator | " + " | ".join(structures) + " |",
              "|" + "---|" * (len(structures) + 2)]
    for row in results["rows"]:
        per, per_sd = row["dice_per_structure"], row.get("dice_per_structure_sd") or {}
        lines.append(f"| {row['training_data']} | {row['generator']} | "
                     + " | ".join(_pm(per.get(s), per_sd.get(s), 2) for s in structures) + " |")
    paired = results.get("paired_vs_real") or {}
    if len(seeds) > 1 and paired:
        lines += ["", "Paired by U-Net seed against the real row (difference = row − real):", "",
                  "| row | mean difference | sd | t | p (two-sided) | p (row worse) | wins / losses |",
                  "|---|---|---|---|---|---|---|"]
        for name, entry in paired.items():
            lines.append(f"| {name} | {entry['mean_difference']:+.3f} | {_fmt(entry['sd_difference'])} | "
                         f"{_fmt(entry['t'], 2)} | {_fmt(entry['p_two_sided'])} | {_fmt(entry['p_one_sided_worse'])} | "
                         f"{entry['wins']} / {entry['losses']} |")
    return "\n".join(lines) + "\n"


def _pm(value, sd, digits: int = 3) -> str:
    """``value ± sd`` (just the value when the sd is unknown: one seed)."""
    if sd is None or not isinstance(sd, float) or not math.isfinite(sd):
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} ± {sd:.{digits}f}"


def scatter_png(results: Dict[str, Any], path: Path, size=(480, 360)) -> Path:
    """FID (first extractor) against Dice of the synthetic-only rows, drawn with Pillow (no matplotlib needed)."""
    from PIL import Image, ImageDraw

    from ..atomic import atomic_path

    name = results["extractors"][0]
    points = [(r.get(f"fid_{name}"), r["dice"], r["generator"], r.get("dice_sd")) for r in results["rows"]
              if r["training_data"] == "synthetic" and r.get(f"fid_{name}") is not None and math.isfinite(r["dice"])]
    real = next((r["dice"] for r in results["rows"] if r["training_data"] == "real"), None)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 60, 20, size[0] - 20, size[1] - 50
    draw.rectangle([left, top, right, bottom], outline=0)
    if points:
        fids = [p[0] for p in points]
        lo, hi = min(fids), max(fids)
        span = (hi - lo) or max(hi, 1.0)
        lo, hi = lo - 0.1 * span, hi + 0.1 * span

        def xy(fid, dice):
            return (left + (fid - lo) / (hi - lo) * (right - left), bottom - max(0.0, min(1.0, dice)) * (bottom - top))

        if real is not None and math.isfinite(real):
            y = xy(lo, real)[1]
            for x in range(left, right, 8):
                draw.line([x, y, min(x + 4, right), y], fill=120)
            draw.text((right - 110, y - 12), f"real data {real:.2f}", fill=80)
        for fid, dice, label, sd in points:
            x, y = xy(fid, dice)
            if isinstance(sd, float) and math.isfinite(sd) and sd > 0:  # ± sd over U-Net seeds
                y0, y1 = xy(fid, dice - sd)[1], xy(fid, dice + sd)[1]
                draw.line([x, y0, x, y1], fill=0)
                draw.line([x - 3, y0, x + 3, y0], fill=0)
                draw.line([x - 3, y1, x + 3, y1], fill=0)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=0)
            draw.text((x + 6, y - 6), label, fill=0)
        for k in range(5):
            value = lo + k * (hi - lo) / 4
            x = xy(value, 0)[0]
            draw.line([x, bottom, x, bottom + 4], fill=0)
            draw.text((x - 14, bottom + 6), f"{value:.3g}", fill=0)
    for k in range(6):
        y = bottom - k / 5 * (bottom - top)
        draw.line([left - 4, y, left, y], fill=0)
        draw.text((left - 30, y - 6), f"{k / 5:.1f}", fill=0)
    draw.text((left + 60, size[1] - 22), f"Frechet distance ({name} features)", fill=0)
    draw.text((4, top - 14), "Dice (synthetic-only U-Net)", fill=0)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return Path(path)
