import math

import numpy as np
import pytest

from cellpol_core.detection.targets import (
    PRESETS, PairPreset, Targets, get_preset, loss_weights, make_targets,
    reference_weight_map, render_structure, weight_map)
from cellpol_core.io.vectors import VectorTable

ISO = (1.0, 1.0, 1.0)


def table(start, end, ndim=3):
    return VectorTable(np.asarray(start, float), np.asarray(end, float), ndim=ndim)


# ----------------------------------------------------------------------------- presets

def test_presets_radii_and_units():
    ng = get_preset("nucleus-golgi")
    assert ng.structures == ("nucleus", "golgi")
    assert ng.units == "um" and ng.d_max == 14.0
    assert ng.radii == pytest.approx((0.5 * (15.86 + 8.50) / 2, 0.5 * (7.91 + 4.85) / 2))
    assert ng.radii[0] == pytest.approx(6.09, abs=0.01)
    assert ng.radii[1] == pytest.approx(3.19, abs=0.01)
    cn = PRESETS["cytoplasm-nucleus"]
    assert cn.units == "px" and cn.d_max == 40.0
    assert cn.radii == pytest.approx((40.175, 7.39))
    with pytest.raises(ValueError, match="nucleus-golgi"):
        get_preset("nope")
    with pytest.raises(ValueError):
        PairPreset("x", ("a", "b"), (1, 1), (1, 1), units="mm")


# ----------------------------------------------------------------------------- heatmaps

def test_peak_at_integer_centroid_and_gaussian_values():
    t = make_targets((9, 11, 13), table([[4, 5, 6]], [[2, 2, 2]]), voxel_size=ISO, radii=(4.0, 2.0))
    hs = t.heatmap_start
    assert hs.dtype == np.float32 and hs.shape == (9, 11, 13)
    assert np.unravel_index(np.argmax(hs), hs.shape) == (4, 5, 6)
    assert hs[4, 5, 6] == pytest.approx(1.0)
    # sigma = radius/2 = 2 voxels: one voxel away exp(-1/8), at the edge (d = 4) exp(-2)
    assert hs[4, 5, 7] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert hs[4, 5, 10] == pytest.approx(math.exp(-2), rel=1e-6)
    assert hs[4, 5, 11] == 0.0  # outside the support
    # diagonal (1,1,1): d² = 3
    assert hs[5, 6, 7] == pytest.approx(math.exp(-3 / 8), rel=1e-6)
    # end structure uses its own radius
    assert t.heatmap_end[2, 2, 2] == pytest.approx(1.0)
    assert t.heatmap_end[2, 2, 4] == pytest.approx(math.exp(-2), rel=1e-6)
    assert t.heatmap_end[2, 2, 5] == 0.0
    # support = ball of radius 4: count its voxels independently
    g = np.indices(hs.shape) - np.array([4, 5, 6])[:, None, None, None]
    ball = (g ** 2).sum(0) <= 16
    assert np.array_equal(hs != 0, ball)
    assert np.array_equal(t.ids_start != 0, ball)


def test_subvoxel_centroid_shifts_mass():
    c = np.array([10.3, 9.6, 11.45])
    hs, _ = render_structure((21, 21, 23), c[None], voxel_size=ISO, radius=4.0)
    idx = np.indices(hs.shape).reshape(3, -1)
    w = hs.reshape(-1).astype(np.float64)
    centre = (idx * w).sum(1) / w.sum()
    assert np.allclose(centre, c, atol=0.1)
    assert hs.max() < 1.0  # no voxel sits exactly on the centroid
    # and the brightest voxel is the nearest one
    assert np.unravel_index(np.argmax(hs), hs.shape) == (10, 10, 11)


def test_anisotropic_support():
    vs = (0.27, 0.666, 0.666)
    r = get_preset("nucleus-golgi").radii[0]
    hs, _ = render_structure((64, 40, 40), [[32, 20, 20]], voxel_size=vs, radius=r)
    fg = hs != 0
    z_ext = np.ptp(np.nonzero(fg.any((1, 2)))[0]) + 1
    y_ext = np.ptp(np.nonzero(fg.any((0, 2)))[0]) + 1
    x_ext = np.ptp(np.nonzero(fg.any((0, 1)))[0]) + 1
    assert z_ext == 2 * math.floor(r / 0.27) + 1  # 45
    assert x_ext == y_ext == 2 * math.floor(r / 0.666) + 1  # 19
    assert 2.2 < z_ext / x_ext < 2.6
    # values follow the µm distance along each axis
    sigma = r / 2
    assert hs[32 + 10, 20, 20] == pytest.approx(math.exp(-(10 * 0.27) ** 2 / (2 * sigma ** 2)), rel=1e-5)
    assert hs[32, 20, 20 + 4] == pytest.approx(math.exp(-(4 * 0.666) ** 2 / (2 * sigma ** 2)), rel=1e-5)


