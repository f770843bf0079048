"""``translate synthesize``: synthetic (image, mask) pairs from a trained generator, written as a data root.

Two kinds of checkpoints:

* **mask-conditioned** (``spade``): every given label volume is translated slice by slice with a
  fresh random style per slice, ``n`` times; the label volume is written beside each image as it
  was read (same label values, same geometry);
* **joint** (``joint_gan``): ``n`` pairs are drawn from noise; the image and the mask are both
  generator outputs (mask = argmax of the label channels, mapped to the label ids it was trained on).

The output folder is a data root like the phantom's: ``OUT/<id>/<image key>.nii.gz`` and
``OUT/<id>/<labels key>.nii.gz`` plus ``split.json`` (every sample in ``train``) and
``synthesis.json`` (what made it), so a recipe trains on it with ``data.root=OUT``.
Every file is written atomically; ``split.json`` comes last, so an interrupted run leaves no
``split.json`` that would pass it off as complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .atomic import write_text_atomic
from .errors import TranslateError

#: slices per volume file when joint samples (independent 2D pairs) are stacked
STACK = 32


def mask_files(masks: Path, labels_key: str) -> List[Path]:
    """``--masks``: one volume file, or a folder: its ``<id>/<labels_key>.*`` files, else every volume in it."""
    from .data.subjects import IMAGE_SUFFIXES

    masks = Path(masks)
    if masks.is_file():
        return [masks]
    if not masks.is_dir():
        raise TranslateError(f"--masks {masks}: no such file or folder")
    keyed = sorted(p for suffix in IMAGE_SUFFIXES for p in masks.glob(f"*/{labels_key}{suffix}"))
    found = keyed or sorted(p for p in masks.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise TranslateError(f"--masks {masks}: no label volumes (looked for */{labels_key}.nii.gz and volume files)")
    return found


def _sample_id(path: Path, labels_key: str) -> str:
    from .data.io import volume_suffix

    stem = path.name[: -len(volume_suffix(path))] if volume_suffix(path) else path.stem
    return path.parent.name if stem == labels_key else stem


def _integer(array: np.ndarray, dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return array.astype(dtype)


def load_generator(checkpoint: Path, device: str = "auto"):
    """The checkpoint's model (eval mode), its domains and recipe."""
    from .data.domains import domains_from_dict
    from .engine.build import build_model
    from .engine.checkpoint import inference_weights, load_checkpoint, load_network_state
    from .engine.trainer import resolve_device
    from .recipe import Recipe

    state = load_checkpoint(checkpoint)
    try:
        recipe = Recipe.model_validate(state["recipe"])
        domains = domains_from_dict(state["domains"])
    except Exception as err:
        raise TranslateError(f"{checkpoint}: checkpoint lacks a valid recipe or data domains ({str(err)[:120]})") from None
    model = build_model(recipe, domains, initialise=False)
    load_network_state(model, inference_weights(state), recipe.model.name, checkpoint)
    return model.to(resolve_device(device)).eval(), domains, recipe, int(state.get("step", 0))


def _labels_domain(domains) -> str:
    for name in ("a", "labels", "b"):
        if name in domains and domains[name].intensity.kind == "labels":
            return name
    raise TranslateError("this checkpoint has no label-map domain (intensity 'labels'); synthesize needs one")


