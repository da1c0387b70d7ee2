"""Decoding heatmaps and embedding maps into vectors (docs/method.md §5)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellpol_core.detection.decode import (decode_maps, find_peaks, merge_tile_vectors,
                                 pair_by_embedding, suppress_duplicates)
from cellpol_core.detection.model import Thresholds
from cellpol_core.detection.pairing import pair_by_distance
from cellpol_core.io.vectors import VectorTable

VS = (0.27, 0.666, 0.666)


def gaussians(shape, centres, heights, sigma_um, voxel_size):
    """Element-wise maximum of Gaussians (peak = height) at sub-voxel centres."""
    vs = np.asarray(voxel_size, float)[-len(shape):]
    grid = np.indices(shape, dtype=float)
    out = np.zeros(shape)
    for c, h in zip(centres, heights):
        d2 = sum(((grid[a] - c[a]) * vs[a]) ** 2 for a in range(len(shape)))
        out = np.maximum(out, h * np.exp(-d2 / (2 * sigma_um ** 2)))
    return out


def nearest_label_map(shape, centres, labels, voxel_size):
    """Each voxel takes the label of its nearest centre (in µm)."""
    vs = np.asarray(voxel_size, float)
    grid = np.indices(shape, dtype=float)
    d2 = np.stack([sum(((grid[a] - c[a]) * vs[a]) ** 2 for a in range(3)) for c in centres])
    return np.asarray(labels, float)[np.argmin(d2, axis=0)]


# ----------------------------------------------------------------------------- find_peaks

def test_peaks_subvoxel_positions_and_values():
    centres = np.array([[5.3, 10.6, 12.2], [14.7, 22.4, 20.45]])
    hm = gaussians((20, 32, 32), centres, [0.9, 0.6], 1.2, VS)
    pts, vals = find_peaks(hm, tau=0.2, d_min_um=2.0, voxel_size=VS, subvoxel=True)
    # A log-parabola fit is exact for a Gaussian peak.
    np.testing.assert_allclose(pts, centres, atol=1e-6)
    rounded = np.rint(centres).astype(int)
    np.testing.assert_allclose(vals, hm[tuple(rounded.T)])
    assert vals[0] > vals[1]

    pts, vals = find_peaks(hm, tau=0.2, d_min_um=2.0, voxel_size=VS, subvoxel=False)
    np.testing.assert_array_equal(pts, rounded)
    np.testing.assert_allclose(vals, hm[tuple(rounded.T)])


def test_threshold_is_strict():
    hm = np.zeros((6, 12, 12))
    hm[3, 5, 5] = 0.5
    hm[3, 9, 2] = 0.3
    for subvoxel in (False, True):
        pts, vals = find_peaks(hm, tau=0.5, d_min_um=1.0, voxel_size=VS,
                               subvoxel=subvoxel)
        assert len(pts) == 0 and pts.shape == (0, 3) and vals.shape == (0,)
        pts, vals = find_peaks(hm, tau=0.49, d_min_um=1.0, voxel_size=VS,
                               subvoxel=subvoxel)
        np.testing.assert_array_equal(pts, [[3, 5, 5]])
        np.testing.assert_array_equal(vals, [0.5])
        pts, vals = find_peaks(hm, tau=0.1, d_min_um=1.0, voxel_size=VS,
                               subvoxel=subvoxel)
        np.testing.assert_array_equal(pts, [[3, 5, 5], [3, 9, 2]])
        np.testing.assert_array_equal(vals, [0.5, 0.3])


@pytest.mark.parametrize("subvoxel", [False, True])
def test_close_peaks_keep_the_stronger(subvoxel):
    hm = np.zeros((10, 16, 20))
    hm[5, 8, 8] = 1.0
    hm[5, 8, 11] = 0.8  # 3 voxels in x: 1.998 µm away
    kw = dict(tau=0.1, voxel_size=VS, subvoxel=subvoxel)
    pts, vals = find_peaks(hm, d_min_um=2.5, **kw)
    np.testing.assert_array_equal(pts, [[5, 8, 8]])
    np.testing.assert_array_equal(vals, [1.0])
    pts, vals = find_peaks(hm, d_min_um=1.9, **kw)
    np.testing.assert_array_equal(pts, [[5, 8, 8], [5, 8, 11]])
    np.testing.assert_array_equal(vals, [1.0, 0.8])


@pytest.mark.parametrize("subvoxel", [False, True])
def test_anisotropic_neighbourhood(subvoxel):
    kw = dict(tau=0.1, voxel_size=VS, subvoxel=subvoxel)
    # 3 voxels along z at 0.27 µm: 0.81 µm apart, merged with d_min 2 µm.
    hm = np.zeros((16, 10, 10))
    hm[3, 5, 5] = 0.7
    hm[6, 5, 5] = 0.9
    pts, vals = find_peaks(hm, d_min_um=2.0, **kw)
    np.testing.assert_array_equal(pts, [[6, 5, 5]])
    np.testing.assert_array_equal(vals, [0.9])
    # 8 voxels along z: 2.16 µm apart, both kept.
    hm[3, 5, 5], hm[14, 5, 5] = 0.0, 0.7
    pts, _ = find_peaks(hm, d_min_um=2.0, **kw)
    np.testing.assert_array_equal(pts, [[6, 5, 5], [14, 5, 5]])
    # 3 voxels along x at 0.666 µm: 1.998 µm apart, kept with d_min 1.9.
    hm = np.zeros((12, 10, 10))
    hm[6, 5, 2] = 0.7
    hm[6, 5, 5] = 0.9
    pts, _ = find_peaks(hm, d_min_um=1.9, **kw)
    np.testing.assert_array_equal(pts, [[6, 5, 5], [6, 5, 2]])


def test_equal_peaks_closer_than_dmin_give_one():
    # The neighbourhood test cannot separate equal values; the µm suppression
    # keeps the first in voxel order.
    hm = np.zeros((4, 8, 16))
    hm[2, 4, 6] = 1.0
    hm[2, 4, 8] = 1.0  # 1.332 µm apart
    pts, vals = find_peaks(hm, tau=0.5, d_min_um=2.0, voxel_size=VS)
    np.testing.assert_array_equal(pts, [[2, 4, 6]])
    pts, _ = find_peaks(hm, tau=0.5, d_min_um=1.3, voxel_size=VS)
    assert len(pts) == 2


def test_plateau_gives_one_peak():
    hm = np.zeros((12, 16, 16))
    hm[4:7, 5:9, 6:11] = 0.7  # 3 x 4 x 5 flat block, larger than d_min
    pts, vals = find_peaks(hm, tau=0.5, d_min_um=1.0, voxel_size=VS, subvoxel=True)
    np.testing.assert_allclose(pts, [[5.0, 6.5, 8.0]])
    np.testing.assert_array_equal(vals, [0.7])
    pts, vals = find_peaks(hm, tau=0.5, d_min_um=1.0, voxel_size=VS, subvoxel=False)
    assert len(pts) == 1 and hm[tuple(pts[0].astype(int))] == 0.7
    np.testing.assert_array_equal(pts[0], [5, 6, 8])  # a block voxel nearest the centroid

    # A non-convex (L-shaped) 2D plateau: one peak, on the plateau.
    im = np.zeros((20, 20))
    im[2:12, 2:5] = 0.8
    im[9:12, 2:15] = 0.8
    pts, vals = find_peaks(im, tau=0.5, d_min_um=1.0, voxel_size=(1.0, 1.0, 1.0),
                           subvoxel=False)
    assert len(pts) == 1 and pts[0, 0] == 0 and im[int(pts[0, 1]), int(pts[0, 2])] == 0.8


def test_empty_and_flat_maps():
    for hm in (np.zeros((8, 8, 8)), np.full((8, 8, 8), 0.2), np.zeros((0, 4, 4))):
        pts, vals = find_peaks(hm, tau=0.3, d_min_um=2.0, voxel_size=VS)
        assert pts.shape == (0, 3) and vals.shape == (0,)
    nan_map = np.full((6, 6, 6), np.nan)
    nan_map[3, 3, 3] = 0.9
    pts, _ = find_peaks(nan_map, tau=0.3, d_min_um=2.0, voxel_size=VS)
    np.testing.assert_array_equal(pts, [[3, 3, 3]])


def test_2d_map_points_have_z_zero():
    centres = np.array([[10.25, 8.5], [30.0, 40.75]])
    im = gaussians((48, 64), centres, [0.8, 0.95], 3.0, (1.0, 1.0, 1.0))
    pts, vals = find_peaks(im, tau=0.3, d_min_um=5.0, voxel_size=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(pts, [[0, 30.0, 40.75], [0, 10.25, 8.5]], atol=1e-6)
    np.testing.assert_allclose(vals, [im[30, 41], im[10, 8]])


def test_exclude_border():
    hm = np.zeros((10, 16, 16))
    hm[0, 8, 8] = 0.9  # on the first z-plane
    hm[5, 8, 1] = 0.8  # 1 voxel from the x border
    hm[5, 8, 8] = 0.7
    kw = dict(tau=0.1, d_min_um=0.5, voxel_size=VS, subvoxel=False)
    assert len(find_peaks(hm, **kw)[0]) == 3
    # Radius 0.5 µm: 1 z-voxel, 0 x/y voxels -> only the z-border peak goes.
    pts, _ = find_peaks(hm, exclude_border=True, **kw)
    np.testing.assert_array_equal(pts, [[5, 8, 1], [5, 8, 8]])
    pts, _ = find_peaks(hm, exclude_border=2, **kw)
    np.testing.assert_array_equal(pts, [[5, 8, 8]])


def test_matches_full_maximum_filter_with_ellipsoidal_footprint():
    rng = np.random.default_rng(0)
    hm = ndi.gaussian_filter(rng.random((16, 24, 24)), 1.5)
    d_min, thr = 1.5, float(np.percentile(hm, 40))
    vs = np.asarray(VS)
    half = np.floor(d_min / vs).astype(int)
    g = np.indices(2 * half + 1) - half[:, None, None, None]
    footprint = (sum((g[a] * vs[a]) ** 2 for a in range(3)) < d_min ** 2) | np.all(
        np.abs(g) <= 1, axis=0)
    ref = (hm == ndi.maximum_filter(hm, footprint=footprint, mode="constant",
                                    cval=-np.inf)) & (hm > thr)
    pts, vals = find_peaks(hm, tau=thr, d_min_um=d_min, voxel_size=VS,
                           subvoxel=False)
    assert len(pts) >= 3
    assert {tuple(p) for p in pts.astype(int)} == {tuple(p) for p in np.argwhere(ref)}
    assert np.all(np.diff(vals) <= 0)


# ----------------------------------------------------------------------------- pairing

def test_embedding_pairing_follows_embeddings_in_the_crossing_case():
    start = np.array([[0, 0, 0.0], [0, 0, 10.0]])   # A, B
    end = np.array([[0, 0, 8.0], [0, 0, 2.0]])      # A's golgi near B, B's near A
    i, j = pair_by_embedding(start, [0.0, 5.0], end, [0.1, 5.2], voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(i, [0, 1])
    np.testing.assert_array_equal(j, [0, 1])
    # Distance alone crosses them.
    i, j = pair_by_distance(start, end, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(j[np.argsort(i)], [1, 0])


def test_embedding_pairing_forbidden_by_d_max_and_delta():
    s, e = np.array([[0, 0, 0.0]]), np.array([[0, 0, 15.0]])
    assert len(pair_by_embedding(s, [0.0], e, [0.0], voxel_size=(1, 1, 1))[0]) == 0
    assert len(pair_by_embedding(s, [0.0], e, [0.0], voxel_size=(1, 1, 1), d_max_um=16)[0]) == 1
    # The distance is in µm: 15 voxels of 0.5 µm are 7.5 µm.
    assert len(pair_by_embedding(s, [0.0], e, [0.0], voxel_size=(1, 0.5, 0.5))[0]) == 1
    e = np.array([[0, 0, 3.0]])
    assert len(pair_by_embedding(s, [0.0], e, [2.5], voxel_size=(1, 1, 1))[0]) == 0
    assert len(pair_by_embedding(s, [0.0], e, [2.0], voxel_size=(1, 1, 1))[0]) == 1
    assert len(pair_by_embedding(s, [0.0], e, [2.5], voxel_size=(1, 1, 1), delta=3)[0]) == 1
    assert len(pair_by_embedding(s, [0.0], e, [np.nan], voxel_size=(1, 1, 1))[0]) == 0


def test_embedding_pairing_greedy_one_to_one_and_ties():
    start = np.array([[0, 0, 0.0], [0, 0, 4.0]])
    end = np.array([[0, 0, 1.0]])
    # s1 is farther but its embedding is closer: it takes the only end.
    i, j = pair_by_embedding(start, [0.0, 1.0], end, [0.9], voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(i, [1])
    np.testing.assert_array_equal(j, [0])
    # Equal embedding differences: the nearer end wins.
    s = np.array([[0, 0, 0.0]])
    e = np.array([[0, 0, 5.0], [0, 0, 3.0]])
    i, j = pair_by_embedding(s, [1.0], e, [1.5, 0.5], voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(j, [1])
    # Identical candidates: the lower index wins.
    e = np.array([[0, 0, 3.0], [0, 0, 3.0]])
    i, j = pair_by_embedding(s, [1.0], e, [1.5, 1.5], voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(j, [0])
    # Several pairs come back sorted by start index.
    start = np.array([[0, 0, 20.0], [0, 0, 0.0], [0, 0, 40.0]])
    end = np.array([[0, 0, 2.0], [0, 0, 42.0], [0, 0, 22.0]])
    i, j = pair_by_embedding(start, [0, 1, 2], end, [1, 2, 0], voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(i, [0, 1, 2])
    np.testing.assert_array_equal(j, [2, 0, 1])


def test_embedding_pairing_empty():
    i, j = pair_by_embedding(np.zeros((0, 3)), [], np.zeros((2, 3)), [0, 1], voxel_size=VS)
    assert len(i) == 0 and len(j) == 0


# ----------------------------------------------------------------------------- decode_maps

SHAPE = (16, 40, 64)
NUC = np.array([[8, 12, 10], [8, 12, 25], [8, 30, 45]], float)     # A, B, C
GOLGI = np.array([[8, 12, 22], [8, 12, 13], [6, 30, 52]], float)   # A's, B's, C's
NUC_H, GOLGI_H = [0.9, 0.8, 0.7], [0.95, 0.6, 0.85]


def _scene():
    """Three cells; A's golgi lies 2 µm from B's nucleus and B's golgi 2 µm from
    A's nucleus (each 8 µm from its own), so only embeddings pair them right."""
    hs = gaussians(SHAPE, NUC, NUC_H, 1.5, VS)
    he = gaussians(SHAPE, GOLGI, GOLGI_H, 1.0, VS)
    es = nearest_label_map(SHAPE, NUC, [0.0, 3.0, 6.0], VS)
    ee = nearest_label_map(SHAPE, GOLGI, [0.3, 2.8, 6.2], VS)
    return hs, he, es, ee


