"""Unpaired MR -> CT on the phantom: CycleGAN (+ gradient, + shape) and UNIT beside paired Pix2pix and baselines.

Data: ``translate data phantom data/phantom-unpaired --subjects 40 --unpaired`` (seed 0): the same
40 subjects and the same 6 held-out test subjects as ``benchmarks/mr2ct_ablation.py``; the unpaired
rows train on MR of ``train_a`` (14 subjects) and CT of ``train_b`` (the other 14), never a pair.
Every row is evaluated by the same code as the Pix2pix table (``translate infer`` a2b on every test
subject, then :func:`translate.metrics.paired.evaluate_volumes`: MAE / PSNR / SSIM inside the body,
CT > -500 HU) plus the hallucination rates of :mod:`translate.metrics.hallucination`.

Rows train through the toolkit's own path (recipe -> ``fit_recipe``), each for ``--steps`` steps,
with the recipes as shipped (ResNet generators, HU windows on the networks that read CT, batch 1).
The first table (``--steps 500``) swapped in the Pix2pix row's U-Net generators; on the val subjects
they stayed far behind the ResNet ones once the CT networks see HU windows
(``benchmarks/results/unpaired_diagnosis.json``), so the rows now keep the recipes' networks. Baselines (``linear``, ``lut``) are those of ``mr2ct_ablation.py`` (fitted on
the pairs of all 28 training subjects).

Further rows: ``cyclegan+ngf`` (gradient consistency by normalised gradient fields instead of |NCC|),
``cyclegan+mind``, ``cyclegan+shape+mind``, ``cyclegan+ngf+mind``, ``unit+mind`` and ``unit+shape+mind``
(structure consistency by MIND descriptors, Yang et al. 2018; ``--mind-weight``),
``cyclegan+geometry`` (flip consistency, GcGAN),
``cyclegan-3d`` (3D patches, sliding-window inference; ``cyclegan-3d-resnet``: the 3D recipe until 2026-12-06,
with ResNet generators and without the silhouette term, and its variants ``-wide``, ``+ngf``, ``+mind``,
``+silhouette``; ``cyclegan-3d-unet``, ``-unet+shape``, ``-unet+silhouette+mind``) and ``<row>-paper`` (the papers' network sizes,
for a GPU: ``benchmarks/device_unpaired.sh`` trains several side by side and merges their records
with ``--merge``).

Usage::

    python benchmarks/unpaired.py [--steps 500] [--rows linear lut pix2pix cyclegan ...] [--reuse] [--tta]
                                  [--checkpoint last|best]
    python benchmarks/unpaired.py --merge A.json B.json ... --work RUNS --out MERGED.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mr2ct_ablation import BASELINES, cpu_name  # noqa: E402  (the same baselines and machine record)

from translate.data.phantom import write_phantom  # noqa: E402
from translate.engine.checkpoint import load_checkpoint  # noqa: E402
from translate.engine.inferer import infer_volume  # noqa: E402
from translate.engine.run import fit_recipe  # noqa: E402
from translate.metrics.hallucination import RATE_NAMES  # noqa: E402
from translate.metrics.paired import evaluate_volumes  # noqa: E402
from translate.recipe import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: |NCC| (absolute): MR and CT edges have opposite signs at bone and at fat, so the signed correlation would
#: pull the synthetic CT towards MR contrast
GRADIENT = [{"name": "gradient_correlation", "source": "real_a", "pred": "fake_b", "weight": 1.0, "absolute": True},
            {"name": "gradient_correlation", "source": "real_b", "pred": "fake_a", "weight": 1.0, "absolute": True}]
#: normalised gradient fields (Haber & Modersitzki 2006): local and blind to the sign of contrast, both directions
NGF = [{"name": "ngf", "source": "real_a", "pred": "fake_b", "weight": 1.0},
       {"name": "ngf", "source": "real_b", "pred": "fake_a", "weight": 1.0}]
#: structure consistency by MIND descriptors (Heinrich et al. 2012; Yang et al. 2018's structure-constrained
#: CycleGAN), inside each source's body mask (outside it the MR's noise has no structure to keep), both directions
MIND_TERMS = [{"name": "mind", "source": "real_a", "pred": "fake_b", "mask": "body_mask_a", "weight": 5.0},
              {"name": "mind", "source": "real_b", "pred": "fake_a", "mask": "body_mask_b", "weight": 5.0}]
#: cortical bone is dark in MR: the CT -> MR translation is below -0.8 (air-like) where the source CT is above 600 HU
BONE_VOID = [{"name": "bone_void", "source": "real_b", "pred": "fake_a", "weight": 1.0}]
#: the same term off for the first 3000 steps (from step 0 it made the 3D MR -> CT half worse), then rising to
#: --bone-void-weight over 1000 steps: the cycle has learned the anatomy before the MR side must keep bone dark
BONE_VOID_LATE = [{**BONE_VOID[0], "weight": {"schedule": "linear_warmup", "value": 1.0, "steps": 1000, "begin": 3000}}]
#: an MR signal void inside the body (source MR at or below -0.8 inside its closed body) is air or bone in CT:
#: the synthetic CT is pushed out of the soft-tissue range there (-400..300 HU), both ways left to the other terms
SIGNAL_VOID = [{"name": "signal_void", "source": "real_a", "pred": "fake_b", "weight": 10.0}]
WINDOW_CYCLE = [{"name": "window_pixel", "kind": "l1", "pred": "rec_b", "target": "real_b", "window": [-160, 240],
                 "weight": 10.0}]
#: geometry consistency (GcGAN, Fu et al. 2019): each generator commutes with a random flip of its input, both directions
GEOMETRY = [{"name": "geometry", "domain": "both", "weight": 10.0}]
#: the same term rising from 0 to 10 over the first 3000 steps (at 16 channels the constant weight let both
#: generators collapse to near-constant translations within 100 steps)
GEOMETRY_WARMUP = [{"name": "geometry", "domain": "both",
                    "weight": {"schedule": "linear_warmup", "value": 10.0, "steps": 3000}}]
#: the papers' network sizes (CycleGAN: stem 64, 9 residual blocks, 64-channel PatchGAN; UNIT: stem 64, latent 256),
#: too slow for the 2-core CPU the shipped recipes are sized for; run on a GPU
CT_WINDOW = "input_windows: [[-160, 240]]"
PAPER_CYCLEGAN = ["model.networks.g_ab={name: resnet, channels: 64, n_blocks: 9, norm: instance}",
                  f"model.networks.g_ba={{name: resnet, channels: 64, n_blocks: 9, norm: instance, {CT_WINDOW}}}",
                  "model.networks.d_a={name: patchgan, channels: 64, n_layers: 3, norm: instance}",
                  f"model.networks.d_b={{name: patchgan, channels: 64, n_layers: 3, norm: instance, {CT_WINDOW}}}"]
#: recipes/mr2ct-cyclegan.yaml's generators (16 channels, one stride-2 stage) in the 3D recipe
WIDE_3D = ["model.networks.g_ab={name: resnet, channels: 16, n_blocks: 6, n_downsampling: 1, norm: instance}",
           f"model.networks.g_ba={{name: resnet, channels: 16, n_blocks: 6, n_downsampling: 1, norm: instance, "
           f"{CT_WINDOW}}}"]


def unet_channels_3d(stem: int) -> list:
    """The 3D recipe's U-Net generators with ``stem``, 2, 4 and 8 times ``stem`` channels (the recipe: 8). The
    generators' passes are a small part of the 3D step on a CPU: forward and backward for two 16x48x48 patches on one
    core 0.016 s at 8, 0.028 s at 16, 0.084 s at 32."""
    channels = [stem, 2 * stem, 4 * stem, 8 * stem]
    return [f"model.networks.{role}.channels={channels}" for role in ("g_ab", "g_ba")]


def unet_generators_2d(dropout: float = 0.5, outer_skips_dropped: int = 0) -> list:
    """The 3D recipe's U-Net generators (16-32-64-128, instance norm) in place of the 2D recipe's ResNets: a 2D test bed
    (about 7 minutes for 6000 steps on one core) for what the U-Net does to bone."""
    extra = f", outer_skips_dropped: {outer_skips_dropped}" if outer_skips_dropped else ""
    spec = f"name: unet, channels: [16, 32, 64, 128], dropout: {dropout:g}, norm: instance{extra}"
    return [f"model.networks.g_ab={{{spec}}}", f"model.networks.g_ba={{{spec}, {CT_WINDOW}}}"]


#: the 3D recipe's U-Net generators until 2026-12-06 night (8-16-32-64; 16-32-64-128 since): every 3D row recorded
#: with "the recipe" before then carries them, so its record stays reproducible
UNET8_3D = unet_channels_3d(8)


#: MONAI's residual U-Net (num_res_units 2, 16-32-64-128) as the 3D generators: each encoder level is a residual unit of
#: two 3x3x3 convolutions and each decoder level adds one after its upsampling, where the pix2pix U-Net has one 4x4x4
#: convolution per level: more depth at each scale
RESUNET_3D = ["model.networks.g_ab={name: monai_unet, channels: [16, 32, 64, 128], num_res_units: 2}",
              f"model.networks.g_ba={{name: monai_unet, channels: [16, 32, 64, 128], num_res_units: 2, "
              f"{CT_WINDOW}}}"]
#: the 3D recipe's generators until 2026-12-06 (ResNet, 8 channels, 6 blocks, two stride-2 stages)
RESNET_3D = ["model.networks.g_ab={name: resnet, channels: 8, n_blocks: 6, norm: instance}",
             f"model.networks.g_ba={{name: resnet, channels: 8, n_blocks: 6, norm: instance, {CT_WINDOW}}}"]
#: the shape term in 3D (Zhang et al. 2018 is 3D): a 3D segmentor (MONAI UNet 8-16-32-64) learns the phantom's labels
#: from real CT patches and must find the MR's labels in fake_b
SHAPE_3D = [{"name": "shape", "weight": 10.0, "num_classes": 10, "spatial_dims": 3, "pred": "fake_b",
             "labels": "labels_a", "extra_pairs": [["real_b", "labels_b"]],
             "segmentor_kwargs": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}}]
_ENC, _DEC = "name: translate.models.unit.UNITEncoder", "name: translate.models.unit.UNITDecoder"
PAPER_UNIT = [f"model.networks.e_a={{{_ENC}, n_downsampling: 2, n_blocks: 3, n_shared: 1, init: kaiming}}",
              f"model.networks.e_b={{{_ENC}, n_downsampling: 2, n_blocks: 3, n_shared: 1, init: kaiming, "
              f"{CT_WINDOW}}}",
              f"model.networks.dec_a={{{_DEC}, n_upsampling: 2, n_blocks: 3, n_shared: 1, init: kaiming}}",
              f"model.networks.dec_b={{{_DEC}, n_upsampling: 2, n_blocks: 3, n_shared: 1, init: kaiming}}",
              # the critics of the recorded GPU rows (unpaired_gpu2), from before mr2ct-unit.yaml took the authors'
              # three-scale ones
              "model.networks.d_a={name: patchgan, channels: 64, n_layers: 3, norm: instance}",
              f"model.networks.d_b={{name: patchgan, channels: 64, n_layers: 3, norm: instance, {CT_WINDOW}}}",
              "model.options.latent_channels=256"]
#: UNIT with the CycleGAN + shape row's term: a segmentor (learning from real CT) must find the MR's labels in fake_b
UNIT_SHAPE = [{"name": "shape", "weight": 10.0, "num_classes": 10, "pred": "fake_b", "labels": "labels_a",
               "extra_pairs": [["real_b", "labels_b"]]}]
UNIT_SHAPE_OVERRIDES = ["data.batch_size=1", "data.dataset.labels_key=labels"]
#: row -> recipe, overrides, generator terms of the recipe to drop (by name, or "name:pred" for one of several), extra
#: generator terms
ROWS = {
    "pix2pix": {"recipe": "recipes/mr2ct.yaml", "overrides": ["data.train_split=train"]},
    "cyclegan": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": []},
    "cyclegan+gradient": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": GRADIENT},
    #: the 2D recipe with the 3D recipe's U-Net generators (dropout 0.5 or none; the outermost k decoder blocks without
    #: their skip): does the U-Net, not the third dimension, keep the 3D model from drawing bone?
    "cyclegan-unet": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": unet_generators_2d()},
    "cyclegan-unet-nodropout": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": unet_generators_2d(dropout=0)},
    **{f"cyclegan-unet-noskip{k}": {"recipe": "recipes/mr2ct-cyclegan.yaml",
                                    "overrides": unet_generators_2d(outer_skips_dropped=k)} for k in (1, 2, 3)},
    "cyclegan+shape": {"recipe": "recipes/mr2ct-cyclegan-shape.yaml", "overrides": []},  # shape + MIND since 2026-12-05
    #: the shape recipe as it was until 2026-12-05, without its MIND terms
    "cyclegan+shape-nomind": {"recipe": "recipes/mr2ct-cyclegan-shape.yaml", "overrides": [], "drop": ["mind"]},
    "unit": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": ["data.batch_size=1"]},  # one slice, as the CycleGAN rows
    "unit+shape": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": UNIT_SHAPE_OVERRIDES, "extra": UNIT_SHAPE},
    "unit+shape+mind": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": UNIT_SHAPE_OVERRIDES,
                        "extra": [*UNIT_SHAPE, *MIND_TERMS]},
    "cyclegan+ngf": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": NGF},
    #: the gradient recipe as shipped: the same objective as `cyclegan+ngf --ngf-weight 3`
    "cyclegan-ngf": {"recipe": "recipes/mr2ct-cyclegan-ngf.yaml", "overrides": []},
    "unit+mind": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": ["data.batch_size=1"], "extra": MIND_TERMS},
    "unit+ngf": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": ["data.batch_size=1"], "extra": NGF},
    #: UNIT's gradient recipe as shipped: the same objective as `unit+ngf --ngf-weight 5` (and 9000 steps)
    "unit-ngf": {"recipe": "recipes/mr2ct-unit-ngf.yaml", "overrides": ["data.batch_size=1"]},
    #: the CT cycle again through the abdomen window (rec_b = dec_b(e_a(fake_a))), last: mr2ct-unit.yaml has it since
    #: 2026-12-05, so "unit+wcycle" is now "unit" (the name of the records made before the recipe took it)
    "unit+wcycle": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": ["data.batch_size=1"],
                    "drop": ["window_pixel:rec_b"], "extra": WINDOW_CYCLE},
    "unit+shape+mind+wcycle": {"recipe": "recipes/mr2ct-unit.yaml", "overrides": UNIT_SHAPE_OVERRIDES,
                               "drop": ["window_pixel:rec_b"], "extra": [*UNIT_SHAPE, *MIND_TERMS, *WINDOW_CYCLE]},
    #: the recipe's own MIND terms replaced by MIND_TERMS at --mind-weight (at 10: the recipe as shipped)
    "cyclegan+shape+mind": {"recipe": "recipes/mr2ct-cyclegan-shape.yaml", "overrides": [], "drop": ["mind"],
                            "extra": MIND_TERMS},
    "cyclegan+mind": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": MIND_TERMS},
    "cyclegan+ngf+mind": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": [*NGF, *MIND_TERMS]},
    "cyclegan+geometry": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": GEOMETRY},
    "cyclegan+geometry-warmup": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": GEOMETRY_WARMUP},
    "cyclegan+shape+geometry-warmup": {"recipe": "recipes/mr2ct-cyclegan-shape.yaml", "overrides": [],
                                       "drop": ["mind"], "extra": GEOMETRY_WARMUP},
    #: the 3D recipe as shipped: U-Net generators and the silhouette term since 2026-12-06, bone_void from step 3000
    #: since that morning, 9000 steps since noon, 16-channel U-Nets since night, 18000 steps (--steps) since late
    "cyclegan-3d": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": []},  # 3D patches, sliding-window inference
    #: the 3D recipe before it took bone_void (U-Net generators and the silhouette term): the records of `cyclegan-3d`
    #: made until 2026-12-06 morning
    "cyclegan-3d-nobonevoid": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                               "drop": ["bone_void"]},
    #: the 3D recipe until 2026-12-06 (ResNet generators, 8 channels, 6 blocks; no silhouette term)
    "cyclegan-3d-resnet": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": RESNET_3D,
                           "drop": ["silhouette", "bone_void"]},
    #: that recipe with the 2D recipe's generators (16 channels, one stride-2 stage), critics as shipped
    "cyclegan-3d-wide": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": WIDE_3D,
                         "drop": ["silhouette", "bone_void"]},
    #: the ResNet recipe with the 2D rows' structure terms (NGF at --ngf-weight, MIND at --mind-weight, both directions)
    "cyclegan-3d+ngf": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": RESNET_3D,
                        "drop": ["silhouette", "bone_void"], "extra": NGF},
    "cyclegan-3d+mind": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": RESNET_3D,
                         "drop": ["silhouette", "bone_void"], "extra": MIND_TERMS},
    #: the ResNet generators with the silhouette term
    "cyclegan-3d+silhouette": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": RESNET_3D,
                               "drop": ["bone_void"]},
    #: U-Net generators without the silhouette term (run as `--rows cyclegan-3d --set <U-Net generators>` before
    #: the recipe took them)
    "cyclegan-3d-unet": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                         "drop": ["silhouette", "bone_void"]},
    #: the name of the records made before the recipe took U-Net generators and the silhouette term: the recipe
    #: without bone_void
    "cyclegan-3d-unet+silhouette": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                                    "drop": ["bone_void"]},
    "cyclegan-3d-unet+shape": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                               "overrides": [*UNET8_3D, "data.dataset.labels_key=labels"],
                               "drop": ["silhouette", "bone_void"],
                               "extra": SHAPE_3D},
    "cyclegan-3d-unet+silhouette+mind": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                                         "drop": ["bone_void"], "extra": MIND_TERMS},
    #: the recipe without its late bone_void + bone_void from step 0 (the fake MR dark where the source CT shows
    #: cortical bone)
    "cyclegan-3d+bonevoid": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                             "drop": ["bone_void"], "extra": BONE_VOID},
    #: the recipe's bone_void at --bone-void-weight (at 10: the recipe as shipped; the name of the records made before
    #: the recipe took it)
    "cyclegan-3d+bonevoid-late": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D,
                                  "drop": ["bone_void"], "extra": BONE_VOID_LATE},
    #: the 3D recipe as shipped (silhouette, late bone_void) + the 3D shape term: the segmentor knows where the MR's
    #: bone lies, so the MR -> CT half must draw it
    "cyclegan-3d+shape": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                          "overrides": [*UNET8_3D, "data.dataset.labels_key=labels"], "extra": SHAPE_3D},
    "cyclegan+bonevoid": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": BONE_VOID},
    #: the recipes as shipped + signal_void at --signal-void-weight: the MR's dark cortex and bowel gas, which the 3D
    #: model filled with soft tissue, must become bone or air
    "cyclegan-3d+signalvoid": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D, "extra": SIGNAL_VOID},
    "cyclegan+signalvoid": {"recipe": "recipes/mr2ct-cyclegan.yaml", "overrides": [], "extra": SIGNAL_VOID},
    #: the 3D recipe with generators without dropout (the pix2pix U-Net's noise source; CycleGAN's ResNets have none)
    "cyclegan-3d-nodropout": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                              "overrides": [*UNET8_3D, "model.networks.g_ab.dropout=0.0",
                                            "model.networks.g_ba.dropout=0.0"]},
    #: the 3D recipe with U-Net generators of another width, or MONAI's residual U-Net: "unet8" is the recipe from
    #: 2026-12-06 noon (9000 steps) to night, the records of `cyclegan-3d` made then; "unet16" is the recipe since
    #: (the name of the records made before it took them)
    "cyclegan-3d-unet8": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": UNET8_3D},
    "cyclegan-3d-unet16": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": unet_channels_3d(16)},
    "cyclegan-3d-unet32": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": unet_channels_3d(32)},
    "cyclegan-3d-resunet": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml", "overrides": RESUNET_3D},
    #: the recipe on patches of the phantom's whole depth (32x48x48, one a step: the voxels of two 16x48x48 ones) with
    #: critics of three stride-2 layers (the 2D recipe's 70-voxel receptive field; two layers see 34 voxels, and three
    #: need at least 32 slices)
    "cyclegan-3d-deep": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                         "overrides": ["data.dataset.patch_size=[32, 48, 48]", "data.batch_size=1",
                                       "model.networks.d_a.n_layers=3", "model.networks.d_b.n_layers=3"]},
    #: the 16-channel U-Nets against critics twice as wide (16 channels): the critics' 43 k parameters stayed the same
    #: while the generators grew to 1.5 M
    "cyclegan-3d-unet16-d16": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                               "overrides": [*unet_channels_3d(16), "model.networks.d_a.channels=16",
                                             "model.networks.d_b.channels=16"]},
    #: the recipe with U-Nets whose transposed convs are followed by a [1, 2, 1] blur ("blur"), or replaced by a 2x
    #: resize and a 3x3 conv ("nearest", "linear"; Odena et al., Distill 2016): the 18000-step checkpoints drew a
    #: dotted texture in soft tissue (val high-pass sd 31.6-39.7 HU against the real CT's 22.7; flip TTA, which moves
    #: the decoder's stride-2 grid against the anatomy, took it to 19.4-22.2; unpaired_texture.json). "nearest" makes
    #: the 3D step 3.9 times slower on a CPU (a 3x3 conv over 32 channels at full resolution), "blur" 1.3 times
    #: (speed_cyclegan_3d_upsample_cpu.json)
    **{f"cyclegan-3d-{mode}": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                               "overrides": [f"model.networks.{role}.upsample={mode}" for role in ("g_ab", "g_ba")]}
       for mode in ("blur", "nearest", "linear")},
    #: the recipe's U-Nets whose outermost k decoder blocks have no skip (outer_skips_dropped): in 2D the U-Nets lost
    #: all bone where the ResNets lose a quarter (cyclegan-unet)
    **{f"cyclegan-3d-noskip{k}": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                                  "overrides": [f"model.networks.{role}.outer_skips_dropped={k}"
                                                for role in ("g_ab", "g_ba")]}
       for k in (1, 2, 3)},
    #: the recipe judged slice by slice by the 2D recipe's critics (16 channels, three stride-2 layers, 70 x 70 in
    #: plane; slice_patchgan) instead of 8-channel 3D ones (34^3)
    "cyclegan-3d-slicecritic": {"recipe": "recipes/mr2ct-cyclegan-3d.yaml",
                                "overrides": ["model.networks.d_a={name: slice_patchgan, channels: 16, n_layers: 3, "
                                              "norm: instance}",
                                              "model.networks.d_b={name: slice_patchgan, channels: 16, n_layers: 3, "
                                              "norm: instance, input_windows: [[-160, 240]]}"]},
}
#: '<row>-paper': the 2D rows with the papers' network sizes
ROWS.update({f"{row}-paper": {**spec, "overrides": [*spec["overrides"],
                                                    *(PAPER_UNIT if row.startswith("unit") else PAPER_CYCLEGAN)]}
             for row, spec in list(ROWS.items()) if row != "pix2pix" and "-3d" not in row})
KEYS = ("mae_hu", "psnr", "ssim", "mae_air", "mae_soft", "mae_bone", *RATE_NAMES)


def with_weights(term: dict, weights: dict) -> dict:
    """``term`` with ``weights[name]`` as its (final) weight if its name is in ``weights``, else unchanged."""
    if term["name"] not in weights:
        return term
    old, weight = term["weight"], weights[term["name"]]
    return {**term, "weight": {**old, "value": weight} if isinstance(old, dict) else weight}


def row_recipe(row: str, data: Path, out_dir: Path, steps: int, sets=(), weights: dict | None = None,
               check_paths: bool = True):
    """The validated recipe of trained row ``row``: its recipe file, the benchmark's trainer settings, the row's
    overrides, then ``sets``; without the recipe's generator terms named in the row's ``drop``; the row's extra
    generator terms last, with ``weights`` by term name."""
    spec = ROWS[row]
    recipe = load_recipe(REPO / spec["recipe"], [f"data.root={data}", f"trainer.out_dir={out_dir}",
                                                 f"trainer.steps={steps}", f"trainer.val_every={max(steps // 4, 1)}",
                                                 f"trainer.checkpoint_every={steps}", "trainer.threads=1",
                                                 *spec["overrides"], *sets], check_paths=check_paths)
    if not spec.get("extra") and not spec.get("drop"):
        return recipe
    tree = recipe.model_dump(mode="json")
    drop = spec.get("drop", ())
    tree["objective"]["generator"] = [term for term in tree["objective"]["generator"]
                                      if term["name"] not in drop and f"{term['name']}:{term.get('pred')}" not in drop]
    tree["objective"]["generator"] += [with_weights(term, weights or {}) for term in spec.get("extra", [])]
    return load_recipe(tree=tree, check_paths=check_paths)


def machine(note: str = "") -> dict:
    """Where the rows ran: the GPU the trainer's ``device: auto`` picks when there is one, else the CPU."""
    if torch.cuda.is_available():
        description = f"{torch.cuda.get_device_name()} GPU, {os.cpu_count()}-core CPU"
    else:
        description = f"{os.cpu_count()}-core {cpu_name()} CPU, no GPU"
    return {"description": description + (f" ({note})" if note else ""), "processor": cpu_name(),
            "cores": os.cpu_count(), "load_average_1min_at_end": os.getloadavg()[0], "torch": torch.__version__}


