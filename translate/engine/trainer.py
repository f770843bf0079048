"""The trainer: optimisers, schedules, checkpoints, logging. It knows no backbone.

One step = a generator update then a discriminator update, each driven by an
:class:`~translate.losses.base.Objective` over the named tensors the model returns.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import warnings
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


class NonFiniteStep(Exception):
    """A loss or gradient went non-finite during one side's update; that update was not applied.

    ``what`` is ``"loss"`` or ``"gradient"``; ``terms`` are the logged part names (``g_pixel``,
    ``d_adversarial``) that went non-finite, or ``["g_total"]`` when no single part did.
    """

    def __init__(self, side: str, what: str, terms: List[str]):
        self.side, self.what, self.terms = side, what, terms
        super().__init__(f"non-finite {what} in {', '.join(terms)}")


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
        ema: decay ``d`` of an exponential moving average of the generator-side parameters
            (Yazici et al. 2019: averaging smooths the oscillation of adversarial training),
            ``ema <- ema + (1 - d_t) (theta - ema)`` after every step with the warm-up
            ``d_t = min(d, (1 + t) / (10 + t))``. Checkpoints keep the raw weights (``networks.model``,
            to resume) and the averaged model (``networks.model_ema``, which validation, inference
            and synthesis use).
        rewind_factor: a guard against a run that collapses and does not come back: when a
            validation is worse than ``rewind_factor`` times the best one so far (lower is better;
            for a higher-is-better metric, below the best divided by it), the run goes back to
            ``best.pt`` (weights, optimisers, schedule, step) and continues from there on a fresh
            random stream (other batches, other noise), as large-model training rewinds past a
            loss spike (Chowdhery et al. 2022, section 5.1). At most ``max_rewinds`` times; the
            count is kept in checkpoints so ``--resume`` stays exact. ``None``: off.
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
                 val_every: int = 0, best_metric: str = "val_mae_hu", lower_is_better: bool = True,
                 on_nan: str = "stop", max_nan_skips: int = 10, ema: Optional[float] = None,
                 rewind_factor: Optional[float] = None, max_rewinds: int = 2):
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
        if on_nan not in ("stop", "skip"):
            raise TranslateError(f"trainer.on_nan: {on_nan!r}; expected 'stop' or 'skip'")
        self.on_nan, self.max_nan_skips = on_nan, int(max_nan_skips)
        self.nan_skips = 0  # steps whose update was skipped for a non-finite loss or gradient (kept in checkpoints)
        self._saved_step: Optional[int] = None  # step of the last checkpoint written or loaded
        if ema is not None and not 0.0 < float(ema) < 1.0:
            raise TranslateError(f"trainer.ema: {ema!r}; expected a decay in (0, 1), e.g. 0.999")
        self.ema_decay = None if ema is None else float(ema)
        if rewind_factor is not None and not float(rewind_factor) > 1.0:
            raise TranslateError(f"trainer.rewind_factor: {rewind_factor!r}; expected a factor above 1, e.g. 1.5")
        if rewind_factor is not None and (validate is None or not val_every):
            raise TranslateError("trainer.rewind_factor needs validations to compare: set trainer.val_every > 0 "
                                 "(and a val split)")
        self.rewind_factor = None if rewind_factor is None else float(rewind_factor)
        self.max_rewinds = int(max_rewinds)
        self.rewinds = 0  # times the run went back to best.pt (kept in checkpoints: it picks the random stream)
        self._last = None

        groups = model.parameter_groups()
        generator_ids = {id(p) for p in groups.get("generator", [])}
        #: name -> each generator-side parameter, and its averaged copy (``None``: no averaging)
        self._averaged = {} if ema is None else {name: p for name, p in self.model.named_parameters()
                                                 if id(p) in generator_ids}
        self.ema: Optional[Dict[str, torch.Tensor]] = None if ema is None else {
            name: p.detach().clone() for name, p in self._averaged.items()}
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
        if self.ema is not None:
            networks["model_ema"] = {**networks["model"], **{name: value.clone() for name, value in self.ema.items()}}
        if self.d_objective is not None:
            networks["discriminator_objective"] = self.d_objective.state_dict()
        return {
            "model": self.model_name, "step": self.step, "networks": networks,
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scalers": {k: v.state_dict() for k, v in self.scalers.items()},
            "rng": rng, "best_val": self.best_val, "nan_skips": self.nan_skips, "rewinds": self.rewinds,
            **self.extra_state,
        }

    def save(self) -> Path:
        ckpt_dir = self.out_dir / "checkpoints"
        path = save_checkpoint(self.state_dict(), ckpt_dir / f"step_{self.step:07d}.pt")
        save_checkpoint(self.state_dict(), ckpt_dir / "last.pt")
        self._saved_step = self.step
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
        if self.ema is not None:
            averaged = state["networks"].get("model_ema")
            if averaged is None:
                raise TranslateError(f"{path}: trainer.ema is set but the checkpoint has no averaged weights "
                                     f"(networks.model_ema); resume without trainer.ema or start afresh")
            with torch.no_grad():
                for name, value in self.ema.items():
                    value.copy_(averaged[name])
        self.step = int(state["step"])
        self.best_val = state.get("best_val")
        self.nan_skips = int(state.get("nan_skips", 0))
        self.rewinds = int(state.get("rewinds", 0))
        self._saved_step = self.step
        self._rng_to_restore = state["rng"]

    # ------------------------------------------------------------------ training
    def _loader(self) -> Iterable[Dict[str, Any]]:
        seed = self._stream_seed()
        sampler = StepBatchSampler(len(self.dataset), self.batch_size, seed=seed, start_batch=self.step)
        # A private generator keeps DataLoader from drawing on the global RNG, so resumed runs match.
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(seed),
                            pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0)
        return iter(loader)

    def _stream_seed(self) -> int:
        """The seed of the batches (and, after a rewind, of the random state): ``seed`` until the first rewind."""
        return self.seed + 7919 * self.rewinds

    def _to_device(self, batch: Mapping[str, Any]) -> Dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _update(self, side: str, loss: torch.Tensor, parts: Optional[Mapping[str, torch.Tensor]] = None,
                objective: Optional[Objective] = None, recompute: Optional[Callable[[], Mapping[str, Any]]] = None) -> None:
        """Backward and optimiser step, unless the loss or a gradient is non-finite: then nothing is
        applied and :class:`NonFiniteStep` names the term(s) at fault."""
        opt, scaler = self.optimizers[side], self.scalers[side]
        prefix = "g_" if side == "generator" else "d_"
        if parts is not None and not bool(torch.isfinite(loss.detach()).all()):
            bad = [prefix + k for k, v in parts.items() if not bool(torch.isfinite(v).all())]
            raise NonFiniteStep(side, "loss", bad or [f"{prefix}total"])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        # under AMP the scaler itself skips steps with inf/NaN gradients and lowers its scale
        if parts is not None and not self.amp and not self._gradients_finite(opt):
            opt.zero_grad(set_to_none=True)
            bad = self._blame_gradient(side, objective, recompute) if objective is not None and recompute else []
            raise NonFiniteStep(side, "gradient", [prefix + name for name in bad] or [f"{prefix}total"])
        scaler.step(opt)
        scaler.update()

    @staticmethod
    def _gradients_finite(opt: torch.optim.Optimizer) -> bool:
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return True
        largest = torch.stack([g.detach().abs().amax().float() for g in grads])  # max |g|: no overflow
        return bool(torch.isfinite(largest).all())

    def _blame_gradient(self, side: str, objective: Objective, recompute: Callable[[], Mapping[str, Any]]) -> List[str]:
        """Which terms have a non-finite gradient: each term backpropagated alone through a fresh forward
        pass. Runs only after a fault; random state and buffers (batch-norm statistics) are restored."""
        params = [p for group in self.optimizers[side].param_groups for p in group["params"] if p.requires_grad]
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        modules = [m for m in (self.model, self.g_objective, self.d_objective) if m is not None]
        buffers = [(b, b.detach().clone()) for m in modules for b in m.buffers()]
        bad: List[str] = []
        try:
            tensors = recompute()
            for name, weight, term in objective.items():
                value = weight(self.step) * term.compute(tensors)
                if not value.requires_grad:
                    continue
                grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
                if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
                    bad.append(name)
        except Exception:  # a diagnosis only: the fault is reported either way
            pass
        finally:
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
        return bad

    def train_step(self, batch: Mapping[str, Any]) -> Dict[str, float]:
        self.model.train()
        discriminators = self.model.discriminators()
        for net in discriminators.values():
            net.requires_grad_(False)
        with torch.autocast(self.device.type, enabled=self.amp):
            generated = self.model.generator_tensors(batch, needs=self.g_objective.needs())
            g_loss, g_parts = self.g_objective(generated, step=self.step)
        self._update("generator", g_loss, g_parts, self.g_objective,
                     lambda: self.model.generator_tensors(batch, needs=self.g_objective.needs()))
        logs = {"g_total": float(g_loss.detach())}
        logs.update({f"g_{k}": float(v) for k, v in g_parts.items()})
        for net in discriminators.values():
            net.requires_grad_(True)
        if self.d_objective is not None and "discriminator" in self.optimizers:
            with torch.autocast(self.device.type, enabled=self.amp):
                judged = self.model.discriminator_tensors(batch, generated, needs=self.d_objective.needs())
                d_loss, d_parts = self.d_objective(judged, step=self.step)
            self._update("discriminator", d_loss, d_parts, self.d_objective,
                         lambda: self.model.discriminator_tensors(batch, generated, needs=self.d_objective.needs()))
            for net in discriminators.values():
                self.d_objective.after_optimizer_step(net)
            logs["d_total"] = float(d_loss.detach())
            logs.update({f"d_{k}": float(v) for k, v in d_parts.items()})
        for scheduler in self.schedulers.values():
            scheduler.step()
        self._update_ema()
        self._last = (batch, generated)
        return logs

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = min(self.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        for name, value in self.ema.items():
            value.lerp_(self._averaged[name].detach(), 1.0 - decay)

    @contextlib.contextmanager
    def averaged_weights(self):
        """The model with its averaged generator weights for the duration (a no-op without ``ema``)."""
        if self.ema is None:
            yield self.model
            return
        raw = {name: p.detach().clone() for name, p in self._averaged.items()}
        with torch.no_grad():
            for name, value in self.ema.items():
                self._averaged[name].copy_(value)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for name, value in raw.items():
                    self._averaged[name].copy_(value)

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

    def _non_finite(self, fault: NonFiniteStep, logger: RunLogger) -> Dict[str, float]:
        """``trainer.on_nan``: stop with one line, or skip this step's update and count it."""
        step = self.step + 1
        last = self.out_dir / "checkpoints" / "last.pt"
        where = (f"the last good checkpoint is {last} (step {self._saved_step})"
                 if self._saved_step is not None and last.is_file() else "no checkpoint was written yet")
        what = f"non-finite {fault.what} at step {step} in {', '.join(fault.terms)}"
        if self.on_nan == "stop":
            raise TranslateError(f"{what}; {where} (lower the learning rate or check the data; "
                                 f"trainer.on_nan=skip skips such steps)")
        self.nan_skips += 1
        if self.nan_skips > self.max_nan_skips:
            raise TranslateError(f"{what}: {self.nan_skips} non-finite steps, more than trainer.max_nan_skips="
                                 f"{self.max_nan_skips}; stopped; {where} (lower the learning rate or check the data)")
        with warnings.catch_warnings():  # the schedule keeps counting steps even when none was applied yet
            warnings.simplefilter("ignore", UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.step()
        logger.message(f"step {step}: {what}; update skipped ({self.nan_skips} of at most {self.max_nan_skips})")
        return {"nan_skips": float(self.nan_skips)}

    def _regressed(self, value: Optional[float]) -> bool:
        """Whether a validation score calls for a rewind to best.pt (``rewind_factor``)."""
        if self.rewind_factor is None or value is None or self.best_val is None or self.rewinds >= self.max_rewinds:
            return False
        if not (self.out_dir / "checkpoints" / "best.pt").is_file():
            return False
        if self.lower_is_better:
            return value > self.rewind_factor * self.best_val
        return value < self.best_val / self.rewind_factor

    def _rewind(self, value: float, logger: RunLogger) -> None:
        """Back to best.pt, on a fresh random stream; the records after its step are dropped (the rewind
        record keeps the score that caused it)."""
        best = self.out_dir / "checkpoints" / "best.pt"
        left, rewinds = self.step, self.rewinds + 1
        self.load(best)
        self.rewinds = rewinds
        torch.manual_seed(self._stream_seed())
        reason = (f"{self.best_metric} {value:.4g} at step {left} is worse than {self.rewind_factor:g} x the best "
                  f"{self.best_val:.4g} (step {self.step})")
        logger.rewind(self.step, {"rewound_from": left, f"rewound_{self.best_metric}": value, "rewinds": rewinds})
        logger.message(f"{reason}: rewound to best.pt (step {self.step}) on a fresh random stream "
                       f"(rewind {rewinds} of at most {self.max_rewinds})")
        self.save()  # last.pt is the rewound state, so a --resume from here continues the same way

    def _run_validation(self, logger: RunLogger) -> Dict[str, float]:
        with self.averaged_weights() as model:
            scores = self.validate(model, self.device)
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
        started, first_step, done = time.perf_counter(), self.step, 0
        last_logs: Dict[str, float] = {}
        try:
            with _StopOnSignal() as stop:
                while self.step < end:
                    batch = self._to_device(next(batches))
                    # a skipped step leaves no trace: batch-norm statistics of its forward pass are undone too
                    buffers = [(b, b.detach().clone()) for b in self.model.buffers()] if self.on_nan == "skip" else []
                    try:
                        last_logs = self._checked_step(batch, first=self.step == first_step)
                        skipped = False
                    except NonFiniteStep as fault:
                        with torch.no_grad():
                            for buffer, saved in buffers:
                                buffer.copy_(saved)
                        last_logs, skipped = self._non_finite(fault, logger), True
                    self.step += 1
                    done += 1
                    lr = self.optimizers["generator"].param_groups[0]["lr"]
                    logger.step(self.step, last_logs, lr=lr,
                                log=skipped or self.step % self.log_every == 0 or self.step == end)
                    if (self.step % self.image_every == 0 or self.step == end) and self._last is not None:
                        logger.preview(self.step, *self._last)
                    if self.validate is not None and (self.step % self.val_every == 0 or self.step == self.steps):
                        value = self._run_validation(logger).get(self.best_metric)
                        if self._regressed(value):
                            self._rewind(value, logger)
                            batches = self._loader()
                            continue
                    if self.step % self.checkpoint_every == 0 or self.step == end or stop.signum is not None:
                        self.save()
                    if stop.signum is not None and self.step < end:
                        raise TrainingInterrupted(stop.signum, self.step, self.out_dir / "checkpoints" / "last.pt")
        finally:
            logger.close()
        seconds = time.perf_counter() - started
        return {"step": self.step, "seconds": seconds,
                "steps_per_second": done / seconds if seconds > 0 else float("nan"), "rewinds": self.rewinds,
                "losses": last_logs, "checkpoint": str(self.out_dir / "checkpoints" / "last.pt"),
                "nan_skips": self.nan_skips}

