"""Pix2pix speed benchmark: training-step time, inference throughput, peak memory, parameters.

Nets as in Isola et al. 2017: ``UNetGenerator`` (depth 7 at 128^2 = ``unet_128``, depth 8 at
256^2 = ``unet_256``, default widths) and the conditional 70x70 ``PatchDiscriminator`` on
``cat(real_a, b)`` (2 channels). One training step is the reference order: ``G(real_a)``; D on real
and detached fake with LSGAN, backward, Adam step; G with LSGAN + 100 * L1, backward, Adam step.
The loop is local on purpose, so the numbers measure the networks and not the trainer.

Each configuration runs in its own subprocess: on CPU the peak is ``ru_maxrss``, a process
high-water mark, which would otherwise carry over from the largest earlier configuration.

    python benchmarks/speed.py --device auto --sizes 128 256 --batches 1 8 --steps 10 --out r.json

CycleGAN (2D 256^2 with 9 residual blocks, 3D 64^3 patches) is timed on the real trainer step by
``benchmarks/speed_cyclegan.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

WARMUP = 2


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return name


def machine(device: str) -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = torch.cuda.get_device_name(0) if device == "cuda" else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "device": device, "device_name": name, "torch": torch.__version__, "python": platform.python_version()}


def unet_depth(size: int) -> int:
    """7 at 128, 8 at 256 (innermost feature map 1x1), capped at the reference's 8."""
    depth = min(8, int(math.log2(size)))
    if size % 2 ** depth:
        raise SystemExit(f"--sizes: {size} must be divisible by {2 ** depth}")
    return depth


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure(size: int, batch: int, steps: int, device: str) -> dict:
    """One configuration, in a fresh process."""
    import torch
    import torch.nn.functional as F

    from translate.nn import PatchDiscriminator, UNetGenerator, count_parameters, init_weights

    # the runtime's own footprint, so the networks' share of ru_maxrss can be read off
    baseline_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.manual_seed(0)
    base_channels = (64, 128, 256, 512, 512, 512, 512, 512)
    generator = init_weights(UNetGenerator(spatial_dims=2, in_channels=1, out_channels=1,
                                           channels=base_channels[:unet_depth(size)])).to(device)
    discriminator = init_weights(PatchDiscriminator(spatial_dims=2, in_channels=2, receptive_field=70)).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_a = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    real_b = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step() -> None:
        fake_b = generator(real_a)
        d_real = discriminator(torch.cat([real_a, real_b], 1))
        d_fake = discriminator(torch.cat([real_a, fake_b.detach()], 1))
        loss_d = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d_fake = discriminator(torch.cat([real_a, fake_b], 1))
        loss_g = F.mse_loss(d_fake, torch.ones_like(d_fake)) + 100.0 * F.l1_loss(fake_b, real_b)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    generator.train(), discriminator.train()
    step_times = []
    for index in range(WARMUP + steps):
        sync(device)
        start = time.perf_counter()
        train_step()
        sync(device)
        if index >= WARMUP:
            step_times.append(time.perf_counter() - start)

    generator.eval()
    inference_times = []
    with torch.inference_mode():
        for index in range(WARMUP + steps):
            sync(device)
            start = time.perf_counter()
            generator(real_a)
            sync(device)
            if index >= WARMUP:
                inference_times.append(time.perf_counter() - start)

    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"size": size, "batch": batch, "unet_depth": unet_depth(size), "steps": steps,
            "train_step_s_median": statistics.median(step_times), "train_step_s_all": step_times,
            "inference_slices_per_s": batch / statistics.median(inference_times),
            "baseline_rss_mib": baseline_rss_mib, "peak_memory_mib": peak_mib,
            "peak_memory_kind": "cuda max_memory_allocated" if device == "cuda" else "process peak RSS (ru_maxrss)",
            "generator_params": count_parameters(generator), "discriminator_params": count_parameters(discriminator)}


def table(info: dict, rows: list) -> str:
    memory = "CUDA max_memory_allocated"
    if info["device"] != "cuda":
        baseline = f"{rows[0]['baseline_rss_mib']:.0f} MiB" if rows else "?"
        memory = (f"peak RSS (ru_maxrss) of a fresh subprocess per configuration, including the "
                  f"torch + MONAI runtime ({baseline} after imports)")
    lines = [
        f"# Pix2pix speed ({info['device']})", "",
        f"- CPU: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
        f"1-minute load average before the run {info['load_average_1min']}",
        f"- device: {info['device_name']}; torch {info['torch']}; Python {info['python']}",
        f"- train step = G fwd, D real+fake, LSGAN + 100*L1, backward, Adam G and D; "
        f"median of {rows[0]['steps'] if rows else '?'} steps after {WARMUP} warm-up",
        f"- inference: G in eval mode, no grad, median batch time; peak memory: {memory}",
        "- CPU timings are only as good as the machine is quiet: a load average near the core count "
        "before the run means other jobs shared the cores", "",
        "| size | batch | G (U-Net depth) | G params | D params | train step (s) | train slices/s "
        "| inference slices/s | peak memory (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}^2 | {r['batch']} | {r['unet_depth']} | {r['generator_params'] / 1e6:.2f} M "
            f"| {r['discriminator_params'] / 1e6:.2f} M | {r['train_step_s_median']:.3f} "
            f"| {r['batch'] / r['train_step_s_median']:.2f} | {r['inference_slices_per_s']:.1f} "
            f"| {r['peak_memory_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median), after 2 warm-up")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--one", type=int, nargs=2, metavar=("SIZE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.one:  # child process: one configuration, JSON on stdout
        print(json.dumps(measure(args.one[0], args.one[1], args.steps, device)))
        return
    info = machine(device)
    rows = []
    for size in sorted(args.sizes):
        for batch in sorted(args.batches):
            print(f"running {size}^2 batch {batch} ...", file=sys.stderr, flush=True)
            child = subprocess.run([sys.executable, __file__, "--device", device, "--steps", str(args.steps),
                                    "--one", str(size), str(batch)], capture_output=True, text=True)
            if child.returncode:
                raise SystemExit(f"{size}^2 batch {batch} failed:\n{child.stderr}")
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    text = table(info, rows)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": info, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
