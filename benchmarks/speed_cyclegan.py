"""CycleGAN speed: the real trainer step (``Trainer.train_step``) at the paper's 2D size and on 3D patches.

Rows:

* ``2d-256``: ``recipes/mr2ct-cyclegan.yaml`` with the paper's networks: ResNet generators with 64
  channels and 9 residual blocks at 256^2, 70x70 PatchGAN critics with 64 channels; batch 1.
* ``3d-64``: ``recipes/mr2ct-cyclegan-3d.yaml`` (its own U-Net / PatchGAN widths; 8-channel ResNets until
  2026-12-06: ``3d-64-resnet``, 8-16-32-64 U-Nets until that night: ``3d-64-unet8``, each with the objective as
  shipped) on 64^3 patches; batch 1. ``3d-64-blur`` / ``3d-64-nearest``: the same with the U-Nets' ``upsample``.
* ``3d-patch`` / ``3d-patch-resnet``: the 3D recipe on its own patch size (16x48x48), with its U-Nets or the 8-channel
  ResNets; batch 1.

Everything is built from the recipe by the toolkit (``build_model``, ``build_objectives``,
``Trainer``); only the batch is synthetic (random images of the right shapes, so no data files are
read and the time is the step's). One step = generator forward (both translations, both cycles,
identity), generator update, image pools, both critics, critic update, schedule: what
``translate fit`` does per step. Each row runs in its own subprocess; peak memory is that process's
``ru_maxrss`` on CPU (including the torch runtime) or ``torch.cuda.max_memory_allocated`` on a GPU.

    python benchmarks/speed_cyclegan.py --rows 2d-256 3d-64 --steps 5 --out benchmarks/results/speed_cyclegan_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from unpaired import RESNET_3D  # noqa: E402  (the 3D recipe's generators until 2026-12-06, as unpaired.py's rows)

ROWS = {
    "2d-256": {"recipe": "recipes/mr2ct-cyclegan.yaml", "shape": (256, 256),
               "overrides": ["model.networks.g_ab={name: resnet, channels: 64, n_blocks: 9, norm: instance}",
                             "model.networks.g_ba={name: resnet, channels: 64, n_blocks: 9, norm: instance}",
                             "model.networks.d_a={name: patchgan, channels: 64, n_layers: 3, norm: instance}",
                             "model.networks.d_b={name: patchgan, channels: 64, n_layers: 3, norm: instance}"]},
    "3d-64": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (64, 64, 64),
              "overrides": ["data.dataset.patch_size=[64, 64, 64]"]},
    #: the 3D recipe's U-Net generators from 2026-12-06 to that night (8-16-32-64; 16-32-64-128 since)
    "3d-64-unet8": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (64, 64, 64),
                    "overrides": ["data.dataset.patch_size=[64, 64, 64]", "model.networks.g_ab.channels=[8, 16, 32, 64]",
                                  "model.networks.g_ba.channels=[8, 16, 32, 64]"]},
    #: the 3D recipe's generators until 2026-12-06 (8-channel ResNets, 6 blocks); the objective as shipped
    "3d-64-resnet": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (64, 64, 64),
                     "overrides": ["data.dataset.patch_size=[64, 64, 64]", *RESNET_3D]},
    #: the recipe at its own patch size (16x48x48, one patch: the step is for batch 1, the recipe trains two), with its
    #: U-Nets or with the 8-channel ResNets (6 blocks, two stride-2 stages) that kept three quarters of the bone in 2D
    "3d-patch": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (16, 48, 48), "overrides": []},
    "3d-patch-resnet": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (16, 48, 48), "overrides": RESNET_3D},
    #: the recipe with the U-Nets' other ways up (`upsample`: blur after each transposed conv, or a resize and a 3x3 conv)
    **{f"3d-64-{mode}": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "shape": (64, 64, 64),
                         "overrides": ["data.dataset.patch_size=[64, 64, 64]", f"model.networks.g_ab.upsample={mode}",
                                       f"model.networks.g_ba.upsample={mode}"]}
       for mode in ("blur", "nearest")},
}
WARMUP = 2


def measure(row: str, steps: int, device_name: str) -> dict:
    import torch

    from translate.engine.build import build_domains, build_model, build_objectives, count_parameters
    from translate.engine.trainer import Trainer, resolve_device
    from translate.recipe import load_recipe

    spec = ROWS[row]
    recipe = load_recipe(REPO / spec["recipe"], ["data.batch_size=1", f"trainer.device={device_name}",
                                                 *spec["overrides"]])
    device = resolve_device(recipe.trainer.device)
    torch.manual_seed(0)
    domains = build_domains(recipe)
    model = build_model(recipe, domains)
    g_objective, d_objective = build_objectives(recipe)
    shape = (1, 1, *spec["shape"])
    batch = {"real_a": torch.rand(shape) * 2 - 1, "real_b": torch.rand(shape) * 2 - 1,
             "body_mask_a": torch.ones(shape), "body_mask_b": torch.ones(shape), "body_mask": torch.ones(shape)}
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(model=model, generator_objective=g_objective, discriminator_objective=d_objective,
                          dataset=[batch], batch_size=1, optimizers={"generator": recipe.optim.generator.model_dump(),
                                                                     "discriminator": recipe.optim.discriminator.model_dump()},
                          steps=WARMUP + steps, out_dir=out_dir, model_name=recipe.model.name, device=device,
                          show_progress=False)
        on_device = trainer._to_device(batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for index in range(WARMUP + steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            trainer.train_step(on_device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index >= WARMUP:
                times.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"row": row, "shape": list(spec["shape"]), "batch": 1, "device": str(device), "steps": steps,
            "step_s_median": statistics.median(times), "step_s_all": times, "peak_memory_mib": peak,
            "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process ru_maxrss",
            "parameters": {role: count_parameters(net) for role, net in model.networks().items()},
            "networks": {k: v.model_dump() for k, v in recipe.model.networks.items()}, "recipe": spec["recipe"],
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median), after 2 warm-up")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speed_cyclegan_cpu.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.device)))
        return
    from mr2ct_ablation import cpu_name

    results = []
    for row in args.rows:
        child = subprocess.run([sys.executable, __file__, "--one", row, "--steps", str(args.steps), "--device", args.device],
                               capture_output=True, text=True, cwd=REPO)
        if child.returncode != 0:
            raise SystemExit(f"{row}: {child.stderr.strip().splitlines()[-1] if child.stderr.strip() else child.returncode}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{row}: {r['step_s_median']:.2f} s/step, peak {r['peak_memory_mib']:.0f} MiB ({r['device']})", flush=True)
    on_gpu = any(r["device"].startswith("cuda") for r in results)
    import torch

    description = (f"{torch.cuda.get_device_name()} GPU, nothing else on it" if on_gpu
                   else f"{os.cpu_count()}-core {cpu_name()} CPU, no GPU")
    record = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"description": description, "processor": cpu_name(), "cores": os.cpu_count(),
                          "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__},
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