THR = Thresholds(tau=(0.3, 0.3), d_min_um=(3.0, 2.0))
DECODE_KW = dict(voxel_size=VS, thresholds=THR)


def test_decode_maps_with_embeddings():
    hs, he, es, ee = _scene()
    t = decode_maps(hs, he, es, ee, **DECODE_KW)
    assert len(t) == 3 and t.ndim == 3 and t.names == ("nucleus", "golgi")
    order = np.argsort(t.start[:, 2])
    np.testing.assert_allclose(t.start[order], NUC, atol=1e-9)
    np.testing.assert_allclose(t.end[order], GOLGI, atol=1e-9)
    np.testing.assert_allclose(t.score[order], [0.925, 0.7, 0.775])
    np.testing.assert_allclose(t.extra["score_start"][order], NUC_H)
    np.testing.assert_allclose(t.extra["score_end"][order], GOLGI_H)
    np.testing.assert_allclose(t.extra["embed_start"][order], [0.0, 3.0, 6.0])
    np.testing.assert_allclose(t.extra["embed_end"][order], [0.3, 2.8, 6.2])


def test_decode_maps_without_embeddings_pairs_by_distance():
    hs, he, _, _ = _scene()
    t = decode_maps(hs, he, **DECODE_KW)
    assert len(t) == 3 and "embed_start" not in t.extra
    order = np.argsort(t.start[:, 2])
    np.testing.assert_allclose(t.start[order], NUC, atol=1e-9)
    # Hungarian on distance crosses A and B.
    np.testing.assert_allclose(t.end[order], GOLGI[[1, 0, 2]], atol=1e-9)
    np.testing.assert_allclose(t.score[order], [(0.9 + 0.6) / 2, (0.8 + 0.95) / 2, 0.775])