def test_overlap_takes_max_and_ids_nearest():
    # two start centroids 4 voxels apart on x, radius 4: supports overlap
    t = make_targets((1, 9, 20), table([[0, 4, 6], [0, 4, 10]], [[0, 4, 0], [0, 4, 19]]),
                     voxel_size=ISO, radii=(4.0, 1.0))
    hs = t.heatmap_start
    g = lambda d2: math.exp(-d2 / 8.0)  # noqa: E731
    for x in range(20):
        want = max(g((x - 6) ** 2) if abs(x - 6) <= 4 else 0.0,
                   g((x - 10) ** 2) if abs(x - 10) <= 4 else 0.0)
        assert hs[0, 4, x] == pytest.approx(want, rel=1e-6)
    ids = t.ids_start[0, 4]
    assert list(ids) == [0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0]
    # x = 8 is equidistant: the tie goes to the lower id
    assert ids[8] == 1
    assert t.ids_start.dtype == np.int32
    # end ids: pair 1 at x=0, pair 2 at x=19
    assert t.ids_end[0, 4, 0] == 1 and t.ids_end[0, 4, 19] == 2
    assert t.ids_end[0, 4, 1] == 1 and t.ids_end[0, 4, 2] == 0


def test_nearest_rule_when_later_pair_is_nearer():
    # pair 2 (index 1) is nearer at x = 9 even though pair 1 is rendered first
    _, ids = render_structure((1, 1, 15), [[0, 0, 5], [0, 0, 10]], voxel_size=ISO, radius=6.0)
    assert ids[0, 0, 7] == 1 and ids[0, 0, 8] == 2 and ids[0, 0, 9] == 2
    # and order of rendering does not matter for the ids
    _, ids2 = render_structure((1, 1, 15), [[0, 0, 10], [0, 0, 5]], voxel_size=ISO, radius=6.0,
                               ids=[2, 1])
    assert np.array_equal(ids, ids2)


def test_objects_outside_patch():
    # centroid 2 voxels left of the patch: partial Gaussian; one far away: nothing
    t = make_targets((5, 5, 5), table([[2, 2, -2], [2, 2, 50]], [[2, 2, 2], [-30, 0, 0]]),
                     voxel_size=ISO, radii=(4.0, 1.0))
    hs = t.heatmap_start
    assert hs[2, 2, 0] == pytest.approx(math.exp(-4 / 8))
    assert hs[2, 2, 2] == pytest.approx(math.exp(-16 / 8))
    assert hs[2, 2, 3] == 0.0
    assert t.ids_start[2, 2, 0] == 1 and t.ids_start[2, 2, 2] == 1
    assert not np.any(t.ids_start == 2)
    assert not np.any(t.ids_end == 2)
    assert np.all(t.ids_end[t.heatmap_end != 0] == 1)


def test_offset_shifts_vectors():
    tb = table([[12, 22, 32]], [[13, 22, 32]])
    t = make_targets((5, 5, 5), tb, voxel_size=ISO, radii=(2.0, 2.0), offset=(10, 20, 30))
    assert t.heatmap_start[2, 2, 2] == pytest.approx(1.0)
    assert t.heatmap_end[3, 2, 2] == pytest.approx(1.0)


def test_2d():
    tb = VectorTable([[0, 5, 7]], [[0, 2, 3]], ndim=2)
    t = make_targets((10, 12), tb, voxel_size=(1.0, 0.5, 0.5), radii=(2.0, 1.0))
    assert t.heatmap_start.shape == (10, 12) and t.ids_end.shape == (10, 12)
    assert t.heatmap_start[5, 7] == pytest.approx(1.0)
    # 0.5 µm pixels: radius 2 µm = 4 pixels; sigma 1 µm
    assert t.heatmap_start[5, 11] == pytest.approx(math.exp(-2.0))
    assert t.heatmap_start[5, 3] == pytest.approx(math.exp(-2.0))
    assert t.heatmap_start[9, 7] == pytest.approx(math.exp(-2.0))
    assert t.heatmap_start[5, 2] == 0.0
    assert t.ids_start[5, 7] == 1 and t.ids_end[2, 3] == 1
    assert np.count_nonzero(t.heatmap_end) == np.count_nonzero(t.ids_end)