def synthesize(checkpoint: Path, out: Path, *, masks: Optional[Path] = None, n: int = 1, seed: int = 0,
               device: str = "auto", progress: bool = True, mask_list: Optional[Sequence[Path]] = None,
               announce: Callable[[str], None] = lambda text: None) -> Dict[str, Any]:
    """Write synthetic pairs into ``out`` (a data root); returns a summary.

    Args:
        checkpoint: written by ``translate fit`` for a ``spade`` or ``joint_gan`` model.
        masks: label volume or folder (mask-conditioned models only; default: the training
            split's label volumes of the checkpoint's ``data.root``).
        n: mask-conditioned: images per mask volume; joint: number of 2D pairs.
        seed: seeds torch's generator: same seed, same files.
        mask_list: label volume files, instead of ``masks``.
    """
    from .data.io import array_to_image, image_to_array, read_volume, write_volume

    if int(n) != n or n < 1:
        raise TranslateError(f"--n: expected a positive integer, got {n}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TranslateError(f"output {out} is a file; expected a folder for the synthetic data root")
    if out.is_dir() and (out / "split.json").exists():
        raise TranslateError(f"output {out} already holds a data root (split.json); choose an empty folder")
    model, domains, recipe, step = load_generator(checkpoint, device)
    device_ = next(model.parameters()).device
    labels_name = _labels_domain(domains)
    labels_dom = domains[labels_name]
    image_name = next(name for name in ("b", "a") if name in domains and name != labels_name)
    image_dom = domains[image_name]
    joint = hasattr(model, "sample")
    torch.manual_seed(int(seed))
    ids: List[str] = []
    if joint:
        if masks is not None or mask_list:
            raise TranslateError(f"--masks: {checkpoint} is a joint generator ({recipe.model.name}); it samples "
                                 f"image and mask together from noise and takes no masks")
        total, done = int(n), 0
        bar, task = _progress(progress, total, "synthesize")
        try:
            while done < total:
                count = min(STACK, total - done)
                with torch.no_grad():
                    images, labels = model.sample(count, device=device_)
                image_net = images.float().cpu().numpy().transpose(1, 0, 2, 3)  # (C, Z, H, W)
                label_net = labels.float().cpu().numpy().transpose(1, 0, 2, 3)
                image = _integer(image_dom.intensity.inverse(image_net), image_dom.intensity.output_dtype)
                label = labels_dom.intensity.inverse(label_net).astype(np.int16)
                reference = array_to_image(image, _unit_reference(image.shape))
                sample_id = f"sample_{len(ids):04d}"
                write_volume(reference, out / sample_id / f"{image_dom.key}.nii.gz")
                write_volume(array_to_image(label, reference), out / sample_id / f"{labels_dom.key}.nii.gz")
                ids.append(sample_id)
                done += count
                if bar is not None:
                    bar.advance(task, count)
        finally:
            if bar is not None:
                bar.stop()
        sources: List[str] = []
    else:
        if not (image_name == "b" and labels_name == "a" and "a2b" in model.directions):
            raise TranslateError(f"{checkpoint}: model {recipe.model.name!r} is neither mask-conditioned "
                                 f"(labels in domain a) nor a joint generator")
        if mask_list:
            files = [Path(p) for p in mask_list]
        elif masks is not None:
            files = mask_files(masks, labels_dom.key)
        else:
            from .data.subjects import subjects_from_folder

            if not (Path(recipe.data.root) / "split.json").is_file():
                raise TranslateError(f"--masks: not given, and the checkpoint's data.root {recipe.data.root} is not "
                                     f"here to take the training masks from; pass --masks PATH")
            files = [Path(s[labels_dom.key]) for s in
                     subjects_from_folder(recipe.data.root, recipe.data.train_split, keys=[labels_dom.key])]
        from .engine.inferer import VolumeTranslator, build_inferer

        translator = VolumeTranslator(model, domains, build_inferer(recipe, model), direction="a2b",
                                      device=device_, step=step, recipe=recipe)
        volumes = [(path, read_volume(path, what="mask")) for path in files]
        total = sum(int(translator.inferer.steps(image.GetSize()[::-1])) for _, image in volumes) * int(n)
        bar, task = _progress(progress, total, "synthesize")
        try:
            for path, image in volumes:
                label = image_to_array(image)
                for k in range(int(n)):
                    result = translator.translate_array(label.astype(np.float32),
                                                        on_progress=None if bar is None else
                                                        (lambda c: bar.advance(task, c)))
                    sample_id = f"{_sample_id(path, labels_dom.key)}_s{k:02d}"
                    out_image = _integer(result, image_dom.intensity.output_dtype)
                    write_volume(array_to_image(out_image, image), out / sample_id / f"{image_dom.key}.nii.gz")
                    write_volume(image, out / sample_id / f"{labels_dom.key}.nii.gz")
                    ids.append(sample_id)
        finally:
            if bar is not None:
                bar.stop()
        sources = [str(p) for p, _ in volumes]
    summary = {"checkpoint": str(checkpoint), "model": recipe.model.name, "checkpoint_step": step,
               "seed": int(seed), "n": int(n), "samples": ids, "masks": sources,
               "keys": {"image": image_dom.key, "labels": labels_dom.key}}
    write_text_atomic(out / "synthesis.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "split.json", json.dumps({"train": ids, "val": [], "test": []}, indent=2) + "\n")
    announce(f"synthesize: {len(ids)} {'stacks of pairs' if joint else 'image + mask volumes'} -> {out}")
    return summary


def _unit_reference(shape) -> "Any":
    import SimpleITK as sitk

    ref = sitk.Image([int(s) for s in shape[::-1]], sitk.sitkUInt8)
    ref.SetSpacing((1.0, 1.0, 1.0))
    return ref


def _progress(show: bool, total: int, what: str):
    if not show:
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task(what, total=total)
    bar.start()
    return bar, task
