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
deviation ``sqrt(-2 ln R)`` and angular deviation ``sqrt(2 (1 - R))``,
Rayleigh test of uniformity with Zar's small-sample p-value, V-test against
the reference (alternative: clustered around the reference), Rao's spacing
test and Watson's U² test of uniformity (omnibus: they also see multimodal
departures), percentile-bootstrap confidence intervals of the mean direction
and of R at 50, 90 and 95 %, and the correlation of the angles with a per-cell
covariate (circular-linear, Mardia; circular-circular, Jammalamadaka-SenGupta
or Fisher-Lee). 3D: spherical mean direction, 3D mean resultant length,
Rayleigh test (``3 n R̄²`` ~ χ²₃ under uniformity), mean angle between the
vectors and the reference. Two samples: Watson–Williams F-test and a
permutation test of equal mean directions.

Axial data
----------
With ``axial=True`` a vector and its opposite are the same observation (an
axis, e.g. the long axis of a cell): angles are doubled, the statistics are
computed on the doubled angles, and mean directions are halved back into
[0, 180) ("mean axis"). R of the doubled angles is the axial polarity index;
every test (Rayleigh, V-test against the reference axis, Rao, Watson) runs on
the doubled angles (Zar 2010, ch. 26; Fisher 1993, ch. 2). The 3D statistics
do not apply to axes and are left empty.