def test_decode_maps_delta_and_d_max_and_offset():
    hs, he, es, ee = _scene()
    # Δ = 0.1 forbids every pair (the closest embeddings differ by 0.2).
    t = decode_maps(hs, he, es, ee, voxel_size=VS, thresholds=replace(THR, delta=0.1))
    assert len(t) == 0 and t.ndim == 3 and t.start.shape == (0, 3)
    # d_max 5 µm keeps C only (A and B are 8 µm from their golgi).
    t = decode_maps(hs, he, es, ee, voxel_size=VS, thresholds=replace(THR, d_max_um=5.0))
    np.testing.assert_allclose(t.start, NUC[2:], atol=1e-9)
    t = decode_maps(hs, he, es, ee, offset=(2, 100, 200), names=("a", "b"), **DECODE_KW)
    order = np.argsort(t.start[:, 2])
    np.testing.assert_allclose(t.start[order], NUC + [2, 100, 200], atol=1e-9)
    np.testing.assert_allclose(t.end[order], GOLGI + [2, 100, 200], atol=1e-9)
    assert t.names == ("a", "b")


def test_decode_maps_2d():
    vs = (1.0, 1.0, 1.0)
    cyto = np.array([[20, 20], [20, 70], [60, 45]], float)
    nuc = np.array([[24, 27], [15, 66], [55, 50]], float)
    hs = gaussians((80, 96), cyto, [0.9, 0.8, 0.7], 8.0, vs)
    he = gaussians((80, 96), nuc, [0.6, 0.9, 0.8], 3.0, vs)
    thr = Thresholds(tau=(0.3, 0.3), d_min_um=(20.0, 6.0), d_max_um=40.0)
    t = decode_maps(hs, he, voxel_size=vs, thresholds=thr, names=("cytoplasm", "nucleus"),
                    offset=(0, 5, 7))
    assert t.ndim == 2 and len(t) == 3 and np.all(t.start[:, 0] == 0)
    order = np.lexsort((t.start[:, 2], t.start[:, 1]))
    np.testing.assert_allclose(t.start[order][:, 1:], cyto + [5, 7], atol=1e-9)
    np.testing.assert_allclose(t.end[order][:, 1:], nuc + [5, 7], atol=1e-9)
    np.testing.assert_allclose(t.score[order], [0.75, 0.85, 0.75])


