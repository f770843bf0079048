"""Loss terms that read named tensors, compose with ``+`` and scalar ``*``, and report parts.

A *term* declares the tensor names it needs (``fake_b``, ``real_b``, ``d_fake`` ...) and computes
one scalar from a mapping of named tensors produced by a model. Terms compose into an
:class:`Objective`::

    objective = Adversarial("lsgan") + 100 * Pixel("l1") + 10 * Gradient()
    total, parts = objective(tensors)     # parts: {"adversarial": ..., "pixel": ..., ...}

``parts`` holds each term's *weighted* contribution (detached), so ``sum(parts) == total``.
Weights are numbers or :class:`Schedule` objects evaluated at the training ``step``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import TranslateError
from ..registry import Registry

LOSSES = Registry("loss term")

Tensors = Mapping[str, Any]


class MissingTensorError(TranslateError, KeyError):
    """A term needs a tensor name the model did not produce."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


# ----------------------------------------------------------------------------- schedules
class Schedule:
    """A weight that depends on the training step."""

    def __call__(self, step: int | None) -> float:
        raise NotImplementedError

    def __mul__(self, other: Any) -> Any:
        if isinstance(other, (Term, Objective)):
            return _as_objective(other).scaled(self)
        if isinstance(other, (int, float)):
            return Scaled(self, float(other))
        return NotImplemented

    __rmul__ = __mul__


class Constant(Schedule):
    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, step: int | None) -> float:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


class Scaled(Schedule):
    def __init__(self, inner: Schedule, factor: float):
        self.inner, self.factor = inner, factor

    def __call__(self, step: int | None) -> float:
        return self.factor * self.inner(step)

    def __repr__(self) -> str:
        return f"{self.factor}*{self.inner!r}"


class LinearWarmup(Schedule):
    """Weight ``start`` until step ``begin``, rising linearly to ``value`` over the next ``steps`` steps, then
    constant. ``begin`` delays a term until the rest of the objective has shaped the networks (e.g. a
    consistency term that would fight the first steps of a translation)."""

    def __init__(self, value: float, steps: int, start: float = 0.0, begin: int = 0):
        if steps < 0:
            raise ValueError(f"LinearWarmup steps must be >= 0, got {steps}")
        if begin < 0:
            raise ValueError(f"LinearWarmup begin must be >= 0, got {begin}")
        self.value, self.steps, self.start, self.begin = float(value), int(steps), float(start), int(begin)

    def __call__(self, step: int | None) -> float:
        if step is None:
            return self.value
        if step < self.begin:
            return self.start
        if self.steps == 0 or step >= self.begin + self.steps:
            return self.value
        return self.start + (self.value - self.start) * (step - self.begin) / self.steps

    def __repr__(self) -> str:
        return f"LinearWarmup({self.value}, {self.steps}" + (f", begin={self.begin})" if self.begin else ")")


class LinearDecay(Schedule):
    """Weight falling linearly from ``value`` to ``end`` between steps ``begin`` and ``begin + steps``."""

    def __init__(self, value: float, steps: int, begin: int = 0, end: float = 0.0):
        self.value, self.steps, self.begin, self.end = float(value), int(steps), int(begin), float(end)

    def __call__(self, step: int | None) -> float:
        if step is None or step <= self.begin:
            return self.value
        frac = min(1.0, (step - self.begin) / max(self.steps, 1))
        return self.value + (self.end - self.value) * frac


Weight = Union[float, Schedule]


def _as_schedule(weight: Any) -> Schedule:
    if isinstance(weight, Schedule):
        return weight
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        return Constant(float(weight))
    raise TypeError(f"a loss weight must be a number or a Schedule, got {type(weight).__name__}")


