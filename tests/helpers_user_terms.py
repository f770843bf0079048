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
