"""Rigid or affine registration of two volumes by mutual information (SimpleITK).

For users who have MR and CT of the same subject that are not in one frame of reference:
register the MR (moving) to the CT (fixed), then pair them with the transform
(:func:`translate.data.pairing.pair_volumes`, ``translate data pair --transform``).

The method is the standard multi-modal one: Mattes mutual information on a random 10 % of the
fixed voxels (seeded, so a run is repeatable), a transform initialised by aligning the two
volumes' geometric centres (or, for volumes already in one frame of reference, the
identity), regular-step gradient descent with scales from physical shifts,
over three resolutions (shrink 4, 2, 1; Gaussian smoothing 2, 1, 0 mm).

Example:
    >>> transform, moved = register_volumes("mr.nii.gz", "ct.nii.gz", kind="rigid")  # doctest: +SKIP
    >>> sitk.WriteTransform(transform, "mr_to_ct.tfm")                              # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Tuple

import SimpleITK as sitk

from ..errors import TranslateError
from .io import read_volume

KINDS = ("rigid", "affine")
METRICS = ("mattes", "correlation", "meansquares")
INITIALS = ("geometry", "identity")


def _as_image(volume: str | Path | sitk.Image, what: str) -> sitk.Image:
    return volume if isinstance(volume, sitk.Image) else read_volume(volume, what=what)


def register_volumes(moving: str | Path | sitk.Image, fixed: str | Path | sitk.Image, *,
                     kind: str = "rigid", metric: str = "mattes", bins: int = 50, sampling: float = 0.1,
                     seed: int = 0, iterations: int = 200, initial: str = "geometry", ignore_zero: bool = False,
                     default_value: float = 0.0,
                     threads: int | None = 1) -> Tuple[sitk.Transform, sitk.Image]:
    """Find the transform that maps ``fixed`` points onto ``moving``, and resample ``moving``.

    Args:
        moving: the volume that moves (e.g. the MR): a path or a ``SimpleITK.Image``.
        fixed: the volume whose grid is kept (e.g. the CT).
        kind: ``"rigid"`` (rotation + translation, 6 parameters) or ``"affine"`` (12).
        metric: ``"mattes"`` (mutual information, any two modalities), ``"correlation"`` or
            ``"meansquares"`` (same modality).
        bins: histogram bins of the Mattes metric.
        sampling: fraction of the fixed voxels the metric samples, at random, each level.
        seed: the sampling seed; the same inputs and seed give the same transform.
        iterations: gradient-descent iterations per resolution level.
        initial: where the search starts. ``"geometry"`` moves ``moving``'s box centre onto
            ``fixed``'s (volumes from different scanners or frames of reference);
            ``"identity"`` starts from no motion, rotating about ``fixed``'s centre (volumes
            already in one frame of reference whose boxes differ, such as an MR that covers
            part of the CT: centring their boxes would throw them apart).
        ignore_zero: leave ``moving`` voxels that are exactly 0 out of the metric (an MR that is 0
            outside its field of view, like the IBSI data; otherwise the optimiser may align
            that empty region with the CT's air).
        default_value: value of the resampled volume outside ``moving``.
        threads: ITK threads for the registration and its resampling; ``1`` (the default) makes the
            result bit-identical from run to run; more threads (``None``: ITK's default) are faster
            but sum the metric in arrival order, so runs differ by about 0.01 mm.

    Returns:
        ``(transform, moved)``: the transform in ITK's resampling convention (fixed point ->
        moving point; pass it to ``sitk.Resample`` or ``translate data pair --transform``), and
        ``moving`` resampled on ``fixed``'s grid (linear, ``moving``'s pixel type).

    Raises:
        TranslateError: an unknown ``kind``/``metric``, bad numbers, unreadable input, or a
            registration that fails (e.g. volumes that do not overlap).
    """
    if kind not in KINDS:
        raise TranslateError(f"register: kind {kind!r} is not one of {', '.join(KINDS)}")
    if initial not in INITIALS:
        raise TranslateError(f"register: initial {initial!r} is not one of {', '.join(INITIALS)}")
    if metric not in METRICS:
        raise TranslateError(f"register: metric {metric!r} is not one of {', '.join(METRICS)}")
    if not 0.0 < sampling <= 1.0 or bins < 2 or iterations < 1:
        raise TranslateError(f"register: expected 0 < sampling <= 1, bins >= 2 and iterations >= 1; "
                             f"got sampling={sampling}, bins={bins}, iterations={iterations}")
    moving_image = _as_image(moving, "moving")
    fixed_image = _as_image(fixed, "fixed")
    moving_float = sitk.Cast(moving_image, sitk.sitkFloat32)
    fixed_float = sitk.Cast(fixed_image, sitk.sitkFloat32)

    base = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    if initial == "geometry":
        start = sitk.CenteredTransformInitializer(fixed_float, moving_float, base,
                                                  sitk.CenteredTransformInitializerFilter.GEOMETRY)
    else:
        centre = fixed_float.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed_float.GetSize()])
        base.SetCenter(centre)
        start = base
    method = sitk.ImageRegistrationMethod()
    if metric == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins))
    elif metric == "correlation":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMeanSquares()
    if ignore_zero:
        # voxels that are exactly 0 lie outside the data (e.g. an MR's field of view), not in air
        method.SetMetricMovingMask(moving_float != 0)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK reads seed 0 as "seed from the wall clock": shift so that every seed, 0 included, is fixed.
    method.SetMetricSamplingPercentage(float(sampling), int(seed) + 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4,
                                                    numberOfIterations=int(iterations),
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(shrinkFactors=[4, 2, 1])
    method.SetSmoothingSigmasPerLevel(smoothingSigmas=[2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(start, inPlace=False)
    # The metric's threads follow ITK's global default, not the method's own setting.
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if threads is not None:
        method.SetNumberOfThreads(int(threads))
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        transform = method.Execute(fixed_float, moving_float)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line.split("ERROR:", 1)[1].strip() for line in lines if "ERROR:" in line), lines[-1] if lines else "")
        raise TranslateError(f"register: registration of {moving if not isinstance(moving, sitk.Image) else 'moving'} "
                             f"to {fixed if not isinstance(fixed, sitk.Image) else 'fixed'} failed: {reason}") from None
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
    moved = sitk.Resample(moving_image, fixed_image, transform, sitk.sitkLinear, float(default_value),
                          moving_image.GetPixelID())
    return transform, moved


def transform_motion(transform: sitk.Transform, image: sitk.Image) -> dict:
    """How far ``transform`` moves the points of ``image``'s box: the largest and mean
    displacement (mm) over its 8 corners and centre, and the rotation angle (degrees) of its
    linear part (exact for rigid transforms, approximate for affine ones; 0 for a translation).
    For volumes already in one frame of reference (``initial="identity"``) this is how far the
    registration moved away from the scanner's own alignment: a large figure on such data
    deserves a look before the pair is used.
    """
    size = image.GetSize()
    corners = [(i, j, k) for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    indices = corners + [tuple((n - 1) / 2 for n in size)]
    points = [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]) for index in indices]
    shifts = [math.dist(transform.TransformPoint(p), p) for p in points]
    centre = points[-1]
    # the linear part from how the transform moves three unit steps about the box centre
    base = transform.TransformPoint(centre)
    columns = [[a - b for a, b in zip(transform.TransformPoint(tuple(c + (1.0 if d == axis else 0.0)
                                                                     for d, c in enumerate(centre))), base)]
               for axis in range(3)]
    trace = sum(columns[axis][axis] for axis in range(3))
    angle = math.degrees(math.acos(max(-1.0, min(1.0, (trace - 1.0) / 2.0))))
    return {"max_mm": max(shifts), "mean_mm": sum(shifts) / len(shifts), "rotation_degrees": angle}