def test_decode_maps_no_peaks():
    z = np.zeros((4, 8, 8))
    t = decode_maps(z, z, z, z, voxel_size=VS)
    assert len(t) == 0 and t.score.shape == (0,) and t.extra["score_start"].shape == (0,)
    with pytest.raises(ValueError):
        decode_maps(z, z, z, None, voxel_size=VS)


# ----------------------------------------------------------------------------- merging

def _table(start, end, score, **extra):
    return VectorTable(np.asarray(start, float), np.asarray(end, float), np.asarray(score, float),
                       extra={k: np.asarray(v) for k, v in extra.items()})


MD = (3.0, 2.0)


def test_duplicates_across_tiles_keep_the_higher_score():
    a = _table([[5, 20, 30]], [[6, 22, 36]], [0.6], tile=[0])
    b = _table([[5, 20.5, 30.5], [5, 40, 40]], [[6, 22, 36.5], [5, 40, 46]], [0.8, 0.5],
               tile=[1, 1])
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD)
    assert len(m) == 2
    np.testing.assert_allclose(m.score, [0.8, 0.5])
    np.testing.assert_array_equal(m.extra["tile"], [1, 1])
    np.testing.assert_allclose(m.start[0], [5, 20.5, 30.5])


def test_shared_end_alone_means_duplicate():
    # Starts 6.7 µm apart (> 3), ends 0.67 µm apart (< 2): the same golgi, so
    # the same cell; OR keeps the better one.
    a = _table([[5, 20, 20]], [[5, 20, 30]], [0.9])
    b = _table([[5, 20, 40]], [[5, 20, 31]], [0.7])
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD)
    np.testing.assert_allclose(m.start, [[5, 20, 20]])
    # Shared start alone, too.
    b = _table([[5, 21, 20]], [[5, 20, 10]], [0.95])
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD)
    np.testing.assert_allclose(m.end, [[5, 20, 10]])


