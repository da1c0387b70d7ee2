"""Resampling between an image's voxel size and a model's.

Both directions use the same corner-aligned mapping as
``scipy.ndimage.zoom``: voxel 0 stays at 0 and the last voxel stays last, so a
point moves by ``(D - 1) / (S - 1)`` from a size-S axis to a size-D axis.
"""

from __future__ import annotations

import numpy as np


def needs_resampling(source_vs, target_vs, *, tolerance=0.10) -> bool:
    """True when any axis differs by more than ``tolerance`` (relative)."""
    s = np.asarray(source_vs, float)
    t = np.asarray(target_vs, float)
    return bool(np.any(np.abs(s - t) > tolerance * t))


def coord_scale(src_shape, dst_shape) -> np.ndarray:
    """Per-axis factor taking coordinates on a ``src_shape`` grid to a ``dst_shape`` grid."""
    s = np.asarray(src_shape, float)
    d = np.asarray(dst_shape, float)
    return np.where(s > 1, (d - 1) / np.maximum(s - 1, 1), 1.0)


def resampled_shape(shape, source_vs, target_vs) -> tuple:
    """Shape of an image of ``shape`` voxels of ``source_vs`` µm at ``target_vs`` µm."""
    f = np.asarray(source_vs, float) / np.asarray(target_vs, float)
    return tuple(int(max(1, round(s * k))) for s, k in zip(shape, f))


def resample_channels(data, shape, *, path=None, force=True) -> np.ndarray:
    """Linearly resample the spatial axes of a (C, ...) array to ``shape`` (float32).

    Refuses (:class:`~cellpol_core.errors.InputError` naming ``path``) a result
    that would not fit in the free memory or passes
    :data:`MAX_RESAMPLED_VOXELS`, and, with ``force=False``, a growth beyond
    :data:`MAX_GROWTH`; all before allocating.
    """
    from scipy import ndimage as ndi

    from ..errors import InputError
    from .image import _available_memory

    shape = tuple(int(s) for s in shape)
    if tuple(data.shape[1:]) == shape:
        return np.asarray(data, np.float32)
    check_resampling(data.shape[1:], shape, force=force, path=path)
    need = 4 * int(data.shape[0]) * int(np.prod(shape, dtype=np.float64))
    free = _available_memory()
    if need > free:
        raise InputError(f"resampling to {' x '.join(map(str, shape))} voxels needs "
                         f"{need / 2**30:.1f} GiB of memory but only {free / 2**30:.1f} GiB "
                         "are free: check the voxel size", path)
    factors = [d / s for d, s in zip(shape, data.shape[1:])]
    return np.stack([ndi.zoom(np.asarray(c, np.float32), factors, order=1)
                     for c in data])


#: Resampling to a model's voxel size may grow an image at most this many times (in
#: voxels) unless forced: a larger factor usually means a wrong voxel size.
MAX_GROWTH = 8.0
#: Voxels at the model's scale beyond which an image is refused even when forced.
MAX_RESAMPLED_VOXELS = 1 << 36


def check_resampling(src_shape, dst_shape, *, force=False, path=None):
    """Refuse, before any work, a resampling that would blow an image up.

    Parameters
    ----------
    src_shape, dst_shape : tuple of int
        Spatial shapes before and after resampling.
    force : bool
        Allow growth beyond :data:`MAX_GROWTH` (the user confirmed it).
    path : path, optional
        The image, named in the error.

    Raises
    ------
    InputError
        Growth beyond :data:`MAX_GROWTH` without ``force``, or a result
        beyond :data:`MAX_RESAMPLED_VOXELS`.
    """
    import math

    from ..errors import InputError

    src = math.prod(int(s) for s in src_shape)
    dst = math.prod(int(s) for s in dst_shape)
    growth = dst / max(src, 1)
    shape = " x ".join(str(int(s)) for s in dst_shape)
    if dst > MAX_RESAMPLED_VOXELS:
        raise InputError(f"resampling to the model's voxel size would make the image {shape} "
                         f"voxels ({growth:.3g} times larger): check the voxel size", path)
    if growth > MAX_GROWTH and not force:
        raise InputError(f"resampling to the model's voxel size would grow the image "
                         f"{growth:.0f} times, to {shape} voxels: check the voxel size, or "
                         "pass --force to go ahead", path)
