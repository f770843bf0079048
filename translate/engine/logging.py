"""Run logging: rich progress bar, TensorBoard scalars, metrics.jsonl and PNG previews."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from ..atomic import atomic_path, write_text_atomic


def _display(x: torch.Tensor) -> np.ndarray:
    """A ``(H, W)`` model-space image in [-1, 1] -> uint8 for display."""
    return (x.clamp(-1, 1).add(1).mul(127.5)).round().to(torch.uint8).cpu().numpy()


def preview_grid(source: torch.Tensor, translated: torch.Tensor, target: Optional[torch.Tensor],
                 rows: int = 4) -> np.ndarray:
    """Rows of ``source | translated | target | |error|`` from ``(B, C, H, W)`` tensors in [-1, 1].

    For 2.5D input the centre channel of the source is shown; 3D volumes show their middle slice.
    """
    def plane(t: torch.Tensor, i: int) -> torch.Tensor:
        img = t[i, t.shape[1] // 2]
        return img[img.shape[0] // 2] if img.dim() == 3 else img

    tiles = []
    for i in range(min(rows, source.shape[0])):
        row = [plane(source, i), plane(translated, i)]
        if target is not None:
            error = (plane(translated, i) - plane(target, i)).abs() - 1  # |error| in [0, 2] -> [-1, 1]
            row += [plane(target, i), error]
        tiles.append(np.concatenate([_display(t.detach().float()) for t in row], axis=1))
    return np.concatenate(tiles, axis=0)


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


class RunLogger:
    """Everything a run reports, in one place, so the trainer stays about optimisation."""

    def __init__(self, out_dir: Path, total: int, start: int = 0, show_progress: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._open_from(start)
        self.progress = None
        if show_progress:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            console = Console(stderr=True)
            self.progress = Progress(
                TextColumn("[bold]fit"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"), console=console, transient=False,
                disable=not console.is_terminal)
            self.task = self.progress.add_task("fit", total=total, completed=start, speed="", losses="")
            self.progress.start()
        self._last_time: Optional[float] = None
        self._last_step = start
        self.is_terminal = self.progress is not None and not self.progress.disable

    def _open_from(self, start: int) -> None:
        """metrics.jsonl and TensorBoard, continuing at ``start``: what was logged after it is dropped
        (a resumed run, or a rewound one, replays those steps)."""
        self._drop_records_after(start)
        self.metrics = open(self.out_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events logged after ``start`` are dropped, not doubled
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start if start else None)
        except ImportError:  # tensorboard is a dependency; tolerate minimal installs
            self.writer = None

    def _drop_records_after(self, start: int) -> None:
        """A resumed run replays the steps after its checkpoint: their old records go first."""
        path = self.out_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= start:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))

    def step(self, step: int, logs: Mapping[str, float], lr: float, log: bool) -> None:
        import time

        now = time.perf_counter()
        if log:
            record = {"step": step, "lr": lr, **{k: round(v, 6) for k, v in logs.items()}}
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
            if self.writer is not None:
                for key, value in logs.items():
                    self.writer.add_scalar(f"loss/{key}", value, step)
                self.writer.add_scalar("lr", lr, step)
        speed = ""
        if self._last_time is not None and now > self._last_time:
            speed = f"{(step - self._last_step) / (now - self._last_time):.1f} it/s"
        if self._last_time is None or log:
            self._last_time, self._last_step = now, step
        if self.progress is not None:
            shown = {k: v for k, v in logs.items() if k in ("g_total", "d_total") or k.startswith("g_")}
            text = " ".join(f"{k[2:] if k.startswith('g_') else k}={v:.3g}" for k, v in list(shown.items())[:5])
            self.progress.update(self.task, completed=step, losses=text, speed=speed or "")
        if log and not self.is_terminal and (step % 100 == 0):
            text = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            print(f"step {step}: {text} {speed}", file=sys.stderr, flush=True)

    def validation(self, step: int, scores: Mapping[str, float]) -> None:
        """Validation scores: a metrics.jsonl record, TensorBoard ``val/*`` scalars and one printed line."""
        self.metrics.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in scores.items()}}) + "\n")
        self.metrics.flush()
        if self.writer is not None:
            for key, value in scores.items():
                self.writer.add_scalar(f"val/{key.removeprefix('val_')}", value, step)
        text = " ".join(f"{k}={v:.4g}" for k, v in scores.items())
        if self.progress is not None and self.is_terminal:
            self.progress.console.print(f"step {step}: {text}")
        else:
            print(f"step {step}: {text}", file=sys.stderr, flush=True)

    def rewind(self, step: int, record: Mapping[str, float]) -> None:
        """The run went back to ``step``: the records after it go (as for a resume), one record says why,
        and TensorBoard drops its events after that step."""
        self.metrics.close()
        if self.writer is not None:
            self.writer.close()
        self._open_from(step)
        self.metrics.write(json.dumps({"step": step, **record}) + "\n")
        self.metrics.flush()
        self._last_time, self._last_step = None, step
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def message(self, text: str) -> None:
        """One line for the user (e.g. a skipped step), above the progress bar when there is one."""
        if self.progress is not None and self.is_terminal:
            self.progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def preview(self, step: int, batch: Mapping[str, Any], generated: Mapping[str, Any]) -> None:
        source = batch.get("real_a")
        translated = generated.get("fake_b")
        if source is None or translated is None:
            return
        grid = preview_grid(source, translated, batch.get("real_b"))
        save_png(grid, self.out_dir / "images" / f"step_{step:07d}.png")
        if self.writer is not None:
            self.writer.add_image("preview", grid, step, dataformats="HW")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()
        self.metrics.close()
