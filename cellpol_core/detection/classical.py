"""The classical baseline: Otsu thresholds, connected components, Hungarian pairing.

This is the paper's multi-stage Otsu baseline. It needs no training:

1. per channel, light Gaussian smoothing (sigma in µm), then Otsu's threshold;
2. connected components, dropping those smaller than a minimum volume in µm³
   (µm² in 2D);
3. component centroids;
4. the Hungarian method on the centroid distance matrix in µm, dropping pairs
   longer than ``d_max_um`` (docs/method.md §5).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..defaults import OTSU_MIN_SIZE_UM, PAIR_DISTANCE_UM
from ..errors import InputError
from .pairing import pair_by_distance
from ..io.vectors import DEFAULT_STRUCTURES, VectorTable

#: Widest Gaussian smoothing (sigma, voxels) the baseline runs; wider means a wrong voxel size.
MAX_SMOOTH_VOXELS = 50


def segment_centroids(channel, *, voxel_size=(1.0, 1.0, 1.0), smooth_um=0.5, min_size_um=1.0):
    """Centroids of the Otsu foreground components of one channel.

    Parameters
    ----------
    channel : ndarray
        (Z, Y, X) or (Y, X) intensities.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel (pixels: 1).
    smooth_um : float
        Gaussian sigma in µm, converted per axis.
    min_size_um : float
        Smallest kept component, in µm³ (µm² in 2D).

    Returns
    -------
    centroids : ndarray, shape (N, 3)
        (z, y, x) voxels, z = 0 for 2D input.
    volumes : ndarray, shape (N,)
        Component sizes in µm³ (µm²).
    """
    from skimage.filters import threshold_otsu

    img = np.asarray(channel, dtype=np.float32)
    vs = np.asarray(voxel_size, float)[-img.ndim:]
    if smooth_um > 0:
        img = ndi.gaussian_filter(img, sigma=smooth_um / vs, mode="nearest")
    if float(img.max()) <= float(img.min()):
        return np.zeros((0, 3)), np.zeros(0)
    mask = img > threshold_otsu(img)
    labels, n = ndi.label(mask)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    volumes = counts * float(np.prod(vs))
    ids = np.flatnonzero(volumes >= min_size_um) + 1
    if len(ids) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    cents = np.asarray(ndi.center_of_mass(mask, labels, ids), float).reshape(-1, img.ndim)
    if img.ndim == 2:
        cents = np.concatenate([np.zeros((len(cents), 1)), cents], axis=1)
    return cents, volumes[ids - 1]


def predict_otsu(image, *, channels=(0, 1), voxel_size=None, d_max_um=PAIR_DISTANCE_UM,
                 smooth_um=0.5, min_size_um=OTSU_MIN_SIZE_UM,
                 names=DEFAULT_STRUCTURES) -> VectorTable:
    """Predict polarity vectors with the classical Otsu baseline.

    Parameters
    ----------
    image : CellImage or ndarray
        A :class:`~cellpol_core.io.image.CellImage`, or a (C, Z, Y, X) / (C, Y, X) array.
    channels : (int, int)
        Start and end channel indices.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm; defaults to the image's. Pixels (1, 1, 1) for a 2D image
        without calibration.
    d_max_um : float
        Longest allowed start–end distance in µm (pixels for an uncalibrated 2D image).
    smooth_um : float
        Gaussian smoothing sigma in µm.
    min_size_um : (float, float)
        Smallest start and end components, in µm³ (µm² in 2D).
    names : (str, str)
        Structure names written into the table.

    Returns
    -------
    VectorTable
        One vector per pair, score 1.0 (the baseline has no confidence).
    """
    # ndarray has a .data attribute of its own (a memoryview): test the type.
    is_array = isinstance(image, np.ndarray)
    data = image if is_array else image.data
    if voxel_size is None and not is_array:
        voxel_size = image.voxel_size
    ndim = len(data.shape) - 1
    if voxel_size is None:
        if ndim == 3:
            raise InputError("3D image has no voxel size; pass --voxel-size X Y Z",
                             None if is_array else image.path)
        voxel_size = (1.0, 1.0, 1.0)
    sigma = smooth_um / np.asarray(voxel_size, float)[-ndim:]
    if np.any(sigma > MAX_SMOOTH_VOXELS):  # planned work: a wide filter runs for hours
        raise InputError(f"a voxel size of {' x '.join(f'{v:g}' for v in voxel_size[-ndim:])} µm "
                         f"makes the {smooth_um:g} µm smoothing {sigma.max():.0f} voxels wide; "
                         "check the voxel size", None if is_array else image.path)
    starts, _ = segment_centroids(np.asarray(data[channels[0]]), voxel_size=voxel_size,
                                  smooth_um=smooth_um, min_size_um=min_size_um[0])
    ends, _ = segment_centroids(np.asarray(data[channels[1]]), voxel_size=voxel_size,
                                smooth_um=smooth_um, min_size_um=min_size_um[1])
    i, j = pair_by_distance(starts, ends, voxel_size=voxel_size, d_max_um=d_max_um)
    return VectorTable(starts[i], ends[j], np.ones(len(i)), names=names, ndim=ndim)