def test_interior_beats_margin():
    a = _table([[5, 20, 30]], [[6, 22, 36]], [0.9])        # tile 0, at its margin
    b = _table([[5, 20, 30.5]], [[6, 22, 36.5]], [0.4])    # tile 1, interior
    boxes = [((0, 0, 0), (16, 64, 28)), ((0, 0, 28), (16, 64, 64))]
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD, margins=boxes)
    np.testing.assert_allclose(m.score, [0.4])
    # The same through extra['interior'].
    a.extra["interior"] = np.array([False])
    b.extra["interior"] = np.array([True])
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD)
    np.testing.assert_allclose(m.score, [0.4])
    np.testing.assert_array_equal(m.extra["interior"], [True])
    # Both at a margin: the score decides.
    m = merge_tile_vectors([a, b], voxel_size=VS, d_min_um=MD,
                           margins=[((0, 0, 0), (1, 1, 1))] * 2)
    np.testing.assert_allclose(m.score, [0.9])


def test_distinct_neighbouring_cells_are_not_merged():
    # Starts 4.0 µm apart, ends 2.66 µm apart: two cells.
    a = _table([[5, 20, 20], [5, 20, 26]], [[5, 24, 20], [5, 24, 24]], [0.9, 0.3])
    m = suppress_duplicates(a, voxel_size=VS, d_min_um=MD)
    assert len(m) == 2
    # Closer than d_min on the start: merged.
    m = suppress_duplicates(a, voxel_size=VS, d_min_um=(4.5, 2.0))
    np.testing.assert_allclose(m.score, [0.9])


