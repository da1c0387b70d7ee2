"""Polarity statistics against textbook values, and the angle conventions."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cellpol_core.errors import InputError
from cellpol_core.analysis.polarity import (PolarityData, angular_sd_deg, bootstrap_ci,
                                            bootstrap_cis, circular_circular_correlation,
                                            circular_linear_correlation, circular_mean,
                                            circular_sd_deg, circular_stats, compare_samples,
                                            kappa_from_r, permutation_test, plane_angle_deg,
                                            polarity_data, rao_spacing_test, rayleigh_test,
                                            reference_unit_vector, spherical_stats, summarise,
                                            v_test, vector_quantities, watson_u2_p,
                                            watson_u2_test, watson_williams)
from cellpol_core.io.vectors import VectorTable

# Zar, Biostatistical Analysis, 5th ed. (2010).
# Example 26.4 / 27.1: directions of 8 trees leaning. Zar prints a = 99°, r = 0.82522.
ZAR_TREES = [45, 55, 81, 96, 110, 117, 132, 154]
# Example 27.2: V-test of 10 homing directions against 90°. Zar prints u = 4.2474.
ZAR_VTEST = [66, 75, 86, 88, 88, 93, 97, 101, 118, 130]
# Example 27.7: Watson–Williams two-sample test. Zar prints F = 1.61 (P > 0.10).
ZAR_WW_1 = [94, 65, 45, 52, 38, 47, 73, 82, 90, 40, 87]
ZAR_WW_2 = [77, 70, 61, 45, 50, 35, 48, 65, 36]
# Example 27.20: insect vs light directions (Fisher-Lee r_aa = 0.8945).
ZAR_INSECT = [145, 190, 310, 210, 80]
ZAR_LIGHT = [120, 180, 330, 225, 55]
# Example 27.21: angle vs a linear variable X (r = 0.9854, 0.025 < P < 0.05).
ZAR_CL_ANGLE = [190, 160, 210, 225, 220, 140, 120]
ZAR_CL_X = [48, 55, 26, 23, 22, 62, 64]
# Pewsey, Neuhäuser & Ruxton, Circular Statistics in R (2013), ch. 5: 13 homing pigeons.
# Rao's U = 161.92° with 0.05 < p < 0.10; Watson's U² = 0.136, p > 0.10.
PIGEONS = [20, 135, 145, 165, 170, 200, 300, 325, 335, 350, 350, 350, 355]
# Jammalamadaka & SenGupta, Topics in Circular Statistics (2001), Example 8.1: wind
# directions at 6:00 and 12:00 in Milwaukee on 21 days (Johnson & Wehrly 1977).
# r = 0.2704648, test statistic 1.214025, p = 0.2247383.
WIND_6 = [356, 97, 211, 232, 343, 292, 157, 302, 335, 302, 324, 85, 324, 340, 157, 238, 254,
          146, 232, 122, 329]
WIND_12 = [119, 162, 221, 259, 270, 29, 97, 292, 40, 313, 94, 45, 47, 108, 221, 270, 119, 248,
           270, 45, 23]


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


# ----------------------------------------------------------------------------- new statistics

def test_angular_deviation_zar_26_5():
    """Zar (2010) eq. 26.20 on Example 26.4: s = sqrt(2(1 - 0.82522)) rad = 33.88°."""
    _, r = circular_mean(ZAR_TREES)
    assert angular_sd_deg(r) == pytest.approx(math.degrees(math.sqrt(2 * (1 - 0.8252177))),
                                              abs=1e-4)
    assert angular_sd_deg(r) == pytest.approx(33.88, abs=0.005)
    assert angular_sd_deg(1.0) == 0.0 and angular_sd_deg(0.0) == pytest.approx(81.028, abs=1e-3)


def test_rao_spacing_pigeons():
    """Pewsey, Neuhäuser & Ruxton (2013), ch. 5: U = 161.92°, 0.05 < p < 0.10 (table)."""
    u, p = rao_spacing_test(PIGEONS)
    assert u == pytest.approx(161.92308, abs=1e-4)  # (360/13 spacings) 2105/13
    assert 0.05 < p < 0.10
    assert (u, p) == rao_spacing_test(PIGEONS)  # seeded
    # evenly spread: every arc is 360°/n, U = 0, nothing is as even
    u0, p0 = rao_spacing_test(np.arange(0, 360, 30.0), n_simulations=999)
    assert u0 == pytest.approx(0.0, abs=1e-9) and p0 == 1.0
    # all in one point: U = 360 (1 - 1/n), the largest possible; no draw reaches it
    u1, p1 = rao_spacing_test([40.0] * 12, n_simulations=999)
    assert u1 == pytest.approx(330.0) and p1 == pytest.approx(1 / 1000)
    assert math.isnan(rao_spacing_test([1.0])[0])


def test_rao_null_distribution_mean():
    """E[U] = 360° (1 - 1/n)^n under uniformity (each arc is 360°·Beta(1, n-1))."""
    from cellpol_core.analysis.polarity import _rao_u

    rng = np.random.default_rng(0)
    n = 10
    e = rng.standard_exponential((200_000, n))
    u = np.degrees(_rao_u(2 * np.pi * e / e.sum(axis=1, keepdims=True), n))
    assert u.mean() == pytest.approx(360 * (1 - 1 / n) ** n, rel=2e-3)


def test_watson_u2_pigeons_and_stephens_points():
    """Pewsey et al. (2013): U² = 0.136, p > 0.10; Stephens (1970) Table 1 critical points."""
    u2, p = watson_u2_test(PIGEONS)
    assert u2 == pytest.approx(0.13613, abs=1e-5)
    assert 0.10 < p < 0.15
    # U² = W² - n (ū - ½)², W² Cramér–von Mises of the fractions of the circle
    frac = np.sort(np.asarray(PIGEONS) / 360)
    w2 = sps.cramervonmises(frac, "uniform").statistic
    assert u2 == pytest.approx(w2 - len(frac) * (frac.mean() - 0.5) ** 2, rel=1e-10)
    # the asymptotic upper 10, 5, 2.5 and 1 % points of U² (Stephens 1970, Table 1)
    for x, level in ((0.152, 0.10), (0.187, 0.05), (0.221, 0.025), (0.267, 0.01)):
        assert watson_u2_p(x) == pytest.approx(level, rel=0.03)
    # the two series agree where they switch
    assert watson_u2_p(0.1499999) == pytest.approx(watson_u2_p(0.1500001), abs=1e-6)
    _, p_conc = watson_u2_test(np.degrees(np.random.default_rng(1).vonmises(0, 5, 40)))
    assert p_conc < 1e-3


def test_axial_statistics_are_doubled_zar_examples():
    """Axes whose doubled angles are Zar's examples give Zar's values (Zar 2010, ch. 26)."""
    rng = np.random.default_rng(2)
    flip = 180.0 * rng.integers(0, 2, len(ZAR_TREES))  # an axis has no arrow head
    axes = np.asarray(ZAR_TREES) / 2 + flip
    mean, r = circular_mean(axes, axial=True)
    assert mean == pytest.approx(98.98775 / 2, abs=1e-4) and r == pytest.approx(0.82522, abs=5e-6)
    assert rayleigh_test(axes, axial=True) == pytest.approx(rayleigh_test(ZAR_TREES))
    # V-test of Example 27.2 against the axis 45° (= 90° doubled): u = 4.2474
    vaxes = np.asarray(ZAR_VTEST) / 2 + 180.0 * rng.integers(0, 2, len(ZAR_VTEST))
    u, _ = v_test(vaxes, 45.0, axial=True)
    assert u == pytest.approx(4.2474, abs=1e-4)
    assert u == pytest.approx(v_test(vaxes, 225.0, axial=True)[0])  # same axis
    # as directions, the flipped vectors look nearly uniform
    assert circular_mean(axes)[1] < 0.6
    cs = circular_stats(axes, n_bootstrap=300, axial=True)
    assert cs.axial and 0 <= cs.mean_ci_deg[0] < 180 and 0 <= cs.mean_ci_deg[1] < 180
    assert cs.rao_u_deg == pytest.approx(rao_spacing_test(ZAR_TREES)[0])
    assert cs.watson_u2 == pytest.approx(watson_u2_test(ZAR_TREES)[0])


def test_bootstrap_levels_nested_and_seeded():
    rng = np.random.default_rng(3)
    conc = np.degrees(rng.vonmises(0.3, 3.0, 80))
    cis = bootstrap_cis(conc, levels=(0.5, 0.9, 0.95), n_resamples=800, seed=4)
    widths = [((hi - lo) % 360, rhi - rlo) for (lo, hi), (rlo, rhi) in cis.values()]
    assert widths[0][0] < widths[1][0] < widths[2][0]  # 50 % inside 90 % inside 95 %
    assert widths[0][1] < widths[1][1] < widths[2][1]
    assert cis[0.95] == bootstrap_ci(conc, n_resamples=800, seed=4)  # shared resamples
    assert cis == bootstrap_cis(conc, n_resamples=800, seed=4)


def test_circular_linear_correlation_zar_27_21():
    """Zar (2010) Example 27.21: r = 0.9854; n r² = 6.80 on χ²₂: 0.025 < P < 0.05."""
    c = circular_linear_correlation(ZAR_CL_ANGLE, ZAR_CL_X)
    assert c.r == pytest.approx(0.9854, abs=5e-5) and c.n == 7
    assert c.statistic == pytest.approx(7 * c.r ** 2)
    assert 0.025 < c.p < 0.05
    assert c.p == pytest.approx(math.exp(-c.statistic / 2))  # χ²₂ survival in closed form
    # rotating the angles does not change the correlation
    assert circular_linear_correlation(np.asarray(ZAR_CL_ANGLE) + 77, ZAR_CL_X).r == \
        pytest.approx(c.r)
    # NaN pairs are left out
    assert circular_linear_correlation(ZAR_CL_ANGLE + [np.nan], ZAR_CL_X + [5.0]).n == 7


def test_circular_circular_correlation_textbooks():
    """Zar (2010) Example 27.20 (Fisher-Lee r_aa = 0.8945); J&S (2001) Example 8.1."""
    fl = circular_circular_correlation(ZAR_INSECT, ZAR_LIGHT, method="fisher-lee",
                                       n_permutations=999)
    assert fl.r == pytest.approx(0.8945, abs=5e-5)
    # pairwise definition, by hand: Σ sin(a_i - a_j) sin(b_i - b_j) / sqrt(...)
    a, b = np.radians(ZAR_INSECT), np.radians(ZAR_LIGHT)
    i, j = np.triu_indices(5, 1)
    num = np.sum(np.sin(a[i] - a[j]) * np.sin(b[i] - b[j]))
    den = math.sqrt(np.sum(np.sin(a[i] - a[j]) ** 2) * np.sum(np.sin(b[i] - b[j]) ** 2))
    assert fl.r == pytest.approx(num / den, rel=1e-12)
    assert fl.p < 0.05  # only the observed one of the 120 pairings is as extreme (p ≈ 1/120)
    js = circular_circular_correlation(WIND_6, WIND_12)
    assert js.r == pytest.approx(0.2704648, abs=1e-7)
    assert js.statistic == pytest.approx(1.214025, abs=1e-6)
    assert js.p == pytest.approx(0.2247383, abs=1e-7)
    with pytest.raises(InputError):
        circular_circular_correlation(WIND_6, WIND_12, method="kendall")


def _table_at(az_deg, *, ndim=2, covariate=None):
    az = np.radians(np.asarray(az_deg, float))
    d = np.stack([np.zeros_like(az), -np.sin(az), np.cos(az)], axis=1) * 3
    start = np.zeros((len(az), 3))
    return VectorTable(start, start + d, ndim=ndim)


def test_mean_azimuth_stays_absolute_with_reference():
    """A user's case: mean 136.6° with a reference of 90° is 136.6° absolute, 46.6° relative."""
    rng = np.random.default_rng(7)
    az = 136.6 + rng.normal(0, 10, 60)
    az = az - (circular_mean(az)[0] - 136.6)  # exactly 136.6° on average
    table = _table_at(az)
    row0 = summarise(polarity_data(table, (1, 1, 1)), n_bootstrap=100)
    assert row0["mean_azimuth_deg"] == pytest.approx(136.6)
    assert row0["mean_azimuth_to_reference_deg"] is None
    data = polarity_data(table, (1, 1, 1), reference=reference_unit_vector(reference_deg=90.0))
    row = summarise(data, n_bootstrap=100)
    assert row["mean_azimuth_deg"] == pytest.approx(136.6)
    assert row["mean_azimuth_to_reference_deg"] == pytest.approx(46.6)
    # the interval brackets the absolute mean; R and the tests do not depend on the frame
    assert row["mean_ci_low_deg"] < 136.6 < row["mean_ci_high_deg"]
    assert row["mean_ci_low_deg"] == pytest.approx(row0["mean_ci_low_deg"])
    for key in ("resultant_length", "rayleigh_p", "rao_u_deg", "watson_u2"):
        assert row[key] == pytest.approx(row0[key])
    assert row0["vtest_p"] is None and row["vtest_p"] is not None
    # pooled images with their own references: relative angles pool, absolute stay absolute
    other = polarity_data(_table_at(az + 180), (1, 1, 1),
                          reference=reference_unit_vector(reference_deg=270.0))
    pooled = summarise(PolarityData.concat([data, other]), n_bootstrap=0)
    assert pooled["mean_azimuth_to_reference_deg"] == pytest.approx(46.6)
    assert pooled["resultant_length"] == pytest.approx(row["resultant_length"])
    assert pooled["mean_azimuth_deg"] is None  # opposite absolute directions: R = 0