References: J. H. Zar, *Biostatistical Analysis*, 5th ed. (2010), ch. 26–27;
N. I. Fisher, *Statistical Analysis of Circular Data* (1993); K. V. Mardia
and P. E. Jupp, *Directional Statistics* (2000); S. R. Jammalamadaka and
A. SenGupta, *Topics in Circular Statistics* (2001), ch. 8; M. A. Stephens,
J. R. Statist. Soc. B 32 (1970) 115–122 (Watson's U² p-values).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import stats

from ..errors import InputError
from .choices import CIRCULAR_METHODS, COVARIATE_KINDS
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
        without reference), NaN where undefined. The statistics use these.
    angle_to_reference : ndarray or None
        Angle between each vector and the reference, degrees in [0, 180].
    ndim : int
        2 or 3.
    reference_planes : dict of str to bool
        Whether the reference has a projection in each plane, i.e. whether
        the angles there are relative and the V-test applies.
    absolute : dict of str to ndarray, optional
        Per plane, the absolute angles (as in the image) when ``angles`` are
        relative; None when they are the same.
    covariate : ndarray, optional
        One value per vector (a per-cell covariate for correlations), or None.
    """

    vectors: np.ndarray
    angles: dict
    angle_to_reference: Optional[np.ndarray]
    ndim: int = 3
    reference_planes: dict = field(default_factory=lambda: {p: False for p in PLANES})
    absolute: Optional[dict] = None
    covariate: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.vectors)

    @property
    def has_reference(self) -> bool:
        return self.angle_to_reference is not None

    @property
    def lengths(self) -> np.ndarray:
        return np.linalg.norm(self.vectors, axis=1) if len(self.vectors) else np.zeros(0)

    def absolute_angles(self, plane) -> np.ndarray:
        """Angles in ``plane`` as in the image (not relative to the reference)."""
        return self.angles[plane] if self.absolute is None else self.absolute[plane]

    def to_json(self) -> dict:
        """Plain lists (NaN as None) for a JSON cache."""
        def lst(a):  # full precision: cached results must equal fresh ones
            return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]
        return {"vectors": lst(self.vectors), "angles": {p: lst(a) for p, a in self.angles.items()},
                "angle_to_reference": None if self.angle_to_reference is None
                else lst(self.angle_to_reference),
                "ndim": self.ndim, "reference_planes": dict(self.reference_planes),
                "absolute": None if self.absolute is None
                else {p: lst(a) for p, a in self.absolute.items()},
                "covariate": None if self.covariate is None else lst(self.covariate)}

    @classmethod
    def from_json(cls, d: dict) -> "PolarityData":
        def arr(v):
            return np.array([np.nan if x is None else x for x in v], dtype=np.float64)
        absolute, cov = d.get("absolute"), d.get("covariate")
        return cls(arr(d["vectors"]).reshape(-1, 3), {p: arr(a) for p, a in d["angles"].items()},
                   None if d["angle_to_reference"] is None else arr(d["angle_to_reference"]),
                   int(d["ndim"]), {p: bool(v) for p, v in d["reference_planes"].items()},
                   None if absolute is None else {p: arr(a) for p, a in absolute.items()},
                   None if cov is None else arr(cov))

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
        absolute = None
        if any(p.absolute is not None for p in parts):
            absolute = {pl: np.concatenate([p.absolute_angles(pl) for p in parts]) for pl in PLANES}
        covariate = None
        if all(p.covariate is not None for p in parts):
            covariate = np.concatenate([p.covariate for p in parts])
        return cls(np.concatenate([p.vectors for p in parts]),
                   {pl: np.concatenate([p.angles[pl] for p in parts]) for pl in PLANES},
                   np.concatenate([p.angle_to_reference for p in parts]) if with_ref else None,
                   ndim, planes, absolute, covariate)


def polarity_data(table: VectorTable, voxel_size, *, reference=None, covariate=None) -> PolarityData:
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
    covariate : array_like, optional
        One value per vector (NaN where missing), kept for correlations.

    Returns
    -------
    PolarityData
    """
    d = displacements_um(table, voxel_size) if len(table) else np.zeros((0, 3))
    if table.ndim == 2:
        d[:, 2] = 0.0
    if covariate is not None:
        covariate = np.asarray(covariate, dtype=np.float64).reshape(-1)
        if len(covariate) != len(d):
            raise InputError(f"the covariate has {len(covariate)} values for {len(d)} vectors")
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
    angles, absolute = {}, {}
    ref_planes = {}
    ref_frame = None if reference is None else rot @ reference
    if ref_frame is not None:
        ref_frame[np.abs(ref_frame) < 1e-12] = 0.0  # rotation round-off must not make a projection
    for p in PLANES:
        if p not in planes:
            angles[p] = absolute[p] = np.full(len(v), np.nan)
            ref_planes[p] = False
            continue
        a = plane_angle_deg(v, p) if len(v) else np.zeros(0)
        absolute[p] = plane_angle_deg(d, p) if len(d) else np.zeros(0)
        ref_angle = np.nan if ref_frame is None else plane_angle_deg(ref_frame, p)
        ref_planes[p] = bool(np.isfinite(ref_angle))
        angles[p] = wrap_deg(a - ref_angle) if ref_planes[p] else a
    to_ref = None
    if reference is not None:
        lengths = np.linalg.norm(v, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (v @ ref_frame) / lengths
        to_ref = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return PolarityData(v, angles, to_ref, table.ndim, ref_planes,
                        None if reference is None else absolute, covariate)


# ----------------------------------------------------------------------------- circular statistics

CI_LEVELS = (0.5, 0.9, 0.95)
"""Confidence levels of the bootstrap intervals in the summaries."""
RAO_SIMULATIONS = 9999
"""Monte Carlo draws for the p-value of Rao's spacing test."""


def _finite_radians(angles_deg, axial=False) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    a = np.radians(a[np.isfinite(a)])
    return 2.0 * a if axial else a  # axes: doubled angles


def _undouble(mean_deg):
    """A mean of doubled angles back to an axis in [0, 180)."""
    return math.nan if not math.isfinite(mean_deg) else float(np.mod(mean_deg / 2.0, 180.0))


def circular_mean(angles_deg, *, axial=False) -> tuple:
    """Mean direction (degrees in [0, 360)) and mean resultant length R.

    NaN angles are ignored. The mean is NaN when there are no angles or R = 0.
    With ``axial``, the mean axis in [0, 180) and R of the doubled angles.
    """
    a = _finite_radians(angles_deg, axial)
    if len(a) == 0:
        return math.nan, math.nan
    c, s = np.cos(a).mean(), np.sin(a).mean()
    r = float(math.hypot(c, s))
    if r < 1e-12:
        return math.nan, 0.0
    mean = float(wrap_deg(math.degrees(math.atan2(s, c))))
    return (_undouble(mean) if axial else mean), min(r, 1.0)


def circular_sd_deg(resultant_length) -> float:
    """Circular standard deviation ``sqrt(-2 ln R)`` in degrees (Zar eq. 26.21)."""
    r = float(resultant_length)
    if not math.isfinite(r):
        return math.nan
    if r <= 0:
        return math.inf
    return math.degrees(math.sqrt(max(0.0, -2.0 * math.log(min(r, 1.0)))))  # max(0.0, -0.0) is 0.0


def angular_sd_deg(resultant_length) -> float:
    """Angular deviation ``sqrt(2 (1 - R))`` in degrees (Zar eq. 26.20)."""
    r = float(resultant_length)
    if not math.isfinite(r):
        return math.nan
    return math.degrees(math.sqrt(2.0 * max(0.0, 1.0 - min(r, 1.0))))


def rayleigh_test(angles_deg, *, axial=False) -> tuple:
    """Rayleigh test of circular uniformity.

    Returns
    -------
    (z, p) : floats
        ``z = n R²`` (R the mean resultant length) and Zar's approximation
        ``p = exp(sqrt(1 + 4n + 4(n² - (nR)²)) - (1 + 2n))`` (Zar 2010,
        eq. 27.4), accurate for small n. NaN without angles.
    """
    a = _finite_radians(angles_deg, axial)
    n = len(a)
    if n == 0:
        return math.nan, math.nan
    r = min(1.0, math.hypot(np.cos(a).mean(), np.sin(a).mean()))
    big_r = n * r
    z = n * r * r
    p = math.exp(math.sqrt(1 + 4 * n + 4 * (n * n - big_r * big_r)) - (1 + 2 * n))
    return float(z), float(min(max(p, 0.0), 1.0))


def v_test(angles_deg, reference_deg, *, axial=False) -> tuple:
    """V-test of uniformity against clustering around ``reference_deg``.

    Returns
    -------
    (u, p) : floats
        ``V = n R cos(mean - reference)``, ``u = V sqrt(2/n)`` and the
        one-sided normal p-value ``P(U >= u)`` (Zar 2010, eq. 27.5–27.6).
        With ``axial``, on the doubled angles against the doubled reference.
    """
    a = _finite_radians(angles_deg, axial)
    n = len(a)
    if n == 0 or reference_deg is None or not math.isfinite(reference_deg):
        return math.nan, math.nan
    ref = math.radians(reference_deg) * (2.0 if axial else 1.0)
    v = float(np.sum(np.cos(a - ref)))  # = n R cos(mean - ref)
    u = v * math.sqrt(2.0 / n)
    return u, float(stats.norm.sf(u))


def _rao_u(spacings, n) -> np.ndarray:
    return 0.5 * np.abs(spacings - 2.0 * math.pi / n).sum(axis=-1)


def rao_spacing_test(angles_deg, *, axial=False, n_simulations=RAO_SIMULATIONS, seed=0) -> tuple:
    """Rao's spacing test of circular uniformity.

    ``U = ½ Σ |T_i - 360°/n|`` with ``T_i`` the arcs between consecutive
    sorted angles (the last one wrapping around); U is near 0 for evenly
    spread angles and grows toward 360° as they bunch (Zar 2010, ch. 27;
    Mardia & Jupp 2000, ch. 6).

    The p-value is from the exact null distribution of U, estimated by
    simulation: under uniformity the n arcs are 360° times a flat Dirichlet
    vector (normalised independent exponentials), so ``n_simulations``
    samples of U are drawn (seeded) and ``p = (1 + #{U* >= U}) /
    (n_simulations + 1)``; its Monte Carlo standard error is at most
    ``0.5 / sqrt(n_simulations)`` (0.005 for 9999 draws). This replaces the
    printed critical-value tables (Russell & Levitin 1995), which stop at
    n = 1000 and give only bounds.

    Returns
    -------
    (U, p) : floats
        U in degrees; p NaN with fewer than 3 angles or no simulations.
    """
    a = np.sort(np.mod(_finite_radians(angles_deg, axial), 2.0 * math.pi))
    n = len(a)
    if n < 2:
        return math.nan, math.nan
    spacings = np.diff(np.append(a, a[0] + 2.0 * math.pi))
    u = float(_rao_u(spacings, n))
    if n < 3 or n_simulations < 1:
        return math.degrees(u), math.nan
    rng = np.random.default_rng(seed)
    count = 0
    chunk = max(1, _PAIR_CHUNK // n)
    for start in range(0, int(n_simulations), chunk):
        m = min(chunk, int(n_simulations) - start)
        e = rng.standard_exponential((m, n))
        sim = _rao_u(2.0 * math.pi * e / e.sum(axis=1, keepdims=True), n)
        count += int(np.sum(sim >= u - 1e-12))
    return math.degrees(u), (1 + count) / (int(n_simulations) + 1)


def watson_u2_p(u2_modified) -> float:
    """Upper tail of the asymptotic null distribution of Watson's U².

    ``P(U² > x) = 2 Σ_{k≥1} (-1)^(k-1) exp(-2 k² π² x)`` (Watson 1961); for
    small x the equivalent theta-function form
    ``1 - sqrt(2/(π x)) Σ_{k≥0} exp(-(2k+1)²/(8x))`` converges faster.
    """
    x = float(u2_modified)
    if not math.isfinite(x):
        return math.nan
    if x <= 0:
        return 1.0
    k = np.arange(0, 60)
    if x < 0.15:
        p = 1.0 - math.sqrt(2.0 / (math.pi * x)) * float(np.exp(-((2 * k + 1) ** 2) / (8 * x)).sum())
    else:
        k = k + 1
        p = 2.0 * float(np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k * k * math.pi ** 2 * x)))
    return min(max(p, 0.0), 1.0)


