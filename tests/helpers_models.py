"""A user's own two-generator model, loaded by dotted path (``helpers_models.TwoWay``) in test_engine_core."""

from typing import Any, Dict

import torch
from torch import nn

from translate.models.base import Role, TranslationModel


class TwoWay(TranslationModel):
    """Two supervised generators on paired data, A -> B and B -> A; no discriminator."""

    roles = {
        "g_ab": Role("generator", inputs=lambda c: c.served["a"], outputs=lambda c: c.domain["b"]),
        "g_ba": Role("generator", inputs=lambda c: c.domain["b"], outputs=lambda c: c.domain["a"]),
    }
    directions = {"a2b": ("a", "b"), "b2a": ("b", "a")}

    def __init__(self, g_ab: nn.Module, g_ba: nn.Module, scale: float = 1.0):
        super().__init__()
        self.g_ab, self.g_ba, self.scale = g_ab, g_ba, scale

    def generator_tensors(self, batch, needs=()) -> Dict[str, Any]:
        out = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out["fake_b"] = self.g_ab(batch["real_a"])
        out["fake_a"] = self.g_ba(batch["real_b"])
        return out

    def discriminator_tensors(self, batch, generated, needs=()):
        return {}

    @torch.no_grad()
    def translate(self, source, direction="a2b"):
        return self.g_ab(source) if direction == "a2b" else self.g_ba(source)