def test_summarise_new_columns_and_covariate():
    data = polarity_data(_table_at(ZAR_CL_ANGLE), (1, 1, 1), covariate=ZAR_CL_X)
    row = summarise(data, n_bootstrap=200, covariate_kind="linear", covariate_name="X")
    assert row["covariate"] == "X" and row["correlation_method"] == "mardia"
    assert row["correlation_r"] == pytest.approx(0.9854, abs=5e-5)
    assert row["mode"] == "directional" and row["rao_p"] is not None
    for pct in (50, 90, 95):
        assert row[f"mean_ci{pct}_low_deg"] is not None
    assert row["mean_ci95_low_deg"] == row["mean_ci_low_deg"]
    c = polarity_data(_table_at(ZAR_INSECT), (1, 1, 1), covariate=ZAR_LIGHT)
    row_c = summarise(c, n_bootstrap=0, covariate_kind="circular", circular_method="fisher-lee")
    assert row_c["correlation_r"] == pytest.approx(0.8945, abs=5e-5)
    back = PolarityData.from_json(data.to_json())
    np.testing.assert_allclose(back.covariate, ZAR_CL_X)
    with pytest.raises(InputError):
        polarity_data(_table_at([1, 2]), (1, 1, 1), covariate=[1.0])
    with pytest.raises(InputError):
        summarise(data, covariate_kind="ordinal")


def test_axial_summary_and_comparison():
    rng = np.random.default_rng(8)
    a = np.degrees(rng.vonmises(np.radians(60), 4, 50)) + 180 * rng.integers(0, 2, 50)
    b = np.degrees(rng.vonmises(np.radians(150), 4, 50)) + 180 * rng.integers(0, 2, 50)
    da = polarity_data(_table_at(a, ndim=3), (1, 1, 1))
    db = polarity_data(_table_at(b, ndim=3), (1, 1, 1))
    row = summarise(da, n_bootstrap=100, axial=True)
    assert row["mode"] == "axial" and abs(row["mean_azimuth_deg"] - 60) < 10
    assert row["resultant_length"] > 0.6 and row["rayleigh_p"] < 1e-6
    assert row["mean_dir_x"] is None and row["rayleigh3d_p"] is None  # no 3D axial stats
    directional = summarise(da, n_bootstrap=0)
    assert directional["resultant_length"] < 0.5
    cmp = compare_samples(da, db, n_permutations=199, axial=True)
    assert abs(cmp["mean_difference_deg"] - 90) < 12 or abs(cmp["mean_difference_deg"] + 90) < 12
    assert cmp["perm_p"] == pytest.approx(1 / 200) and cmp["perm3d_p"] is None
