"""Whole-volume inference: slice by slice along an axis, output on the input's exact grid, in HU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TranslateError
from ..models import TranslationModel
from ..recipe import Recipe
from .checkpoint import load_checkpoint, load_network_state
from .trainer import resolve_device


class SliceTranslator:
    """A trained model plus the intensity handling it was trained with.

    Built from a checkpoint (:meth:`from_checkpoint`) or, during training, from the live model;
    :meth:`translate_array` maps a source volume ``(Z, Y, X)`` in its
    native units (e.g. MR signal) to the target in HU on the same grid.
    """

    def __init__(self, model: TranslationModel, recipe: Recipe, normaliser: Any, window: Any,
                 device: torch.device | str = "auto", step: int = 0):
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model, self.recipe, self.normaliser, self.window = model, recipe, normaliser, window
        self.step = step
        self.context = recipe.data.context_slices
        self.multiple = int(getattr(model.generator, "size_multiple", 1))

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "auto") -> "SliceTranslator":
        from ..data.intensity import HUWindow, MRNormalizer
        from ..models import MODELS
        from .build import build_model

        state = load_checkpoint(checkpoint)
        if state.get("model") not in MODELS:
            raise TranslateError(f"{checkpoint}: unknown model {state.get('model')!r} in checkpoint")
        try:
            recipe = Recipe.model_validate(state["recipe"])
            normaliser = MRNormalizer.from_dict(state["intensity"]["source"])
            window = HUWindow.from_dict(state["intensity"]["target"])
        except Exception as err:  # a foreign or damaged checkpoint
            raise TranslateError(f"{checkpoint}: checkpoint lacks a valid recipe or intensity settings ({err})") from None
        resolved = resolve_device(device)
        model = build_model(recipe)
        load_network_state(model, state["networks"]["model"], recipe.model.name, checkpoint)
        return cls(model.to(resolved).eval(), recipe, normaliser, window, device=resolved,
                   step=int(state.get("step", 0)))

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    @torch.no_grad()
    def translate_array(self, source: np.ndarray, axis: Optional[int] = None, batch_size: int = 16,
                        on_batch: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """``(Z, Y, X)`` source -> ``(Z, Y, X)`` float32 HU, slicing along ``axis`` (default: the recipe's)."""
        axis = self.recipe.data.axis if axis is None else axis
        if axis not in (0, 1, 2):
            raise TranslateError(f"axis: expected 0, 1 or 2, got {axis}")
        was_training = self.model.training
        self.model.eval()
        try:
            return self._translate(source, axis, batch_size, on_batch)
        finally:
            self.model.train(was_training)

    def _translate(self, source: np.ndarray, axis: int, batch_size: int,
                   on_batch: Optional[Callable[[int], None]]) -> np.ndarray:
        params = self.normaliser.fit(source)
        normalised = np.moveaxis(self.normaliser.apply(source, params), axis, 0)
        volume = torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))
        n = volume.shape[0]
        out = np.empty(volume.shape, dtype=np.float32)
        offsets = torch.arange(-self.context, self.context + 1)
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            neighbours = (index[:, None] + offsets[None, :]).clamp(0, n - 1)  # edge-replicated context
            batch, (h, w) = self._pad(volume[neighbours].to(self.device))
            fake = self.model.translate(batch)[:, 0, :h, :w].float().cpu()
            out[start:start + len(index)] = self.window.inverse(fake.numpy())
            if on_batch is not None:
                on_batch(len(index))
        return np.moveaxis(out, 0, axis)


def infer_volume(checkpoint: str | Path, source: str | Path, output: str | Path, *, axis: Optional[int] = None,
                 batch_size: int = 16, device: str = "auto", progress: bool = True) -> Dict[str, Any]:
    """Translate a whole volume file and write it atomically on the input's grid (int16 HU)."""
    from ..data.io import array_to_image, image_to_array, read_volume, write_volume

    output = Path(output)
    if output.exists() and output.is_dir():
        raise TranslateError(f"output {output} is a folder; expected a file name ending in .nii.gz, .nrrd or .mha")
    translator = SliceTranslator.from_checkpoint(checkpoint, device=device)
    image = read_volume(source, what="input")
    array = image_to_array(image).astype(np.float32)
    slicing = translator.recipe.data.axis if axis is None else axis
    total = array.shape[slicing] if slicing in (0, 1, 2) else 0

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("infer", total=total)
            hu = translator.translate_array(array, axis=axis, batch_size=batch_size,
                                            on_batch=lambda k: bar.advance(task, k))
    else:
        hu = translator.translate_array(array, axis=axis, batch_size=batch_size)
    hu_int = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    written = write_volume(array_to_image(hu_int, image), output)
    return {"output": str(written), "slices": total, "shape": list(array.shape), "checkpoint_step": translator.step}