def merge(paths: list[Path], out: Path, work: Path | None = None, note: str = "") -> None:
    """One record of the rows of several records (rows trained side by side, one process each).

    Rows with a folder in ``work`` but no record (stopped before they finished, e.g. by the device script's
    ``ROW_TIMEOUT``) enter ``interrupted`` with the step they reached and their validation curve.
    """
    records = [json.loads(p.read_text()) for p in paths if p.is_file()]
    merged = dict(records[0]) if records else {"machine": {"description": note, "load_average_1min_at_end": 0.0},
                                               "test_subjects": [], "steps": {}, "results": {}, "seconds": {}}
    for key in ("results", "seconds", "steps", "validation"):
        merged[key] = {row: value for r in records for row, value in r.get(key, {}).items()}
    merged["commands"] = [c for r in records for c in r.get("commands", [r["command"]])]
    merged["command"] = " ".join(["python", *sys.argv])
    merged["commands"] = merged["commands"] or [merged["command"]]
    merged["date"] = time.strftime("%Y-%m-%d %H:%M")
    if records:
        merged["machine"] = {**records[0]["machine"], "load_average_1min_at_end": max(
            r["machine"]["load_average_1min_at_end"] for r in records)}
    interrupted = {}
    for run in sorted(work.glob("*/metrics.jsonl")) if work else []:
        if run.parent.name in merged["results"]:
            continue
        lines = [json.loads(line) for line in run.read_text().splitlines() if line.strip()]
        interrupted[run.parent.name] = {
            "stopped_at_step": max((r["step"] for r in lines), default=0),
            "validation": [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")}
                           for r in lines if "val_mae_hu" in r]}
    if interrupted:
        merged["interrupted"] = interrupted
    out.write_text(json.dumps(merged, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(merged))


def summarise(per_subject: list[dict], subjects: list[str]) -> dict:
    summary = {}
    for key in KEYS:
        values = np.array([m[key] for m in per_subject], dtype=float)
        summary[key] = (float(np.nanmean(values)), float(np.nanstd(values)))
    summary["per_subject_mae_hu"] = {s: round(float(m["mae_hu"]), 2) for s, m in zip(subjects, per_subject)}
    return summary


#: `translate infer --tta` modes: the row label and the prediction files' suffix (flips: the records' "_tta")
TTA_ROWS = {"flips": ("flip TTA", "_tta"), "shifts": ("shift TTA", "_tta_shifts"),
            "flips+shifts": ("flip and shift TTA", "_tta_flips_shifts")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="training steps of every trained row")
    parser.add_argument("--rows", nargs="+", default=["linear", "lut", "cyclegan", "cyclegan+shape", "cyclegan+gradient",
                                                      "unit", "pix2pix"], choices=["linear", "lut", *ROWS])
    parser.add_argument("--data", type=Path, default=REPO / "data" / "phantom-unpaired")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "unpaired")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "unpaired.json")
    parser.add_argument("--reuse", action="store_true", help="evaluate runs already in --work instead of training")
    parser.add_argument("--tta", nargs="*", choices=list(TTA_ROWS), help="also score every trained row through "
                        "`translate infer --tta MODE` for each MODE (alone: flips, the mean over the training flips) "
                        "as row '<row> + flip TTA' (shifts: '+ shift TTA', flips+shifts: '+ flip and shift TTA')")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last",
                        help="score last.pt, or best.pt (the step with the lowest val MAE) as row '<row> @ best.pt'")
    parser.add_argument("--paired-predictions", type=Path, help="score the test predictions of a finished paired run "
                        "(the Pix2pix row of benchmarks/mr2ct_ablation.py: runs/ablation/pix2pix) as row 'pix2pix (paired)'")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="recipe overrides for every trained row (e.g. trainer.seed=1)")
    parser.add_argument("--geometry-weight", type=float, default=10.0, help="weight of the geometry term of the "
                        "cyclegan+geometry rows (the -warmup rows reach it at step 3000)")
    parser.add_argument("--mind-weight", type=float, default=5.0, help="weight of each MIND term of the "
                        "rows with '+mind' (one term per direction)")
    parser.add_argument("--ngf-weight", type=float, default=1.0, help="weight of each NGF term of the rows with "
                        "'+ngf' (one term per direction)")
    parser.add_argument("--bone-void-weight", type=float, default=1.0, help="weight of the bone_void term of the "
                        "rows with '+bonevoid'")
    parser.add_argument("--signal-void-weight", type=float, default=10.0, help="weight of the signal_void term of "
                        "the rows with '+signalvoid'")
    parser.add_argument("--machine-note", default="", help="added to the machine's description (e.g. what shared it)")
    parser.add_argument("--merge", type=Path, nargs="*", help="merge these records (missing ones are skipped) into "
                        "--out instead of running rows; rows of --work without a record are listed as interrupted")
    args = parser.parse_args()
    tta_modes = ["flips"] if args.tta == [] else list(dict.fromkeys(args.tta or []))  # `--tta` alone: flips
    if args.merge is not None:
        return merge(args.merge, args.out, args.work, args.machine_note)

    if not (args.data / "split.json").is_file() or "train_a" not in json.loads((args.data / "split.json").read_text()):
        write_phantom(args.data, subjects=40, seed=0, unpaired=True)
    split = json.loads((args.data / "split.json").read_text())
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results, seconds = record.get("results", {}), record.get("seconds", {})
    validation, steps = record.get("validation", {}), record.get("steps", {})
    rows = args.rows + (["pix2pix (paired)"] if args.paired_predictions else [])
    for row in rows:
        out_dir = args.work / row
        started, trained = time.perf_counter(), True
        ckpt = out_dir / "checkpoints" / f"{args.checkpoint}.pt"
        name, tag = (row, "") if args.checkpoint == "last" or row not in ROWS else (f"{row} @ best.pt", "_best")
        if row == "pix2pix (paired)":
            predictions = [args.paired_predictions / f"{subject}_sct.nii.gz" for subject in split["test"]]
            import yaml

            paired = yaml.safe_load((args.paired_predictions / "recipe.yaml").read_text())
            steps[row] = {"steps": paired["trainer"]["steps"], "batch_size": paired["data"]["batch_size"],
                          "predictions": str(args.paired_predictions), "made_by": "benchmarks/mr2ct_ablation.py"}
        elif row in BASELINES:
            out_dir.mkdir(parents=True, exist_ok=True)
            predictions = BASELINES[row][1](args.data, split, out_dir)
        else:
            recipe = row_recipe(row, args.data, out_dir, args.steps, args.set,
                                {"geometry": args.geometry_weight, "mind": args.mind_weight,
                                 "ngf": args.ngf_weight, "bone_void": args.bone_void_weight,
                                 "signal_void": args.signal_void_weight})
            trained = not (args.reuse and (out_dir / "checkpoints" / "last.pt").is_file())
            if trained:
                shutil.rmtree(out_dir, ignore_errors=True)
                fit_recipe(recipe, show_progress=False)
            predictions, tta_predictions = [], {mode: [] for mode in tta_modes}
            for subject in split["test"]:
                path = out_dir / f"{subject}_sct{tag}.nii.gz"
                infer_volume(ckpt, args.data / subject / "mr.nii.gz", path,
                             direction="a2b", progress=False)
                predictions.append(path)
                for mode in tta_modes:  # the same checkpoint through `translate infer --tta MODE`
                    tta_path = out_dir / f"{subject}_sct{tag}{TTA_ROWS[mode][1]}.nii.gz"
                    infer_volume(ckpt, args.data / subject / "mr.nii.gz", tta_path,
                                 direction="a2b", progress=False, tta=mode)
                    tta_predictions[mode].append(tta_path)
            records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
            validation[name] = [{k: v for k, v in r.items() if k == "step" or k.startswith("val_")}
                               for r in records if "val_mae_hu" in r]
            steps[name] = {"steps": args.steps, "batch_size": recipe.data.batch_size, "seed": recipe.trainer.seed,
                          "set": args.set, "checkpoint": ckpt.name,
                          "checkpoint_step": int(load_checkpoint(ckpt)["step"]),
                          "objective": recipe.objective.generator,
                          "generators": {k: v.model_dump() for k, v in recipe.model.networks.items()}}
        per_subject = [evaluate_volumes(p, args.data / s / "ct.nii.gz") for p, s in zip(predictions, split["test"])]
        if row in ROWS and not trained:  # --reuse: keep the wall time of the run that trained it
            summary_file = out_dir / "val_summary.json"  # a run of benchmarks/unpaired_diagnosis.py, same recipe
            seconds[name] = (json.loads(summary_file.read_text())["train_s"] if summary_file.is_file()
                            else seconds.get(row, time.perf_counter() - started))
        else:
            seconds[name] = time.perf_counter() - started
        results[name] = summarise(per_subject, split["test"])
        for mode in tta_modes if row in ROWS else ():
            label = f"{name} + {TTA_ROWS[mode][0]}"
            results[label] = summarise([evaluate_volumes(p, args.data / s / "ct.nii.gz")
                                        for p, s in zip(tta_predictions[mode], split["test"])], split["test"])
            seconds[label], steps[label] = seconds[name], steps[name]
        print(name, {k: round(v[0], 4) for k, v in results[name].items() if isinstance(v, tuple)},
              f"{seconds[name]:.0f} s", flush=True)
        command = " ".join(["python", *sys.argv])
        commands = [c for c in record.get("commands", [record["command"]] if "command" in record else []) if c != command]
        record = {"command": command, "commands": commands + [command], "date": time.strftime("%Y-%m-%d %H:%M"),
                  "machine": machine(args.machine_note),
                  "data": str(args.data.relative_to(REPO) if args.data.is_relative_to(REPO) else args.data),
                  "test_subjects": split["test"], "train_a": split["train_a"], "train_b": split["train_b"],
                  "steps": steps, "results": results, "seconds": seconds, "validation": validation,
                  "reference": {"pix2pix_2500_steps_mae_hu": "48.5 (benchmarks/results/mr2ct_2d.json)",
                                "lut_mae_hu": "86.8 (benchmarks/results/mr2ct.md)"}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(record))


