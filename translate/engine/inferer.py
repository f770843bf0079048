"""Whole-volume inference: an inferer from the registry, intensities from the domains' specs.

``slices`` (2D / 2.5D, any axis, batched) and ``sliding_window`` (3D, MONAI's
``sliding_window_inference`` with Gaussian blending) both map a network-space volume
``(C_in, Z, Y, X)`` to ``(C_out, Z, Y, X)``; memory is bounded by the batch or the window.
:class:`VolumeTranslator` adds the domains: the input is normalised with its domain's spec and the
output mapped back with the output domain's inverse (HU, or argmax to label ids), so the file
names decide nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.domains import Domain, domains_from_dict
from ..errors import TranslateError
from ..models import TranslationModel
from ..recipe import Recipe
from ..registry import Registry
from .checkpoint import inference_weights, load_checkpoint, load_network_state
from .trainer import resolve_device

INFERERS = Registry("inferer")
Forward = Callable[[torch.Tensor], torch.Tensor]


@INFERERS.register("slices")
class SliceInferer:
    """Slice by slice along ``axis`` with ``context_slices`` neighbours as channels, ``batch_size`` at once.

    Each batch is padded (replicate) to the network's size multiple and cropped back. With
    ``window: [H, W]`` each slice is translated in overlapping in-plane windows blended by MONAI
    (Gaussian weights), as a model trained on crops of that size saw its inputs: instance norm then
    sees the statistics it was trained with.
    """

    def __init__(self, axis: int = 0, context_slices: int = 0, batch_size: int = 16, size_multiple: int = 1,
                 window: Optional[Sequence[int]] = None, overlap: float = 0.5):
        if axis not in (0, 1, 2):
            raise TranslateError(f"axis: expected 0, 1 or 2, got {axis}")
        if window is not None:
            window = [int(w) for w in window]
            if len(window) != 2 or any(w < 1 or w % size_multiple for w in window):
                raise TranslateError(f"inference.window {window}: expected [H, W], each a multiple of {size_multiple}")
        if not 0 <= overlap < 1:
            raise TranslateError(f"inference.overlap: expected a fraction in [0, 1), got {overlap}")
        self.axis, self.context, self.batch_size, self.multiple = axis, int(context_slices), int(batch_size), size_multiple
        self.window, self.overlap = window, float(overlap)

    def _forward(self, forward: Forward, batch: torch.Tensor) -> torch.Tensor:
        if self.window is None:
            return forward(batch)
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(batch, self.window, batch.shape[0], forward, overlap=self.overlap,
                                        mode="gaussian")

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def __call__(self, forward: Forward, volume: np.ndarray, device: torch.device,
                 on_progress: Optional[Callable[[int], None]] = None,
                 finish: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
        """``(C_in, Z, Y, X)`` -> ``(C_out, Z, Y, X)``; with ``finish`` (network space ``(C_out, *S)`` ->
        native ``(*S)``, applied per batch) -> native ``(Z, Y, X)``, so a many-channel output (label
        probabilities) is never held for the whole volume."""
        moved = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, self.axis + 1, 1), dtype=np.float32))
        channels, n = moved.shape[:2]
        offsets = torch.arange(-self.context, self.context + 1)
        out = None
        for start in range(0, n, self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, n))
            neighbours = (index[:, None] + offsets[None, :]).clamp(0, n - 1)  # edge-replicated context
            batch = moved[:, neighbours].permute(1, 0, 2, 3, 4).reshape(len(index), -1, *moved.shape[2:])
            batch, (h, w) = self._pad(batch.to(device))
            result = self._forward(forward, batch)[..., :h, :w].float().cpu().numpy()
            del batch
            if finish is not None:
                result = finish(result.transpose(1, 0, 2, 3))
                if out is None:
                    out = np.empty((n, h, w), dtype=result.dtype)
                out[start:start + len(index)] = result
                if on_progress is not None:
                    on_progress(len(index))
                continue
            if out is None:
                out = np.empty((result.shape[1], n, h, w), dtype=np.float32)
            out[:, start:start + len(index)] = result.transpose(1, 0, 2, 3)
            if on_progress is not None:
                on_progress(len(index))
        if finish is not None:
            return np.moveaxis(out, 0, self.axis)
        return np.moveaxis(out, 1, self.axis + 1)

    def steps(self, shape: Sequence[int]) -> int:
        return int(shape[self.axis])


@INFERERS.register("sliding_window")
class SlidingWindowInferer:
    """3D windows of ``roi_size`` overlapping by ``overlap``, blended (``gaussian`` or ``constant``) by MONAI.

    The blended output is accumulated on the CPU, so device memory holds only ``sw_batch_size`` windows.
    """

    def __init__(self, roi_size: Sequence[int], overlap: float = 0.25, mode: str = "gaussian",
                 sigma_scale: float = 0.125, sw_batch_size: int = 2, size_multiple: int = 1):
        roi = [int(r) for r in roi_size]
        if len(roi) != 3 or any(r % size_multiple for r in roi):
            raise TranslateError(f"inference.roi_size {roi}: expected [D, H, W], each a multiple of {size_multiple}")
        if not 0 <= overlap < 1:
            raise TranslateError(f"inference.overlap: expected a fraction in [0, 1), got {overlap}")
        if mode not in ("gaussian", "constant"):
            raise TranslateError(f"inference.mode: expected 'gaussian' or 'constant', got {mode!r}")
        self.roi, self.overlap, self.mode = roi, float(overlap), mode
        self.sigma_scale, self.sw_batch_size = float(sigma_scale), int(sw_batch_size)

    def __call__(self, forward: Forward, volume: np.ndarray, device: torch.device,
                 on_progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
        out = sliding_window_inference(x, self.roi, self.sw_batch_size, forward, overlap=self.overlap,
                                       mode=self.mode, sigma_scale=self.sigma_scale, sw_device=device,
                                       device=torch.device("cpu"))
        if on_progress is not None:
            on_progress(1)
        return out[0].float().numpy()

    def steps(self, shape: Sequence[int]) -> int:
        return 1


def build_inferer(recipe: Recipe, model: TranslationModel, **overrides: Any):
    """The recipe's inferer (default: ``slices`` in 2D, ``sliding_window`` in 3D) with CLI ``overrides``.

    A 2D model trained on ``crop_size`` crops translates whole slices in windows of that size
    (rounded up to the network's size multiple), as the 3D inferer uses ``patch_size``: instance
    norm then sees the statistics it was trained with (on ibsi_sts val patients whole-slice
    inference cost 5 HU of MAE, README). ``inference.window: null`` keeps whole slices.
    """
    name = recipe.inference.name or ("slices" if recipe.model.spatial_dims == 2 else "sliding_window")
    kwargs = recipe.inference.kwargs()
    dataset = recipe.data.dataset.kwargs()
    if name == "slices":
        kwargs.setdefault("axis", dataset.get("axis", 0))
        kwargs.setdefault("context_slices", dataset.get("context_slices", 0))
        if "window" not in kwargs and dataset.get("crop_size"):  # `inference.window: null` keeps whole slices
            multiple = model.size_multiple()
            kwargs["window"] = [-(-int(c) // multiple) * multiple for c in dataset["crop_size"]]
    elif name == "sliding_window" and "roi_size" not in kwargs and "patch_size" in dataset:
        kwargs["roi_size"] = dataset["patch_size"]
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    cls = INFERERS.get(name)
    try:
        return cls(size_multiple=model.size_multiple(), **kwargs)
    except TypeError as err:
        raise TranslateError(f"inference ({name}): {err}") from None


#: ``--tta`` values: one pass, the mean over the training flips, over one-voxel shifts, or over both
TTA_CHOICES = ("none", "flips", "shifts", "flips+shifts")


def tta_flip_sets(recipe: Recipe | None, tta: str) -> List[Tuple[int, ...]]:
    """Tensor dims to flip for each pass of test-time augmentation ``tta`` (``[()]``: one plain pass).

    ``"flips"`` takes every combination of the recipe's training flips (``data.dataset.flips``, 2**k
    passes, the identity included): the network has seen each of those orientations in training, and
    the mean of its flipped-back outputs averages away the texture a GAN generator draws differently
    in each (for the unpaired MR -> CT recipe, val MAE 92 -> 78 HU; benchmarks/unpaired.py).
    A recipe trained without flips (e.g. a segmenter that must not swap left and right) is refused.
    """
    from ..data.augment import parse_flip_axes

    if tta not in TTA_CHOICES:
        raise TranslateError(f"--tta {tta!r}: expected one of {', '.join(TTA_CHOICES)}")
    if "flips" not in tta:
        return [()]
    if recipe is None:
        raise TranslateError(f"--tta {tta}: the model carries no recipe, so its training flips are unknown")
    flips = recipe.data.dataset.model_dump().get("flips", True)
    axes = parse_flip_axes(flips, recipe.model.spatial_dims, "data.dataset.flips")
    if not axes:
        raise TranslateError(f"--tta {tta}: the checkpoint's recipe trains without flips (data.dataset.flips: {flips}); "
                             f"a flipped input is one the model never saw (--tta shifts needs no training flips)")
    return [tuple(combo) for k in range(len(axes) + 1) for combo in itertools.combinations(axes, k)]


class VolumeTranslator:
    """A trained model, its domains and an inferer: native volume in, native volume out.

    Built from a checkpoint (:meth:`from_checkpoint`) or, during training, from the live model.
    """

    def __init__(self, model: TranslationModel, domains: Mapping[str, Domain], inferer: Any,
                 direction: str = "a2b", device: torch.device | str = "auto", step: int = 0, recipe: Recipe | None = None):
        self.device = resolve_device(device) if isinstance(device, str) else device
        if direction not in model.directions:
            raise TranslateError(f"--direction {direction!r}: this model translates {sorted(model.directions)}")
        self.model, self.domains, self.inferer, self.direction = model, domains, inferer, direction
        self.source, self.target = (domains[d] for d in model.directions[direction])
        self.step, self.recipe = step, recipe
        self.flip_sets: List[Tuple[int, ...]] = [()]  # test-time augmentation (:meth:`set_tta`): none
        self.shifts = False

    def set_tta(self, tta: str = "none") -> "VolumeTranslator":
        """``"flips"``: average the network outputs over every combination of the flips the model was
        trained with (the recipe's ``data.dataset.flips``), each flipped back; ``"shifts"``: over the
        volume moved by zero or one voxel along each axis the network strides over (:meth:`shift_sets`),
        each moved back; ``"flips+shifts"``: both; ``"none"``: one pass."""
        self.flip_sets = tta_flip_sets(self.recipe, tta)
        self.shifts = "shifts" in tta
        return self

    def shift_sets(self) -> List[Tuple[int, int, int]]:
        """``(z, y, x)`` voxel offsets of the ``shifts`` passes: every combination of 0 and 1 along the
        in-plane axes of a slice-wise model (4 passes) or all three axes of a 3D one (8).

        A generator that subsamples by stride 2 computes on a grid fixed to the volume's first voxel, and
        a GAN generator draws texture on that grid: a one-voxel move of the input moves its output's
        texture, not its anatomy (the 3D MR -> CT recipe: 38-47 HU mean change inside the body). The mean
        over the moves keeps what every grid agrees on; unlike ``flips`` it needs no training flips.
        """
        if not self.shifts:
            return [(0, 0, 0)]
        moving = [a for a in range(3) if not (isinstance(self.inferer, SliceInferer) and a == self.inferer.axis)]
        return [tuple(int(a in combo) for a in range(3))
                for k in range(len(moving) + 1) for combo in itertools.combinations(moving, k)]

    @property
    def passes(self) -> int:
        """Network passes over every voxel: the flips times the shifts of the test-time augmentation."""
        return len(self.flip_sets) * len(self.shift_sets())

    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        """The model's translation of one network-space batch, averaged over :attr:`flip_sets`."""
        total = None
        for dims in self.flip_sets:
            out = self.model.translate(t.flip(dims) if dims else t, self.direction)
            out = out.flip(dims) if dims else out
            total = out if total is None else total + out
        return total if len(self.flip_sets) == 1 else total / len(self.flip_sets)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str = "auto", direction: str = "a2b") -> "VolumeTranslator":
        from .build import build_model

        state = load_checkpoint(checkpoint)
        try:
            recipe = Recipe.model_validate(state["recipe"])
            domains = domains_from_dict(state["domains"])
        except Exception as err:  # a foreign or damaged checkpoint
            raise TranslateError(f"{checkpoint}: checkpoint lacks a valid recipe or data domains ({str(err)[:120]})") from None
        resolved = resolve_device(device)
        model = build_model(recipe, domains, initialise=False)
        load_network_state(model, inference_weights(state), recipe.model.name, checkpoint)
        inferer = build_inferer(recipe, model)
        return cls(model.to(resolved).eval(), domains, inferer, direction=direction, device=resolved,
                   step=int(state.get("step", 0)), recipe=recipe)

    @torch.no_grad()
    def translate_network(self, x: np.ndarray, on_progress=None) -> np.ndarray:
        """Network space ``(C_in, Z, Y, X)`` -> ``(C_out, Z, Y, X)`` with the model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            total = None
            shifts = self.shift_sets()
            for shift in shifts:  # pad at the front (edge values), translate, cut the same voxels off again
                moved = np.pad(x, [(0, 0)] + [(d, 0) for d in shift], mode="edge") if any(shift) else x
                out = self.inferer(self._forward, moved, self.device, on_progress)
                out = out[(slice(None),) + tuple(slice(d, None) for d in shift)]
                total = out if total is None else total + out
            return total if len(shifts) == 1 else total / len(shifts)
        finally:
            self.model.train(was_training)

    def prepare(self, source: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """Native ``(Z, Y, X)`` source -> network space ``(C, Z, Y, X)``, exactly as the training data was made.

        A recipe trained with ``data.valid_key`` fits the normalisation inside ``mask`` (default: the
        source's non-zero voxels, as ``translate data pair`` defines them) and, with
        ``data.fill_outside_valid``, continues the source outside it.
        """
        from ..data.subjects import normalise_volume

        data = self.recipe.data if self.recipe is not None else None
        if mask is None and data is not None and data.valid_key:
            mask = np.asarray(source) != 0
        fill = data is not None and bool(data.valid_key) and data.fill_outside_valid
        return normalise_volume(source, self.source.intensity, mask, fill=fill)

    def translate_array(self, source: np.ndarray, mask: Optional[np.ndarray] = None, on_progress=None) -> np.ndarray:
        """Native ``(Z, Y, X)`` source -> native ``(Z, Y, X)`` output (float32 HU, MR units or label ids)."""
        return self.target.intensity.inverse(self.translate_network(self.prepare(source, mask), on_progress))

    def to_output(self, x: np.ndarray) -> np.ndarray:
        """Network space ``(C, *S)`` -> native ``(*S)`` in the output domain's dtype (int16 HU, label ids),
        integers rounded and clipped to the dtype's range."""
        result = self.target.intensity.inverse(x)
        dtype = np.dtype(self.target.intensity.output_dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            result = np.clip(np.rint(result), info.min, info.max)
        return result.astype(dtype, copy=False)

    @torch.no_grad()
    def translate_prepared(self, x: np.ndarray, on_progress=None) -> np.ndarray:
        """Network-space input ``(C, Z, Y, X)`` -> native output ``(Z, Y, X)`` in the output dtype.

        A slice inferer maps each batch back to native values as it goes, so only the (one-channel)
        native output is held for the whole volume, never the network-space output."""
        if not isinstance(self.inferer, SliceInferer) or self.shifts:  # shifts: the passes are averaged whole
            return self.to_output(self.translate_network(x, on_progress))
        was_training = self.model.training
        self.model.eval()
        try:
            return self.inferer(self._forward, x, self.device, on_progress,
                                finish=self.to_output)
        finally:
            self.model.train(was_training)

    def describe(self, checkpoint: str | Path | None = None) -> str:
        """What made an output, for DICOM's SeriesDescription: model, direction, checkpoint and step."""
        name = self.recipe.model.name if self.recipe is not None else type(self.model).__name__
        where = f" {Path(checkpoint).name}" if checkpoint is not None else ""
        return f"translate {name} {self.direction}{where} step {self.step}"


def load_translator(checkpoint: str | Path, *, direction: str = "a2b", axis: Optional[int] = None,
                    batch_size: Optional[int] = None, device: str = "auto", tta: str = "none") -> VolumeTranslator:
    """A checkpoint's :class:`VolumeTranslator`, with the CLI's ``--axis`` / ``--batch-size`` / ``--tta`` applied."""
    if axis is not None and axis not in (0, 1, 2):
        raise TranslateError(f"--axis: expected 0, 1 or 2, got {axis}")
    overrides = {}
    if axis is not None:
        overrides["axis"] = axis
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    translator = VolumeTranslator.from_checkpoint(checkpoint, device=device, direction=direction).set_tta(tta)
    if overrides and not isinstance(translator.inferer, SliceInferer):
        raise TranslateError("--axis and --batch-size apply to slice-wise (2D) models; this checkpoint infers by sliding window")
    if overrides:  # the CLI's --axis / --batch-size go through the same validated constructor
        translator.inferer = build_inferer(translator.recipe, translator.model, **overrides)
    return translator


def translate_image(translator: VolumeTranslator, image, on_progress=None):
    """A ``SimpleITK.Image`` in -> the translated image on exactly its grid, in the output dtype.

    Holds one float32 copy of the input, its network-space version and the native output; the
    float32 copy is released before the network runs."""
    from ..data.io import array_to_image
    import SimpleITK as sitk

    source = sitk.GetArrayViewFromImage(image).astype(np.float32)
    network = translator.prepare(source)
    del source
    result = translator.translate_prepared(network, on_progress)
    del network
    return array_to_image(result, image)


#: ``--format`` values: the input's own format (batch) or OUTPUT's extension, a file format, or a DICOM series
OUTPUT_FORMATS = ("auto", "nii.gz", "nii", "nrrd", "mha", "dicom")


def output_is_dicom(output: str | Path, output_format: str = "auto") -> bool:
    """A DICOM series is written for ``--format dicom``, an existing folder, or a name without extension."""
    if output_format not in OUTPUT_FORMATS:
        raise TranslateError(f"--format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    output = Path(output)
    if output_format == "dicom":
        return True
    if output_format != "auto":
        return False
    return output.is_dir() or (not output.suffix and not output.exists())


def check_output(source: str | Path, output: str | Path, output_format: str = "auto") -> bool:
    """Refuse an output that cannot be written before any work; returns whether it is a DICOM series."""
    from ..data.io import WRITE_EXTENSIONS

    output = Path(output)
    dicom = output_is_dicom(output, output_format)
    if Path(source).exists() and output.exists() and output.resolve() == Path(source).resolve():
        raise TranslateError(f"output {output} is the input volume; choose another file name")
    if dicom:
        from ..data.dicom import check_dicom_target

        check_dicom_target(output)
        return True
    if output.exists() and output.is_dir():
        raise TranslateError(f"output {output} is a folder; expected a file name ending in .nii.gz, .nrrd or .mha")
    if not any(output.name.lower().endswith(ext) for ext in WRITE_EXTENSIONS):
        raise TranslateError(f"output {output}: unknown extension; expected one of {', '.join(WRITE_EXTENSIONS)} "
                             f"or a folder name for a DICOM series")
    if output_format != "auto" and not output.name.lower().endswith("." + output_format):
        raise TranslateError(f"output {output}: --format {output_format} but the name does not end in .{output_format}")
    return False


def write_translated(translator: VolumeTranslator, result, output: str | Path, *, dicom: bool,
                     source: str | Path, checkpoint: str | Path | None = None) -> Path:
    """Write a translated image as a file, or as a DICOM series carrying over a DICOM input's tags."""
    from ..data.io import is_dicom_folder, write_volume

    if not dicom:
        return write_volume(result, output)
    from ..data.dicom import write_dicom_series

    reference = source if is_dicom_folder(source) else None
    return write_dicom_series(result, output, kind=translator.target.intensity.kind,
                              description=translator.describe(checkpoint), reference=reference)


def infer_volume(checkpoint: str | Path, source: str | Path, output: str | Path, *, direction: str = "a2b",
                 axis: Optional[int] = None, batch_size: Optional[int] = None, device: str = "auto",
                 progress: bool = True, output_format: str = "auto", tta: str = "none") -> Dict[str, Any]:
    """Translate a whole volume and write it atomically on the input's grid (int16 HU for CT): a file
    (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``) or a DICOM series folder (:func:`output_is_dicom`);
    ``tta="flips"`` averages over the training flips (:func:`tta_flip_sets`), ``"shifts"`` over one-voxel moves
    (:meth:`VolumeTranslator.shift_sets`), ``"flips+shifts"`` over both."""
    from ..data.io import read_volume

    output = Path(output)
    dicom = check_output(source, output, output_format)
    translator = load_translator(checkpoint, direction=direction, axis=axis, batch_size=batch_size, device=device,
                                 tta=tta)
    image = read_volume(source, what="input")
    shape = list(image.GetSize())[::-1]
    total = translator.inferer.steps(shape) * len(translator.shift_sets())
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("infer", total=total)
            result = translate_image(translator, image, on_progress=lambda k: bar.advance(task, k))
    else:
        result = translate_image(translator, image)
    written = write_translated(translator, result, output, dicom=dicom, source=source, checkpoint=checkpoint)
    return {"output": str(written), "slices": int(shape[getattr(translator.inferer, "axis", 0)]),
            "shape": shape, "checkpoint_step": translator.step, "direction": direction,
            "format": "dicom" if dicom else "file", "tta_passes": translator.passes}
