"""The trainer: optimisers, schedules, checkpoints, logging. It knows no backbone.

One step = a generator update then a discriminator update, each driven by an
:class:`~translate.losses.base.Objective` over the named tensors the model returns.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import TranslateError
from ..losses.base import Objective
from ..models.base import TranslationModel
from .checkpoint import load_checkpoint, load_network_state, save_checkpoint
from .logging import RunLogger
from .sampling import StepBatchSampler


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived: training stopped at a step boundary with a checkpoint written."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: checkpoint {checkpoint} written; continue with --resume")


class _StopOnSignal:
    """While active, SIGINT / SIGTERM only set a flag that the loop reads between steps, so a stop
    never lands between the generator and discriminator updates (which would break exact resume).
    Installed only in the main thread and restored afterwards."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def linear_decay_lambda(total_steps: int, constant_fraction: float):
    """pix2pix schedule: constant learning rate, then linear decay to zero at ``total_steps``."""
    constant = int(round(total_steps * constant_fraction))
    decay = max(total_steps - constant, 1)

    def factor(step: int) -> float:
        return 1.0 if step < constant else max(0.0, 1.0 - (step - constant) / decay)

    return factor


class Trainer:
    """Optimises a :class:`TranslationModel` with one objective per side.

    Args:
        model: the backbone.
        generator_objective / discriminator_objective: loss terms for each side (the latter
            may be ``None`` for a model trained without an adversary).
        dataset: training samples, dicts of ``(C, H, W)`` tensors.
        optimizers: ``{"generator": {"lr", "betas", "weight_decay"}, "discriminator": {...}}``.
        out_dir: run folder (checkpoints/, images/, tensorboard/, metrics.jsonl).
        extra_state: JSON-like values stored in every checkpoint (recipe, intensity ...).
        stop_after: end this process after that step, as an interruption would (the schedule
            still spans ``steps``); ``None`` runs to ``steps``.
        validate: ``(model, device) -> {"val_mae_hu": ..., ...}``, called every ``val_every``
            steps and at the end; the checkpoint with the best ``best_metric`` (lowest when
            ``lower_is_better``) is kept as ``checkpoints/best.pt``. It must not draw random
            numbers (resume stays exact).
    """

    def __init__(self, *, model: TranslationModel, generator_objective: Objective,
                 discriminator_objective: Optional[Objective], dataset: Dataset, batch_size: int,
                 optimizers: Mapping[str, Mapping[str, Any]], steps: int, out_dir: Path,
                 model_name: str, constant_fraction: float = 0.5, num_workers: int = 0,
                 device: torch.device | str = "cpu", seed: int = 0, checkpoint_every: int = 500,
                 image_every: int = 250, log_every: int = 10, amp: bool = False,
                 extra_state: Optional[Dict[str, Any]] = None, stop_after: Optional[int] = None,
                 show_progress: bool = True,
                 validate: Optional[Callable[[TranslationModel, torch.device], Dict[str, float]]] = None,
                 val_every: int = 0, best_metric: str = "val_mae_hu", lower_is_better: bool = True):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device)
        self.g_objective = generator_objective.to(self.device)
        self.d_objective = discriminator_objective.to(self.device) if discriminator_objective is not None and len(discriminator_objective) else None
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.steps, self.out_dir, self.model_name = steps, Path(out_dir), model_name
        self.seed, self.stop_after = seed, stop_after
        self.checkpoint_every, self.image_every, self.log_every = checkpoint_every, image_every, log_every
        self.extra_state = dict(extra_state or {})
        self.show_progress = show_progress
        self.validate, self.val_every = validate, val_every
        self.best_val: Optional[float] = None
        self.best_metric, self.lower_is_better = best_metric, lower_is_better
        self.amp = bool(amp) and self.device.type == "cuda"
        self.step = 0

        groups = model.parameter_groups()
        # loss terms with parameters of their own (e.g. a trainable segmentor) join their side's optimiser
        extra = {side: [p for term in objective.terms for p in getattr(term, "trainable_parameters", lambda: [])()]
                 for side, objective in (("generator", self.g_objective), ("discriminator", self.d_objective))
                 if objective is not None}
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        for side, params in groups.items():
            params = list(params) + extra.get(side, [])
            cfg = dict(optimizers.get(side, {}))
            self.optimizers[side] = torch.optim.Adam(
                params, lr=cfg.get("lr", 2e-4), betas=tuple(cfg.get("betas", (0.5, 0.999))),
                weight_decay=cfg.get("weight_decay", 0.0))
        factor = linear_decay_lambda(steps, constant_fraction)
        self.schedulers = {side: torch.optim.lr_scheduler.LambdaLR(opt, factor) for side, opt in self.optimizers.items()}
        self.scalers = {side: torch.amp.GradScaler("cuda", enabled=self.amp) for side in self.optimizers}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        networks = {"model": self.model.state_dict(), "generator_objective": self.g_objective.state_dict()}
        if self.d_objective is not None:
            networks["discriminator_objective"] = self.d_objective.state_dict()
        return {
            "model": self.model_name, "step": self.step, "networks": networks,
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()},
            "rng": rng, "best_val": self.best_val, **self.extra_state,
        }

    def save(self) -> Path:
        ckpt_dir = self.out_dir / "checkpoints"
        path = save_checkpoint(self.state_dict(), ckpt_dir / f"step_{self.step:07d}.pt")
        save_checkpoint(self.state_dict(), ckpt_dir / "last.pt")
        return path

    def load(self, path: Path) -> None:
        state = load_checkpoint(path, expect_model=self.model_name)
        load_network_state(self.model, state["networks"]["model"], self.model_name, path)
        load_network_state(self.g_objective, state["networks"].get("generator_objective", {}), "loss-term", path)
        if self.d_objective is not None:
            load_network_state(self.d_objective, state["networks"].get("discriminator_objective", {}), "loss-term", path)
        try:
            for side, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][side])
                self.schedulers[side].load_state_dict(state["schedulers"][side])
                if side in state.get("scalers", {}):
                    self.scalers[side].load_state_dict(state["scalers"][side])
        except (KeyError, ValueError) as err:
            raise TranslateError(f"{path}: optimiser state does not match this recipe ({err})")
        self.step = int(state["step"])
        self.best_val = state.get("best_val")
        self._rng_to_restore = state["rng"]

    # ------------------------------------------------------------------ training
    def _loader(self) -> Iterable[Dict[str, Any]]:
        sampler = StepBatchSampler(len(self.dataset), self.batch_size, seed=self.seed, start_batch=self.step)
        # A private generator keeps DataLoader from drawing on the global RNG, so resumed runs match.
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(self.seed),
                            pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0)
        return iter(loader)

    def _to_device(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _update(self, side: str, loss: torch.Tensor) -> None:
        opt, scaler = self.optimizers[side], self.scalers[side]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def train_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        self.model.train()
        discriminators = self.model.discriminators()
        for net in discriminators.values():
            net.requires_grad_(False)
        with torch.autocast(self.device.type, enabled=self.amp):
            generated = self.model.generator_tensors(batch, needs=self.g_objective.needs())
            g_loss, g_parts = self.g_objective(generated, step=self.step)
        self._update("generator", g_loss)
        logs = {"g_total": float(g_loss.detach())}
        logs.update({f"g_{k}": float(v) for k, v in g_parts.items()})
        for net in discriminators.values():
            net.requires_grad_(True)
        if self.d_objective is not None and "discriminator" in self.optimizers:
            with torch.autocast(self.device.type, enabled=self.amp):
                judged = self.model.discriminator_tensors(batch, generated, needs=self.d_objective.needs())
                d_loss, d_parts = self.d_objective(judged, step=self.step)
            self._update("discriminator", d_loss)
            for net in discriminators.values():
                self.d_objective.after_optimizer_step(net)
            logs["d_total"] = float(d_loss.detach())
            logs.update({f"d_{k}": float(v) for k, v in d_parts.items()})
        for scheduler in self.schedulers.values():
            scheduler.step()
        if not all(math.isfinite(v) for v in logs.values()):
            bad = [k for k, v in logs.items() if not math.isfinite(v)]
            last = self.out_dir / "checkpoints" / "last.pt"
            where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise TranslateError(f"non-finite loss at step {self.step + 1} in {', '.join(bad)}; {where} "
                                 f"(lower the learning rate or check the data)")
        self._last = (batch, generated)
        return logs

    def _checked_step(self, batch: Mapping[str, Any], first: bool) -> Dict[str, float]:
        """A training step; on the run's first step a shape error from torch (a network that does not
        fit the samples, e.g. a discriminator deeper than the patch) becomes one line naming the shapes."""
        if not first:
            return self.train_step(batch)
        try:
            return self.train_step(batch)
        except RuntimeError as err:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items() if isinstance(v, torch.Tensor))
            detail = str(err).strip().splitlines()[0][:200]
            raise TranslateError(f"model.networks: the networks fail on the first batch ({shapes}): {detail}; "
                                 f"check patch_size / crop_size against the networks' depth") from None

    def _run_validation(self, logger: RunLogger) -> Dict[str, float]:
        scores = self.validate(self.model, self.device)
        logger.validation(self.step, scores)
        value = scores.get(self.best_metric)
        better = value is not None and (self.best_val is None or
                                        (value < self.best_val if self.lower_is_better else value > self.best_val))
        if better:
            self.best_val = value
            save_checkpoint(self.state_dict(), self.out_dir / "checkpoints" / "best.pt")
        return scores

    def fit(self, resume_from: Optional[Path] = None) -> Dict[str, Any]:
        self._rng_to_restore = None
        if resume_from is not None:
            self.load(resume_from)
        else:
            torch.manual_seed(self.seed)
        batches = self._loader()
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["torch"])
            if "cuda" in self._rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
        end = self.steps if self.stop_after is None else min(self.steps, self.stop_after)
        logger = RunLogger(self.out_dir, total=self.steps, start=self.step, show_progress=self.show_progress)
        started, first_step = time.perf_counter(), self.step
        last_logs: Dict[str, float] = {}
        try:
            with _StopOnSignal() as stop:
                while self.step < end:
                    batch = self._to_device(next(batches))
                    last_logs = self._checked_step(batch, first=self.step == first_step)
                    self.step += 1
                    lr = self.optimizers["generator"].param_groups[0]["lr"]
                    logger.step(self.step, last_logs, lr=lr, log=self.step % self.log_every == 0 or self.step == end)
                    if self.step % self.image_every == 0 or self.step == end:
                        logger.preview(self.step, *self._last)
                    if self.validate is not None and (self.step % self.val_every == 0 or self.step == self.steps):
                        self._run_validation(logger)
                    if self.step % self.checkpoint_every == 0 or self.step == end or stop.signum is not None:
                        self.save()
                    if stop.signum is not None and self.step < end:
                        raise TrainingInterrupted(stop.signum, self.step, self.out_dir / "checkpoints" / "last.pt")
        finally:
            logger.close()
        seconds = time.perf_counter() - started
        return {"step": self.step, "seconds": seconds,
                "steps_per_second": (self.step - first_step) / seconds if seconds > 0 else float("nan"),
                "losses": last_logs, "checkpoint": str(self.out_dir / "checkpoints" / "last.pt")}

