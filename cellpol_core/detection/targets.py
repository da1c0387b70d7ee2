"""Training targets: centroid heatmaps, pair-id maps and heatmap loss weights.

Definitions (docs/method.md §3, with the choices the paper leaves open)
-----------------------------------------------------------------------
Radius
    Each structure has a radius ``r = ½·(major + minor)/2`` of its typical
    size (:class:`PairPreset`): about 6.1 µm for nuclei and 3.2 µm for Golgi.
Support (neighbourhood)
    The voxels whose centre lies within ``r`` of the centroid, distances taken
    in µm, so the support is an ellipsoid in voxels when voxels are
    anisotropic (a 0.27 µm z step gives ~2.5x more voxels in z than a
    0.666 µm x step). This is the voxel set that carries the pair id.
Gaussian
    ``g = exp(-d² / (2σ²))`` with ``σ = r / 2`` (µm) inside the support and
    exactly 0 outside, so the value at the support edge is ``exp(-2) ≈ 0.135``
    and the foreground (``h != 0``) equals the union of supports. The peak is
    1 at the centroid (sub-voxel centroids are respected, so the sampled peak
    may be slightly below 1). Overlapping Gaussians combine by element-wise
    maximum.
Pair ids
    Vector ``k`` (row ``k`` of the table) has id ``k + 1``; 0 means no pair.
    The start map holds the id over each start centroid's support, the end map
    over each end centroid's support. Where supports of different pairs
    overlap, a voxel takes the id of the nearest centroid (µm); an exact tie
    goes to the lower id. Since all Gaussians of one structure share σ, this
    is also the pair whose Gaussian is the maximum there.
Outside the patch
    Centroids outside the array still contribute the part of their support
    that falls inside it (heatmap and ids alike).
Offsets (optional offset head)
    At every voxel ``v`` of a start support owned by pair ``k`` (the voxels
    with start id ``k``), the displacement from ``v`` to that pair's end
    centroid, ``(end_k − v)·voxel_size``, per axis, divided by
    :data:`OFFSET_UNIT` (10 µm, or 10 px for pixel presets): physical units,
    so the targets do not depend on the voxel size, and values near 1. Zero
    elsewhere, with a mask of the support (the loss reads it). Built from the
    augmented vectors like everything else, so flips and rotations turn the
    vectors with the image.
Weights
    ``'balanced'`` (default): ``w = w_f·h`` where ``h != 0`` and ``w_b``
    elsewhere, with ``w_f = N/(2·N_fg)`` and ``w_b = N/(2·N_bg)`` per map (see
    :func:`loss_weights`). ``'reference'``: the constants of the reference
    code, ``w = 5 + 200·h`` for the start map and ``w = 5 + 800·h`` for the end
    map (nucleus and Golgi there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..defaults import PAIR_DISTANCE_2D_PX, PAIR_DISTANCE_UM
from ..io.vectors import VectorTable

SIGMA_PER_RADIUS = 0.5
"""σ of the target Gaussian as a fraction of the structure radius."""

REFERENCE_WEIGHTS = {"start": (5.0, 200.0), "end": (5.0, 800.0)}
"""(offset, slope) of the reference code's weights ``w = offset + slope·h``."""

WEIGHTINGS = ("balanced", "reference")

OFFSET_UNIT = 10.0
"""Offset maps hold displacements in units of this many µm (px for pixel presets)."""


# ----------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class PairPreset:
    """Typical sizes of a start/end structure pair.

    Attributes
    ----------
    name : str
        Preset name, e.g. ``'nucleus-golgi'``.
    structures : (str, str)
        (start, end) structure names.
    major, minor : (float, float)
        Mean major and minor axis lengths of (start, end), in ``units``.
    units : {'um', 'px'}
        Units of the sizes and of ``d_max``. Pixel presets go with a voxel
        size of (1, 1, 1).
    d_max : float
        Largest start–end distance of a pair, in ``units``.
    """

    name: str
    structures: tuple
    major: tuple
    minor: tuple
    units: str = "um"
    d_max: float = PAIR_DISTANCE_UM

    def __post_init__(self):
        if self.units not in ("um", "px"):
            raise ValueError(f"units must be 'um' or 'px', got {self.units!r}")

    @property
    def radii(self) -> tuple:
        """(r_start, r_end) = ½·(major + minor)/2 per structure, in ``units``."""
        return tuple(0.5 * (a + b) / 2.0 for a, b in zip(self.major, self.minor))


PRESETS = {
    "nucleus-golgi": PairPreset(
        "nucleus-golgi", ("nucleus", "golgi"),
        major=(15.86, 7.91), minor=(8.50, 4.85), units="um", d_max=PAIR_DISTANCE_UM),
    "cytoplasm-nucleus": PairPreset(
        "cytoplasm-nucleus", ("cytoplasm", "nucleus"),
        major=(95.87, 16.87), minor=(64.83, 12.69), units="px", d_max=PAIR_DISTANCE_2D_PX),
}


