"""Polarity statistics: per-vector angles, circular and spherical statistics.

Axes and angles
---------------
Vectors go from the start to the end structure, in µm, with components
``dx`` along +x (columns, right on screen), ``dy`` along +y (rows, *down* on
screen) and ``dz`` along +z (planes) -- the ``dx_um, dy_um, dz_um`` columns of
the CellPol CSV. Every 3-vector of this module (mean directions, reference
vectors) uses these (x, y, z) axes.

Plane angles are in degrees, in [0, 360), counter-clockwise as drawn:

``azimuth`` (xy plane)
    ``atan2(-dy, dx)``: 0 = +x (right), 90 = up on screen (-y). The CSV's
    ``azimuth_deg``; a rose of it looks like the image.
``xz``
    ``atan2(dz, dx)``: 0 = +x, 90 = +z. A side view with x to the right and
    z (increasing plane index) upward.
``yz``
    ``atan2(dz, -dy)``: 0 = up on screen (-y), 90 = +z. A side view with the
    image's "up" to the right and z upward.
``elevation``
    ``atan2(dz, hypot(dx, dy))`` in [-90, 90]; positive toward +z.

A plane angle is NaN where the vector's projection onto that plane has zero
length; the xz and yz angles of 2D tables are NaN.

Reference direction
-------------------
A reference (blood flow, sprouting direction, ...) is an azimuth ``a`` in
degrees -- the vector ``(cos a, -sin a, 0)`` -- or a 3-vector in the axes
above. Results "relative to the reference" are computed in the *reference
frame*: vectors are rotated about the z axis by minus the reference's azimuth,
so that the reference's xy projection points to 0° (+x). A relative plane
angle is then the vector's angle in that plane minus the reference's angle in
the same plane, so the reference is at 0° in every plane where it has a
projection (for a reference in the xy plane: xy and xz). In the xy plane the
relative angle is simply ``azimuth - reference_azimuth`` (mod 360). Mean
direction components are reported in the rotated frame. A reference without
an xy component (along z) leaves the frame unrotated.

Statistics
----------
2D (one plane): circular mean, mean resultant length R (the polarity index,
0 = no preferred direction, 1 = all vectors aligned), circular standard
deviation ``sqrt(-2 ln R)``, Rayleigh test of uniformity with Zar's
small-sample p-value, V-test against the reference (alternative: clustered
around the reference), percentile-bootstrap confidence intervals of the mean
direction and of R. 3D: spherical mean direction, 3D mean resultant length,
Rayleigh test (``3 n R̄²`` ~ χ²₃ under uniformity), mean angle between the
vectors and the reference. Two samples: Watson–Williams F-test and a
permutation test of equal mean directions. References: J. H. Zar,
*Biostatistical Analysis*, 5th ed. (2010), ch. 26–27; N. I. Fisher,
*Statistical Analysis of Circular Data* (1993), §4.5; K. V. Mardia and
P. E. Jupp, *Directional Statistics* (2000), §10.4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from ..errors import InputError
from ..io.vectors import VectorTable, vector_geometry

PLANES = ("xy", "yz", "xz")
_PAIR_CHUNK = 4_000_000  # array elements per bootstrap/permutation block (memory bound)


# ----------------------------------------------------------------------------- angles

def wrap_deg(angles, *, signed=False):
    """Angles in [0, 360), or in (-180, 180] with ``signed``."""
    a = np.mod(np.asarray(angles, dtype=np.float64), 360.0)
    a = np.where(a >= 360.0, 0.0, a)  # -1e-15 % 360 == 360.0
    if signed:
        a = np.where(a > 180.0, a - 360.0, a)
    return a


def plane_angle_deg(vectors, plane="xy"):
    """Angle of each vector's projection on ``plane``, degrees in [0, 360).

    Parameters
    ----------
    vectors : ndarray, shape (N, 3) or (3,)
        (x, y, z) components, y pointing down on screen.
    plane : {"xy", "yz", "xz"}
        See the module docstring for the conventions.

    Returns
    -------
    ndarray or float
        NaN where the projection has zero length.
    """
    v = np.asarray(vectors, dtype=np.float64)
    single = v.ndim == 1
    v = np.atleast_2d(v)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    if plane == "xy":
        h, u = x, -y
    elif plane == "xz":
        h, u = x, z
    elif plane == "yz":
        h, u = -y, z
    else:
        raise InputError(f"unknown plane {plane!r}; choose xy, yz or xz")
    with np.errstate(invalid="ignore"):
        a = wrap_deg(np.degrees(np.arctan2(u, h)))
    a = np.where((h == 0) & (u == 0), np.nan, a)
    return float(a[0]) if single else a


def reference_unit_vector(*, reference_deg=None, reference_vector=None) -> Optional[np.ndarray]:
    """The reference direction as a unit (x, y, z) vector, or None.

    Parameters
    ----------
    reference_deg : float, optional
        Azimuth in degrees (0 = +x, 90 = up on screen).
    reference_vector : sequence of 3 floats, optional
        (x, y, z) with y pointing down on screen (the CSV's dx/dy/dz axes).

    Raises
    ------
    InputError
        When both are given, or the vector is zero or not finite.
    """
    if reference_deg is not None and reference_vector is not None:
        raise InputError("give a reference angle or a reference vector, not both")
    if reference_deg is not None:
        a = float(reference_deg)
        if not math.isfinite(a):
            raise InputError(f"reference angle must be finite, got {reference_deg}")
        r = math.radians(a)
        return np.array([math.cos(r), -math.sin(r), 0.0])
    if reference_vector is not None:
        v = np.asarray(reference_vector, dtype=np.float64).reshape(-1)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise InputError("reference vector must be 3 finite numbers X Y Z, got "
                             f"{reference_vector}")
        norm = np.linalg.norm(v)
        if norm == 0:
            raise InputError("reference vector must not be zero")
        return v / norm
    return None


def _frame_rotation(reference) -> np.ndarray:
    """Rotation about z taking the reference's xy projection to +x (identity if none)."""
    if reference is None or (reference[0] == 0 and reference[1] == 0):
        return np.eye(3)
    az = math.atan2(-reference[1], reference[0])  # screen angle of the reference
    # Rotating the screen angle by -az: in (x, -y) coordinates that is a
    # clockwise rotation; written for (x, y) with y down it flips the sign.
    c, s = math.cos(az), math.sin(az)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def displacements_um(table: VectorTable, voxel_size) -> np.ndarray:
    """(N, 3) start→end vectors as (x, y, z) µm components."""
    g = vector_geometry(table.start, table.end, voxel_size)
    return np.stack([g["dx_um"], g["dy_um"], g["dz_um"]], axis=1)


def vector_quantities(table: VectorTable, voxel_size, *, reference_deg=None,
                      reference_vector=None) -> dict:
    """Per-vector lengths and angles in µm (see the module docstring).

    Parameters
    ----------
    table : VectorTable
        The vectors.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.
    reference_deg, reference_vector : optional
        A reference direction (see :func:`reference_unit_vector`).

    Returns
    -------
    dict of str to ndarray
        ``dx_um, dy_um, dz_um, length_um, azimuth_deg, elevation_deg,
        yz_angle_deg, xz_angle_deg``; with a reference also
        ``azimuth_rel_deg, yz_angle_rel_deg, xz_angle_rel_deg`` (relative
        angles in [0, 360)) and ``angle_to_reference_deg`` (in [0, 180]).
        Angles are NaN where undefined (zero-length projections, xz/yz of 2D
        tables).
    """
    g = vector_geometry(table.start, table.end, voxel_size)
    d = np.stack([g["dx_um"], g["dy_um"], g["dz_um"]], axis=1)
    out = dict(g)
    out["azimuth_deg"] = plane_angle_deg(d, "xy") if len(d) else np.zeros(0)
    for plane in ("yz", "xz"):
        out[f"{plane}_angle_deg"] = (plane_angle_deg(d, plane) if table.ndim == 3 and len(d)
                                     else np.full(len(d), np.nan))
    if table.ndim == 2:
        out["elevation_deg"] = np.full(len(d), np.nan)
    ref = reference_unit_vector(reference_deg=reference_deg, reference_vector=reference_vector)
    if ref is not None:
        data = polarity_data(table, voxel_size, reference=ref)
        out["azimuth_rel_deg"] = data.angles["xy"]
        out["yz_angle_rel_deg"] = data.angles["yz"]
        out["xz_angle_rel_deg"] = data.angles["xz"]
        out["angle_to_reference_deg"] = data.angle_to_reference
    return out


# ----------------------------------------------------------------------------- per-image data

@dataclass
class PolarityData:
    """Vectors of one image (or a pool of images) ready for statistics.

    Attributes
    ----------
    vectors : ndarray, shape (N, 3)
        (x, y, z) µm, in the reference frame when there is a reference.
    angles : dict of str to ndarray
        Per plane ("xy", "yz", "xz"): relative angles in degrees (absolute
        without reference), NaN where undefined.
    angle_to_reference : ndarray or None
        Angle between each vector and the reference, degrees in [0, 180].
    ndim : int
        2 or 3.
    reference_planes : dict of str to bool
        Whether the reference has a projection in each plane, i.e. whether
        the angles there are relative and the V-test applies.
    """

    vectors: np.ndarray
    angles: dict
    angle_to_reference: Optional[np.ndarray]
    ndim: int = 3
    reference_planes: dict = field(default_factory=lambda: {p: False for p in PLANES})

    def __len__(self):
        return len(self.vectors)

    @property
    def has_reference(self) -> bool:
        return self.angle_to_reference is not None

    @property
    def lengths(self) -> np.ndarray:
        return np.linalg.norm(self.vectors, axis=1) if len(self.vectors) else np.zeros(0)

    def to_json(self) -> dict:
        """Plain lists (NaN as None) for a JSON cache."""
        def lst(a):  # full precision: cached results must equal fresh ones
            return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]
        return {"vectors": lst(self.vectors), "angles": {p: lst(a) for p, a in self.angles.items()},
                "angle_to_reference": None if self.angle_to_reference is None
                else lst(self.angle_to_reference),
                "ndim": self.ndim, "reference_planes": dict(self.reference_planes)}

    @classmethod
    def from_json(cls, d: dict) -> "PolarityData":
        def arr(v):
            return np.array([np.nan if x is None else x for x in v], dtype=np.float64)
        return cls(arr(d["vectors"]).reshape(-1, 3), {p: arr(a) for p, a in d["angles"].items()},
                   None if d["angle_to_reference"] is None else arr(d["angle_to_reference"]),
                   int(d["ndim"]), {p: bool(v) for p, v in d["reference_planes"].items()})

    @classmethod
    def concat(cls, parts: Sequence["PolarityData"]) -> "PolarityData":
        """Pool several images. Relative angles pool only if every part has a reference."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros((0, 3)), {p: np.zeros(0) for p in PLANES}, None, 3)
        ndim = 3 if any(p.ndim == 3 for p in parts) else 2
        with_ref = all(p.has_reference for p in parts)
        nonempty = [p for p in parts if len(p)] or parts
        planes = {pl: with_ref and all(p.reference_planes.get(pl, False) for p in nonempty)
                  for pl in PLANES}
        return cls(np.concatenate([p.vectors for p in parts]),
                   {pl: np.concatenate([p.angles[pl] for p in parts]) for pl in PLANES},
                   np.concatenate([p.angle_to_reference for p in parts]) if with_ref else None,
                   ndim, planes)


def polarity_data(table: VectorTable, voxel_size, *, reference=None) -> PolarityData:
    """Vectors and relative angles of one table.

    Parameters
    ----------
    table : VectorTable
        The vectors.
    voxel_size : tuple of 3 floats
        (z, y, x) µm (use (1, 1, 1) for pixels).
    reference : ndarray (3,), optional
        Unit (x, y, z) reference from :func:`reference_unit_vector`. For a 2D
        table its z component is dropped.

    Returns
    -------
    PolarityData
    """
    d = displacements_um(table, voxel_size) if len(table) else np.zeros((0, 3))
    if table.ndim == 2:
        d[:, 2] = 0.0
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64)
        if table.ndim == 2:
            reference = np.array([reference[0], reference[1], 0.0])
            norm = np.linalg.norm(reference)
            if norm == 0:
                raise InputError("the reference vector points along z; a 2D table has no "
                                 "component along it")
            reference = reference / norm
    rot = _frame_rotation(reference)
    v = d @ rot.T
    planes = ("xy",) if table.ndim == 2 else PLANES
    angles = {}
    ref_planes = {}
    ref_frame = None if reference is None else rot @ reference
    if ref_frame is not None:
        ref_frame[np.abs(ref_frame) < 1e-12] = 0.0  # rotation round-off must not make a projection
    for p in PLANES:
        if p not in planes:
            angles[p] = np.full(len(v), np.nan)
            ref_planes[p] = False
            continue
        a = plane_angle_deg(v, p) if len(v) else np.zeros(0)
        ref_angle = np.nan if ref_frame is None else plane_angle_deg(ref_frame, p)
        ref_planes[p] = bool(np.isfinite(ref_angle))
        angles[p] = wrap_deg(a - ref_angle) if ref_planes[p] else a
    to_ref = None
    if reference is not None:
        lengths = np.linalg.norm(v, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (v @ ref_frame) / lengths
        to_ref = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return PolarityData(v, angles, to_ref, table.ndim, ref_planes)


# ----------------------------------------------------------------------------- circular statistics

def _finite_radians(angles_deg) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    return np.radians(a[np.isfinite(a)])


def circular_mean(angles_deg) -> tuple:
    """Mean direction (degrees in [0, 360)) and mean resultant length R.

    NaN angles are ignored. The mean is NaN when there are no angles or R = 0.
    """
    a = _finite_radians(angles_deg)
    if len(a) == 0:
        return math.nan, math.nan
    c, s = np.cos(a).mean(), np.sin(a).mean()
    r = float(math.hypot(c, s))
    if r < 1e-12:
        return math.nan, 0.0
    return float(wrap_deg(math.degrees(math.atan2(s, c)))), min(r, 1.0)


def circular_sd_deg(resultant_length) -> float:
    """Circular standard deviation ``sqrt(-2 ln R)`` in degrees (Zar eq. 26.21)."""
    r = float(resultant_length)
    if not math.isfinite(r):
        return math.nan
    if r <= 0:
        return math.inf
    return math.degrees(math.sqrt(max(0.0, -2.0 * math.log(min(r, 1.0)))))  # max(0.0, -0.0) is 0.0


def rayleigh_test(angles_deg) -> tuple:
    """Rayleigh test of circular uniformity.

    Returns
    -------
    (z, p) : floats
        ``z = n R²`` (R the mean resultant length) and Zar's approximation
        ``p = exp(sqrt(1 + 4n + 4(n² - (nR)²)) - (1 + 2n))`` (Zar 2010,
        eq. 27.4), accurate for small n. NaN without angles.
    """
    a = _finite_radians(angles_deg)
    n = len(a)
    if n == 0:
        return math.nan, math.nan
    _, r = circular_mean(np.degrees(a))
    big_r = n * r
    z = n * r * r
    p = math.exp(math.sqrt(1 + 4 * n + 4 * (n * n - big_r * big_r)) - (1 + 2 * n))
    return float(z), float(min(max(p, 0.0), 1.0))


def v_test(angles_deg, reference_deg) -> tuple:
    """V-test of uniformity against clustering around ``reference_deg``.

    Returns
    -------
    (u, p) : floats
        ``V = n R cos(mean - reference)``, ``u = V sqrt(2/n)`` and the
        one-sided normal p-value ``P(U >= u)`` (Zar 2010, eq. 27.5–27.6).
    """
    a = _finite_radians(angles_deg)
    n = len(a)
    if n == 0 or reference_deg is None or not math.isfinite(reference_deg):
        return math.nan, math.nan
    v = float(np.sum(np.cos(a - math.radians(reference_deg))))  # = n R cos(mean - ref)
    u = v * math.sqrt(2.0 / n)
    return u, float(stats.norm.sf(u))


def bootstrap_ci(angles_deg, *, n_resamples=1000, confidence=0.95, seed=0) -> tuple:
    """Percentile-bootstrap confidence intervals of the mean direction and of R.

    Angles are resampled with replacement ``n_resamples`` times (NumPy
    generator seeded with ``seed``). The mean-direction interval is taken on
    the resampled means' deviations from the sample mean, so it does not
    break at 0°/360°.

    Returns
    -------
    ((mean_low, mean_high), (r_low, r_high))
        Mean bounds in degrees in [0, 360), going counter-clockwise from low to
        high (low > high when the interval contains 0°). NaN with fewer than 2
        angles or no resamples.
    """
    a = _finite_radians(angles_deg)
    n = len(a)
    nan2 = (math.nan, math.nan)
    if n < 2 or n_resamples < 1:
        return nan2, nan2
    rng = np.random.default_rng(seed)
    c, s = np.cos(a), np.sin(a)
    means, rs = [], []
    chunk = max(1, _PAIR_CHUNK // n)
    for start in range(0, int(n_resamples), chunk):
        b = min(chunk, int(n_resamples) - start)
        idx = rng.integers(0, n, size=(b, n))
        cm, sm = c[idx].mean(axis=1), s[idx].mean(axis=1)
        means.append(np.arctan2(sm, cm))
        rs.append(np.hypot(cm, sm))
    means, rs = np.concatenate(means), np.concatenate(rs)
    alpha = (1.0 - confidence) / 2.0
    mean0 = math.atan2(s.mean(), c.mean())
    dev = np.angle(np.exp(1j * (means - mean0)))
    lo, hi = np.quantile(dev, [alpha, 1.0 - alpha])
    r_lo, r_hi = np.quantile(rs, [alpha, 1.0 - alpha])
    mean_ci = (float(wrap_deg(math.degrees(mean0 + lo))), float(wrap_deg(math.degrees(mean0 + hi))))
    return mean_ci, (float(r_lo), float(r_hi))


@dataclass
class CircularStats:
    """Statistics of one set of plane angles; see :func:`circular_stats`."""

    n: int
    mean_deg: float
    resultant_length: float
    circular_sd_deg: float
    rayleigh_z: float
    rayleigh_p: float
    reference_deg: float = math.nan
    vtest_u: float = math.nan
    vtest_p: float = math.nan
    mean_ci_deg: tuple = (math.nan, math.nan)
    resultant_length_ci: tuple = (math.nan, math.nan)
    n_bootstrap: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def circular_stats(angles_deg, *, reference_deg=None, n_bootstrap=1000, confidence=0.95,
                   seed=0) -> CircularStats:
    """Circular statistics of angles in degrees (NaN angles are ignored).

    Parameters
    ----------
    angles_deg : array_like
        Angles in degrees.
    reference_deg : float, optional
        Direction for the V-test.
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals (0: none).
    confidence : float
        Confidence level of the intervals.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    CircularStats
    """
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    mean, r = circular_mean(a)
    z, p = rayleigh_test(a)
    ref = math.nan if reference_deg is None else float(reference_deg)
    u, up = v_test(a, ref) if math.isfinite(ref) else (math.nan, math.nan)
    mean_ci, r_ci = bootstrap_ci(a, n_resamples=n_bootstrap, confidence=confidence, seed=seed)
    return CircularStats(len(a), mean, r, circular_sd_deg(r), z, p, ref, u, up, mean_ci, r_ci,
                         int(n_bootstrap) if len(a) >= 2 else 0)


# ----------------------------------------------------------------------------- spherical statistics

@dataclass
class SphericalStats:
    """3D statistics of vector directions; see :func:`spherical_stats`."""

    n: int
    mean_direction: np.ndarray
    resultant_length: float
    rayleigh_stat: float
    rayleigh_p: float
    mean_angle_to_reference_deg: float = math.nan
    mean_direction_to_reference_deg: float = math.nan


def spherical_stats(vectors, *, reference=None) -> SphericalStats:
    """Spherical mean direction, 3D mean resultant length and Rayleigh test.

    Parameters
    ----------
    vectors : ndarray, shape (N, 3)
        (x, y, z) vectors of any length; zero and non-finite ones are ignored.
    reference : ndarray (3,), optional
        Unit reference vector.

    Returns
    -------
    SphericalStats
        ``mean_direction`` is a unit vector (NaN when undefined);
        ``rayleigh_stat = 3 n R̄²`` with ``rayleigh_p`` from χ² with 3 degrees
        of freedom (Mardia & Jupp 2000, §10.4.1); with a reference,
        ``mean_angle_to_reference_deg`` is the mean over the vectors of their
        angle to it (0–180°) and ``mean_direction_to_reference_deg`` the angle
        between the mean direction and the reference.
    """
    v = np.asarray(vectors, dtype=np.float64).reshape(-1, 3)
    norms = np.linalg.norm(v, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    u = v[ok] / norms[ok, None]
    n = len(u)
    if n == 0:
        return SphericalStats(0, np.full(3, np.nan), math.nan, math.nan, math.nan)
    ds = stats.directional_stats(u, normalize=False)
    r = float(ds.mean_resultant_length)
    mean_dir = np.asarray(ds.mean_direction, dtype=np.float64) if r > 1e-12 else np.full(3, np.nan)
    stat = 3.0 * n * r * r
    out = SphericalStats(n, mean_dir, r, stat, float(stats.chi2.sf(stat, 3)))
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref / np.linalg.norm(ref)
        angles = np.degrees(np.arccos(np.clip(u @ ref, -1, 1)))
        out.mean_angle_to_reference_deg = float(angles.mean())
        if r > 1e-12:
            out.mean_direction_to_reference_deg = float(
                np.degrees(np.arccos(np.clip(mean_dir @ ref, -1, 1))))
    return out


# ----------------------------------------------------------------------------- summary

SUMMARY_STAT_COLUMNS = [
    "n", "plane", "mean_azimuth_deg", "mean_ci_low_deg", "mean_ci_high_deg", "resultant_length",
    "resultant_length_ci_low", "resultant_length_ci_high", "circular_sd_deg", "rayleigh_z",
    "rayleigh_p", "vtest_u", "vtest_p", "mean_dir_x", "mean_dir_y", "mean_dir_z",
    "resultant_length_3d", "rayleigh3d_stat", "rayleigh3d_p", "mean_angle_to_reference_deg",
    "mean_length_um",
]
"""Columns of :func:`summarise`, in order (the analysis adds name, reference...)."""


def summarise(data: PolarityData, *, plane="xy", n_bootstrap=1000, confidence=0.95,
              seed=0) -> dict:
    """One summary row for an image or a pool of images.

    Parameters
    ----------
    data : PolarityData
        From :func:`polarity_data` (or pooled with :meth:`PolarityData.concat`).
    plane : {"xy", "yz", "xz"}
        Plane of the circular statistics (``mean_azimuth_deg`` is the mean
        angle in that plane, relative to the reference when there is one).
    n_bootstrap, confidence, seed
        Bootstrap settings, see :func:`bootstrap_ci`.

    Returns
    -------
    dict
        Keys :data:`SUMMARY_STAT_COLUMNS`; values that do not apply are None
        (V-test without reference, 3D columns for 2D data, ...).
    """
    if plane not in PLANES:
        raise InputError(f"unknown plane {plane!r}; choose xy, yz or xz")
    if data.ndim == 2 and plane != "xy":
        raise InputError(f"2D vectors have no {plane} plane; use --plane xy")
    ref_here = data.reference_planes.get(plane, False)
    cs = circular_stats(data.angles[plane], reference_deg=0.0 if ref_here else None,
                        n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    row = {k: None for k in SUMMARY_STAT_COLUMNS}
    row.update(n=len(data), plane=plane, mean_azimuth_deg=cs.mean_deg,
               mean_ci_low_deg=cs.mean_ci_deg[0], mean_ci_high_deg=cs.mean_ci_deg[1],
               resultant_length=cs.resultant_length,
               resultant_length_ci_low=cs.resultant_length_ci[0],
               resultant_length_ci_high=cs.resultant_length_ci[1],
               circular_sd_deg=cs.circular_sd_deg, rayleigh_z=cs.rayleigh_z,
               rayleigh_p=cs.rayleigh_p)
    if ref_here:
        row.update(vtest_u=cs.vtest_u, vtest_p=cs.vtest_p)
    lengths = data.lengths
    if len(lengths):
        row["mean_length_um"] = float(lengths.mean())
    if data.ndim == 3:
        ss = spherical_stats(data.vectors)
        mx, my, mz = (float(c) for c in ss.mean_direction)
        row.update(mean_dir_x=mx, mean_dir_y=my, mean_dir_z=mz,
                   resultant_length_3d=ss.resultant_length,
                   rayleigh3d_stat=ss.rayleigh_stat, rayleigh3d_p=ss.rayleigh_p)
    if data.angle_to_reference is not None:
        finite = data.angle_to_reference[np.isfinite(data.angle_to_reference)]
        if len(finite):
            row["mean_angle_to_reference_deg"] = float(finite.mean())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


# ----------------------------------------------------------------------------- two samples

def kappa_from_r(r: float) -> float:
    """Von Mises concentration κ from a mean resultant length (Fisher 1993, eq. 4.40)."""
    r = float(r)
    if r < 0.53:
        return 2 * r + r ** 3 + 5 * r ** 5 / 6
    if r < 0.85:
        return -0.4 + 1.39 * r + 0.43 / (1 - r)
    denom = r ** 3 - 4 * r ** 2 + 3 * r
    return math.inf if denom <= 0 else 1.0 / denom


@dataclass
class WatsonWilliams:
    """Result of :func:`watson_williams`."""

    F: float
    p: float
    df1: int
    df2: int
    kappa: float
    assumptions_met: bool
    note: str


def watson_williams(*samples_deg) -> WatsonWilliams:
    """Watson–Williams test that k samples share one mean direction.

    ``F = K (N - k)(Σ R_j - R) / ((k - 1)(N - Σ R_j))`` with the correction
    ``K = 1 + 3/(8κ)``, κ estimated from the pooled ``r_w = Σ R_j / N``
    (:func:`kappa_from_r`); F has (k - 1, N - k) degrees of freedom (Zar 2010,
    eq. 27.11–27.13). Assumes von Mises samples with a *common*
    concentration that is not small (κ ≥ 1, about r_w ≥ 0.45); a note says
    when that fails and the permutation test should be preferred.

    Parameters
    ----------
    *samples_deg : array_like
        Two or more samples of angles in degrees (NaNs ignored).
    """
    samples = [_finite_radians(s) for s in samples_deg]
    k = len(samples)
    if k < 2:
        raise ValueError("the Watson-Williams test needs at least two samples")
    ns = np.array([len(s) for s in samples])
    big_n = int(ns.sum())
    if np.any(ns == 0) or big_n <= k:
        return WatsonWilliams(math.nan, math.nan, k - 1, max(big_n - k, 0), math.nan, False,
                              "too few vectors")
    rj = np.array([math.hypot(np.cos(s).sum(), np.sin(s).sum()) for s in samples])
    allv = np.concatenate(samples)
    big_r = math.hypot(np.cos(allv).sum(), np.sin(allv).sum())
    rw = rj.sum() / big_n
    kappa = kappa_from_r(rw)
    corr = 1.0 + 3.0 / (8.0 * kappa) if kappa > 0 else 1.0
    denom = big_n - rj.sum()
    if denom <= 1e-12:
        f = math.inf if rj.sum() - big_r > 1e-9 else 0.0
    else:
        f = corr * (big_n - k) * (rj.sum() - big_r) / ((k - 1) * denom)
    p = float(stats.f.sf(f, k - 1, big_n - k))
    ok = kappa >= 1.0 and bool(np.all(ns >= 5))
    note = ("assumes von Mises samples with a common concentration"
            + ("" if ok else "; not met here (κ < 1 or a sample under 5 vectors): prefer the "
                             "permutation test"))
    return WatsonWilliams(float(f), p, k - 1, big_n - k, float(kappa), ok, note)


def _unit_rows(x) -> np.ndarray:
    """Angles (deg, 1D) -> unit (cos, sin) rows; vectors (N, d) -> unit rows. Drops NaN/zero."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        a = np.radians(x[np.isfinite(x)])
        return np.stack([np.cos(a), np.sin(a)], axis=1)
    norms = np.linalg.norm(x, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    return x[ok] / norms[ok, None]


def permutation_test(a, b, *, n_permutations=9999, seed=0) -> tuple:
    """Permutation test that two samples share one mean direction.

    The statistic is ``T = |S_a| + |S_b| - |S_a + S_b|`` (S the sum of unit
    vectors of a sample): 0 when both resultants point the same way, growing
    with the angle between them. Group labels are permuted
    ``n_permutations`` times (seeded) and ``p = (1 + #{T* >= T}) /
    (n_permutations + 1)``.

    Parameters
    ----------
    a, b : array_like
        Angles in degrees (1D) or direction vectors (N, d), e.g. 3D vectors.
    n_permutations : int
        Number of random relabellings.
    seed : int
        Seed of the relabellings.

    Returns
    -------
    (T, p) : floats
        NaN when a sample is empty.
    """
    ua, ub = _unit_rows(a), _unit_rows(b)
    na, nb = len(ua), len(ub)
    if na == 0 or nb == 0:
        return math.nan, math.nan
    units = np.concatenate([ua, ub])
    total = units.sum(axis=0)
    norm_total = np.linalg.norm(total)
    sa = ua.sum(axis=0)
    t_obs = np.linalg.norm(sa) + np.linalg.norm(total - sa) - norm_total
    rng = np.random.default_rng(seed)
    n = na + nb
    base = np.zeros(n)
    base[:na] = 1.0
    count = 0
    chunk = max(1, _PAIR_CHUNK // n)
    for start in range(0, int(n_permutations), chunk):
        m = min(chunk, int(n_permutations) - start)
        masks = rng.permuted(np.broadcast_to(base, (m, n)), axis=1)
        s = masks @ units
        t = np.linalg.norm(s, axis=1) + np.linalg.norm(total - s, axis=1) - norm_total
        count += int(np.sum(t >= t_obs - 1e-12 * max(1.0, t_obs)))
    return float(t_obs), (1 + count) / (int(n_permutations) + 1)


def compare_samples(a: PolarityData, b: PolarityData, *, plane="xy", n_permutations=9999,
                    seed=0) -> dict:
    """Two-sample tests of equal mean direction between two pools.

    Returns
    -------
    dict
        ``n_a, n_b, mean_a_deg, mean_b_deg, mean_difference_deg`` (b - a, in
        (-180, 180]), ``ww_F, ww_df1, ww_df2, ww_p, ww_kappa,
        ww_assumptions_met, ww_note`` (Watson–Williams in ``plane``),
        ``perm_stat, perm_p, perm_permutations`` (permutation test in
        ``plane``) and, for 3D data, ``perm3d_stat, perm3d_p`` (the same test
        on the 3D directions). Values that do not apply are None.
    """
    aa, ab = a.angles[plane], b.angles[plane]
    ma, _ = circular_mean(aa)
    mb, _ = circular_mean(ab)
    both = math.isfinite(ma) and math.isfinite(mb)
    diff = float(wrap_deg(mb - ma, signed=True)) if both else None
    ww = watson_williams(aa, ab)
    t, p = permutation_test(aa, ab, n_permutations=n_permutations, seed=seed)
    row = {"plane": plane, "n_a": int(np.isfinite(aa).sum()), "n_b": int(np.isfinite(ab).sum()),
           "mean_a_deg": ma, "mean_b_deg": mb, "mean_difference_deg": diff,
           "ww_F": ww.F, "ww_df1": ww.df1, "ww_df2": ww.df2, "ww_p": ww.p, "ww_kappa": ww.kappa,
           "ww_assumptions_met": ww.assumptions_met, "ww_note": ww.note,
           "perm_stat": t, "perm_p": p, "perm_permutations": int(n_permutations),
           "perm3d_stat": None, "perm3d_p": None}
    if a.ndim == 3 and b.ndim == 3:
        t3, p3 = permutation_test(a.vectors, b.vectors, n_permutations=n_permutations, seed=seed)
        row.update(perm3d_stat=t3, perm3d_p=p3)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