def watson_u2_test(angles_deg, *, axial=False) -> tuple:
    """Watson's U² goodness-of-fit test of circular uniformity.

    ``U² = Σ (u_i - (2i-1)/(2n))² - n (ū - ½)² + 1/(12n)`` with ``u_i`` the
    sorted angles as fractions of the circle (Zar 2010, ch. 27; Mardia & Jupp
    2000, ch. 6). The p-value uses Stephens' (1970) modified statistic
    ``U²* = (U² - 0.1/n + 0.1/n²)(1 + 0.8/n)``, whose distribution is the
    asymptotic one (:func:`watson_u2_p`) to within the accuracy of the
    published tables from n = 2 on (Stephens 1970, Table 1: upper 10, 5 and
    1 % points 0.152, 0.187 and 0.267).

    Returns
    -------
    (U2, p) : floats
        The unmodified U² and the p-value; NaN with fewer than 2 angles.
    """
    a = _finite_radians(angles_deg, axial)
    n = len(a)
    if n < 2:
        return math.nan, math.nan
    u = np.sort(np.mod(a, 2.0 * math.pi)) / (2.0 * math.pi)
    i = np.arange(1, n + 1)
    u2 = float(np.sum((u - (2 * i - 1) / (2.0 * n)) ** 2) - n * (u.mean() - 0.5) ** 2
               + 1.0 / (12.0 * n))
    modified = (u2 - 0.1 / n + 0.1 / n ** 2) * (1.0 + 0.8 / n)
    return u2, watson_u2_p(modified)


