"""Volumes in and out, geometry kept: NIfTI, NRRD, MHA and DICOM series as ``SimpleITK.Image``.

``SimpleITK.Image`` is the one in-memory type because it carries spacing, origin and direction
(LPS, as in DICOM). Arrays taken from it are in SimpleITK's ``(z, y, x)`` order; nibabel's are
``(x, y, z)``. Every failure a user can cause is a one-line :class:`TranslateError`.

Example:
    >>> ct = read_volume("ct.nii.gz", what="target CT")          # doctest: +SKIP
    >>> hu = image_to_array(ct)                                  # (z, y, x), int16 HU
    >>> write_volume(array_to_image(hu.clip(-1024, 3000), ct), "out/ct.nrrd")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Any, Dict

import numpy as np
import SimpleITK as sitk

from ..atomic import atomic_path
from ..errors import TranslateError

READ_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Single-file formats only: a detached header (.nhdr/.mhd) plus raw file cannot be replaced atomically.
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
SUPPORTED_EXTENSIONS = READ_EXTENSIONS
_EXPECTED = "expected NIfTI, NRRD, MHA or a DICOM series folder"


def volume_suffix(path: str | Path) -> str:
    """The known extension of ``path`` (``.nii.gz`` counts as one), or ``""``."""
    name = Path(path).name.lower()
    return next((ext for ext in READ_EXTENSIONS if name.endswith(ext)), "")


def is_dicom_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding at least one DICOM series (not searched recursively)."""
    path = Path(path)
    return path.is_dir() and bool(_series_ids(path))


def _series_ids(folder: Path) -> tuple:
    # GDCM prints "No Series were found" to stderr for a plain folder; we report it ourselves.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def read_volume(path: str | Path, *, what: str = "volume") -> sitk.Image:
    """Read a 3D scalar volume, keeping its pixel type (HU stay HU, integers stay integers).

    Args:
        path: a ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr``, ``.mha``/``.mhd`` file, or a folder
            holding a DICOM series (the largest one when there are several; a warning names it).
            DICOM rescale slope/intercept are applied by SimpleITK.
        what: how error messages name the file (``"target CT"``, ``"mask"``...).

    Returns:
        A 3D ``SimpleITK.Image`` with one component per voxel.

    Raises:
        TranslateError: missing, unreadable or truncated file, empty/non-DICOM folder, a 2D,
            4D or multi-component image, NaN/Inf voxels.
    """
    path = Path(path)
    if not path.exists():
        raise TranslateError(f"{what} file not found: {path}")
    if path.is_dir():
        image = _read_dicom_folder(path, what)
    else:
        _check_nifti_file(path, what)
        _check_metaimage_file(path, what)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise TranslateError(f"cannot read {what} {path}: {_itk_reason(err)}; {_EXPECTED}") from None
    _check_volume(image, path, what)
    return image


def _read_dicom_folder(folder: Path, what: str) -> sitk.Image:
    if not any(folder.iterdir()):
        raise TranslateError(f"{what} folder {folder} is empty; {_EXPECTED}")
    reader = sitk.ImageSeriesReader()
    series = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in _series_ids(folder)}
    if not series:
        raise TranslateError(f"{what} folder {folder} holds no DICOM series; {_EXPECTED}")
    uid = max(series, key=lambda key: len(series[key]))
    if len(series) > 1:
        warnings.warn(f"{what} folder {folder} holds {len(series)} DICOM series; reading series "
                      f"{uid or '(no UID)'} with {len(series[uid])} files", stacklevel=3)
    _check_slice_spacing(series[uid], folder, what)
    reader.SetFileNames(series[uid])
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise TranslateError(f"cannot read {what} {folder}: {_itk_reason(err)}; {_EXPECTED}") from None


