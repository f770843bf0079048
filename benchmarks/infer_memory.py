"""Wall time and peak memory of `translate infer` on a 512 x 512 x 300 CT with the default 2D model.

    OMP_NUM_THREADS=1 python benchmarks/infer_memory.py --out benchmarks/results/infer_memory.json

The volume is synthetic in content but real in geometry: the 20 slices of the real Siemens series
(`../shared/data/totalseg/example_ct_dicom`, 512 x 512, 0.98 x 0.98 mm, 2 mm slices, int16 HU)
repeated 15 times along the slice axis to 300 slices, with the series' origin, direction and
spacing, written as NIfTI. The model is `recipes/mr2ct.yaml`'s networks (5-level U-Net
16-32-64-128-128 and a PatchGAN) with both domains CT (a CT -> CT model, as a denoiser is),
trained for one step on a small phantom: weights do not change time or memory. Each run is
`translate infer` in a subprocess through the CLI; its peak resident memory is the child's
`ru_maxrss` (Linux, kB), measured by a wrapper process that runs nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DICOM = REPO.parent / "shared" / "data" / "totalseg" / "example_ct_dicom"

#: runs nothing but the command, then prints the child's peak RSS (kB): the parent's own memory never counts
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def make_volume(path: Path, slices: int) -> dict:
    from translate.data.io import read_volume

    series = read_volume(DICOM)
    hu = sitk.GetArrayFromImage(series)
    reps = -(-slices // hu.shape[0])
    volume = np.concatenate([hu] * reps, axis=0)[:slices]
    image = sitk.GetImageFromArray(volume.astype(np.int16))
    image.SetSpacing(series.GetSpacing())
    image.SetOrigin(series.GetOrigin())
    image.SetDirection(series.GetDirection())
    sitk.WriteImage(image, str(path), useCompression=True)
    return {"size_xyz": list(image.GetSize()), "spacing_mm": list(image.GetSpacing()), "dtype": "int16",
            "megabytes_int16": round(volume.size * 2 / 2**20, 1)}


def train_checkpoint(work: Path) -> Path:
    translate = [sys.executable, "-m", "translate.cli"]
    subprocess.run(translate + ["data", "phantom", str(work / "phantom"), "--subjects", "3", "--seed", "0"],
                   check=True, capture_output=True)
    out = work / "run"
    subprocess.run(translate + ["fit", str(REPO / "recipes" / "mr2ct.yaml"), f"data.root={work / 'phantom'}",
                                "data.domains.a={key: ct, intensity: {name: ct_hu, window: [-1024, 2000]}}",
                                f"trainer.out_dir={out}", "trainer.steps=1", "trainer.val_every=0",
                                "data.batch_size=2", "--quiet"], check=True, capture_output=True)
    return out / "checkpoints" / "last.pt"


def measure(args: list) -> dict:
    command = [sys.executable, "-m", "translate.cli", "infer", *map(str, args), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"infer failed: {done.stderr.strip()[-400:]}")
    peak_kb = int(done.stdout.strip().splitlines()[-1])
    return {"command": "translate infer " + " ".join(str(a) for a in args), "wall_s": round(seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", default="nifti,dicom", help="comma-separated: nifti, dicom, batch4")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="infer_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        volume = work / "ct_512x512x300.nii.gz"
        geometry = make_volume(volume, args.slices)
        checkpoint = train_checkpoint(work)
        choices = {
            "nifti": ("nifti_default_batch16", [checkpoint, volume, work / "out.nii.gz"]),
            "dicom": ("dicom_series_out", [checkpoint, volume, work / "out_dicom", "--format", "dicom"]),
            "batch4": ("nifti_batch4", [checkpoint, volume, work / "out4.nii.gz", "--batch-size", "4"]),
        }
        runs = {}
        for key in args.runs.split(","):
            name, command = choices[key]
            runs[name] = measure(command)
        for name, result in runs.items():
            print(f"{name}: {result['wall_s']} s, peak RSS {result['peak_rss_mb']} MB", flush=True)
        record = {
            "what": "peak resident memory and wall time of `translate infer` (CLI subprocess) on a "
                    "512 x 512 x 300 CT with recipes/mr2ct.yaml's 2D networks (CT -> CT), slice by slice",
            "volume": {**geometry, "content": "the real example_ct_dicom series (20 slices) repeated along z; "
                                              "its real origin, direction and spacing"},
            "runs": runs,
            "bar": "well under 4 GB (4096 MB) peak RSS",
            "command": "OMP_NUM_THREADS=1 python benchmarks/infer_memory.py" + " ".join(
                [""] + ([f"--slices {args.slices}"] if args.slices != 300 else []) + [f"--runs {args.runs}"]
                + ([f"--out {args.out}"] if args.out else [])),
            "machine": "2-core Intel Xeon CPU, no GPU (shared with other jobs during the run, load average about 8: wall times are indicative)",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
        }
        if args.out:
            from translate.atomic import write_text_atomic

            write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
