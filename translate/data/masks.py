"""Body masks from CT, for evaluating synthetic CT where it matters (not in the air around the patient)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import TranslateError


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean ``(H, W)`` or ``(D, H, W)`` mask.

    An empty mask comes back empty.
    """
    labels, count = ndimage.label(mask)
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes in each axial slice of a ``(D, H, W)`` mask (or in a ``(H, W)`` mask).

    Slice by slice because lungs and bowel gas open onto the airways or out of the
    field of view in 3D and would not be filled, while in each axial plane they are enclosed.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    return np.stack([ndimage.binary_fill_holes(plane) for plane in mask])


def body_mask_from_ct(ct_hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    r"""The patient's body in a CT: largest component of :math:`\mathrm{CT} > t`, holes filled per axial slice.

    Args:
        ct_hu: CT in HU, ``(D, H, W)`` (SimpleITK ``(z, y, x)`` order, axial slices first) or ``(H, W)``.
        threshold: HU above which a voxel is tissue; -500 separates air and lung parenchyma
            from soft tissue, and the couch is dropped as a smaller component.

    Returns:
        bool array of ``ct_hu``'s shape; all False when no voxel exceeds ``threshold``.
    """
    ct_hu = np.asarray(ct_hu)
    if ct_hu.ndim not in (2, 3):
        raise TranslateError(f"body_mask_from_ct: CT of shape {ct_hu.shape}; expected (H, W) or (D, H, W)")
    return fill_holes_per_slice(largest_component(ct_hu > threshold))