def _check_slice_spacing(files, folder: Path, what: str, tolerance: float = 0.05) -> None:
    """Refuse a series whose slices are not evenly spaced (a missing or duplicated slice).

    ITK would read it with an averaged spacing and only a warning on stderr, which puts every
    slice after the gap at the wrong position: silently wrong geometry.
    """
    if len(files) < 3:
        return
    positions, normal = [], None
    for name in files:
        info = sitk.ImageFileReader()
        info.SetFileName(str(name))
        try:
            info.ReadImageInformation()
            origin = [float(v) for v in info.GetMetaData("0020|0032").split("\\")]
            if normal is None:
                cosines = [float(v) for v in info.GetMetaData("0020|0037").split("\\")]
                normal = np.cross(cosines[:3], cosines[3:])
        except (RuntimeError, ValueError):
            return  # no usable position tags: leave the geometry to ITK
        positions.append(float(np.dot(origin, normal)))
    steps = np.diff(np.sort(positions))
    spacing = float(np.median(steps))
    if spacing <= 0:
        raise TranslateError(f"{what} {folder}: two slices share one position; a series with duplicated slices "
                             f"cannot be read as one volume")
    bad = np.where(np.abs(steps - spacing) > tolerance * spacing)[0]
    if len(bad):
        k = int(bad[0])
        ordered = np.sort(positions)
        raise TranslateError(f"{what} {folder}: slices are not evenly spaced: a step of {steps[k]:.2f} mm between "
                             f"positions {ordered[k]:.2f} and {ordered[k + 1]:.2f} mm where the series' spacing is "
                             f"{spacing:.2f} mm (a missing slice?); expected a complete series")


