"""Trivial MR->CT baselines on the paired real data, scored per tissue class: what a network must beat.

    python benchmarks/real_data/prepare.py                       # once: pairs ../shared/data/ibsi_sts
    python benchmarks/real_data/baselines.py --on test [--data data/ibsi_paired] [--out results.json]

Three baselines, fitted on the training patients and applied to each validation or test patient:

* ``constant``: the mean training CT, everywhere;
* ``linear``: CT = a * MR + b by least squares;
* ``lookup``: 64 bins of MR intensity between the 0.5th and 99.5th percentiles of the training
  MR; each bin predicts the mean training CT of its voxels (empty bins take the nearest
  non-empty bin's value; MR outside the range falls in the first or last bin).

Which voxels. A paired patient folder holds ``ct``, ``mr`` (on the CT grid), ``valid`` (where
the MR has data) and ``tumour`` (see :mod:`translate.data.pairing`). Scoring follows the
README's convention for synthetic CT: inside the body mask of the real CT
(:func:`translate.data.masks.body_mask_from_ct`, CT > -500 HU, largest component, holes filled
per slice), here intersected with ``valid``, because nothing can be predicted where there is no
MR. Fitting uses exactly the same region on the training patients (``valid`` and body), so a
baseline is fitted on the voxels it is judged on, and the constant is the mean CT of that
region rather than one diluted by the air around the limb. Metrics are those of
:func:`translate.metrics.tissue.tissue_mae` (MAE overall, air < -400, soft -400..300,
bone > 300 HU, inside the tumour, bias; both CTs clipped to [-1024, 3000] HU).

MR intensity. Each MR volume passes through ``normalise(mr, valid) -> mr`` before fitting and
predicting, the same per-volume normalisation a network would see; the default is the
identity (the IBSI MR is already normalised to subcutaneous fat by its curators). Pass e.g.
a wrapper of the toolkit's MR normaliser to compare on equal terms.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np

from translate.metrics.hallucination import RATE_NAMES, hallucination_rates

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

Normalise = Callable[[np.ndarray, np.ndarray], np.ndarray]
Predictor = Callable[[np.ndarray], np.ndarray]
REGIONS = ("", "_air", "_soft", "_bone", "_tumour", "_fat", "_muscle")
#: soft-tissue sub-classes of the real CT (HU, lower <= CT < upper): where the soft-tissue error comes from
SOFT_SUBCLASSES = {"fat": (-200.0, -30.0), "muscle": (0.0, 100.0)}


def identity(mr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The default MR normalisation: none."""
    return mr


def load_patient(root: Path, patient: str, normalise: Normalise = identity) -> Dict[str, np.ndarray]:
    """One paired patient as ``(Z, Y, X)`` arrays: ``ct`` (HU, float32), ``mr`` (normalised,
    float32), ``valid``, ``body``, ``region`` (= valid and body) and ``tumour`` (bool)."""
    from translate.data.io import image_to_array, read_volume
    from translate.data.masks import body_mask_from_ct

    folder = Path(root) / patient

    def read(name: str) -> np.ndarray:
        return image_to_array(read_volume(folder / f"{name}.nii.gz", what=f"{patient} {name}"))

    ct = read("ct").astype(np.float32)
    valid = read("valid") != 0
    mr = np.asarray(normalise(read("mr").astype(np.float32), valid), dtype=np.float32)
    body = body_mask_from_ct(ct)
    tumour = read("tumour") != 0 if (folder / "tumour.nii.gz").is_file() else np.zeros_like(valid)
    return {"ct": ct, "mr": mr, "valid": valid, "body": body, "region": valid & body, "tumour": tumour}


def fit_constant(mr: np.ndarray, ct: np.ndarray) -> Predictor:
    """Predict the mean training CT everywhere."""
    mean = float(ct.mean())
    return lambda x: np.full(x.shape, mean, dtype=np.float32)