def bootstrap_cis(angles_deg, *, levels=CI_LEVELS, n_resamples=1000, seed=0, axial=False) -> dict:
    """Percentile-bootstrap confidence intervals of the mean direction and of R.

    Angles are resampled with replacement ``n_resamples`` times (NumPy
    generator seeded with ``seed``); every level uses the same resamples. The
    mean-direction interval is taken on the resampled means' deviations from
    the sample mean, so it does not break at 0°/360°. With ``axial`` the
    doubled angles are resampled and the bounds halved (axes in [0, 180)).

    Returns
    -------
    dict of float to ((mean_low, mean_high), (r_low, r_high))
        Per level. Mean bounds in degrees in [0, 360) ([0, 180) for axes),
        going counter-clockwise from low to high (low > high when the interval
        contains 0°). NaN with fewer than 2 angles or no resamples.
    """
    a = _finite_radians(angles_deg, axial)
    n = len(a)
    nan2 = (math.nan, math.nan)
    if n < 2 or n_resamples < 1:
        return {float(lv): (nan2, nan2) for lv in levels}
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
    mean0 = math.atan2(s.mean(), c.mean())
    dev = np.angle(np.exp(1j * (means - mean0)))
    out = {}
    for level in levels:
        alpha = (1.0 - float(level)) / 2.0
        lo, hi = np.quantile(dev, [alpha, 1.0 - alpha])
        r_lo, r_hi = np.quantile(rs, [alpha, 1.0 - alpha])
        m_lo = float(wrap_deg(math.degrees(mean0 + lo)))
        m_hi = float(wrap_deg(math.degrees(mean0 + hi)))
        if axial:
            m_lo, m_hi = _undouble(m_lo), _undouble(m_hi)
        out[float(level)] = ((m_lo, m_hi), (float(r_lo), float(r_hi)))
    return out