def markdown(record: dict) -> str:
    """The results as a markdown table (mean ± std over the test subjects; rates in %)."""
    lines = [f"Unpaired MR -> CT on the phantom, {len(record['test_subjects'])} held-out test subjects; "
             f"{record['machine']['description']}. Commands: " + "; ".join(f"`{c}`" for c in record.get("commands", [record["command"]])), "",
             "| row | steps × batch | MAE (HU) | PSNR (dB) | SSIM | bone lost % | bone→soft % | bone→air % | "
             "soft→bone % | air→tissue % | wall (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    first = [row for row in ("linear", "lut", "pix2pix (paired)") if row in record["results"]]
    suffixes = [f" + {label}" for label, _ in TTA_ROWS.values()]
    trained = [row for row in record["results"] if row not in first and not any(row.endswith(x) for x in suffixes)]
    ordered = first + [r for row in trained for r in (row, *(row + x for x in suffixes)) if r in record["results"]]
    for row in ordered + [row for row in record["results"] if row not in ordered]:  # baselines and paired first
        r = record["results"][row]
        budget = record["steps"].get(row)
        stopped = budget and budget.get("checkpoint", "last.pt") == "last.pt" and \
            budget.get("checkpoint_step", budget["steps"]) < budget["steps"]  # stopped early, scored as it stood
        budget = (f"{budget['checkpoint_step']} of {budget['steps']} × {budget['batch_size']}" if stopped
                  else f"{budget['steps']} × {budget['batch_size']}" if budget else "fitted on pairs")
        cells = [f"{r[k][0]:.1f} ± {r[k][1]:.1f}" for k in ("mae_hu",)] + [f"{r['psnr'][0]:.2f}", f"{r['ssim'][0]:.3f}"]
        cells += [f"{100 * r[k][0]:.1f}" for k in RATE_NAMES]
        lines.append(f"| {row} | {budget} | {' | '.join(cells)} | {record['seconds'][row]:.0f} |")
    if record.get("interrupted"):
        lines += ["", "Stopped before the end (no test scores): validation MAE (HU) on the 6 val subjects by step.", "",
                  "| row | stopped at step | val MAE by step |", "|---|---|---|"]
        for row, entry in record["interrupted"].items():
            curve = ", ".join(f"{v['step']}: {v['val_mae_hu']:.1f}" for v in entry["validation"]) or "-"
            lines.append(f"| {row} | {entry['stopped_at_step']} | {curve} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