def test_empty_vectors():
    t = make_targets((4, 6, 8), VectorTable.empty(), voxel_size=ISO, radii=(3.0, 2.0))
    for k, v in t.as_dict().items():
        assert v.shape == (4, 6, 8)
        if k.startswith("weight"):
            assert np.all(v == np.float32(0.5))  # w_b = N / (2 N) without foreground
        else:
            assert not np.any(v)


# ----------------------------------------------------------------------------- weights

def test_loss_weights_hand_case():
    h = np.zeros(100, np.float32)
    h[:10] = np.linspace(0.2, 1.0, 10)
    w_f, w_b = loss_weights(h)
    assert w_f == pytest.approx(100 / 20) and w_b == pytest.approx(100 / 180)
    w = weight_map(h, w_f, w_b)
    assert w.dtype == np.float32
    assert np.allclose(w[:10], 5.0 * h[:10])
    assert np.allclose(w[10:], 100 / 180)
    assert loss_weights(np.zeros(7)) == (0.0, 0.5)
    assert loss_weights(np.ones(4)) == (0.5, 0.0)
    assert loss_weights(np.zeros(0)) == (0.0, 0.0)


def test_balanced_weights_in_targets():
    t = make_targets((6, 8, 8), table([[3, 4, 4]], [[1, 1, 1]]), voxel_size=ISO, radii=(2.0, 1.0))
    for h, w in ((t.heatmap_start, t.weight_start), (t.heatmap_end, t.weight_end)):
        n, fg = h.size, np.count_nonzero(h)
        assert np.allclose(w[h != 0], n / (2 * fg) * h[h != 0])
        assert np.allclose(w[h == 0], n / (2 * (n - fg)))
    assert np.count_nonzero(t.heatmap_end) == 7  # the 6-neighbourhood at radius 1


def test_reference_weighting():
    t = make_targets((6, 8, 8), table([[3, 4, 4]], [[1, 1, 1]]), voxel_size=ISO,
                     radii=(2.0, 1.0), weighting="reference")
    assert t.weight_start[3, 4, 4] == pytest.approx(205.0)
    assert t.weight_end[1, 1, 1] == pytest.approx(805.0)
    assert t.weight_start[0, 0, 0] == pytest.approx(5.0)
    assert np.allclose(t.weight_end, 5 + 800 * t.heatmap_end)
    assert np.allclose(reference_weight_map([0.5], role="start"), [105.0])
    with pytest.raises(ValueError):
        make_targets((2, 2, 2), VectorTable.empty(), voxel_size=ISO, radii=(1, 1), weighting="x")


def test_bad_arguments():
    with pytest.raises(ValueError):
        render_structure((4, 4, 4), [[1, 1, 1]], voxel_size=ISO, radius=0.0)
    with pytest.raises(ValueError):
        render_structure((4, 4, 4), [[1, 1, 1]], voxel_size=(0, 1, 1), radius=1.0)
    assert isinstance(make_targets((2, 2, 2), VectorTable.empty(), voxel_size=ISO,
                                   radii=(1, 1)), Targets)


def test_many_objects_fast():
    rng = np.random.default_rng(0)
    n = 300
    start = rng.uniform(0, [64, 128, 128], (n, 3))
    end = start + rng.uniform(-8, 8, (n, 3))
    t = make_targets((64, 128, 128), table(start, end), voxel_size=(0.27, 0.666, 0.666),
                     radii=get_preset("nucleus-golgi").radii)
    # every start centroid's nearest voxel carries its id unless a nearer centroid owns it
    ids = t.ids_start
    assert set(np.unique(ids)) <= set(range(n + 1))
    assert len(np.unique(ids)) > n // 2
    # ids are the argmax of the individual Gaussians: check at the centroid voxels
    vs = np.array([0.27, 0.666, 0.666])
    for k in range(0, n, 37):
        v = np.clip(np.round(start[k]).astype(int), 0, [63, 127, 127])
        d = np.linalg.norm((start - v) * vs, axis=1)
        assert ids[tuple(v)] == np.argmin(d) + 1