# ----------------------------------------------------------------------------- terms
class Term(nn.Module):
    """Base class of every loss term.

    Subclasses set ``name`` (the default part name), implement :meth:`needs` (the tensor
    names read) and :meth:`compute` (one scalar). A term called on its own returns
    ``(value, {name: value})`` just like an :class:`Objective`.
    To write your own::

        class MeanIntensity(Term):
            name = "mean_intensity"
            def needs(self): return ("fake_b", "real_b")
            def compute(self, t): return (t["fake_b"].mean() - t["real_b"].mean()).abs()
    """

    name: str = "term"
    #: what a term requires of the data, shown by ``translate losses`` (e.g. "paired data").
    requirement: str = "-"

    def __init__(self, name: str | None = None):
        super().__init__()
        if name is not None:
            self.name = name

    def needs(self) -> Tuple[str, ...]:
        return ()

    def compute(self, tensors: Tensors) -> Tensor:
        raise NotImplementedError

    def after_optimizer_step(self, network: nn.Module) -> None:
        """Called by the trainer after the optimiser step of the side this term belongs to."""

    def forward(self, tensors: Tensors, step: int | None = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        return _as_objective(self)(tensors, step)

    # composition ------------------------------------------------------------
    def __add__(self, other: Any) -> "Objective":
        return _as_objective(self) + other

    def __radd__(self, other: Any) -> "Objective":
        if isinstance(other, (int, float)) and other == 0:  # lets sum([...]) work
            return _as_objective(self)
        return NotImplemented

    def __mul__(self, weight: Any) -> "Objective":
        return _as_objective(self).scaled(weight)

    __rmul__ = __mul__


class Objective(nn.Module):
    """A weighted sum of terms with a unique name per part."""

    def __init__(self, terms: Sequence[Tuple[Weight, Term]] = ()):
        super().__init__()
        self.terms = nn.ModuleList()
        self.weights: List[Schedule] = []
        self.part_names: List[str] = []
        for weight, term in terms:
            self._append(weight, term)

    def _append(self, weight: Weight, term: Term) -> None:
        if not isinstance(term, Term):
            raise TypeError(f"an objective holds Term objects, got {type(term).__name__}")
        name, k = term.name, 2
        while name in self.part_names:
            name, k = f"{term.name}_{k}", k + 1
        self.terms.append(term)
        self.weights.append(_as_schedule(weight))
        self.part_names.append(name)

    def items(self) -> List[Tuple[str, Schedule, Term]]:
        return list(zip(self.part_names, self.weights, self.terms))

    def needs(self) -> Tuple[str, ...]:
        seen: Dict[str, None] = {}
        for term in self.terms:
            for key in term.needs():
                seen[key] = None
        return tuple(seen)

    def check(self, tensors: Tensors) -> None:
        """Fail at once, naming what is missing and what is available."""
        missing = [k for k in self.needs() if k not in tensors]
        if missing:
            culprits = [f"{name} needs {[k for k in term.needs() if k not in tensors]}"
                        for name, _, term in self.items() if any(k not in tensors for k in term.needs())]
            raise MissingTensorError(
                f"objective: loss term(s) {'; '.join(culprits)} but the model produced only {sorted(tensors)} "
                f"(check the terms' tensor names, e.g. fake: / real:, against the model)"
            )

    def forward(self, tensors: Tensors, step: int | None = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        self.check(tensors)
        total: Tensor | None = None
        parts: Dict[str, Tensor] = {}
        for name, weight, term in self.items():
            value = weight(step) * term.compute(tensors)
            parts[name] = value.detach()
            total = value if total is None else total + value
        if total is None:
            total = torch.zeros(())
        return total, parts

    def after_optimizer_step(self, network: nn.Module) -> None:
        for term in self.terms:
            term.after_optimizer_step(network)

    # composition ------------------------------------------------------------
    def scaled(self, weight: Any) -> "Objective":
        if not isinstance(weight, (int, float, Schedule)) or isinstance(weight, bool):
            return NotImplemented
        out = Objective()
        for w, term in zip(self.weights, self.terms):
            out._append(_multiply(weight, w), term)
        return out

    def __add__(self, other: Any) -> "Objective":
        if not isinstance(other, (Term, Objective)):
            return NotImplemented
        out = Objective(list(zip(self.weights, self.terms)))
        for w, term in zip(_as_objective(other).weights, _as_objective(other).terms):
            out._append(w, term)
        return out

    def __radd__(self, other: Any) -> "Objective":
        if isinstance(other, (int, float)) and other == 0:
            return self
        return NotImplemented

    def __mul__(self, weight: Any) -> "Objective":
        return self.scaled(weight)

    __rmul__ = __mul__

    def __len__(self) -> int:
        return len(self.terms)

    def extra_repr(self) -> str:
        return " + ".join(f"{w!r}*{n}" for n, w, _ in self.items())


def _multiply(a: Any, b: Schedule) -> Schedule:
    if isinstance(a, Schedule):
        if isinstance(b, Constant):
            return Scaled(a, b.value)
        raise TypeError("cannot multiply two schedules; use one schedule per term")
    return Scaled(b, float(a)) if not isinstance(b, Constant) else Constant(float(a) * b.value)


def _as_objective(x: Any) -> Objective:
    return x if isinstance(x, Objective) else Objective([(1.0, x)])


# ----------------------------------------------------------------------------- recipe support
SCHEDULES: Dict[str, Callable[..., Schedule]] = {
    "constant": Constant,
    "linear_warmup": LinearWarmup,
    "linear_decay": LinearDecay,
}


def build_weight(spec: Any, where: str = "weight") -> Schedule:
    """``10`` or ``{"schedule": "linear_warmup", "value": 10, "steps": 500}`` -> Schedule."""
    if isinstance(spec, Mapping):
        spec = dict(spec)
        kind = spec.pop("schedule", None)
        if kind not in SCHEDULES:
            raise TranslateError(f"{where}.schedule: expected one of {sorted(SCHEDULES)}, got {kind!r}")
        try:
            return SCHEDULES[kind](**spec)
        except (TypeError, ValueError) as err:
            raise TranslateError(f"{where}: {err}") from None
    try:
        return _as_schedule(spec)
    except TypeError:
        raise TranslateError(f"{where}: expected a number or a schedule mapping, got {spec!r}") from None


def build_objective(specs: Sequence[Mapping[str, Any]], where: str = "objective") -> Objective:
    """Build an objective from recipe entries ``{name: ..., weight: ..., **kwargs}``.

    ``name`` is a registered term (see ``translate losses``) or a dotted path to a user's
    own :class:`Term` subclass; the remaining keys are passed to its constructor.
    """
    objective = Objective()
    for i, spec in enumerate(specs):
        spec = dict(spec)
        here = f"{where}[{i}]"
        if "name" not in spec:
            raise TranslateError(f"{here}: missing key 'name' (a loss term, see `translate losses`)")
        term_name = spec.pop("name")
        weight = build_weight(spec.pop("weight", 1.0), f"{here}.weight")
        cls = LOSSES.get(term_name)
        if not (isinstance(cls, type) and issubclass(cls, Term)):
            raise TranslateError(f"{here}.name: {term_name!r} is not a loss Term class")
        try:
            term = cls(**spec)
        except (TypeError, ValueError) as err:
            raise TranslateError(f"{here} ({term_name}): {err}") from None
        objective._append(weight, term)
    return objective


# ----------------------------------------------------------------------------- input checks
def check_image(x: Tensor, what: str = "input") -> None:
    """Require a ``(B, C, H, W)`` or ``(B, C, D, H, W)`` floating tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(f"{what}: expected shape (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}")


def check_pair(pred: Tensor, target: Tensor, what: str = "loss") -> None:
    """Require two images of identical shape."""
    check_image(pred, f"{what} prediction")
    check_image(target, f"{what} target")
    if pred.shape != target.shape:
        raise ValueError(f"{what}: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")


def check_choice(enum: type, value: Any, what: str) -> Any:
    """``enum(value)`` for a string option, or a ``ValueError`` listing the valid values."""
    try:
        return enum(str(getattr(value, "value", value)).lower())
    except ValueError:
        valid = ", ".join(repr(v.value) for v in enum)
        raise ValueError(f"unknown {what} {value!r}; expected one of {valid}") from None