def get_preset(name: str) -> PairPreset:
    """The :class:`PairPreset` called ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


# ----------------------------------------------------------------------------- targets

@dataclass
class Targets:
    """Training targets of one patch; all arrays have the patch's spatial shape.

    Attributes
    ----------
    heatmap_start, heatmap_end : ndarray of float32
        Centroid heatmaps in [0, 1].
    ids_start, ids_end : ndarray of int32
        Pair id (vector index + 1) over each centroid's support, 0 elsewhere.
    weight_start, weight_end : ndarray of float32
        Per-voxel weights of the heatmap loss.
    offset : ndarray of float32, shape (D, *spatial), optional
        Offset targets (D = 3 in 3D, (z, y, x); 2 in 2D), see
        :func:`render_offsets`; None unless asked for.
    offset_mask : ndarray of float32, optional
        1 on the start supports (where offsets are learnt), 0 elsewhere.
    """

    heatmap_start: np.ndarray
    heatmap_end: np.ndarray
    ids_start: np.ndarray
    ids_end: np.ndarray
    weight_start: np.ndarray
    weight_end: np.ndarray
    offset: Optional[np.ndarray] = None
    offset_mask: Optional[np.ndarray] = None

    def as_dict(self) -> dict:
        """The arrays by name (the keys :class:`~cellpol_core.detection.losses.CellPolLoss` reads)."""
        keys = ("heatmap_start", "heatmap_end", "ids_start", "ids_end", "weight_start",
                "weight_end") + (("offset", "offset_mask") if self.offset is not None else ())
        return {k: getattr(self, k) for k in keys}


def _check_radius(r) -> float:
    r = float(r)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"radius must be a positive number, got {r}")
    return r


def render_structure(shape, points, *, voxel_size, radius, ids=None):
    """Heatmap and id map of one structure's centroids.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape, (Z, Y, X) or (Y, X).
    points : ndarray, shape (N, 3)
        Centroids in (z, y, x) voxels (z ignored for a 2D shape). They may lie
        outside the array.
    voxel_size : tuple of float
        (z, y, x) size of a voxel, in the units of ``radius``.
    radius : float
        Support radius; σ = ``SIGMA_PER_RADIUS``·radius.
    ids : ndarray of int, shape (N,), optional
        Id written for each point; default ``1..N``.

    Returns
    -------
    heatmap : ndarray of float32
    id_map : ndarray of int32

    Notes
    -----
    Each point is rendered within its own bounding box only, so the cost
    grows with the number of points times the support size, not the array.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (Z, Y, X) or (Y, X), got {shape}")
    two_d = len(shape) == 2
    shape3 = (1,) + shape if two_d else shape
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
    if vs.size == 2:
        vs = np.concatenate([[1.0], vs])
    if vs.size != 3 or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size must be 3 positive numbers (z, y, x), got {voxel_size}")
    r = _check_radius(radius)
    sigma = SIGMA_PER_RADIUS * r
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if ids is None:
        ids = np.arange(1, len(pts) + 1)
    ids = np.asarray(ids).reshape(-1)
    if len(ids) != len(pts):
        raise ValueError("ids must have one value per point")

    heat = np.zeros(shape3, np.float32)
    idmap = np.zeros(shape3, np.int32)
    best = np.full(shape3, np.inf)  # squared µm distance to the id owner
    half = r / vs
    for p, pid in zip(pts, ids):
        if not np.all(np.isfinite(p)):
            continue
        if two_d:
            p = np.array([0.0, p[1], p[2]])
        lo = np.maximum(np.ceil(p - half).astype(np.int64), 0)
        hi = np.minimum(np.floor(p + half).astype(np.int64), np.array(shape3) - 1)
        if two_d:
            lo[0], hi[0] = 0, 0
        if np.any(hi < lo):
            continue
        # Squared µm distance over the box by separable broadcasting.
        axes = [((np.arange(lo[a], hi[a] + 1) - p[a]) * vs[a]) ** 2 for a in range(3)]
        if two_d:
            axes[0] = np.zeros(1)
        d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        inside = d2 <= r * r
        if not inside.any():
            continue
        box = tuple(slice(lo[a], hi[a] + 1) for a in range(3))
        g = np.where(inside, np.exp(-d2 / (2.0 * sigma * sigma)), 0.0).astype(np.float32)
        np.maximum(heat[box], g, out=heat[box])
        take = inside & (d2 < best[box])
        best[box][take] = d2[take]
        idmap[box][take] = pid
    if two_d:
        heat, idmap = heat[0], idmap[0]
    return heat, idmap