def bootstrap_ci(angles_deg, *, n_resamples=1000, confidence=0.95, seed=0, axial=False) -> tuple:
    """One level of :func:`bootstrap_cis`: ``((mean_low, mean_high), (r_low, r_high))``."""
    return bootstrap_cis(angles_deg, levels=(confidence,), n_resamples=n_resamples, seed=seed,
                         axial=axial)[float(confidence)]


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
    angular_sd_deg: float = math.nan
    rao_u_deg: float = math.nan
    rao_p: float = math.nan
    watson_u2: float = math.nan
    watson_p: float = math.nan
    cis: dict = field(default_factory=dict)
    axial: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def circular_stats(angles_deg, *, reference_deg=None, n_bootstrap=1000, confidence=0.95,
                   seed=0, axial=False, n_simulations=RAO_SIMULATIONS,
                   ci_levels=CI_LEVELS) -> CircularStats:
    """Circular statistics of angles in degrees (NaN angles are ignored).

    Parameters
    ----------
    angles_deg : array_like
        Angles in degrees.
    reference_deg : float, optional
        Direction (axis, with ``axial``) for the V-test.
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals (0: none).
    confidence : float
        Level of ``mean_ci_deg`` and ``resultant_length_ci``.
    seed : int
        Seed of the bootstrap and of Rao's test.
    axial : bool
        Treat the angles as axes (see the module docstring).
    n_simulations : int
        Monte Carlo draws for Rao's p-value (0: no p-value).
    ci_levels : sequence of float
        Levels of the intervals in ``cis`` (plus ``confidence``).

    Returns
    -------
    CircularStats
    """
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    mean, r = circular_mean(a, axial=axial)
    z, p = rayleigh_test(a, axial=axial)
    ref = math.nan if reference_deg is None else float(reference_deg)
    u, up = v_test(a, ref, axial=axial) if math.isfinite(ref) else (math.nan, math.nan)
    levels = sorted({float(lv) for lv in ci_levels} | {float(confidence)})
    cis = bootstrap_cis(a, levels=levels, n_resamples=n_bootstrap, seed=seed, axial=axial)
    mean_ci, r_ci = cis[float(confidence)]
    rao_u, rao_p = rao_spacing_test(a, axial=axial, n_simulations=n_simulations, seed=seed)
    w_u2, w_p = watson_u2_test(a, axial=axial)
    return CircularStats(len(a), mean, r, circular_sd_deg(r), z, p, ref, u, up, mean_ci, r_ci,
                         int(n_bootstrap) if len(a) >= 2 else 0, angular_sd_deg(r), rao_u,
                         rao_p, w_u2, w_p, cis, bool(axial))


# ----------------------------------------------------------------------------- correlation

@dataclass
class Correlation:
    """Result of :func:`circular_linear_correlation` or :func:`circular_circular_correlation`.

    Attributes
    ----------
    method : str
        ``"mardia"`` (circular-linear), ``"js"`` or ``"fisher-lee"``
        (circular-circular).
    n : int
        Pairs with both values finite.
    r : float
        The coefficient (0-1 for circular-linear; -1-1 for circular-circular).
    statistic : float
        Test statistic: ``n r²`` (χ²₂) for Mardia, the normal z for JS, r for
        Fisher-Lee (permutation test).
    p : float
        p-value of the test of no association.
    """

    method: str
    n: int
    r: float
    statistic: float
    p: float