def test_merge_tiles_end_to_end_matches_whole_image():
    hs, he, es, ee = _scene()
    whole = decode_maps(hs, he, es, ee, **DECODE_KW)
    # Within one tile nothing is a duplicate: peaks are d_min apart.
    assert len(suppress_duplicates(whole, voxel_size=VS, d_min_um=(3.0, 2.0))) == 3
    tiles = [(0, 56), (8, 64)]
    tables = [decode_maps(hs[..., a:b], he[..., a:b], es[..., a:b], ee[..., a:b],
                          offset=(0, 0, a), **DECODE_KW) for a, b in tiles]
    assert all(len(t) >= 3 for t in tables)
    boxes = [((0, 0, 0), (16, 40, 32)), ((0, 0, 32), (16, 40, 64))]
    m = merge_tile_vectors(tables, voxel_size=VS, d_min_um=(3.0, 2.0), margins=boxes)
    assert len(m) == 3
    order = np.argsort(m.start[:, 2])
    np.testing.assert_allclose(m.start[order], NUC, atol=1e-9)
    np.testing.assert_allclose(m.end[order], GOLGI, atol=1e-9)
    np.testing.assert_allclose(m.score[order], [0.925, 0.7, 0.775])
    assert set(m.extra) == {"score_start", "score_end", "embed_start", "embed_end"}


