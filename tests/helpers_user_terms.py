"""A user's own loss term, loaded by dotted path in ``tests/test_losses_base.py``."""

from translate.losses.base import Term


class MyTerm(Term):
    """Absolute difference of mean intensities."""

    name = "my_term"

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def needs(self):
        return ("fake_b", "real_b")

    def compute(self, tensors):
        return self.scale * (tensors["fake_b"].mean() - tensors["real_b"].mean()).abs()


class NanTerm(Term):
    """A term that goes non-finite, to test how training reports it."""

    name = "nan_term"

    def needs(self):
        return ("fake_b",)

    def compute(self, tensors):
        return tensors["fake_b"].sum() * float("nan")


class NanAtCalls(Term):
    """Finite (zero) except on the listed calls (1-based), where it goes NaN: a divergence that passes."""

    name = "flaky_term"

    def __init__(self, calls=(2,)):
        super().__init__()
        self.calls, self.count = set(calls), 0

    def needs(self):
        return ("fake_b",)

    def compute(self, tensors):
        self.count += 1
        scale = float("nan") if self.count in self.calls else 0.0
        return tensors["fake_b"].mean() * scale


class NanGradTerm(Term):
    """A finite value (zero) whose gradient is infinite: sqrt at 0. Only a gradient check catches it."""

    name = "nan_grad_term"

    def __init__(self, key: str = "fake_b"):
        super().__init__()
        self.key = key  # fake_b on the generator side, d_real on the discriminator's

    def needs(self):
        return (self.key,)

    def compute(self, tensors):
        value = tensors[self.key]
        value = value[0] if isinstance(value, (list, tuple)) else value
        return (value - value.detach()).sqrt().sum()