def _pairs(angles_deg, other, axial):
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    b = np.asarray(other, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise InputError(f"{len(a)} angles but {len(b)} covariate values")
    ok = np.isfinite(a) & np.isfinite(b)
    a = np.radians(a[ok])
    return (2.0 * a if axial else a), b[ok]


def circular_linear_correlation(angles_deg, x, *, axial=False) -> Correlation:
    """Mardia's circular-linear correlation of angles with a linear variable.

    ``r² = (r_xc² + r_xs² - 2 r_xc r_xs r_cs) / (1 - r_cs²)`` with the
    Pearson correlations of x, cos θ and sin θ; under independence ``n r²`` is
    approximately χ² with 2 degrees of freedom (Mardia & Jupp 2000, ch. 11;
    Zar 2010, ch. 27). Pairs with a NaN are left out.
    """
    a, x = _pairs(angles_deg, x, axial)
    n = len(a)
    if n < 4 or np.ptp(x) == 0:
        return Correlation("mardia", n, math.nan, math.nan, math.nan)
    c, s = np.cos(a), np.sin(a)
    if np.ptp(c) == 0 or np.ptp(s) == 0:
        return Correlation("mardia", n, math.nan, math.nan, math.nan)
    rxc, rxs, rcs = (float(np.corrcoef(u, v)[0, 1]) for u, v in ((x, c), (x, s), (c, s)))
    if 1.0 - rcs * rcs < 1e-12:
        return Correlation("mardia", n, math.nan, math.nan, math.nan)
    r2 = (rxc * rxc + rxs * rxs - 2.0 * rxc * rxs * rcs) / (1.0 - rcs * rcs)
    r2 = min(max(r2, 0.0), 1.0)
    stat = n * r2
    return Correlation("mardia", n, math.sqrt(r2), stat, float(stats.chi2.sf(stat, 2)))


def _fisher_lee(a, b) -> np.ndarray:
    """Fisher-Lee ρ_T for rows of b (closed form of the pairwise sum, Fisher 1993, ch. 6)."""
    n = a.shape[-1]
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    big_a = (cb * ca).sum(-1)
    big_b = (sb * sa).sum(-1)
    big_c = (sb * ca).sum(-1)
    big_d = (cb * sa).sum(-1)
    e, f = np.cos(2 * a).sum(-1), np.sin(2 * a).sum(-1)
    g, h = np.cos(2 * b).sum(-1), np.sin(2 * b).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 4.0 * (big_a * big_b - big_c * big_d) / np.sqrt(
            (n * n - e * e - f * f) * (n * n - g * g - h * h))


def circular_circular_correlation(angles_deg, other_deg, *, method="js", axial=False,
                                  n_permutations=9999, seed=0) -> Correlation:
    """Correlation of two angles measured on the same cells.

    Parameters
    ----------
    angles_deg, other_deg : array_like
        Paired angles in degrees (pairs with a NaN are left out).
    method : {"js", "fisher-lee"}
        ``"js"``: Jammalamadaka & SenGupta's
        ``r = Σ sin(α-ᾱ) sin(β-β̄) / sqrt(Σ sin²(α-ᾱ) Σ sin²(β-β̄))``, with the
        asymptotic normal test ``z = r sqrt(n λ20 λ02 / λ22)``,
        ``λij = mean(sin^i(α-ᾱ) sin^j(β-β̄))`` (Jammalamadaka & SenGupta 2001,
        ch. 8; two-sided p). ``"fisher-lee"``: Fisher & Lee's ρ_T (Fisher
        1993, ch. 6; Zar 2010, ch. 27) with a permutation test of the
        pairing (``n_permutations`` relabellings, seeded; two-sided).
    axial : bool
        The first angles are axes (doubled); the second stay directions.
    """
    a, b = _pairs(angles_deg, other_deg, axial)
    b = np.radians(b)
    n = len(a)
    if method not in CIRCULAR_METHODS:
        raise InputError(f"unknown circular correlation {method!r}; choose js or fisher-lee")
    if n < 3:
        return Correlation(method, n, math.nan, math.nan, math.nan)
    if method == "js":
        da = np.sin(a - math.atan2(np.sin(a).sum(), np.cos(a).sum()))
        db = np.sin(b - math.atan2(np.sin(b).sum(), np.cos(b).sum()))
        den = math.sqrt(float(np.sum(da * da) * np.sum(db * db)))
        l22 = float(np.mean(da * da * db * db))
        if den == 0 or l22 == 0:
            return Correlation(method, n, math.nan, math.nan, math.nan)
        r = float(np.sum(da * db)) / den
        z = r * math.sqrt(n * float(np.mean(da * da)) * float(np.mean(db * db)) / l22)
        return Correlation(method, n, r, z, float(2.0 * stats.norm.sf(abs(z))))
    r = float(_fisher_lee(a, b))
    if not math.isfinite(r) or n_permutations < 1:
        return Correlation(method, n, r, r, math.nan)
    rng = np.random.default_rng(seed)
    count = 0
    chunk = max(1, _PAIR_CHUNK // n)
    for start in range(0, int(n_permutations), chunk):
        m = min(chunk, int(n_permutations) - start)
        perm = rng.permuted(np.broadcast_to(b, (m, n)), axis=1)
        count += int(np.sum(np.abs(_fisher_lee(a, perm)) >= abs(r) - 1e-12))
    return Correlation(method, n, r, r, (1 + count) / (int(n_permutations) + 1))


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

def _ci_columns(prefix, suffix="") -> list:
    return [f"{prefix}_ci{int(round(lv * 100))}_{end}{suffix}" for lv in CI_LEVELS
            for end in ("low", "high")]


SUMMARY_STAT_COLUMNS = [
    "n", "plane", "mode", "mean_azimuth_deg", "mean_azimuth_to_reference_deg", "mean_ci_low_deg",
    "mean_ci_high_deg", *_ci_columns("mean", "_deg"), "resultant_length",
    "resultant_length_ci_low", "resultant_length_ci_high", *_ci_columns("resultant_length"),
    "circular_sd_deg", "angular_sd_deg", "rayleigh_z", "rayleigh_p", "vtest_u", "vtest_p",
    "rao_u_deg", "rao_p", "watson_u2", "watson_p", "mean_dir_x", "mean_dir_y", "mean_dir_z",
    "resultant_length_3d", "rayleigh3d_stat", "rayleigh3d_p", "mean_angle_to_reference_deg",
    "mean_length_um", "covariate", "correlation_method", "correlation_n", "correlation_r",
    "correlation_stat", "correlation_p",
]
"""Columns of :func:`summarise`, in order (the analysis adds name, reference...).

``mean_azimuth_deg`` is always the absolute mean angle in the plane (as in the
image); ``mean_azimuth_to_reference_deg`` the mean of the angles relative to
the reference (0 = the reference), empty without one. ``mean_ci_*`` bracket
``mean_azimuth_deg`` at the analysis' confidence level (95 % by default),
``mean_ci50_*``, ``mean_ci90_*`` and ``mean_ci95_*`` at 50, 90 and 95 %.
"""


def summarise(data: PolarityData, *, plane="xy", n_bootstrap=1000, confidence=0.95,
              seed=0, axial=False, n_simulations=RAO_SIMULATIONS, covariate_kind=None,
              covariate_name=None, circular_method="js") -> dict:
    """One summary row for an image or a pool of images.

    Parameters
    ----------
    data : PolarityData
        From :func:`polarity_data` (or pooled with :meth:`PolarityData.concat`).
    plane : {"xy", "yz", "xz"}
        Plane of the circular statistics.
    n_bootstrap, confidence, seed
        Bootstrap settings, see :func:`bootstrap_cis` (``seed`` also seeds
        Rao's test).
    axial : bool
        Axial statistics (see the module docstring); the 3D columns stay empty.
    n_simulations : int
        Monte Carlo draws of Rao's p-value (0: statistic only).
    covariate_kind : {"linear", "circular"}, optional
        Correlate the angles with ``data.covariate`` (Mardia's
        circular-linear, or the circular-circular ``circular_method``).
    covariate_name : str, optional
        The covariate's name for the ``covariate`` column.

    Returns
    -------
    dict
        Keys :data:`SUMMARY_STAT_COLUMNS`. The dispersion measures and the
        tests use the angles relative to the reference (for a pool with one
        reference per image, each image's own); ``mean_azimuth_deg`` and its
        intervals are absolute. Values that do not apply are None (V-test
        without reference, 3D columns for 2D or axial data, ...).
    """
    if plane not in PLANES:
        raise InputError(f"unknown plane {plane!r}; choose xy, yz or xz")
    if data.ndim == 2 and plane != "xy":
        raise InputError(f"2D vectors have no {plane} plane; use --plane xy")
    if covariate_kind is not None and covariate_kind not in COVARIATE_KINDS:
        raise InputError(f"unknown covariate kind {covariate_kind!r}; choose linear or circular")
    ref_here = data.reference_planes.get(plane, False)
    rel = data.angles[plane]
    cs = circular_stats(rel, reference_deg=0.0 if ref_here else None, n_bootstrap=n_bootstrap,
                        confidence=confidence, seed=seed, axial=axial,
                        n_simulations=n_simulations)
    absolute = data.absolute_angles(plane)
    if data.absolute is None:
        mean_abs, mean_cis = cs.mean_deg, cs.cis
    else:  # same seed and NaN pattern: the same resamples as the relative angles
        mean_abs = circular_mean(absolute, axial=axial)[0]
        mean_cis = bootstrap_cis(absolute, levels=sorted(cs.cis), n_resamples=n_bootstrap,
                                 seed=seed, axial=axial)
    row = {k: None for k in SUMMARY_STAT_COLUMNS}
    row.update(n=len(data), plane=plane, mode="axial" if axial else "directional",
               mean_azimuth_deg=mean_abs,
               mean_ci_low_deg=mean_cis[float(confidence)][0][0],
               mean_ci_high_deg=mean_cis[float(confidence)][0][1],
               resultant_length=cs.resultant_length,
               resultant_length_ci_low=cs.resultant_length_ci[0],
               resultant_length_ci_high=cs.resultant_length_ci[1],
               circular_sd_deg=cs.circular_sd_deg, angular_sd_deg=cs.angular_sd_deg,
               rayleigh_z=cs.rayleigh_z, rayleigh_p=cs.rayleigh_p, rao_u_deg=cs.rao_u_deg,
               rao_p=cs.rao_p, watson_u2=cs.watson_u2, watson_p=cs.watson_p)
    for lv in CI_LEVELS:
        pct = int(round(lv * 100))
        (m_lo, m_hi), _ = mean_cis[float(lv)]
        _, (r_lo, r_hi) = cs.cis[float(lv)]
        row.update({f"mean_ci{pct}_low_deg": m_lo, f"mean_ci{pct}_high_deg": m_hi,
                    f"resultant_length_ci{pct}_low": r_lo,
                    f"resultant_length_ci{pct}_high": r_hi})
    if ref_here:
        row.update(mean_azimuth_to_reference_deg=cs.mean_deg, vtest_u=cs.vtest_u,
                   vtest_p=cs.vtest_p)
    lengths = data.lengths
    if len(lengths):
        row["mean_length_um"] = float(lengths.mean())
    if data.ndim == 3 and not axial:
        ss = spherical_stats(data.vectors)
        mx, my, mz = (float(c) for c in ss.mean_direction)
        row.update(mean_dir_x=mx, mean_dir_y=my, mean_dir_z=mz,
                   resultant_length_3d=ss.resultant_length,
                   rayleigh3d_stat=ss.rayleigh_stat, rayleigh3d_p=ss.rayleigh_p)
    if data.angle_to_reference is not None:
        finite = data.angle_to_reference[np.isfinite(data.angle_to_reference)]
        if axial:  # the angle between two axes is at most 90°
            finite = np.minimum(finite, 180.0 - finite)
        if len(finite):
            row["mean_angle_to_reference_deg"] = float(finite.mean())
    if covariate_kind is not None and data.covariate is not None:
        if covariate_kind == "linear":
            cor = circular_linear_correlation(rel, data.covariate, axial=axial)
        else:
            cor = circular_circular_correlation(rel, data.covariate, method=circular_method,
                                                axial=axial, seed=seed)
        row.update(covariate=covariate_name, correlation_method=cor.method,
                   correlation_n=cor.n, correlation_r=cor.r, correlation_stat=cor.statistic,
                   correlation_p=cor.p)
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
                    seed=0, axial=False) -> dict:
    """Two-sample tests of equal mean direction between two pools.

    The tests use the angles of the statistics (relative to the reference
    when there is one). With ``axial`` they run on the doubled angles (Zar
    2010, ch. 27), the means are axes and the 3D test is left out.

    Returns
    -------
    dict
        ``n_a, n_b, mean_a_deg, mean_b_deg, mean_difference_deg`` (b - a, in
        (-180, 180]; axes: (-90, 90]), ``ww_F, ww_df1, ww_df2, ww_p, ww_kappa,
        ww_assumptions_met, ww_note`` (Watson–Williams in ``plane``),
        ``perm_stat, perm_p, perm_permutations`` (permutation test in
        ``plane``) and, for 3D data, ``perm3d_stat, perm3d_p`` (the same test
        on the 3D directions). Values that do not apply are None.
    """
    aa, ab = a.angles[plane], b.angles[plane]
    ma, _ = circular_mean(aa, axial=axial)
    mb, _ = circular_mean(ab, axial=axial)
    both = math.isfinite(ma) and math.isfinite(mb)
    diff = None
    if both:
        diff = (float(wrap_deg(2.0 * (mb - ma), signed=True)) / 2.0 if axial
                else float(wrap_deg(mb - ma, signed=True)))
    fa, fb = (2.0 * np.asarray(aa), 2.0 * np.asarray(ab)) if axial else (aa, ab)
    ww = watson_williams(fa, fb)
    t, p = permutation_test(fa, fb, n_permutations=n_permutations, seed=seed)
    row = {"plane": plane, "n_a": int(np.isfinite(aa).sum()), "n_b": int(np.isfinite(ab).sum()),
           "mean_a_deg": ma, "mean_b_deg": mb, "mean_difference_deg": diff,
           "ww_F": ww.F, "ww_df1": ww.df1, "ww_df2": ww.df2, "ww_p": ww.p, "ww_kappa": ww.kappa,
           "ww_assumptions_met": ww.assumptions_met, "ww_note": ww.note,
           "perm_stat": t, "perm_p": p, "perm_permutations": int(n_permutations),
           "perm3d_stat": None, "perm3d_p": None}
    if a.ndim == 3 and b.ndim == 3 and not axial:
        t3, p3 = permutation_test(a.vectors, b.vectors, n_permutations=n_permutations, seed=seed)
        row.update(perm3d_stat=t3, perm3d_p=p3)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