def test_merge_empty_2d_and_errors():
    m = merge_tile_vectors([], voxel_size=VS)
    assert len(m) == 0 and m.ndim == 3
    e2 = VectorTable.empty(names=("cytoplasm", "nucleus"), ndim=2)
    m = merge_tile_vectors([e2, e2], voxel_size=(1, 1, 1))
    assert len(m) == 0 and m.ndim == 2 and m.names == ("cytoplasm", "nucleus")
    t1 = VectorTable([[0, 10, 10]], [[0, 10, 30]], [0.5], names=("cytoplasm", "nucleus"), ndim=2)
    t2 = VectorTable([[0, 11, 10], [0, 60, 60]], [[0, 10, 29], [0, 60, 80]], [0.7, 0.6],
                     names=("cytoplasm", "nucleus"), ndim=2)
    m = merge_tile_vectors([t1, t2, e2], voxel_size=(1, 1, 1), d_min_um=(20, 6),
                           margins=[((0, 0), (100, 100))] * 3)
    assert m.ndim == 2
    np.testing.assert_allclose(m.score, [0.7, 0.6])
    with pytest.raises(ValueError):
        merge_tile_vectors([t1, VectorTable.empty()], voxel_size=VS)
    with pytest.raises(ValueError):
        merge_tile_vectors([t1], voxel_size=VS, margins=[None, None])


def test_joint_pairing_avoids_greedy_theft():
    # One noisy embedding: s1's embedding happens to sit closest to e0, so the
    # greedy rule gives e0 to s1 and leaves s0 alone; the joint assignment
    # keeps both cells.
    start = np.array([[0, 0, 0.0], [0, 0, 6.0]])
    end = np.array([[0, 0, 3.0], [0, 0, 9.0]])
    emb_s, emb_e = [0.0, 1.0], [0.95, 1.6]
    i, j = pair_by_embedding(start, emb_s, end, emb_e, voxel_size=(1, 1, 1), d_max_um=4.0)
    np.testing.assert_array_equal(i, [1])
    np.testing.assert_array_equal(j, [0])
    i, j = pair_by_embedding(start, emb_s, end, emb_e, voxel_size=(1, 1, 1), d_max_um=4.0, embed_weight=1.0)
    np.testing.assert_array_equal(i, [0, 1])
    np.testing.assert_array_equal(j, [0, 1])


