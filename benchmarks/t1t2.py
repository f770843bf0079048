"""Unpaired T1 <-> T2 on the phantom: UNIT and CycleGAN, PSNR / SSIM both directions on the held-out test subjects.

Data: ``data/phantom-unpaired`` (``benchmarks/unpaired.py`` makes it; ``--unpaired`` writes ``t2.nii.gz``):
T1 images of ``train_a`` and T2 images of ``train_b``, never a pair. Rows train through the toolkit's
own path (recipe -> ``fit_recipe``): ``unit`` is ``recipes/t1t2-unit.yaml``; ``cyclegan`` is
``recipes/mr2ct-cyclegan.yaml`` with domain B the T2 image (``mr_percentile``) and the U-Net generators
of ``benchmarks/unpaired.py``. Each test subject is translated whole from ``last.pt``
(:class:`~translate.engine.inferer.VolumeTranslator`, a2b = T1 -> T2 and b2a = T2 -> T1) and scored
as the trainer's validation scores an MR target (:func:`translate.engine.validation.score_volume`):
prediction and the real image, each normalised by the target domain's spec, PSNR and SSIM in [-1, 1]
inside the body.

    python benchmarks/t1t2.py --steps 1000 --rows unit cyclegan [--set KEY=VALUE ...]

``--set`` overrides go to every row's recipe after the row's own (e.g. other critics for a comparison).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unpaired import machine  # noqa: E402  (the same machine record as the MR -> CT rows)

from translate.data.subjects import load_volumes, subjects_from_folder  # noqa: E402
from translate.engine.inferer import VolumeTranslator  # noqa: E402
from translate.engine.run import fit_recipe  # noqa: E402
from translate.engine.validation import score_volume  # noqa: E402
from translate.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
UNET = "{name: unet, channels: [16, 32, 64, 128, 128], norm: instance, dropout: 0.0}"  # the Pix2pix row's generator
T2 = "{key: t2, intensity: {name: mr_percentile, lower: 0.5, upper: 99.5}}"
T1T2_OBJECTIVE = ("[{name: adversarial, mode: lsgan, fake: d_fake_b}, {name: adversarial, mode: lsgan, fake: d_fake_a}, "
                  "{name: cycle, kind: l1, domain: both, weight: 10.0}, {name: identity, kind: l1, domain: both, weight: 5.0}]")
ROWS = {
    "unit": {"recipe": "recipes/t1t2-unit.yaml", "overrides": []},
    "cyclegan": {"recipe": "recipes/mr2ct-cyclegan.yaml",
                 "overrides": [f"data.domains.b={T2}", f"model.networks.g_ab={UNET}", f"model.networks.g_ba={UNET}",
                               "data.batch_size=1", "optim.generator.lr=5.0e-4", "optim.discriminator.lr=5.0e-4",
                               # the MR -> CT recipe's HU windows and windowed CT cycle do not apply to a T2 domain:
                               # the objective of the recorded table (LSGAN, cycle 10, identity 5)
                               "model.networks.d_b.input_windows=null", f"objective.generator={T1T2_OBJECTIVE}"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--data", type=Path, default=REPO / "data" / "phantom-unpaired")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "t1t2")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "t1t2.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every row, applied after the row's own")
    args = parser.parse_args()
    split = json.loads((args.data / "split.json").read_text())
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"results": {}, "seconds": {}}
    for row in args.rows:
        out_dir = args.work / row
        recipe = load_recipe(REPO / ROWS[row]["recipe"], [f"data.root={args.data}", f"trainer.out_dir={out_dir}",
                                                          f"trainer.steps={args.steps}", f"trainer.val_every={args.steps}",
                                                          f"trainer.checkpoint_every={args.steps}", "trainer.threads=1",
                                                          *ROWS[row]["overrides"], *args.set])
        shutil.rmtree(out_dir, ignore_errors=True)
        started = time.perf_counter()
        fit_recipe(recipe, show_progress=False)
        scores = {}
        for direction in ("a2b", "b2a"):
            translator = VolumeTranslator.from_checkpoint(out_dir / "checkpoints" / "last.pt", device="cpu",
                                                          direction=direction)
            source_key, target_key = (("mr", "t2") if direction == "a2b" else ("t2", "mr"))
            per = []
            for subject in subjects_from_folder(args.data, "test", keys=["mr", "t2"]):
                arrays = load_volumes(subject, {"s": translator.source, "t": translator.target})
                per.append(score_volume(translator, arrays["s"].astype(np.float32), arrays["t"], arrays["body_mask"], None))
            scores[f"{direction} ({source_key} -> {target_key})"] = {
                k: (float(np.mean([p[k] for p in per])), float(np.std([p[k] for p in per]))) for k in ("psnr", "ssim")}
        record["results"][row] = {"steps": args.steps, "batch_size": recipe.data.batch_size, "scores": scores}
        record["seconds"][row] = time.perf_counter() - started
        print(row, scores, flush=True)
        record.update(command=" ".join(["python", *sys.argv]), date=time.strftime("%Y-%m-%d %H:%M"),
                      machine=machine("shared with other jobs"),
                      test_subjects=split["test"])
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        lines = [f"Unpaired T1 <-> T2 on the phantom, {len(split['test'])} test subjects; {record['machine']['description']}. "
                 f"Command: `{record['command']}`", "",
                 "| row | steps × batch | T1→T2 PSNR (dB) | T1→T2 SSIM | T2→T1 PSNR (dB) | T2→T1 SSIM | wall (s) |",
                 "|---|---|---|---|---|---|---|"]
        for name, r in record["results"].items():
            a, b = (r["scores"][k] for k in sorted(r["scores"]))
            lines.append(f"| {name} | {r['steps']} × {r['batch_size']} | {a['psnr'][0]:.2f} ± {a['psnr'][1]:.2f} | "
                         f"{a['ssim'][0]:.3f} | {b['psnr'][0]:.2f} ± {b['psnr'][1]:.2f} | {b['ssim'][0]:.3f} | "
                         f"{record['seconds'][name]:.0f} |")
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