def fit_linear(mr: np.ndarray, ct: np.ndarray) -> Predictor:
    """CT = a * MR + b, least squares."""
    design = np.stack([mr.astype(np.float64), np.ones(mr.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, ct.astype(np.float64), rcond=None)
    predict = lambda x: (a * x + b).astype(np.float32)  # noqa: E731
    predict.parameters = {"a": float(a), "b": float(b)}
    return predict


def fit_lookup(mr: np.ndarray, ct: np.ndarray, bins: int = 64, percentiles=(0.5, 99.5)) -> Predictor:
    """Mean CT per MR-intensity bin; bin edges span the training MR's percentiles."""
    low, high = np.percentile(mr, percentiles)
    edges = np.linspace(low, high, bins + 1)

    def which(x: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)

    index = which(mr)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=ct.astype(np.float64), minlength=bins)
    full = np.flatnonzero(counts)
    values = np.empty(bins)
    values[full] = sums[full] / counts[full]
    for empty in np.flatnonzero(counts == 0):  # nearest non-empty bin (lower one on a tie)
        values[empty] = values[full[np.argmin(np.abs(full - empty))]]
    predict = lambda x: values[which(x)].astype(np.float32)  # noqa: E731
    predict.parameters = {"edges": edges.tolist(), "values": values.tolist()}
    return predict


BASELINES: Dict[str, Tuple[str, Callable[[np.ndarray, np.ndarray], Predictor]]] = {
    "constant": ("mean training CT everywhere", fit_constant),
    "linear": ("CT = a * MR + b, least squares", fit_linear),
    "lookup": ("64-bin MR-intensity lookup table", fit_lookup),
}


def training_voxels(root: Path, patients: Iterable[str], normalise: Normalise = identity) -> Tuple[np.ndarray, np.ndarray]:
    """(MR, CT) of every training voxel inside valid and body, concatenated over patients."""
    mrs, cts = [], []
    for patient in patients:
        data = load_patient(root, patient, normalise)
        mrs.append(data["mr"][data["region"]])
        cts.append(data["ct"][data["region"]])
    return np.concatenate(mrs), np.concatenate(cts)


def score_prediction(pred: np.ndarray, data: Dict[str, np.ndarray]) -> Dict[str, float]:
    """MAE and bias (mean of prediction - CT, NaN where a patient has none) per tissue, in the tumour and in fat
    and muscle (:data:`SOFT_SUBCLASSES`: ``bias_fat``, ``bias_muscle``) by
    :func:`translate.metrics.tissue.tissue_mae`, and the hallucination rates
    (:func:`translate.metrics.hallucination.hallucination_rates`), inside valid & body."""
    from translate.metrics.tissue import tissue_mae

    ct = data["ct"]
    sub = {name: (ct >= lower) & (ct < upper) for name, (lower, upper) in SOFT_SUBCLASSES.items()}
    rates = hallucination_rates(pred, ct, mask=data["region"])
    return {**tissue_mae(pred, ct, mask=data["region"], extra_masks={"tumour": data["tumour"], **sub}),
            **{name: rates[name] for name in RATE_NAMES}}


def summarise(per_patient: Dict[str, dict]) -> Dict[str, dict]:
    """Mean over patients (regions a patient lacks are left out) and pooled over all voxels; hallucination
    rates as the mean over the patients that have the class."""
    mean, pooled = {}, {}
    for name in RATE_NAMES:
        values = [r[name] for r in per_patient.values() if name in r and not math.isnan(r[name])]
        if values:
            mean[name] = float(np.mean(values))
    for suffix in REGIONS:  # a record from before a region was scored counts as having none of it
        values = [r[f"mae{suffix}"] for r in per_patient.values() if r.get(f"voxels{suffix}", 0) > 0]
        mean[f"mae{suffix}"] = float(np.mean(values)) if values else math.nan
        voxels = sum(r.get(f"voxels{suffix}", 0) for r in per_patient.values())
        total = sum(r[f"mae{suffix}"] * r[f"voxels{suffix}"] for r in per_patient.values() if r.get(f"voxels{suffix}", 0))
        pooled[f"mae{suffix}"] = total / voxels if voxels else math.nan
        pooled[f"voxels{suffix}"] = int(voxels)
    mean["bias_hu"] = float(np.mean([r["bias_hu"] for r in per_patient.values()]))
    for name in SOFT_SUBCLASSES:
        values = [r[f"bias_{name}"] for r in per_patient.values() if not math.isnan(r.get(f"bias_{name}", math.nan))]
        mean[f"bias_{name}"] = float(np.mean(values)) if values else math.nan
    pooled["bias_hu"] = sum(r["bias_hu"] * r["voxels"] for r in per_patient.values()) / pooled["voxels"]
    return {"mean_over_patients": mean, "pooled": pooled}


def run_baselines(root: Path, split: Dict[str, List[str]], on: str = "test",
                  normalise: Normalise = identity) -> Dict[str, object]:
    """Fit every baseline on ``split["train"]``, score it on ``split[on]``; a JSON-able record."""
    root = Path(root)
    mr, ct = training_voxels(root, split["train"], normalise)
    predictors = {name: fit(mr, ct) for name, (_, fit) in BASELINES.items()}
    scores: Dict[str, Dict[str, dict]] = {name: {} for name in BASELINES}
    for patient in split[on]:
        data = load_patient(root, patient, normalise)
        for name, predict in predictors.items():
            scores[name][patient] = score_prediction(predict(data["mr"]), data)
    return {"data": str(root), "train": list(split["train"]), "scored_on": on, "patients": list(split[on]),
            "training_voxels": int(mr.size),
            "region": "valid & body_mask_from_ct(ct) (CT > -500 HU, largest component, holes filled per slice)",
            "baselines": {name: {"description": BASELINES[name][0],
                                 "parameters": getattr(predictors[name], "parameters", {"mean": float(ct.mean())}),
                                 "per_patient": scores[name], **summarise(scores[name])}
                          for name in BASELINES}}


def markdown_table(record: Dict[str, object]) -> str:
    """Mean over the scored patients of each MAE (HU), one row per baseline."""
    def cell(value: float) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.1f}"

    lines = [f"Scored on {record['scored_on']} patients {', '.join(record['patients'])} "
             "(mean over patients; MAE in HU inside valid & body)", "",
             "| baseline | MAE | air | soft tissue | bone | tumour | fat | muscle | bias |", "|---|---|---|---|---|---|---|---|---|"]
    for name, result in record["baselines"].items():
        mean = result["mean_over_patients"]
        lines.append(f"| {name} | " + " | ".join(cell(mean[f"mae{s}"]) for s in REGIONS) + f" | {cell(mean['bias_hu'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Constant, linear and lookup MR->CT baselines on paired real data.")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "ibsi_paired",
                        help="paired folder from prepare.py (default: data/ibsi_paired)")
    parser.add_argument("--split", type=Path, default=None, help="split JSON (default: DATA/split.json)")
    parser.add_argument("--on", default="test", help="split to score: val or test (default: test)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: none)")
    args = parser.parse_args(argv)

    from translate.atomic import write_text_atomic
    from translate.errors import TranslateError

    split_file = args.split or args.data / "split.json"
    if not split_file.is_file():
        print(f"error: no split file {split_file}; run benchmarks/real_data/prepare.py first", file=sys.stderr)
        return 2
    split = json.loads(split_file.read_text())
    if args.on not in split or "train" not in split:
        print(f"error: {split_file} has no 'train' or {args.on!r} split", file=sys.stderr)
        return 2
    try:
        record = run_baselines(args.data, split, on=args.on)
    except TranslateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(record))
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")
        print(f"baselines: written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