def test_joint_pairing_weight_trades_distance_for_embeddings():
    start = np.array([[0, 0, 0.0], [0, 0, 10.0]])   # the crossing case above
    end = np.array([[0, 0, 8.0], [0, 0, 2.0]])
    emb = dict(start_emb=[0.0, 1.5], end_emb=[0.1, 1.6])
    # λ = 0: distance only (within the delta gate), like the Hungarian pairing.
    i, j = pair_by_embedding(start, emb["start_emb"], end, emb["end_emb"], voxel_size=(1, 1, 1),
                             embed_weight=0.0)
    np.testing.assert_array_equal(j, [1, 0])
    # Costs (d_max 14, delta 2): crossing 4/14 + λ·(1.6 + 1.4)/2, straight
    # 16/14 + λ·(0.1 + 0.1)/2. Straight wins once λ > (12/14)/1.4 ≈ 0.61.
    i, j = pair_by_embedding(start, emb["start_emb"], end, emb["end_emb"], voxel_size=(1, 1, 1),
                             embed_weight=0.55)
    np.testing.assert_array_equal(j, [1, 0])
    i, j = pair_by_embedding(start, emb["start_emb"], end, emb["end_emb"], voxel_size=(1, 1, 1),
                             embed_weight=0.67)
    np.testing.assert_array_equal(j, [0, 1])
    # The delta gate still applies.
    i, j = pair_by_embedding(start, [0.0, 10.0], end, [5.0, 5.0], voxel_size=(1, 1, 1), embed_weight=0.0)
    assert len(i) == 0


# ----------------------------------------------------------------------------- one decode rule

def _noisy_maps(seed=0):
    rng = np.random.default_rng(seed)
    shape = (12, 40, 40)
    hs = ndi.gaussian_filter(rng.random(shape), (1.0, 2.0, 2.0))
    he = ndi.gaussian_filter(rng.random(shape), (1.0, 1.5, 1.5))
    hs = (hs - hs.min()) / (hs.max() - hs.min())
    he = (he - he.min()) / (he.max() - he.min())
    es = ndi.gaussian_filter(rng.normal(size=shape), 2.0) * 20
    ee = ndi.gaussian_filter(rng.normal(size=shape), 2.0) * 20
    return hs, he, es, ee


def test_peaks_found_at_a_low_tau_then_filtered_equal_peaks_found_at_tau():
    from cellpol_core.detection.decode import Peaks

    hs, _, es, _ = _noisy_maps()
    low = Peaks.find(hs, es, tau=0.1, d_min_um=2.0, voxel_size=VS)
    assert len(low.values) > 10
    for tau in (0.6, 0.7, 0.8):
        direct = Peaks.find(hs, es, tau=tau, d_min_um=2.0, voxel_size=VS)
        filtered = low.above(tau)
        assert 0 < len(direct.values) < len(low.values)
        np.testing.assert_array_equal(filtered.points, direct.points)
        np.testing.assert_array_equal(filtered.values, direct.values)
        np.testing.assert_array_equal(filtered.embed, direct.embed)


@pytest.mark.parametrize("embedding", [True, False])
def test_tuning_decodes_with_the_prediction_rule(embedding):
    from types import SimpleNamespace

    from cellpol_core.detection.tune import TAU_GRID, _decode_cached, _ImageCache

    hs, he, es, ee = _noisy_maps(1)
    maps = {"heatmap_start": hs, "heatmap_end": he}
    if embedding:
        maps.update(embed_start=es, embed_end=ee)
    cache = _ImageCache(SimpleNamespace(maps=maps, voxel_size=VS), None, hs.shape, min(TAU_GRID))
    rules = [None, 0.0, 1.0] if embedding else [None]
    n_vectors = []
    for tau in ((0.3, 0.3), (0.5, 0.35), (0.6, 0.6)):
        for w in rules:
            thr = Thresholds(tau=tau, d_min_um=(2.5, 1.5), d_max_um=6.0, delta=3.0,
                             embed_weight=w)
            tuned = _decode_cached(cache, thr, ("nucleus", "golgi"))
            predicted = decode_maps(hs, he, maps.get("embed_start"), maps.get("embed_end"),
                                    voxel_size=VS, thresholds=thr)
            n_vectors.append(len(predicted))
            np.testing.assert_array_equal(tuned.start, predicted.start)
            np.testing.assert_array_equal(tuned.end, predicted.end)
            np.testing.assert_array_equal(tuned.score, predicted.score)
            assert tuned.extra.keys() == predicted.extra.keys()
    assert max(n_vectors) > 3
