"""DICOM series out: a derived series on the input's grid, with the DICOM input's patient and study.

:func:`write_dicom_series` writes one single-frame file per slice (``IM00001.dcm`` ...) into a new
folder, atomically: the files go to a temporary folder beside the target, which is renamed into
place only when every slice is written. The series is new (``SeriesInstanceUID`` and each
``SOPInstanceUID`` from :func:`pydicom.uid.generate_uid`), ``ImageType`` is
``DERIVED\\SECONDARY``, and ``SeriesDescription`` names what made it. When the input was a DICOM
series, its patient, study and frame-of-reference tags are carried over, so the result files
under the same patient and study and overlays the original in a viewer.

Geometry: ``ImageOrientationPatient`` from the direction's first two columns,
``ImagePositionPatient`` per slice (origin + k * spacing_z * slice direction), ``PixelSpacing``
(row spacing, column spacing), ``SliceThickness`` and ``SpacingBetweenSlices``. Values are stored
as 16-bit unsigned integers with ``RescaleSlope`` / ``RescaleIntercept``: CT in HU exactly
(slope 1, intercept -1024 or the minimum), label ids exactly (slope 1), other real values with
the slope that spans their range in 65535 steps.

Example:
    >>> write_dicom_series(image, "out/sct_dicom", kind="ct", description="translate pix2pix",
    ...                    reference="in/ct_dicom")       # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import TranslateError

#: SOP classes by output kind: CT and MR image storage; label maps (and images of unknown kind) as
#: Secondary Capture with modality OT, which SimpleITK / GDCM still place by ImagePositionPatient
SOP_CLASS = {"ct": "1.2.840.10008.5.1.4.1.1.2", "mr": "1.2.840.10008.5.1.4.1.1.4"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MODALITY = {"ct": "CT", "mr": "MR"}
#: tags copied from a DICOM input: patient, study, frame of reference, equipment context
CARRIED_TAGS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator", "BodyPartExamined", "PatientPosition",
    "KVP", "ConvolutionKernel",
)
#: files a previous DICOM output holds; a folder holding anything else is never replaced
FILE_PATTERN = "IM{:05d}.dcm"


def series_files(folder: str | Path) -> list[str]:
    """Files of the series :func:`translate.data.io.read_volume` reads from ``folder`` (the largest)."""
    from .io import _series_ids

    reader = sitk.ImageSeriesReader()
    series = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in _series_ids(Path(folder))}
    if not series:
        return []
    return list(series[max(series, key=lambda key: len(series[key]))])


def reference_dataset(folder: str | Path):
    """The header (no pixels) of the first file of ``folder``'s series, or None when it has none."""
    import pydicom

    files = series_files(folder)
    if not files:
        return None
    try:
        return pydicom.dcmread(files[0], stop_before_pixels=True)
    except Exception as err:  # pydicom raises several types for a damaged header
        raise TranslateError(f"cannot read DICOM header {files[0]}: {str(err)[:120]}") from None


def _is_integer_valued(array: np.ndarray) -> bool:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return True
    return bool(np.all(np.equal(np.mod(array, 1.0), 0.0)))


def rescale_for(array: np.ndarray, kind: str) -> tuple[float, float]:
    """``(slope, intercept)`` that store ``array`` as uint16 (``value = stored * slope + intercept``).

    Integer values (CT HU, label ids) are kept exactly when their span fits 16 bits: slope 1 and
    the intercept -1024 for CT (the usual convention) or 0 for labels, lowered to the minimum when
    values lie below it. Real values span 65535 steps between their minimum and maximum.
    """
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if _is_integer_valued(array):
        intercept = min({"ct": -1024.0}.get(kind, 0.0), np.floor(lo))
        span = hi - intercept
        if span <= 65535:
            return 1.0, float(intercept)
        return float(np.ceil(span / 65535.0)), float(intercept)
    if hi == lo:
        return 1.0, lo
    return (hi - lo) / 65535.0, lo


def _geometry(image: sitk.Image) -> Dict[str, Any]:
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = [float(s) for s in image.GetSpacing()]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    row, column, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    return {"row": row, "column": column, "normal": normal, "spacing": spacing, "origin": origin,
            "right_handed": bool(np.dot(np.cross(row, column), normal) > 0)}


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.6g}"
    return text


def _new_dataset(kind: str, reference, description: str, series_uid: str, study_uid: str, frame_uid: str,
                 when: datetime.datetime):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    sop_class = SOP_CLASS.get(kind, SECONDARY_CAPTURE)
    ds = Dataset()
    if reference is not None:
        for keyword in CARRIED_TAGS:
            if keyword in reference:
                setattr(ds, keyword, reference.data_element(keyword).value)
    if "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        if keyword not in ds:
            setattr(ds, keyword, "")  # type 2: present, may be empty
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or study_uid
    ds.FrameOfReferenceUID = ds.get("FrameOfReferenceUID") or frame_uid
    if "PositionReferenceIndicator" not in ds:
        ds.PositionReferenceIndicator = ""
    ds.SOPClassUID = sop_class
    ds.SeriesInstanceUID = series_uid
    ds.Modality = MODALITY.get(kind, "OT")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = description[:64]
    ds.DerivationDescription = (description + (f"; from series {reference.get('SeriesInstanceUID', '')}"
                                               if reference is not None else ""))[:1024]
    previous = int(reference.get("SeriesNumber", 0) or 0) if reference is not None else 0
    ds.SeriesNumber = previous + 1000
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = date
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = time
    ds.Manufacturer = "translate"
    ds.SoftwareVersions = _version()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if kind == "ct":
        ds.RescaleType = "HU"
    elif kind == "labels":
        ds.RescaleType = "US"  # unspecified: label ids
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"translate {version('translate-medical')}"
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "translate"