def render_offsets(ids_start, end_points, *, voxel_size, unit=OFFSET_UNIT) -> tuple:
    """Offset targets: the displacement from each start voxel to its pair's end centroid.

    Parameters
    ----------
    ids_start : ndarray of int, (Z, Y, X) or (Y, X)
        Start id map (:func:`render_structure`): id ``k`` over the support
        owned by pair ``k``, 0 elsewhere.
    end_points : ndarray, shape (N, 3)
        End centroids in (z, y, x) voxels of the same array; pair ``k`` is
        row ``k - 1``.
    voxel_size : tuple of float
        (z, y, x) size of a voxel.
    unit : float
        Displacements are divided by it (same units as ``voxel_size``).

    Returns
    -------
    offset : ndarray of float32, shape (D, *spatial)
        Per axis (D = 3: z, y, x; 2D maps: y, x), ``(end_k − v)·voxel_size /
        unit`` at voxel ``v`` with id ``k``, 0 where the id is 0.
    mask : ndarray of float32
        1 where the id is not 0.
    """
    ids = np.asarray(ids_start)
    nd = ids.ndim
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)[-nd:]
    end = np.asarray(end_points, dtype=np.float64).reshape(-1, 3)[:, 3 - nd:]
    offset = np.zeros((nd,) + ids.shape, np.float32)
    where = np.nonzero(ids)
    if len(where[0]):
        k = ids[where].astype(np.intp) - 1
        for a in range(nd):
            offset[a][where] = (end[k, a] - where[a]) * vs[a] / float(unit)
    return offset, (ids != 0).astype(np.float32)


def loss_weights(heatmap) -> tuple:
    """Class weights of the balanced heatmap loss.

    ``w_f = N / (2·N_fg)`` and ``w_b = N / (2·N_bg)``, where N is the number of
    voxels, N_fg those with ``h != 0`` and N_bg the rest. Each class then
    carries half of the total weight (before the foreground weight is scaled
    by h). A class with no voxels gets weight 0, which no voxel uses; the
    other class keeps the formula (e.g. ``w_b = 0.5`` for a patch without
    objects). An empty array gives (0, 0).

    Parameters
    ----------
    heatmap : ndarray
        Target heatmap of one structure in one patch.

    Returns
    -------
    (w_f, w_b) : tuple of float
    """
    h = np.asarray(heatmap)
    n = h.size
    n_fg = int(np.count_nonzero(h))
    n_bg = n - n_fg
    w_f = n / (2.0 * n_fg) if n_fg else 0.0
    w_b = n / (2.0 * n_bg) if n_bg else 0.0
    return w_f, w_b


def weight_map(heatmap, w_f, w_b) -> np.ndarray:
    """Per-voxel weights ``w_f·h`` where ``h != 0`` and ``w_b`` elsewhere (float32)."""
    h = np.asarray(heatmap, dtype=np.float32)
    return np.where(h != 0, np.float32(w_f) * h, np.float32(w_b)).astype(np.float32)


def reference_weight_map(heatmap, *, role) -> np.ndarray:
    """The reference code's weights ``5 + 200·h`` (``role='start'``) or ``5 + 800·h`` (``'end'``)."""
    if role not in REFERENCE_WEIGHTS:
        raise ValueError(f"role must be 'start' or 'end', got {role!r}")
    a, b = REFERENCE_WEIGHTS[role]
    h = np.asarray(heatmap, dtype=np.float32)
    return (np.float32(a) + np.float32(b) * h).astype(np.float32)


def make_targets(shape, vectors: VectorTable, *, voxel_size, radii,
                 weighting: str = "balanced", offset: Optional[tuple] = None,
                 offsets: bool = False) -> Targets:
    """Heatmaps, pair-id maps and loss weights of one patch.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the patch, (Z, Y, X) or (Y, X).
    vectors : VectorTable
        Ground-truth pairs; vector ``k`` gets pair id ``k + 1``. Centroids may
        lie outside the patch (their supports are clipped).
    voxel_size : tuple of 3 float
        (z, y, x) µm per voxel; (1, 1, 1) for pixel presets.
    radii : (float, float)
        (r_start, r_end) support radii in the units of ``voxel_size``, e.g.
        :attr:`PairPreset.radii`.
    weighting : {'balanced', 'reference'}
        How the loss weight maps are made (see the module docstring).
    offset : tuple of 3 float, optional
        (z, y, x) voxel position of the patch origin in the coordinates of
        ``vectors``; subtracted from the centroids.
    offsets : bool
        Also build the offset targets (:func:`render_offsets`).

    Returns
    -------
    Targets
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    radii = tuple(radii)
    if len(radii) != 2:
        raise ValueError("radii must be (r_start, r_end)")
    start = np.asarray(vectors.start, dtype=np.float64).reshape(-1, 3)
    end = np.asarray(vectors.end, dtype=np.float64).reshape(-1, 3)
    if offset is not None:
        off = np.asarray(offset, dtype=np.float64).reshape(3)
        start, end = start - off, end - off
    ids = np.arange(1, len(start) + 1)
    hs, is_ = render_structure(shape, start, voxel_size=voxel_size, radius=radii[0], ids=ids)
    he, ie = render_structure(shape, end, voxel_size=voxel_size, radius=radii[1], ids=ids)
    if weighting == "balanced":
        ws = weight_map(hs, *loss_weights(hs))
        we = weight_map(he, *loss_weights(he))
    else:
        ws = reference_weight_map(hs, role="start")
        we = reference_weight_map(he, role="end")
    if not offsets:
        return Targets(hs, he, is_, ie, ws, we)
    return Targets(hs, he, is_, ie, ws, we, *render_offsets(is_, end, voxel_size=voxel_size))