def _itk_reason(err: Exception) -> str:
    """The human part of an ITK exception (its first lines name C++ source files)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        for tag in ("ITK ERROR:", "sitk::ERROR:"):
            if tag in line:
                reason = re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", line.split(tag, 1)[1].strip())
                return reason.rstrip(":. ")
    return lines[-1] if lines else type(err).__name__


def _check_nifti_file(path: Path, what: str) -> None:
    """Checks ITK cannot do: it reads a truncated NIfTI without complaint and turns NaN/Inf into 0."""
    suffix = volume_suffix(path)
    if suffix not in (".nii", ".nii.gz"):
        return
    import gzip

    import nibabel

    try:
        with (gzip.open if suffix == ".nii.gz" else open)(path, "rb") as stream:
            head = stream.read(540)  # NIfTI-2 header size; a NIfTI-1 header is 348 bytes
    except EOFError:
        raise TranslateError(f"cannot read {what} {path}: truncated gzip stream; {_EXPECTED}") from None
    except zlib.error as err:  # a damaged deflate stream
        raise TranslateError(f"cannot read {what} {path}: damaged gzip stream ({err}); {_EXPECTED}") from None
    except OSError:  # not gzip at all: ITK's message says more
        return
    classes = {348: nibabel.Nifti1Header, 540: nibabel.Nifti2Header}
    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")} & set(classes)
    if not sizes:  # not a NIfTI header: ITK's message says more
        return
    size = sizes.pop()
    if len(head) < size:
        raise TranslateError(f"cannot read {what} {path}: truncated NIfTI header, {len(head)} of {size} bytes; {_EXPECTED}")
    try:
        # check=False: headers with harmless oddities (bad qform code...) still give a valid data size
        header = classes[size](binaryblock=head[:size], check=False)
        dtype = header.get_data_dtype()
        expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=object)) * dtype.itemsize
    except Exception as err:  # nibabel: unknown datatype code (KeyError), impossible dims or offset ...
        raise TranslateError(f"cannot read {what} {path}: damaged NIfTI header ({type(err).__name__}: "
                             f"{str(err)[:80]}); {_EXPECTED}") from None
    try:
        actual = path.stat().st_size if suffix == ".nii" else _gzip_length(path, expected)
    except zlib.error as err:
        raise TranslateError(f"cannot read {what} {path}: damaged gzip stream ({err}); {_EXPECTED}") from None
    if actual is None:
        raise TranslateError(f"cannot read {what} {path}: truncated gzip stream; {_EXPECTED}")
    if actual < expected:
        raise TranslateError(f"cannot read {what} {path}: truncated, {actual} of {expected} bytes; {_EXPECTED}")
    if dtype.kind == "f":
        try:
            bad = _count_nonfinite(path, suffix == ".nii.gz", int(header.get_data_offset()),
                                   int(np.prod(header.get_data_shape(), dtype=object)), dtype)
        except (zlib.error, EOFError, OSError) as err:
            raise TranslateError(f"cannot read {what} {path}: damaged gzip stream ({err}); {_EXPECTED}") from None
        if bad:
            raise TranslateError(f"{what} {path} contains {bad} NaN/Inf voxels")


#: MetaImage element types (MetaIO's MET_ValueEnumType names)
_MET_TYPES = {f"MET_{t}" for t in ("CHAR", "UCHAR", "SHORT", "USHORT", "INT", "UINT", "LONG", "ULONG", "LONG_LONG",
                                  "ULONG_LONG", "FLOAT", "DOUBLE", "STRING", "CHAR_ARRAY", "UCHAR_ARRAY",
                                  "SHORT_ARRAY", "USHORT_ARRAY", "INT_ARRAY", "UINT_ARRAY", "LONG_ARRAY",
                                  "ULONG_ARRAY", "LONG_LONG_ARRAY", "ULONG_LONG_ARRAY", "FLOAT_ARRAY",
                                  "DOUBLE_ARRAY", "FLOAT_MATRIX", "OTHER")}


def _check_metaimage_file(path: Path, what: str) -> None:
    """Refuse a damaged MetaImage header before ITK parses it: MetaIO can crash the interpreter on some
    (e.g. an ``ElementDataFile = LOCAL`` line whose newline is lost: ITK 5.4 then corrupts its heap)."""
    suffix = volume_suffix(path)
    if suffix not in (".mha", ".mhd"):
        return
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    bad = f"cannot read {what} {path}: damaged MetaImage header"
    end = head.find(b"ElementDataFile")
    end = head.find(b"\n", end) if end >= 0 else -1
    if end < 0:
        raise TranslateError(f"{bad} (no complete ElementDataFile line); {_EXPECTED}")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise TranslateError(f"{bad} (bytes that are not text); {_EXPECTED}") from None
    fields: Dict[str, str] = {}
    for number, line in enumerate(text.replace("\r", "").split("\n"), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*[=:]\s*([\x20-\x7e\t]*?)\s*", line)
        if match is None:
            raise TranslateError(f"{bad} (line {number} is not 'Key = Value'); {_EXPECTED}")
        fields[match.group(1)] = match.group(2)
    try:
        ndims = int(fields.get("NDims", ""))
        sizes = [int(v) for v in fields.get("DimSize", "").split()]
    except ValueError:
        raise TranslateError(f"{bad} (NDims or DimSize is not an integer); {_EXPECTED}") from None
    if not 1 <= ndims <= 10 or len(sizes) != ndims or min(sizes) < 1:
        raise TranslateError(f"{bad} (NDims {fields.get('NDims')!r} and DimSize {fields.get('DimSize')!r} disagree); "
                             f"{_EXPECTED}")
    if fields.get("ElementType") not in _MET_TYPES:
        raise TranslateError(f"{bad} (ElementType {fields.get('ElementType')!r}); {_EXPECTED}")
    data_file = fields.get("ElementDataFile", "")
    if suffix == ".mha" and data_file != "LOCAL":
        raise TranslateError(f"{bad} (ElementDataFile {data_file!r}; expected LOCAL in a .mha); {_EXPECTED}")
    if suffix == ".mhd" and data_file != "LOCAL" and not (path.parent / data_file).is_file():
        raise TranslateError(f"{what} {path}: its data file {data_file!r} (ElementDataFile) is not beside it")
    if fields.get("CompressedData", "").lower() == "true":
        source, offset = (path, end + 1) if data_file == "LOCAL" else (path.parent / data_file, 0)
        item = _MET_BYTES.get(fields["ElementType"])
        channels = fields.get("ElementNumberOfChannels", "1")
        expected = (int(np.prod(sizes, dtype=object)) * item * int(channels)) if item and channels.isdigit() else None
        # ITK 5.4's MetaIO loops forever on some damaged streams (one asking for a preset dictionary): inflate here first
        with open(source, "rb") as stream:
            stream.seek(offset)
            try:
                total = _inflated_length(stream, wbits=47, stop_above=expected)  # zlib or gzip header, as MetaIO
                problem = ("the stream is cut short" if total is None else
                           None if expected is None or total == expected else
                           f"it inflates to {'more than ' + str(expected) if total > expected else total} bytes; "
                           f"DimSize and ElementType give {expected}")
            except zlib.error as err:
                problem = str(err)
        if problem:
            raise TranslateError(f"cannot read {what} {path}: damaged MetaImage compressed data ({problem}); "
                                 f"{_EXPECTED}")


#: bytes per element of MetaIO's scalar types (MET_ValueTypeSize)
_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


def _count_nonfinite(path: Path, gz: bool, offset: int, count: int, dtype: np.dtype) -> int:
    """NaN/Inf among ``count`` voxels stored from byte ``offset``, read in chunks to bound memory."""
    import gzip

    bad, step = 0, (1 << 24) // dtype.itemsize
    with (gzip.open if gz else open)(path, "rb") as stream:
        stream.seek(offset)
        while count > 0:
            values = np.frombuffer(stream.read(min(step, count) * dtype.itemsize), dtype=dtype)
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            count -= min(step, count)
    return bad


def _gzip_length(path: Path, expected: int) -> int | None:
    """Uncompressed length of a gzip file, ``None`` when the stream is cut short."""
    with open(path, "rb") as stream:
        stream.seek(-4, os.SEEK_END)
        # The trailer's ISIZE (length mod 2**32) of a complete single-member file spares inflating it.
        if int.from_bytes(stream.read(4), "little") == expected % 2**32:
            return expected
        stream.seek(0)
        return _inflated_length(stream, wbits=31, members=True)


def _inflated_length(stream, wbits: int, members: bool = False, stop_above: int | None = None) -> int | None:
    """Bytes a deflate stream inflates to, from the stream's position, ``None`` when it is cut short.

    Read in chunks and inflated at most 16 MiB at a time, so memory stays bounded; ``members``: gzip
    members may follow one another; ``stop_above``: stop (returning the count so far) once the count
    exceeds it. Raises ``zlib.error`` on a damaged stream."""
    total, inflater = 0, zlib.decompressobj(wbits=wbits)
    while chunk := stream.read(1 << 20):
        while chunk:
            if inflater.eof:  # another gzip member follows (in this read or the next)
                inflater = zlib.decompressobj(wbits=wbits)
            total += len(inflater.decompress(chunk, 1 << 24))
            if stop_above is not None and total > stop_above:
                return total
            chunk = inflater.unconsumed_tail or inflater.unused_data
            if inflater.eof and not members:
                return total
    return total if inflater.eof else None


def _check_volume(image: sitk.Image, path: Path, what: str) -> None:
    size = " x ".join(str(n) for n in image.GetSize())
    if image.GetDimension() != 3 or 1 in image.GetSize():
        dims = "2D" if image.GetDimension() == 2 or 1 in image.GetSize() else f"{image.GetDimension()}D"
        raise TranslateError(f"{what} {path} is {dims} (size {size}); expected a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise TranslateError(f"{what} {path} has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                             f"({image.GetPixelIDTypeAsString()}); expected a scalar volume")
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise TranslateError(f"{what} {path} contains {bad} NaN/Inf voxels")


def write_volume(image: sitk.Image, path: str | Path) -> Path:
    """Write ``image`` by extension (compressed), atomically; parent folders are created.

    The file is written beside ``path`` under a temporary name with the same extension and
    renamed over ``path`` only once complete; on failure the temporary file is removed and an
    existing ``path`` is left as it was. Metadata dictionaries (DICOM tags, NIfTI descrip) are
    not written: geometry comes from spacing, origin and direction alone.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    suffix = next((ext for ext in WRITE_EXTENSIONS if path.name.lower().endswith(ext)), "")
    if not suffix:
        raise TranslateError(f"cannot write {path}: unknown extension; expected one of {', '.join(WRITE_EXTENSIONS)}")
    if path.is_dir():
        raise TranslateError(f"cannot write {path}: it is a folder; expected a file name ending in {suffix}")
    bare = sitk.Image(image)
    for key in bare.GetMetaDataKeys():
        bare.EraseMetaData(key)
    try:
        with atomic_path(path, suffix=path.name[-len(suffix):]) as tmp:
            sitk.WriteImage(bare, str(tmp), useCompression=True)
    except (RuntimeError, OSError) as err:
        raise TranslateError(f"cannot write {path}: {_itk_reason(err)}") from None
    return path


