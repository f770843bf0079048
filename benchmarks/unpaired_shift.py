"""How much of an unpaired generator's error is locked to its stride-2 sampling grid.

For each checkpoint, every held-out test subject of the phantom is translated (``translate infer`` a2b,
:func:`translate.engine.inferer.infer_volume`) four times: as it is and moved by one voxel along y, x
and both (``np.roll`` of the MR, the output rolled back). A network whose output depends only on the
image gives four equal outputs; a generator with strided convs and transposed convs draws texture
that depends on where the stride-2 grid falls, and the four differ. Rows:

* ``as is``: the plain translation (the benchmark's row);
* ``mean of the 4 one-voxel shifts``: what averaging over the grid phases alone removes;
* ``flip TTA``: ``translate infer --tta flips`` (mean over the four training flips);
* ``shift spread``: the mean absolute difference, where the CT is above -500 HU, between the unshifted output and
  each shifted one (HU).

Scored with :func:`translate.metrics.paired.evaluate_volumes` (MAE inside the body, as every table).

Usage::

    python benchmarks/unpaired_shift.py --checkpoints NAME=runs/X/row/checkpoints/last.pt ... \\
        --out benchmarks/results/unpaired_shift.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from unpaired import machine  # noqa: E402

from translate.engine.inferer import infer_volume  # noqa: E402
from translate.metrics.paired import evaluate_volumes  # noqa: E402

SHIFTS = ((0, 0), (1, 0), (0, 1), (1, 1))  # voxels along (y, x)


def rolled(image: sitk.Image, shift: tuple[int, int]) -> sitk.Image:
    out = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), shift, axis=(1, 2)))
    out.CopyInformation(image)
    return out


def score(ckpt: Path, data: Path, subjects: list[str], tmp: Path) -> dict:
    maes = {"as is": [], "mean of the 4 one-voxel shifts": [], "flip TTA": []}
    spread = []
    for subject in subjects:
        mr = sitk.ReadImage(str(data / subject / "mr.nii.gz"))
        outputs = []
        for shift in SHIFTS:
            sitk.WriteImage(rolled(mr, shift), str(tmp / "in.nii.gz"))
            infer_volume(ckpt, tmp / "in.nii.gz", tmp / "out.nii.gz", direction="a2b", progress=False)
            back = rolled(sitk.ReadImage(str(tmp / "out.nii.gz")), (-shift[0], -shift[1]))
            outputs.append(sitk.GetArrayFromImage(back).astype(np.float32))
        ct = sitk.ReadImage(str(data / subject / "ct.nii.gz"))
        body = sitk.GetArrayFromImage(ct) > -500
        spread.append(float(np.mean([np.abs(o - outputs[0])[body].mean() for o in outputs[1:]])))
        for name, array in (("as is", outputs[0]), ("mean of the 4 one-voxel shifts", np.mean(outputs, 0))):
            image = sitk.GetImageFromArray(np.rint(array).astype(np.int16))
            image.CopyInformation(ct)
            sitk.WriteImage(image, str(tmp / "pred.nii.gz"))
            maes[name].append(evaluate_volumes(tmp / "pred.nii.gz", data / subject / "ct.nii.gz")["mae_hu"])
        infer_volume(ckpt, data / subject / "mr.nii.gz", tmp / "tta.nii.gz", direction="a2b", progress=False,
                     tta="flips")
        maes["flip TTA"].append(evaluate_volumes(tmp / "tta.nii.gz", data / subject / "ct.nii.gz")["mae_hu"])
    result = {name: float(np.mean(v)) for name, v in maes.items()}
    result["shift spread"] = float(np.mean(spread))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="NAME=PATH")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "phantom-unpaired")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "unpaired_shift.json")
    args = parser.parse_args()
    subjects = json.loads((args.data / "split.json").read_text())["test"]
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.checkpoints:
            name, _, path = item.partition("=")
            started = time.perf_counter()
            record["results"][name] = {"checkpoint": path, **score(Path(path), args.data, subjects, Path(tmp))}
            print(name, {k: round(v, 1) for k, v in record["results"][name].items() if isinstance(v, float)},
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    record.update({"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
                   "machine": machine(), "test_subjects": subjects, "shifts_yx": SHIFTS})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
