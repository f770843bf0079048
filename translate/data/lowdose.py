"""Low-dose CT simulated by its physics: Poisson noise inserted in the projections of each slice.

A reduced-dose acquisition differs from the routine one in its quantum noise: fewer photons reach
each detector bin, so the counts are noisier, and filtered back-projection (FBP) turns that into
the streaky, correlated noise texture of low-dose CT. Image-domain Gaussian noise has neither the
texture nor the dependence on path length (rays through more tissue are noisier). Per axial slice:

1. HU -> linear attenuation: :math:`\\mu = \\mu_w (1 + \\mathrm{HU}/1000)`, clipped at 0, with
   :math:`\\mu_w` = :data:`MU_WATER` = 0.0193 / mm, water at 70 keV (NIST XCOM, mass attenuation
   0.1929 cm^2/g), the effective energy of a 120 kVp spectrum.
2. Line integrals :math:`p = \\int \\mu\\,dl` by a parallel-beam forward projection (scikit-image
   ``radon``, pixel size included, ``views`` angles over 180 degrees, one detector bin per pixel).
3. Counts: :math:`N \\sim \\mathrm{Poisson}(I\\,e^{-p})`, plus optional Gaussian electronic noise
   of standard deviation ``electronic_noise`` counts, clamped to at least 1 count.
4. :math:`\\hat p = -\\log(N / I)`; the projection noise :math:`\\hat p - p` is reconstructed with
   FBP (``iradon``, ``filter`` ramp, hann, ...) and added to the input slice, back in HU.

FBP is linear, so reconstructing only the noise and adding it equals reconstructing the noisy
projections, without the blur and the interpolation error of a radon/iradon round trip of the
anatomy itself (the standard noise-insertion technique, e.g. Yu et al., Med. Phys. 2012; Zeng et
al., IEEE TMI 2015).

What the input's own noise means (``reference``):

* ``routine`` (default): the input is a real acquisition at ``i0`` photons per bin and view and
  already carries its noise. Only the *difference* is inserted: counts drawn at the effective
  :math:`I = i_0\\,d / (1 - d)` have the variance :math:`(1/d - 1)/i_0` that the routine noise
  lacks, so the total noise is that of an acquisition at dose :math:`d` (noise std scaled by
  :math:`1/\\sqrt d`); electronic noise is scaled the same way,
  :math:`\\sigma_{\\mathrm{eff}} = \\sigma_e \\sqrt{(1 + d)/(1 - d)}`. ``dose`` must be in (0, 1].
* ``ideal``: the input is taken as noise-free and all the noise of an acquisition at
  :math:`I = i_0 d` is drawn (phantoms; any ``dose`` > 0).

Voxels below -1024 HU (outside a scanner's reconstruction circle, stored as e.g. -2048 or -3024)
are left unchanged; the output is rounded to int16 HU on the input's grid. Slice ``k`` draws from
``numpy.random.default_rng([seed, k])``: same seed, same volume, in any order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from ..errors import TranslateError

#: linear attenuation of water at 70 keV in 1/mm (NIST XCOM: 0.1929 cm^2/g x 1 g/cm^3)
MU_WATER = 0.01929
#: photons per detector bin and view at full dose
I0_DEFAULT = 1.0e5
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
REFERENCES = ("routine", "ideal")
#: below this the voxel is outside the reconstruction field (scanner padding) and stays as it is
OUTSIDE_FIELD_HU = -1024.0


def hu_to_mu(hu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    """HU -> linear attenuation in 1/mm, :math:`\\mu_w (1 + \\mathrm{HU}/1000)`, never negative."""
    return np.clip(mu_water * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0.0, None)


def check_options(dose: float, i0: float, electronic_noise: float, filter_name: str, reference: str,
                  views: Optional[int]) -> None:
    """One-line errors for out-of-range simulation options, naming the CLI option."""
    if reference not in REFERENCES:
        raise TranslateError(f"--reference {reference!r}: expected one of {', '.join(REFERENCES)}")
    if not (isinstance(dose, (int, float)) and math.isfinite(dose) and dose > 0):
        raise TranslateError(f"--dose {dose!r}: expected a fraction of the routine dose > 0, e.g. 0.25")
    if reference == "routine" and dose > 1:
        raise TranslateError(f"--dose {dose}: with --reference routine the dose must be in (0, 1]: noise can be "
                             f"added to the routine acquisition, not removed")
    if not (math.isfinite(i0) and i0 > 0):
        raise TranslateError(f"--i0 {i0}: expected photons per detector bin and view > 0, e.g. 1e5")
    if not (math.isfinite(electronic_noise) and electronic_noise >= 0):
        raise TranslateError(f"--electronic-noise {electronic_noise}: expected a standard deviation in counts >= 0")
    if filter_name not in FILTERS:
        raise TranslateError(f"--filter {filter_name!r}: expected one of {', '.join(FILTERS)}")
    if views is not None and views < 2:
        raise TranslateError(f"--views {views}: expected at least 2 projection angles")


def default_views(shape) -> int:
    """Angles over 180 degrees that sample a slice fully: :math:`\\lceil \\pi/2 \\cdot \\max(H, W) \\rceil`."""
    return int(math.ceil(math.pi / 2.0 * max(shape)))


def simulate_slice(hu: np.ndarray, pixel_mm: float, dose: float, rng: np.random.Generator, *,
                   i0: float = I0_DEFAULT, electronic_noise: float = 0.0, filter_name: str = "ramp",
                   reference: str = "routine", views: Optional[int] = None,
                   mu_water: float = MU_WATER) -> np.ndarray:
    """One axial slice ``(H, W)`` in HU -> the same slice at ``dose``, float64 HU (see the module doc).

    Args:
        hu: the slice in HU.
        pixel_mm: in-plane pixel size (square pixels) in mm; it sets the path lengths.
        dose: fraction of the routine dose (0.25 = quarter dose).
        rng: where the counts are drawn from.
    """
    from skimage.transform import iradon, radon

    hu = np.asarray(hu, dtype=np.float64)
    if reference == "routine" and dose >= 1.0:
        return hu.copy()
    h, w = hu.shape
    n = max(h, w)
    # square, centred, air around: radon needs a square image
    top, left = (n - h) // 2, (n - w) // 2
    mu = np.zeros((n, n))
    mu[top:top + h, left:left + w] = hu_to_mu(np.maximum(hu, OUTSIDE_FIELD_HU), mu_water)
    theta = np.linspace(0.0, 180.0, int(views or default_views((n, n))), endpoint=False)
    line = radon(mu, theta=theta, circle=False) * pixel_mm  # (bins, views): sum over pixels x pixel size
    if reference == "routine":
        incident = i0 * dose / (1.0 - dose)
        sigma_e = electronic_noise * math.sqrt((1.0 + dose) / (1.0 - dose))
    else:
        incident, sigma_e = i0 * dose, electronic_noise
    expected = incident * np.exp(-line)
    counts = rng.poisson(expected).astype(np.float64)
    if sigma_e > 0:
        counts += rng.normal(0.0, sigma_e, size=counts.shape)
    noisy = -np.log(np.maximum(counts, 1.0) / incident)
    noise_mu = iradon(noisy - line, theta=theta, output_size=n, filter_name=filter_name, circle=False) / pixel_mm
    noise_hu = 1000.0 * noise_mu[top:top + h, left:left + w] / mu_water
    out = hu + noise_hu
    outside = hu < OUTSIDE_FIELD_HU
    out[outside] = hu[outside]
    return out


def simulate_volume(hu: np.ndarray, pixel_mm: float, dose: float, *, seed: int = 0, i0: float = I0_DEFAULT,
                    electronic_noise: float = 0.0, filter_name: str = "ramp", reference: str = "routine",
                    views: Optional[int] = None, on_slice: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """A ``(Z, Y, X)`` HU volume at ``dose``, slice by slice along Z, as int16 HU."""
    check_options(dose, i0, electronic_noise, filter_name, reference, views)
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise TranslateError(f"low-dose simulation: expected a (Z, Y, X) volume, got shape {hu.shape}")
    out = np.empty(hu.shape, dtype=np.int16)
    for k in range(hu.shape[0]):
        rng = np.random.default_rng([int(seed), k])
        result = simulate_slice(hu[k], pixel_mm, dose, rng, i0=i0, electronic_noise=electronic_noise,
                                filter_name=filter_name, reference=reference, views=views)
        out[k] = np.clip(np.rint(result), -32768, 32767).astype(np.int16)
        if on_slice is not None:
            on_slice(k)
    return out


def pixel_size(image, source: str) -> float:
    """The in-plane pixel size of a SimpleITK image in mm; one line when the pixels are not square."""
    sx, sy = (float(v) for v in image.GetSpacing()[:2])
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise TranslateError(f"{source}: in-plane spacing {sx:g} x {sy:g} mm; expected square pixels "
                             f"(resample the volume first)")
    return 0.5 * (sx + sy)


def simulate_file(source: str | Path, output: str | Path, dose: float, *, seed: int = 0, i0: float = I0_DEFAULT,
                  electronic_noise: float = 0.0, filter_name: str = "ramp", reference: str = "routine",
                  views: Optional[int] = None, progress: bool = True) -> Dict[str, object]:
    """Read a CT (NIfTI, NRRD, MHA or a DICOM series folder), simulate ``dose``, write int16 HU on its grid."""
    from .io import WRITE_EXTENSIONS, array_to_image, image_to_array, read_volume, write_volume

    check_options(dose, i0, electronic_noise, filter_name, reference, views)
    output = Path(output)
    if not any(output.name.lower().endswith(ext) for ext in WRITE_EXTENSIONS):
        raise TranslateError(f"output {output}: unknown extension; expected one of {', '.join(WRITE_EXTENSIONS)}")
    if Path(source).exists() and output.exists() and output.resolve() == Path(source).resolve():
        raise TranslateError(f"output {output} is the input volume; choose another file name")
    image = read_volume(source, what="input CT")
    pixel = pixel_size(image, str(source))
    hu = image_to_array(image)
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"low dose {dose:g}", total=hu.shape[0])
            low = simulate_volume(hu, pixel, dose, seed=seed, i0=i0, electronic_noise=electronic_noise,
                                  filter_name=filter_name, reference=reference, views=views,
                                  on_slice=lambda _: bar.advance(task))
    else:
        low = simulate_volume(hu, pixel, dose, seed=seed, i0=i0, electronic_noise=electronic_noise,
                              filter_name=filter_name, reference=reference, views=views)
    write_volume(array_to_image(low, image), output)
    return {"output": str(output), "shape": list(hu.shape), "pixel_mm": pixel,
            "views": int(views or default_views(hu.shape[1:]))}


def slab_ranges(slices: int, val_fraction: float, test_fraction: float, gap: int) -> Dict[str, tuple]:
    """``{"train": (start, stop), "val": ..., "test": ...}`` slice ranges along Z: train first, then
    validation, then test, each block separated from the next by ``gap`` slices used by no split,
    so no test (or validation) slice nor its ``gap`` nearest neighbours are ever trained on."""
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise TranslateError(f"--val {val_fraction}, --test {test_fraction}: expected fractions with "
                             f"0 <= val, 0 < test and val + test < 1")
    if gap < 0:
        raise TranslateError(f"--gap {gap}: expected a number of slices >= 0")
    n_test = max(1, int(round(slices * test_fraction)))
    n_val = max(1, int(round(slices * val_fraction))) if val_fraction > 0 else 0
    n_train = slices - n_test - n_val - gap * (2 if n_val else 1)
    if n_train < 1:
        raise TranslateError(f"a volume of {slices} slices is too short for --val {val_fraction}, --test "
                             f"{test_fraction} and --gap {gap}: no training slice is left")
    ranges = {"train": (0, n_train)}
    start = n_train + gap
    if n_val:
        ranges["val"] = (start, start + n_val)
        start += n_val + gap
    ranges["test"] = (start, slices)
    return ranges


def write_denoise_pairs(sources, out_dir: str | Path, dose: float = 0.25, *, seed: int = 0,
                        val_fraction: float = 0.15, test_fraction: float = 0.2, gap: int = 2,
                        i0: float = I0_DEFAULT, electronic_noise: float = 0.0, filter_name: str = "ramp",
                        views: Optional[int] = None, progress: bool = True) -> Dict[str, object]:
    """Paired low-dose / routine-dose training data from routine-dose CTs, split into slabs.

    Each source (a file or a DICOM folder) is simulated at ``dose`` (``reference="routine"``,
    :func:`simulate_volume`) and cut along Z by :func:`slab_ranges`; every slab is one subject
    folder ``<out_dir>/<name>-<split>/`` holding ``low.nii.gz`` and ``ct.nii.gz`` (int16 HU, the
    slab's own geometry), listed in ``split.json``. ``lowdose.json`` records the parameters and
    the slice ranges. The source's slices in the gaps are written nowhere.
    """
    import json

    from ..atomic import write_text_atomic
    from .io import array_to_image, image_to_array, read_volume, volume_suffix, write_volume

    check_options(dose, i0, electronic_noise, filter_name, "routine", views)
    sources = [Path(s) for s in sources]
    if not sources:
        raise TranslateError("no routine-dose CT given; expected one or more volumes or DICOM folders")
    out_dir = Path(out_dir)
    names = []
    for source in sources:
        suffix = volume_suffix(source)
        names.append(source.name[: -len(suffix)] if suffix else source.name)
    if len(set(names)) != len(names):
        raise TranslateError(f"two sources share the name {sorted(n for n in names if names.count(n) > 1)[0]!r}; "
                             f"expected distinct file or folder names")
    split: Dict[str, list] = {"train": [], "val": [], "test": []}
    record: Dict[str, object] = {"dose": dose, "seed": seed, "i0": i0, "electronic_noise": electronic_noise,
                                 "filter": filter_name, "reference": "routine", "gap": gap,
                                 "val_fraction": val_fraction, "test_fraction": test_fraction, "sources": {}}
    for number, (source, name) in enumerate(zip(sources, names)):
        image = read_volume(source, what="routine-dose CT")
        pixel = pixel_size(image, str(source))
        hu = image_to_array(image)
        ranges = slab_ranges(hu.shape[0], val_fraction, test_fraction, gap)
        routine = np.clip(hu, -32768, 32767).astype(np.int16)
        if progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"{name}: dose {dose:g}", total=hu.shape[0])
                low = simulate_volume(routine, pixel, dose, seed=seed + 1000 * number, i0=i0,
                                      electronic_noise=electronic_noise, filter_name=filter_name, views=views,
                                      on_slice=lambda _: bar.advance(task))
        else:
            low = simulate_volume(routine, pixel, dose, seed=seed + 1000 * number, i0=i0,
                                  electronic_noise=electronic_noise, filter_name=filter_name, views=views)
        full_low = array_to_image(low, image)
        full_ct = array_to_image(routine, image)
        for part, (start, stop) in ranges.items():
            subject = f"{name}-{part}"
            # slicing a SimpleITK image keeps physical positions: the slab's origin moves with it
            write_volume(full_low[:, :, start:stop], out_dir / subject / "low.nii.gz")
            write_volume(full_ct[:, :, start:stop], out_dir / subject / "ct.nii.gz")
            split[part].append(subject)
        record["sources"][name] = {"path": str(source), "slices": int(hu.shape[0]), "pixel_mm": pixel,
                                   "ranges": {k: list(v) for k, v in ranges.items()}}
    split = {k: v for k, v in split.items() if v}
    write_text_atomic(out_dir / "lowdose.json", json.dumps(record, indent=2) + "\n")
    write_text_atomic(out_dir / "split.json", json.dumps(split, indent=2) + "\n")
    return {"root": str(out_dir), "split": split, **record}
