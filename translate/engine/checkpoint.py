"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values::

    {"format": "translate-checkpoint", "version": 2, "model": "pix2pix", "step": 1200,
     "recipe": {...}, "domains": {"a": {"key": "mr", "intensity": {...}}, "b": {...}},
     "networks": {...}, "optimizers": {...}, "schedulers": {...}, "rng": {...}}

Version 2 (2026-12) stores the data domains' intensity specs; version 1 checkpoints (the first,
Pix2pix-only core) cannot be read by this version.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Dict

import torch

from ..atomic import atomic_path
from ..errors import TranslateError

FORMAT = "translate-checkpoint"
VERSION = 2


def save_checkpoint(state: Dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    state = {"format": FORMAT, "version": VERSION, **state}
    try:
        with atomic_path(path, suffix=".tmp") as tmp:
            with open(tmp, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as err:  # e.g. ENOSPC: the temporary is gone, the previous checkpoint untouched
        reason = err.strerror or str(err)
        raise TranslateError(f"cannot write checkpoint {path}: {reason}; the previous checkpoint (if any) is "
                             f"intact") from None
    return Path(path)


def load_checkpoint(path: str | Path, expect_model: str | None = None) -> Dict[str, Any]:
    """Read and validate a checkpoint; one-line :class:`TranslateError` on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise TranslateError(f"checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated / foreign files
        # the weights-only UnpicklingError text is torch's advice about trusting a file, not the cause
        detail = "" if isinstance(err, pickle.UnpicklingError) or not str(err).strip() else \
            f" ({str(err).strip().splitlines()[0][:120]})"
        raise TranslateError(f"cannot read checkpoint {path}: truncated, damaged or not a PyTorch checkpoint{detail}; "
                             f"expected a file written by `translate fit`") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TranslateError(f"{path} is not a translate checkpoint (expected a file written by `translate fit`)")
    if state.get("version") != VERSION:
        raise TranslateError(f"{path}: checkpoint version {state.get('version')!r} is not supported (expected {VERSION})")
    if expect_model is not None and state.get("model") != expect_model:
        raise TranslateError(
            f"{path}: checkpoint is from model {state.get('model')!r}, but the recipe builds {expect_model!r}"
        )
    return state


def load_network_state(network: torch.nn.Module, state: Dict[str, Any], what: str, source: str | Path) -> None:
    """``load_state_dict`` with a one-line error naming the checkpoint and the network."""
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(first[1:2]).strip()[:200] if len(first) > 1 else first[0][:200]
        raise TranslateError(
            f"{source}: the {what} weights do not fit the network the recipe builds ({detail})"
        ) from None


def inference_weights(state: Dict[str, Any]) -> Dict[str, Any]:
    """The model weights to translate with: the averaged ones (``trainer.ema``) when the checkpoint has them."""
    networks = state["networks"]
    return networks["model_ema"] if "model_ema" in networks else networks["model"]