def _save(ds, path: Path) -> None:
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def check_dicom_target(folder: Path) -> None:
    """A target that exists must be an empty folder or a previous DICOM output (``IM*.dcm`` only)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise TranslateError(f"DICOM output {folder} is a file; expected a folder name for the series")
    entries = list(folder.iterdir())
    foreign = [e for e in entries if not (e.is_file() and e.name.startswith("IM") and e.name.endswith(".dcm"))]
    if foreign:
        raise TranslateError(f"DICOM output {folder} already holds {foreign[0].name}; expected a new or empty "
                             f"folder, or one written by translate (IM*.dcm only)")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_dicom_series(image: sitk.Image, folder: str | Path, *, kind: str = "ct", description: str = "translate",
                       reference: Optional[str | Path] = None, slice_thickness: Optional[float] = None) -> Path:
    """Write a 3D ``image`` as a new DICOM series in ``folder`` (created, or replaced when it is a
    previous output), atomically.

    Args:
        image: the volume, values in native units (HU for CT, label ids, MR units).
        folder: the series folder.
        kind: ``ct``, ``mr`` or ``labels``: the SOP class, modality and rescale convention (labels and
            other kinds: Secondary Capture, modality ``OT``).
        description: ``SeriesDescription`` (cut to 64 characters), e.g. the model and checkpoint.
        reference: a DICOM series folder whose patient, study and frame of reference are carried over.
        slice_thickness: ``SliceThickness`` in mm; default the reference's, else the slice spacing.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        TranslateError: ``folder`` is a file or holds files other than a previous output; a write fails.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    check_dicom_target(folder)
    if image.GetDimension() != 3:
        raise TranslateError(f"DICOM output {folder}: expected a 3D volume, got {image.GetDimension()}D")
    ref = reference_dataset(reference) if reference is not None else None
    geo = _geometry(image)
    array = sitk.GetArrayViewFromImage(image)  # (z, y, x), no copy
    order = range(array.shape[0])
    normal = geo["normal"]
    if not geo["right_handed"]:
        # DICOM readers order slices along row x column; a left-handed grid is written from its far
        # end so the same voxels land at the same places (the read-back direction is right-handed).
        order, normal = range(array.shape[0] - 1, -1, -1), -normal
    slope, intercept = rescale_for(np.asarray(array), kind)
    thickness = slice_thickness
    if thickness is None and ref is not None and "SliceThickness" in ref and ref.SliceThickness not in (None, ""):
        thickness = float(ref.SliceThickness)
    if thickness is None:
        thickness = geo["spacing"][2]
    when = datetime.datetime.now()
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    base = _new_dataset(kind, ref, description, series_uid, study_uid, frame_uid, when)
    base.Rows, base.Columns = int(array.shape[1]), int(array.shape[2])
    base.PixelSpacing = [_ds(geo["spacing"][1]), _ds(geo["spacing"][0])]  # row spacing (y), column spacing (x)
    base.ImageOrientationPatient = [_ds(v) for v in (*geo["row"], *geo["column"])]
    base.SliceThickness = _ds(thickness)
    base.SpacingBetweenSlices = _ds(geo["spacing"][2])
    base.RescaleSlope, base.RescaleIntercept = _ds(slope), _ds(intercept)
    if kind == "ct":
        base.WindowCenter, base.WindowWidth = "40", "400"
    else:
        lo, hi = float(array.min()), float(array.max())
        base.WindowCenter, base.WindowWidth = _ds((lo + hi) / 2), _ds(max(hi - lo, 1.0))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        for number, k in enumerate(order, start=1):
            ds = base.copy()
            ds.file_meta = base.file_meta.copy()
            uid = generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.InstanceNumber = number
            position = geo["origin"] + k * geo["spacing"][2] * geo["normal"]
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(float(np.dot(position, normal)))
            stored = np.rint((np.asarray(array[k], dtype=np.float64) - intercept) / slope)
            ds.PixelData = np.clip(stored, 0, 65535).astype("<u2").tobytes()
            _save(ds, tmp / FILE_PATTERN.format(number))
        _replace_folder(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise TranslateError(f"cannot write DICOM series {folder}: {err.strerror or err}") from None
        raise
    return folder


def _replace_folder(tmp: Path, folder: Path) -> None:
    """Rename the complete ``tmp`` to ``folder``; a previous output is moved aside first, then removed."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    old.rmdir()
    os.replace(folder, old)
    try:
        os.replace(tmp, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)

