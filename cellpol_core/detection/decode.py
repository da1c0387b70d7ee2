"""Decoding network outputs (heatmaps and embedding maps) into vectors.

The steps follow docs/method.md §5 (peak decoding and pairing):

1. :func:`find_peaks` — centroids are the local maxima of a heatmap above
   ``tau`` and at least ``d_min`` µm apart (anisotropy-aware);
2. each centroid's embedding is read from its embedding map (:class:`Peaks`);
3. :func:`pair_peaks` — the one decode rule shared by prediction and
   tuning: peaks at or below ``tau`` are dropped, then one-to-one pairs are
   made by :func:`pair_by_embedding` (closest embeddings first, forbidden
   beyond ``d_max_um`` or an embedding difference ``delta``; models without
   embeddings pair by distance, see
   :func:`cellpol_core.detection.pairing.pair_by_distance`), and a vector's
   score is the mean of its two peak values;
4. :func:`decode_maps` — steps 1 to 3 on one tile's maps;
5. :func:`merge_tile_vectors` — duplicates found in overlapping tiles are
   suppressed, interior detections winning over margin ones, then the highest
   score.

All decoding parameters travel together in one
:class:`~cellpol_core.detection.model.Thresholds`, whose field names
(``tau``, ``d_min_um``, ``d_max_um``, ``delta``, ``embed_weight``,
``offset_weight``, ``distance_weight``) are also the keyword names of the
lower-level functions here.

Models with the offset head also predict, at each start peak, where its end
structure is (the peak voxel plus the offset read there); the joint
assignment can then weigh the distance from that predicted end to each end
peak (``offset_weight``).

Coordinates are (z, y, x) voxels (z = 0 for 2D maps); voxel sizes are
(z, y, x) µm; all distances are in µm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .model import Thresholds
from .pairing import assign, pair_by_distance
from ..defaults import EMBED_MARGIN, PAIR_DISTANCE_UM, PEAK_D_MIN_UM
from ..io.vectors import DEFAULT_STRUCTURES, VectorTable

# Upper bound on (candidates x footprint offsets) gathered at once.
_GATHER_CHUNK = 1 << 22


# ----------------------------------------------------------------------------- helpers

def _spatial_voxel_size(voxel_size, ndim) -> np.ndarray:
    """The voxel size of the map's own axes: (z, y, x) in 3D, (y, x) in 2D."""
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
    if len(vs) not in (2, 3) or (ndim == 3 and len(vs) != 3):
        raise ValueError(f"voxel_size must be (z, y, x), got {tuple(vs)}")
    vs = vs[-ndim:]
    if np.any(~np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size must be positive, got {tuple(vs)}")
    return vs


def _to_points(coords, ndim) -> np.ndarray:
    """(N, ndim) map coordinates -> (N, 3) (z, y, x) points, z = 0 in 2D."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, ndim)
    if ndim == 3:
        return coords
    return np.concatenate([np.zeros((len(coords), 1)), coords], axis=1)


def _pair_param(value, name):
    """A per-structure option given as one value or (start, end)."""
    if np.ndim(value) == 0:
        return float(value), float(value)
    v = tuple(float(x) for x in value)
    if len(v) != 2:
        raise ValueError(f"{name} must be one value or (start, end), got {value!r}")
    return v


def _greedy_suppress(n, pairs, order) -> np.ndarray:
    """Greedy non-maximum suppression over a neighbour graph.

    Walks ``order`` (best first); each element not yet suppressed is kept and
    suppresses its neighbours.

    Parameters
    ----------
    n : int
        Number of elements.
    pairs : ndarray, shape (P, 2)
        Undirected neighbour pairs (i, j).
    order : ndarray, shape (n,)
        Element indices, best first.

    Returns
    -------
    ndarray of bool, shape (n,)
        The kept elements.
    """
    keep = np.zeros(n, dtype=bool)
    if len(pairs) == 0:
        keep[:] = True
        return keep
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    by_src = np.argsort(src, kind="stable")
    dst = dst[by_src]
    bounds = np.searchsorted(src[by_src], np.arange(n + 1))
    suppressed = np.zeros(n, dtype=bool)
    for i in np.asarray(order).tolist():
        if suppressed[i]:
            continue
        keep[i] = True
        suppressed[dst[bounds[i]:bounds[i + 1]]] = True
    return keep


def _close_pairs(points_um, radius) -> np.ndarray:
    """Pairs of points strictly closer than ``radius`` µm, shape (P, 2)."""
    if radius <= 0 or len(points_um) < 2:
        return np.zeros((0, 2), dtype=np.intp)
    pairs = cKDTree(points_um).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.intp)
    d = np.linalg.norm(points_um[pairs[:, 0]] - points_um[pairs[:, 1]], axis=1)
    return pairs[d < radius]


def _ellipsoid_offsets(radius_vox) -> np.ndarray:
    """Integer offsets strictly inside the ellipsoid with per-axis radii
    ``radius_vox``, plus the 3^n box (a local maximum always beats its
    immediate neighbours, however small d_min is). Shape (F, ndim)."""
    half = np.maximum(np.floor(radius_vox).astype(int), 1)
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    r2 = np.sum((offsets / radius_vox) ** 2, axis=1) if np.all(radius_vox > 0) else np.inf
    inside = (r2 < 1.0) | np.all(np.abs(offsets) <= 1, axis=1)
    return offsets[inside]


def _ellipsoid_max_at(padded, pad, coords, offsets) -> np.ndarray:
    """Maximum of ``padded`` over ``offsets`` around each of ``coords``.

    This is ``maximum_filter(footprint=ellipsoid)`` evaluated only at the
    candidate voxels: a full-image filter with a large anisotropic footprint
    costs seconds per tile, the candidates are few.
    """
    strides = np.array(padded.strides) // padded.itemsize
    flat = padded.ravel()
    centre = (coords + pad) @ strides
    rel = offsets @ strides
    out = np.empty(len(coords), dtype=padded.dtype)
    step = max(1, _GATHER_CHUNK // max(len(rel), 1))
    for a in range(0, len(coords), step):
        out[a:a + step] = flat[centre[a:a + step, None] + rel[None, :]].max(axis=1)
    return out


def _refine_subvoxel(hm, coords) -> np.ndarray:
    """Sub-voxel offsets of peak voxels, fitted per axis in the 3×3×3
    window by a parabola through the log values of the peak and its two
    neighbours (exact for a Gaussian peak; a plain centre of mass of the
    window is strongly biased toward the voxel centre for peaks wider than
    a voxel). Falls back to the raw values where a value is not positive."""
    coords = np.asarray(coords, dtype=np.intp)
    shape = np.array(hm.shape)
    v0 = hm[tuple(coords.T)]
    shift = np.zeros(coords.shape, dtype=np.float64)
    for a in range(hm.ndim):
        ok = (coords[:, a] > 0) & (coords[:, a] < shape[a] - 1)
        lo, hi = coords.copy(), coords.copy()
        lo[:, a] = np.clip(lo[:, a] - 1, 0, shape[a] - 1)
        hi[:, a] = np.clip(hi[:, a] + 1, 0, shape[a] - 1)
        vm = hm[tuple(lo.T)].astype(np.float64)
        vp = hm[tuple(hi.T)].astype(np.float64)
        c = v0.astype(np.float64)
        use_log = (vm > 0) & (vp > 0) & (c > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lm = np.where(use_log, np.log(np.where(use_log, vm, 1.0)), vm)
            lc = np.where(use_log, np.log(np.where(use_log, c, 1.0)), c)
            lp = np.where(use_log, np.log(np.where(use_log, vp, 1.0)), vp)
            denom = lm - 2.0 * lc + lp
            s = np.where(ok & (denom < 0), 0.5 * (lm - lp) / denom, 0.0)
        shift[:, a] = np.clip(np.nan_to_num(s), -0.5, 0.5)
    return shift


# ----------------------------------------------------------------------------- peaks

def find_peaks(heatmap, *, tau, d_min_um, voxel_size, exclude_border=False, subvoxel=True):
    """Local maxima of a heatmap above ``tau`` and at least ``d_min`` µm apart.

    Parameters
    ----------
    heatmap : ndarray
        (Z, Y, X) or (Y, X) map.
    tau : float
        Peak threshold: peaks must be strictly above it.
    d_min_um : float
        d_min in µm. A peak is kept when no higher voxel lies closer than
        d_min (an ellipsoidal neighbourhood with per-axis radius
        d_min / voxel size); then a greedy suppression in µm, strongest
        first, drops any peak closer than d_min to a kept one. A flat plateau
        gives one peak.
    voxel_size : tuple of floats
        (z, y, x) µm per voxel ((y, x) or (1, y, x) for 2D maps).
    exclude_border : bool or int
        True drops peaks closer to the map border than the neighbourhood
        radius (per axis, in voxels); an int gives that distance in voxels for
        every axis; False keeps all.
    subvoxel : bool
        Refine positions to sub-voxel precision: single-voxel peaks by a
        per-axis log-parabola fit in their 3×3×3 window, plateaus by their
        centroid (per axis along which they are wider than a voxel). False
        gives integer voxel positions.

    Returns
    -------
    points : ndarray, shape (N, 3)
        (z, y, x) voxels, z = 0 for 2D maps, sorted by decreasing value.
    values : ndarray, shape (N,)
        Heatmap value at each peak's voxel.
    """
    hm = np.asarray(heatmap)
    if hm.ndim not in (2, 3):
        raise ValueError(f"heatmap must be (Z, Y, X) or (Y, X), got shape {hm.shape}")
    nd = hm.ndim
    vs = _spatial_voxel_size(voxel_size, nd)
    d_min = float(d_min_um)
    if not np.isfinite(d_min) or d_min < 0:
        raise ValueError(f"d_min_um must be >= 0, got {d_min_um!r}")
    empty = (np.zeros((0, 3)), np.zeros(0))
    if hm.size == 0:
        return empty
    if not np.issubdtype(hm.dtype, np.floating):
        hm = hm.astype(np.float64)
    hm = np.where(np.isnan(hm), -np.inf, hm)

    # Cheap necessary condition first: above threshold and max of its 3^n box.
    box_max = ndi.maximum_filter(hm, size=3, mode="constant", cval=-np.inf)
    coords = np.argwhere((hm > tau) & (hm >= box_max))
    if len(coords) == 0:
        return empty

    # Then the exact ellipsoidal neighbourhood at those candidates.
    radius_vox = d_min / vs
    offsets = _ellipsoid_offsets(radius_vox)
    pad = np.abs(offsets).max(axis=0)
    padded = np.pad(hm, [(p, p) for p in pad], mode="constant", constant_values=-np.inf)
    vals = hm[tuple(coords.T)]
    coords = coords[vals >= _ellipsoid_max_at(padded, pad, coords, offsets)]
    if len(coords) == 0:
        return empty

    if exclude_border is not False and exclude_border is not None:
        if exclude_border is True:
            margin = np.floor(radius_vox).astype(int)
        else:
            margin = np.full(nd, int(exclude_border))
        inside = np.all((coords >= margin) & (coords < np.array(hm.shape) - margin), axis=1)
        coords = coords[inside]
        if len(coords) == 0:
            return empty

    # Plateaus: touching survivors are equal (each is the maximum of a
    # neighbourhood holding the other); merge each connected group into one.
    k = len(coords)
    adj = cKDTree(coords).query_pairs(np.sqrt(nd) + 1e-6, output_type="ndarray") if k > 1 \
        else np.zeros((0, 2), dtype=np.intp)
    if len(adj):
        graph = coo_matrix((np.ones(len(adj)), (adj[:, 0], adj[:, 1])), shape=(k, k))
        n_groups, group = connected_components(graph, directed=False)
    else:
        n_groups, group = k, np.arange(k)
    sizes = np.bincount(group, minlength=n_groups)
    centroid = np.stack([np.bincount(group, weights=coords[:, a], minlength=n_groups)
                         for a in range(nd)], axis=1) / sizes[:, None]
    # Representative voxel: the member nearest its group centroid (first in
    # C order on ties).
    dist = np.linalg.norm(coords - centroid[group], axis=1)
    first = np.lexsort((dist, group))
    rep_idx = first[np.searchsorted(group[first], np.arange(n_groups))]
    rep = coords[rep_idx]
    values = hm[tuple(rep.T)].astype(np.float64)

    pos = rep.astype(np.float64)
    if subvoxel:
        # Per axis: a plateau's centroid where it is wider than one voxel,
        # else the log-parabola fit (e.g. a Gaussian centred between two
        # voxels along x gives a 2-voxel plateau that is still sharp in y).
        lo = np.full((n_groups, nd), np.iinfo(np.intp).max)
        hi = np.full((n_groups, nd), -1)
        np.minimum.at(lo, group, coords)
        np.maximum.at(hi, group, coords)
        pos = np.where(hi > lo, centroid, pos + _refine_subvoxel(hm, rep))

    # Greedy suppression in µm: strongest first, ties by voxel order.
    flat = np.ravel_multi_index(tuple(rep.T), hm.shape)
    order = np.lexsort((flat, -values))
    keep = _greedy_suppress(n_groups, _close_pairs(pos * vs, d_min), order)
    order = order[keep[order]]
    return _to_points(pos[order], nd), values[order]


# ----------------------------------------------------------------------------- pairing

def pair_by_embedding(start_pts, start_emb, end_pts, end_emb, *, voxel_size,
                      d_max_um=PAIR_DISTANCE_UM, delta=EMBED_MARGIN, embed_weight=None,
                      predicted_end=None, offset_weight=0.0, distance_weight=1.0):
    """Pair start and end points one-to-one, using their embeddings.

    Candidate pairs are those whose centroids are at most ``d_max_um`` µm
    apart and whose embeddings differ by at most ``delta``. With
    ``embed_weight=None`` (the 3DCellPol rule) they are accepted greedily by
    increasing embedding difference, then distance, then start and end index,
    skipping any whose start or end is already paired. With a number
    ``embed_weight`` = λ, the pairs are instead one optimal assignment
    (Hungarian method) minimising the summed cost
    ``distance / d_max_um + λ · |embedding difference| / delta``:
    a greedy pass lets one noisy embedding steal a neighbour's partner, which
    the joint cost avoids in crowded images. With the offset head, the cost
    becomes ``w_d · distance / d_max_um + μ · |predicted end − end| / d_max_um
    + λ · |embedding difference| / delta`` (µm), and ``offset_weight`` = μ > 0
    selects the joint assignment even when ``embed_weight`` is None (λ = 0).

    Parameters
    ----------
    start_pts : ndarray, shape (N, 3)
        Start centroids, (z, y, x) voxels.
    start_emb : ndarray, shape (N,)
        Their embeddings.
    end_pts : ndarray, shape (M, 3)
        End centroids, (z, y, x) voxels.
    end_emb : ndarray, shape (M,)
        Their embeddings.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    d_max_um : float
        Longest allowed pair, µm.
    delta : float
        Largest allowed embedding difference (the push margin Δ).
    embed_weight : float, optional
        λ of the joint assignment; None for the greedy rule.
    predicted_end : ndarray, shape (N, 3), optional
        Where each start point's end structure is predicted, (z, y, x) voxels.
    offset_weight : float
        μ, the weight of the distance from ``predicted_end`` to the end point.
    distance_weight : float
        Weight of the plain start-end distance in the joint assignment.

    Returns
    -------
    i, j : ndarray of int
        Indices into the start and end points of the pairs, sorted by ``i``.
    """
    sp = np.asarray(start_pts, dtype=np.float64).reshape(-1, 3)
    ep = np.asarray(end_pts, dtype=np.float64).reshape(-1, 3)
    se = np.asarray(start_emb, dtype=np.float64).reshape(-1)
    ee = np.asarray(end_emb, dtype=np.float64).reshape(-1)
    if len(se) != len(sp) or len(ee) != len(ep):
        raise ValueError("one embedding per point is needed")
    none = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    if len(sp) == 0 or len(ep) == 0:
        return none
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)[-3:]
    cand = cKDTree(sp * vs).sparse_distance_matrix(cKDTree(ep * vs), float(d_max_um),
                                                   output_type="ndarray")
    i, j, dist = cand["i"].astype(np.intp), cand["j"].astype(np.intp), cand["v"]
    diff = np.abs(se[i] - ee[j])
    ok = diff <= delta  # NaN embeddings never pair
    i, j, dist, diff = i[ok], j[ok], dist[ok], diff[ok]
    if len(i) == 0:
        return none
    use_offset = predicted_end is not None and offset_weight > 0
    if embed_weight is not None or use_offset:
        lam = 0.0 if embed_weight is None else float(embed_weight)
        terms = lam * diff / max(float(delta), 1e-12)
        if distance_weight != 1.0:
            terms = terms + float(distance_weight) * dist / float(d_max_um)
        else:  # the same arithmetic as before distance weights
            terms = dist / float(d_max_um) + terms
        if use_offset:
            pe = np.asarray(predicted_end, dtype=np.float64).reshape(-1, 3)
            miss = np.linalg.norm((pe[i] - ep[j]) * vs, axis=1)
            terms = terms + float(offset_weight) * miss / float(d_max_um)
        cost = np.full((len(sp), len(ep)), np.inf)
        cost[i, j] = terms
        return assign(cost, np.isfinite(cost))
    order = np.lexsort((j, i, dist, diff))
    used_s = np.zeros(len(sp), dtype=bool)
    used_e = np.zeros(len(ep), dtype=bool)
    out_i, out_j = [], []
    for a, b in zip(i[order].tolist(), j[order].tolist()):
        if used_s[a] or used_e[b]:
            continue
        used_s[a] = used_e[b] = True
        out_i.append(a)
        out_j.append(b)
    out_i = np.asarray(out_i, dtype=np.intp)
    out_j = np.asarray(out_j, dtype=np.intp)
    by_i = np.argsort(out_i)
    return out_i[by_i], out_j[by_i]


def _voxel_at(points, shape, ndim) -> np.ndarray:
    """The voxels (N, ndim) that hold ``points`` (rounded, clipped into the map)."""
    idx = np.rint(points[:, 3 - ndim:]).astype(np.intp)
    return np.clip(idx, 0, np.array(shape) - 1)


def predicted_ends(offset_maps, points, *, voxel_size) -> np.ndarray:
    """Where the offset head puts each start point's end structure.

    Parameters
    ----------
    offset_maps : sequence of ndarray
        The offset head's maps, one per axis ((z, y, x) in 3D, (y, x) in 2D),
        in :data:`~cellpol_core.detection.targets.OFFSET_UNIT` units.
    points : ndarray, shape (N, 3)
        Start points, (z, y, x) voxels of the maps.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.

    Returns
    -------
    ndarray, shape (N, 3)
        The voxel holding each point plus the offset read there, (z, y, x)
        voxels (z = 0 in 2D).
    """
    from .targets import OFFSET_UNIT

    maps = [np.asarray(m) for m in offset_maps]
    nd = len(maps)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)[-nd:]
    idx = _voxel_at(pts, maps[0].shape, nd)
    out = np.zeros((len(pts), 3))
    for a, m in enumerate(maps):
        out[:, 3 - nd + a] = idx[:, a] + m[tuple(idx.T)].astype(np.float64) * OFFSET_UNIT / vs[a]
    return out


def _read_at(emap, points, ndim) -> np.ndarray:
    """Values of ``emap`` at the rounded ``points`` (clipped into the map)."""
    idx = np.rint(points[:, 3 - ndim:]).astype(np.intp)
    idx = np.clip(idx, 0, np.array(emap.shape) - 1)
    return np.asarray(emap)[tuple(idx.T)].astype(np.float64)


@dataclass
class Peaks:
    """The peaks of one structure's heatmap.

    Attributes
    ----------
    points : ndarray, shape (N, 3)
        (z, y, x) voxels, sorted by decreasing value.
    values : ndarray, shape (N,)
        Heatmap value at each peak.
    embed : ndarray, shape (N,), optional
        The embedding map's value at each peak; None without embeddings.
    reach : ndarray, shape (N, 3), optional
        Start peaks of offset models: the predicted end of each
        (:func:`predicted_ends`); None otherwise.
    """

    points: np.ndarray
    values: np.ndarray
    embed: Optional[np.ndarray] = None
    reach: Optional[np.ndarray] = None

    @classmethod
    def find(cls, heatmap, embed_map=None, *, tau, d_min_um, voxel_size, exclude_border=False,
             subvoxel=True, offset_maps=None) -> "Peaks":
        """:func:`find_peaks` on ``heatmap``, with embeddings read from ``embed_map``
        and, given ``offset_maps``, the predicted ends (:func:`predicted_ends`)."""
        hm = np.asarray(heatmap)
        pts, vals = find_peaks(hm, tau=tau, d_min_um=d_min_um, voxel_size=voxel_size,
                               exclude_border=exclude_border, subvoxel=subvoxel)
        emb = None if embed_map is None else _read_at(embed_map, pts, hm.ndim)
        reach = None
        if offset_maps is not None:
            vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
            vs = np.concatenate([[1.0], vs]) if len(vs) == 2 else vs
            reach = predicted_ends(offset_maps, pts, voxel_size=vs)
        return cls(pts, vals, emb, reach)

    def above(self, tau) -> "Peaks":
        """The peaks strictly above ``tau``.

        Raising tau only drops weaker peaks (the stronger ones and their
        positions do not depend on it), so peaks found once at a low tau and
        filtered here equal those found at ``tau``.
        """
        keep = self.values > tau
        return Peaks(self.points[keep], self.values[keep],
                     None if self.embed is None else self.embed[keep],
                     None if self.reach is None else self.reach[keep])


def pair_peaks(start: Peaks, end: Peaks, thresholds: Thresholds, *, voxel_size,
               names=DEFAULT_STRUCTURES, ndim=3, offset=(0.0, 0.0, 0.0)) -> VectorTable:
    """Vectors from the peaks of the two structures: the decode rule.

    Peaks at or below ``thresholds.tau`` are dropped, the rest are paired
    (:func:`pair_by_embedding` when both have embeddings, else
    :func:`~cellpol_core.detection.pairing.pair_by_distance`) and each vector
    is scored by the mean of its two peak values. Prediction
    (:func:`decode_maps`) and threshold tuning both decode through here.

    Parameters
    ----------
    start, end : Peaks
        Peaks of the start and end structure, found with a d_min of
        ``thresholds.d_min_um`` and a tau no higher than ``thresholds.tau``.
    thresholds : Thresholds
        Uses ``tau``, ``d_max_um``, ``delta``, ``embed_weight``,
        ``offset_weight`` and ``distance_weight``.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    names : (str, str)
        Start and end structure names.
    ndim : {3, 2}
        Spatial dimensions of the table.
    offset : tuple of 3 floats
        (z, y, x) voxels added to all coordinates.

    Returns
    -------
    VectorTable
        One vector per pair, sorted by start peak value, with ``score`` the
        mean of the two peak values and extra columns ``score_start``,
        ``score_end`` and, with embeddings, ``embed_start``, ``embed_end``.
    """
    tau = _pair_param(thresholds.tau, "tau")
    start, end = start.above(tau[0]), end.above(tau[1])
    extra = {}
    joint = dict(predicted_end=start.reach, offset_weight=thresholds.offset_weight,
                 distance_weight=thresholds.distance_weight)
    if start.embed is not None and end.embed is not None:
        i, j = pair_by_embedding(start.points, start.embed, end.points, end.embed,
                                 voxel_size=voxel_size, d_max_um=thresholds.d_max_um,
                                 delta=thresholds.delta, embed_weight=thresholds.embed_weight,
                                 **joint)
        extra = {"embed_start": start.embed[i], "embed_end": end.embed[j]}
    elif start.reach is not None and thresholds.offset_weight > 0:
        # Offsets without embeddings: the joint assignment with λ = 0.
        i, j = pair_by_embedding(start.points, np.zeros(len(start.points)), end.points,
                                 np.zeros(len(end.points)), voxel_size=voxel_size,
                                 d_max_um=thresholds.d_max_um, delta=thresholds.delta,
                                 embed_weight=0.0, **joint)
    else:
        i, j = pair_by_distance(start.points, end.points, voxel_size=voxel_size,
                                d_max_um=thresholds.d_max_um)
    score_s, score_e = start.values[i], end.values[j]
    extra = {"score_start": score_s, "score_end": score_e, **extra}
    table = VectorTable(start.points[i], end.points[j], 0.5 * (score_s + score_e),
                        names=names, ndim=ndim, extra=extra)
    return table.shifted(offset) if np.any(np.asarray(offset) != 0) else table


def offset_maps_of(maps: dict):
    """The offset head's maps in an output dict, in axis order, or None without the head."""
    from .network import OFFSET_KEYS

    found = [maps[k] for k in OFFSET_KEYS if maps.get(k) is not None]
    return found or None


def decode_maps(heatmap_start, heatmap_end, embed_start=None, embed_end=None, *, voxel_size,
                thresholds: Optional[Thresholds] = None, names=DEFAULT_STRUCTURES,
                offset=(0, 0, 0), subvoxel=True, exclude_border=False,
                offset_maps=None) -> VectorTable:
    """Vectors from one tile's network outputs.

    Parameters
    ----------
    heatmap_start, heatmap_end : ndarray
        (Z, Y, X) or (Y, X) centroid heatmaps of the start and end structure.
    embed_start, embed_end : ndarray, optional
        Embedding maps of the same shapes. When both are None (CtrDet models),
        pairs come from the Hungarian method on distances
        (:func:`~cellpol_core.detection.pairing.pair_by_distance`).
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    thresholds : Thresholds, optional
        The decoding parameters (tau, d_min_um, d_max_um, delta,
        embed_weight); default ``Thresholds()``, those of an untuned model.
    names : (str, str)
        Start and end structure names.
    offset : tuple of 3 floats
        (z, y, x) voxels added to all coordinates: the tile origin in the full
        image. Its z must be 0 for 2D maps.
    subvoxel, exclude_border
        Passed to :func:`find_peaks`.
    offset_maps : sequence of ndarray, optional
        The offset head's maps ((z, y, x) or (y, x), :func:`offset_maps_of`).

    Returns
    -------
    VectorTable
        As :func:`pair_peaks`.
    """
    thr = Thresholds() if thresholds is None else thresholds
    hs, he = np.asarray(heatmap_start), np.asarray(heatmap_end)
    if hs.ndim not in (2, 3) or hs.ndim != he.ndim:
        raise ValueError(f"heatmaps must both be (Z, Y, X) or (Y, X), got {hs.shape} and {he.shape}")
    nd = hs.ndim
    if (embed_start is None) != (embed_end is None):
        raise ValueError("give both embedding maps or neither")
    if embed_start is not None:
        embed_start, embed_end = np.asarray(embed_start), np.asarray(embed_end)
        if embed_start.shape != hs.shape or embed_end.shape != he.shape:
            raise ValueError(f"embedding maps {embed_start.shape}, {embed_end.shape} do not match "
                             f"heatmaps {hs.shape}, {he.shape}")
    off = np.asarray(offset, dtype=np.float64).reshape(-1)
    if len(off) == 2:
        off = np.concatenate([[0.0], off])
    if len(off) != 3:
        raise ValueError(f"offset must be (z, y, x), got {tuple(offset)}")
    if nd == 2 and off[0] != 0:
        raise ValueError("offset z must be 0 for 2D maps")
    vs3 = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
    vs3 = np.concatenate([[1.0], vs3]) if len(vs3) == 2 else vs3
    tau = _pair_param(thr.tau, "tau")
    dmin = _pair_param(thr.d_min_um, "d_min_um")
    if offset_maps is not None and (len(offset_maps) != nd or any(
            np.shape(m) != hs.shape for m in offset_maps)):
        raise ValueError(f"offset maps must be {nd} maps of shape {hs.shape}")
    peaks = [Peaks.find(hm, em, tau=t, d_min_um=d, voxel_size=vs3,
                        exclude_border=exclude_border, subvoxel=subvoxel, offset_maps=om)
             for hm, em, t, d, om in ((hs, embed_start, tau[0], dmin[0], offset_maps),
                                      (he, embed_end, tau[1], dmin[1], None))]
    return pair_peaks(*peaks, thr, voxel_size=vs3, names=names, ndim=nd, offset=off)


# ----------------------------------------------------------------------------- merging

def _in_box(points, box) -> np.ndarray:
    """Points inside a voxel box ``(lo, hi)``: ``lo <= p < hi`` on every axis.
    2-element boxes are (y, x)."""
    if box is None:
        return np.ones(len(points), dtype=bool)
    lo = np.asarray(box[0], dtype=np.float64).reshape(-1)
    hi = np.asarray(box[1], dtype=np.float64).reshape(-1)
    if len(lo) != len(hi) or len(lo) not in (2, 3):
        raise ValueError(f"interior box must be ((z, y, x), (z, y, x)), got {box!r}")
    p = points[:, 3 - len(lo):]
    return np.all((p >= lo) & (p < hi), axis=1)


def suppress_duplicates(table: VectorTable, *, voxel_size, d_min_um,
                        interior=None) -> VectorTable:
    """Drop duplicate detections of the same cell.

    Two vectors are duplicates when their start points are closer than the
    start d_min **or** their end points are closer than the end d_min (a
    structure belongs to one cell, so sharing either end means the same cell).
    Vectors are ranked interior first, then by decreasing score, then by
    position in the table; a greedy pass keeps the best and drops its
    duplicates.

    Parameters
    ----------
    table : VectorTable
        The vectors.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    d_min_um : float or (float, float)
        Start and end d_min in µm.
    interior : ndarray of bool, optional
        Per-vector "found in a tile interior" flag; default
        ``table.extra['interior']`` when present, else all True.

    Returns
    -------
    VectorTable
        The kept vectors, in their original order.
    """
    n = len(table)
    if n < 2:
        return table.subset(np.arange(n))
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(-1)
    vs = np.concatenate([[1.0], vs]) if len(vs) == 2 else vs
    ds, de = _pair_param(d_min_um, "d_min_um")
    if interior is None:
        interior = table.extra.get("interior")
    interior = np.ones(n, dtype=bool) if interior is None else np.asarray(interior, dtype=bool)
    score = np.zeros(n) if table.score is None else np.where(np.isnan(table.score), -np.inf,
                                                             table.score)
    order = np.lexsort((np.arange(n), -score, ~interior))
    pairs = np.concatenate([_close_pairs(table.start * vs, ds), _close_pairs(table.end * vs, de)])
    keep = _greedy_suppress(n, pairs, order)
    return table.subset(np.flatnonzero(keep))


def merge_tile_vectors(tables: Sequence[VectorTable], *, voxel_size,
                       d_min_um=PEAK_D_MIN_UM,
                       margins: Optional[Sequence] = None) -> VectorTable:
    """Merge the vectors of overlapping tiles, suppressing duplicates.

    Parameters
    ----------
    tables : sequence of VectorTable
        Per-tile vectors in full-image coordinates, with equal names and ndim.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    d_min_um : float or (float, float)
        Start and end d_min in µm; see :func:`suppress_duplicates`.
    margins : sequence of (lo, hi) or None, optional
        One box per table: the interior region of that tile in full-image
        voxels, ``lo <= p < hi`` per axis ((z, y, x), or (y, x) in 2D); None
        for a tile means all of it. A vector is interior when both its points
        lie inside. Without ``margins``, each table's ``extra['interior']``
        is used when present, else its vectors count as interior.

    Returns
    -------
    VectorTable
        One table; extra columns are those present in every input table.
        Empty input gives an empty table.
    """
    tables = list(tables)
    if not tables:
        return VectorTable.empty()
    names, ndim = tables[0].names, tables[0].ndim
    for t in tables[1:]:
        if t.names != names or t.ndim != ndim:
            raise ValueError(f"tables differ: {t.names}/{t.ndim}D vs {names}/{ndim}D")
    if margins is not None and len(margins) != len(tables):
        raise ValueError(f"{len(margins)} interior boxes for {len(tables)} tables")
    interior = []
    for k, t in enumerate(tables):
        if margins is not None:
            interior.append(_in_box(t.start, margins[k]) & _in_box(t.end, margins[k]))
        elif "interior" in t.extra:
            interior.append(np.asarray(t.extra["interior"], dtype=bool))
        else:
            interior.append(np.ones(len(t), dtype=bool))
    has_score = [t.score is not None for t in tables]
    score = None
    if any(has_score):
        score = np.concatenate([t.score if t.score is not None else np.full(len(t), np.nan)
                                for t in tables])
    keys = [k for k in tables[0].extra if all(k in t.extra for t in tables[1:])]
    extra = {k: np.concatenate([np.asarray(t.extra[k]) for t in tables]) for k in keys}
    merged = VectorTable(np.concatenate([t.start for t in tables]),
                         np.concatenate([t.end for t in tables]), score,
                         names=names, ndim=ndim, extra=extra)
    return suppress_duplicates(merged, voxel_size=voxel_size, d_min_um=d_min_um,
                               interior=np.concatenate(interior))
