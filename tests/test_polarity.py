"""Polarity statistics against textbook values, and the angle conventions."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cellpol_core.errors import InputError
from cellpol_core.analysis.polarity import (PolarityData, bootstrap_ci, circular_mean, circular_sd_deg,
                                   circular_stats, compare_samples, kappa_from_r,
                                   permutation_test, plane_angle_deg, polarity_data,
                                   rayleigh_test, reference_unit_vector, spherical_stats,
                                   summarise, v_test, vector_quantities, watson_williams)
from cellpol_core.io.vectors import VectorTable

# Zar, Biostatistical Analysis, 5th ed. (2010).
# Example 26.4 / 27.1: directions of 8 trees leaning. Zar prints a = 99°, r = 0.82522.
ZAR_TREES = [45, 55, 81, 96, 110, 117, 132, 154]
# Example 27.2: V-test of 10 homing directions against 90°. Zar prints u = 4.2474.
ZAR_VTEST = [66, 75, 86, 88, 88, 93, 97, 101, 118, 130]
# Example 27.7: Watson–Williams two-sample test. Zar prints F = 1.61 (P > 0.10).
ZAR_WW_1 = [94, 65, 45, 52, 38, 47, 73, 82, 90, 40, 87]
ZAR_WW_2 = [77, 70, 61, 45, 50, 35, 48, 65, 36]


def test_mean_and_resultant_length_zar_26_4():
    mean, r = circular_mean(ZAR_TREES)
    assert mean == pytest.approx(99.0, abs=0.05)  # Zar: 99°
    assert r == pytest.approx(0.82522, abs=5e-6)  # Zar: r = 0.82522
    assert mean == pytest.approx(98.98775, abs=1e-4)


def test_circular_sd():
    _, r = circular_mean(ZAR_TREES)
    # sqrt(-2 ln 0.8252177) rad = 35.5149°; also scipy.stats.circstd.
    assert circular_sd_deg(r) == pytest.approx(35.51488, abs=1e-4)
    assert circular_sd_deg(r) == pytest.approx(
        math.degrees(sps.circstd(np.radians(ZAR_TREES))), abs=1e-9)
    assert circular_sd_deg(1.0) == 0.0
    assert circular_sd_deg(0.0) == math.inf


def test_rayleigh_zar_27_1():
    z, p = rayleigh_test(ZAR_TREES)
    # z = n r² = 5.448 (Zar); p from Zar eq. 27.4 = 0.0018516, the value
    # pycircstat2 0.1.15 `rayleigh_test` gives for these data.
    assert z == pytest.approx(5.44787, abs=1e-4)
    assert p == pytest.approx(0.0018516375, rel=1e-6)
    z2, p2 = rayleigh_test(ZAR_VTEST)
    assert z2 == pytest.approx(9.0656434, abs=1e-6)  # pycircstat2: z = 9.065643
    assert p2 == pytest.approx(5.30385877e-06, rel=1e-6)  # pycircstat2: p = 5.3039e-06


def test_v_test_zar_27_2():
    u, p = v_test(ZAR_VTEST, 90.0)
    assert u == pytest.approx(4.2474, abs=1e-4)  # Zar: u = 4.2474
    # one-sided normal p, as pycircstat2 0.1.15 `V_test` (1.081033e-05)
    assert p == pytest.approx(1.081033140912e-05, rel=1e-6)
    # against the opposite direction the sample is evidence of nothing
    u_op, p_op = v_test(ZAR_VTEST, 270.0)
    assert u_op == pytest.approx(-u) and p_op > 0.999


def test_watson_williams_zar_27_7():
    ww = watson_williams(ZAR_WW_1, ZAR_WW_2)
    assert ww.F == pytest.approx(1.61, abs=0.005)  # Zar: F = 1.61
    # pycircstat2 0.1.15 `watson_williams_test`: F = 1.6127827, p = 0.2202734, df (1, 18)
    assert ww.F == pytest.approx(1.6127827027, rel=1e-8)
    assert ww.p == pytest.approx(0.220273411906, rel=1e-8)
    assert (ww.df1, ww.df2) == (1, 18)
    assert ww.assumptions_met


def test_watson_williams_flags_low_concentration():
    rng = np.random.default_rng(1)
    ww = watson_williams(rng.uniform(0, 360, 40), rng.uniform(0, 360, 40))
    assert not ww.assumptions_met and "permutation" in ww.note


def test_kappa_from_r_fisher_approximation():
    # Fisher (1993) eq. 4.40, by hand: 2r + r³ + 5r⁵/6 at r = 0.5
    assert kappa_from_r(0.5) == pytest.approx(1.0 + 0.125 + 5 * 0.03125 / 6)
    assert kappa_from_r(0.7) == pytest.approx(-0.4 + 1.39 * 0.7 + 0.43 / 0.3)
    assert kappa_from_r(0.9) == pytest.approx(1 / (0.729 - 3.24 + 2.7))


def test_rayleigh_3d_closed_form():
    v = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0]], dtype=float)
    s = spherical_stats(v)
    # unit vectors sum to (2, 1, 1): R̄ = √6 / 4; 3 n R̄² = 3·4·6/16 = 4.5
    assert s.resultant_length == pytest.approx(math.sqrt(6) / 4)
    assert s.rayleigh_stat == pytest.approx(4.5)
    # χ²₃ survival by hand: erfc(√(x/2)) + √(2x/π) e^(−x/2) at x = 4.5
    x = 4.5
    expected = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    assert s.rayleigh_p == pytest.approx(expected, rel=1e-9)
    assert s.rayleigh_p == pytest.approx(0.2122903, abs=1e-6)
    np.testing.assert_allclose(s.mean_direction, np.array([2, 1, 1]) / math.sqrt(6))


def test_spherical_reference_angles():
    v = np.array([[1, 0, 0], [0, 0, 1]], dtype=float)
    s = spherical_stats(v, reference=np.array([1.0, 0, 0]))
    assert s.mean_angle_to_reference_deg == pytest.approx(45.0)  # (0° + 90°) / 2
    assert s.mean_direction_to_reference_deg == pytest.approx(45.0)


def test_plane_angle_conventions():
    right, up, down, plus_z = [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1]
    assert plane_angle_deg(right, "xy") == 0
    assert plane_angle_deg(up, "xy") == pytest.approx(90)  # up on screen = -y
    assert plane_angle_deg(down, "xy") == pytest.approx(270)
    assert plane_angle_deg(plus_z, "xz") == pytest.approx(90)
    assert plane_angle_deg(right, "xz") == 0
    assert plane_angle_deg(up, "yz") == 0  # yz: 0 = up on screen
    assert plane_angle_deg(down, "yz") == pytest.approx(180)
    assert plane_angle_deg(plus_z, "yz") == pytest.approx(90)
    assert math.isnan(plane_angle_deg(plus_z, "xy"))
    assert math.isnan(plane_angle_deg(up, "xz"))
    with pytest.raises(InputError):
        plane_angle_deg(right, "xw")


def test_vector_quantities_in_um():
    # (z, y, x) voxels, voxel size (z, y, x) = (2, 0.5, 0.5) µm
    start = np.array([[0, 10, 10], [0, 10, 10]], dtype=float)
    end = np.array([[1, 6, 10], [0, 10, 14]], dtype=float)
    q = vector_quantities(VectorTable(start, end), (2.0, 0.5, 0.5))
    np.testing.assert_allclose(q["length_um"], [math.hypot(2.0, 2.0), 2.0])
    np.testing.assert_allclose(q["azimuth_deg"], [90.0, 0.0])
    np.testing.assert_allclose(q["elevation_deg"], [45.0, 0.0])
    np.testing.assert_allclose(q["yz_angle_deg"], [45.0, np.nan])  # dy = -2 µm, dz = 2 µm
    np.testing.assert_allclose(q["xz_angle_deg"], [90.0, 0.0])
    q2 = vector_quantities(VectorTable(start[:, 1:], end[:, 1:], ndim=2), (1.0, 1.0, 1.0))
    assert np.isnan(q2["yz_angle_deg"]).all() and np.isnan(q2["elevation_deg"]).all()


def test_reference_frame():
    start = np.zeros((3, 3))
    # azimuths 30°, 120°, 300° (y down: end = (0, -sin, cos))
    az = np.radians([30.0, 120.0, 300.0])
    end = np.stack([np.zeros(3), -np.sin(az), np.cos(az)], axis=1) * 5
    t = VectorTable(start, end)
    q = vector_quantities(t, (1, 1, 1), reference_deg=30.0)
    np.testing.assert_allclose(q["azimuth_rel_deg"], [0.0, 90.0, 270.0], atol=1e-9)
    np.testing.assert_allclose(q["angle_to_reference_deg"], [0.0, 90.0, 90.0], atol=1e-6)
    # a vector equal to "up on screen" is the same reference as 90°
    np.testing.assert_allclose(reference_unit_vector(reference_vector=[0, -3, 0]),
                               reference_unit_vector(reference_deg=90.0), atol=1e-12)
    d = polarity_data(t, (1, 1, 1), reference=reference_unit_vector(reference_deg=30.0))
    assert d.reference_planes == {"xy": True, "yz": False, "xz": True}
    np.testing.assert_allclose(d.vectors[0], [5.0, 0.0, 0.0], atol=1e-9)  # rotated onto +x
    with pytest.raises(InputError):
        reference_unit_vector(reference_deg=10, reference_vector=[1, 0, 0])
    with pytest.raises(InputError):
        reference_unit_vector(reference_vector=[0, 0, 0])


def test_bootstrap_ci_concentrated_and_uniform():
    rng = np.random.default_rng(3)
    conc = np.degrees(rng.vonmises(0.0, 8.0, 150))
    (lo, hi), (rlo, rhi) = bootstrap_ci(conc, n_resamples=500, seed=1)
    width = (hi - lo) % 360
    assert width < 20
    assert (0 - lo) % 360 <= width  # the true mean 0° lies inside, across 360/0
    _, r = circular_mean(conc)
    assert rlo < r < rhi
    uniform = np.arange(0, 360, 6.0)  # R = 0 exactly
    (ulo, uhi), _ = bootstrap_ci(uniform, n_resamples=500, seed=1)
    assert (uhi - ulo) % 360 > 180
    # seeded: reproducible, and the seed matters
    ci5 = bootstrap_ci(conc, n_resamples=200, seed=5)
    assert ci5 == bootstrap_ci(conc, n_resamples=200, seed=5)
    assert ci5 != bootstrap_ci(conc, n_resamples=200, seed=6)


def test_circular_stats_bundle():
    cs = circular_stats(ZAR_VTEST, reference_deg=90.0, n_bootstrap=200, seed=0)
    assert cs.n == 10 and cs.vtest_u == pytest.approx(4.2474, abs=1e-4)
    assert cs.mean_ci_deg[0] < cs.mean_deg < cs.mean_ci_deg[1]
    empty = circular_stats([], n_bootstrap=10)
    assert empty.n == 0 and math.isnan(empty.mean_deg) and math.isnan(empty.rayleigh_p)
    assert circular_stats([np.nan, 10.0], n_bootstrap=0).n == 1


def test_permutation_test():
    rng = np.random.default_rng(4)
    a = np.degrees(rng.vonmises(0.0, 4.0, 40))
    b = np.degrees(rng.vonmises(np.pi / 2, 4.0, 40))
    _, p_diff = permutation_test(a, b, n_permutations=999, seed=0)
    assert p_diff == pytest.approx(1 / 1000)  # no relabelling is as extreme
    _, p_same = permutation_test(a, a.copy(), n_permutations=999, seed=0)
    assert p_same == 1.0  # identical samples: T = 0, every relabelling is >= 0
    # same distribution (another draw): p = 0.21, Watson–Williams p = 0.19
    c = np.degrees(np.random.default_rng(5).vonmises(0.0, 4.0, 40))
    _, p_null = permutation_test(a, c, n_permutations=999, seed=0)
    assert p_null > 0.05
    assert permutation_test(a, c, n_permutations=199, seed=2) == \
        permutation_test(a, c, n_permutations=199, seed=2)
    # 3D vectors work the same
    _, p3 = permutation_test(np.array([[1, 0, 0.1]] * 10), np.array([[-1, 0, 0.1]] * 10),
                             n_permutations=199, seed=0)
    assert p3 <= 0.01  # only the 2 of C(20, 10) labellings that split the groups are as extreme


def _data(az_deg, ndim=3):
    az = np.radians(az_deg)
    v = np.stack([np.cos(az), -np.sin(az), np.zeros_like(az)], axis=1)
    t = VectorTable(np.zeros((len(az), 3)), v[:, [2, 1, 0]] * 4, ndim=ndim)
    return polarity_data(t, (1, 1, 1), reference=reference_unit_vector(reference_deg=0.0))


def test_summarise_and_compare():
    d3 = _data(ZAR_VTEST)
    row = summarise(d3, n_bootstrap=100)
    assert row["n"] == 10 and row["mean_azimuth_deg"] == pytest.approx(94.0482, abs=1e-3)
    assert row["mean_dir_z"] == pytest.approx(0.0) and row["resultant_length_3d"] is not None
    d2 = _data(ZAR_VTEST, ndim=2)
    row2 = summarise(d2, n_bootstrap=0)
    assert row2["mean_dir_x"] is None and row2["rayleigh3d_p"] is None
    assert row2["vtest_u"] is not None and row2["mean_ci_low_deg"] is None
    with pytest.raises(InputError):
        summarise(d2, plane="yz")
    cmp = compare_samples(_data(ZAR_WW_1), _data(ZAR_WW_2), n_permutations=199)
    assert cmp["ww_F"] == pytest.approx(1.6127827, rel=1e-6)
    assert cmp["perm3d_p"] is not None and cmp["perm_p"] > 0.05
    pooled = PolarityData.concat([_data(ZAR_WW_1), _data(ZAR_WW_2)])
    assert len(pooled) == 20 and pooled.reference_planes["xy"]
    back = PolarityData.from_json(pooled.to_json())
    np.testing.assert_allclose(back.angles["xy"], pooled.angles["xy"], atol=1e-5)