def image_to_array(image: sitk.Image) -> np.ndarray:
    """A copy of the voxels as ``(z, y, x)`` (``(y, x)`` for 2D), in the image's pixel type."""
    return sitk.GetArrayFromImage(image)


def array_to_image(array: np.ndarray, reference: sitk.Image, dtype: Any = None) -> sitk.Image:
    """Wrap a ``(z, y, x)`` array as an image on ``reference``'s grid (spacing, origin, direction).

    Args:
        array: voxels in SimpleITK order, shape ``reference.GetSize()[::-1]``.
        reference: the image whose geometry is copied.
        dtype: cast to this numpy dtype first; bool becomes uint8 (ITK has no bool pixel).
    """
    array = np.asarray(array)
    expected = tuple(reference.GetSize())[::-1]
    if array.shape != expected:
        raise TranslateError(f"array of shape {array.shape} does not fit the reference grid; "
                             f"expected shape {expected} (z, y, x)")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    return image


def geometry(image: sitk.Image) -> Dict[str, list]:
    """Size, spacing (mm), origin (mm, LPS) and row-major direction, as JSON-able lists."""
    return {"size": [int(n) for n in image.GetSize()],
            "spacing": [float(v) for v in image.GetSpacing()],
            "origin": [float(v) for v in image.GetOrigin()],
            "direction": [float(v) for v in image.GetDirection()]}


def _grid_difference(a: sitk.Image, b: sitk.Image, tol: float) -> str:
    ga, gb = geometry(a), geometry(b)
    if ga["size"] != gb["size"]:
        return "size"
    for key in ("spacing", "origin", "direction"):
        if not np.allclose(ga[key], gb[key], rtol=0.0, atol=tol):
            return key
    return ""


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """True when size match and spacing, origin and direction agree to ``tol`` (mm; unitless for direction)."""
    return not _grid_difference(a, b, tol)


def check_same_grid(a: sitk.Image, b: sitk.Image, what_a: str, what_b: str, tol: float = 1e-4) -> None:
    """Raise :class:`TranslateError` naming both images and the first property that differs."""
    key = _grid_difference(a, b, tol)
    if key:
        fmt = (lambda values: " x ".join(str(v) for v in values)) if key == "size" else \
            (lambda values: "(" + ", ".join(f"{v:.6g}" for v in values) + ")")
        raise TranslateError(f"{what_a} and {what_b} are on different grids: {key} "
                             f"{fmt(geometry(a)[key])} vs {fmt(geometry(b)[key])}; expected the same grid")
