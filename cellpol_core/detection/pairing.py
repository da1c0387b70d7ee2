"""Pairing start and end centroids by distance (Hungarian method).

Used by the classical Otsu baseline and by models without embedding heads
(CtrDet): a cost matrix of Euclidean centroid distances in µm, one optimal
one-to-one assignment, then pairs longer than ``d_max_um`` are dropped
(docs/method.md §5).
"""

from __future__ import annotations

import numpy as np

from ..defaults import PAIR_DISTANCE_UM

# Cost given to forbidden pairs; large enough never to be preferred, finite so
# that linear_sum_assignment always finds a complete assignment.
_FORBIDDEN = 1e9


def pair_by_distance(start, end, *, voxel_size=(1.0, 1.0, 1.0), d_max_um=PAIR_DISTANCE_UM):
    """Pair start and end points one-to-one, minimising the summed distance.

    Parameters
    ----------
    start : ndarray, shape (N, 3)
        Start centroids in (z, y, x) voxels.
    end : ndarray, shape (M, 3)
        End centroids in (z, y, x) voxels.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    d_max_um : float
        Longest allowed pair, in µm (pixels when the voxel size is 1).

    Returns
    -------
    i, j : ndarray of int
        Indices into ``start`` and ``end`` of the kept pairs, sorted by ``i``.
    """
    start = np.asarray(start, float).reshape(-1, 3)
    end = np.asarray(end, float).reshape(-1, 3)
    if len(start) == 0 or len(end) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    vs = np.asarray(voxel_size, float)
    dist = np.linalg.norm((start[:, None, :] - end[None, :, :]) * vs, axis=-1)
    return assign(dist, dist <= d_max_um)


def assign(cost, allowed):
    """One-to-one assignment of minimal total cost among allowed pairs.

    Parameters
    ----------
    cost : ndarray, shape (N, M)
        Cost of pairing row i with column j.
    allowed : ndarray of bool, shape (N, M)
        Pairs that may be made.

    Returns
    -------
    i, j : ndarray of int
        Row and column indices of the pairs made, sorted by ``i``.
    """
    # Imported here: scipy.optimize takes a quarter second to import, which
    # prediction then pays in its decode thread rather than before the network.
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost, float)
    allowed = np.asarray(allowed, bool) & np.isfinite(cost)
    if cost.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    # Gating before the assignment keeps one far-away point from displacing
    # a valid pair.
    i, j = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
    keep = allowed[i, j]
    return i[keep], j[keep]
