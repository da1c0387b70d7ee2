"""Synthetic images with known ground truth ("phantoms").

3D (default): two-channel nucleus / Golgi fluorescence stacks at the scale of
the 3DCellPol retina data (voxel 0.270 x 0.666 x 0.666 µm, z, y, x). Nuclei are
elongated, randomly oriented, textured ellipsoids; each Golgi is a cluster of
small blobs hugging its nucleus on the side of the cell's polarity direction.
Cells are crowded and may touch, some lie across the image borders, some are
dim; a share of the cells is placed right beyond a neighbour's Golgi, so that
this Golgi lies closer to the new nucleus than to its own (the case where
pairing by distance fails). The images carry an anisotropic blur, a smooth
background with vessel-like tubes, bright dirt in the Golgi channel, shot
noise (a Gaussian approximation of Poisson noise) and Gaussian read noise.

2D (``ndim=2``): cytoplasm / nucleus images in the spirit of cervical cytology
(sizes in pixels): every cell is an irregular ellipse (the cytoplasm, whose
mask covers the whole cell) holding an off-centre nucleus. By default the image
has two fluorescence-like channels (cytoplasm, nucleus); ``rgb=True`` composes
a bright-field-like RGB image instead (light background, pink cytoplasm, dark
purple nuclei), where both structures darken all three channels: the nucleus
most in red and green, the cytoplasm mostly in green.

Ground truth is exact by construction: the instance masks are rendered first,
the image is rendered from them, and every vector joins the centroids of the two
masks of one cell (``scipy.ndimage.center_of_mass`` of the label). Label k of
the start mask and label k of the end mask belong to the same cell. A cell cut
by the border may have only one of its two structures in the image: it keeps
its label in that mask but has no vector. Distractors (dirt, vessels) are in
neither the masks nor the vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from ..defaults import PAIR_DISTANCE_2D_PX, PAIR_DISTANCE_UM
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..io.vectors import VectorTable, write_vectors

PAPER_VOXEL_SIZE = (0.270, 0.666, 0.666)
DEFAULT_SHAPE_3D = (64, 256, 256)
DEFAULT_SHAPE_2D = (512, 512)
STRUCTURES_3D = ("nucleus", "golgi")
STRUCTURES_2D = ("cytoplasm", "nucleus")
RGB_CHANNELS = ("red", "green", "blue")

#: Longest allowed start-end centroid distance: µm in 3D, pixels in 2D.
MAX_PAIR_DISTANCE_3D = PAIR_DISTANCE_UM
MAX_PAIR_DISTANCE_2D = PAIR_DISTANCE_2D_PX

# Object sizes (mean, SD, clip low, clip high) from docs/method.md §1; µm in 3D, px in 2D.
_NUC_MAJOR = (15.86, 6.55, 8.0, 24.0)
_NUC_MINOR = (8.50, 3.46, 5.0, 14.0)
_GOLGI_MAJOR = (7.91, 3.58, 3.5, 14.0)
_GOLGI_MINOR = (4.85, 1.49, 2.5, 8.0)
_CYTO_MAJOR = (95.87, 36.36, 40.0, 190.0)
_CYTO_MINOR = (64.83, 27.29, 30.0, 150.0)
_NUC2_MAJOR = (16.87, 6.60, 8.0, 34.0)
_NUC2_MINOR = (12.69, 5.22, 6.0, 26.0)

# Cells tried per unit of image area at density 1 (µm² in 3D, px² in 2D).
_AREA_PER_CELL_3D = 230.0
_AREA_PER_CELL_2D = 7000.0


@dataclass
class Phantom:
    """A synthetic image and its ground truth.

    Attributes
    ----------
    image : ndarray
        (C, Z, Y, X) uint16 in 3D; (C, Y, X) uint16 in 2D, or (3, Y, X) uint8
        when made with ``rgb=True``.
    vectors : VectorTable
        One vector per cell whose two structures are both in the image, from
        the start-mask centroid to the end-mask centroid, in (z, y, x) voxels.
        ``extra["cell_id"]`` is the cell's label in ``masks``, ``extra["dim"]``
        is 1 for dim cells.
    masks : ndarray of int32
        (2, Z, Y, X) or (2, Y, X) instance labels, start structure first;
        0 is background and label k is cell k in both channels.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel (2D: pixels, z = 1.0).
    channel_names : tuple of str
        One name per image channel.
    structures : tuple of str
        (start, end) structure names.
    info : dict
        Counts and settings of the generation (cells placed, pairs, ...).
    """

    image: np.ndarray
    vectors: VectorTable
    masks: np.ndarray
    voxel_size: tuple
    channel_names: tuple
    structures: tuple
    info: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return self.masks.ndim - 1

    def closer_to_neighbour(self) -> np.ndarray:
        """Per vector: is its end closer to another cell's start than to its own?

        Distances are in µm (pixels in 2D) between mask centroids; every start
        object in the image counts, paired or not.

        Returns
        -------
        ndarray of bool, shape (N,)
        """
        return closer_to_neighbour(self.vectors, self.masks[0], self.voxel_size)


def closer_to_neighbour(vectors: VectorTable, start_mask, voxel_size) -> np.ndarray:
    """Which vectors' ends lie closer to another start object than to their own start.

    Parameters
    ----------
    vectors : VectorTable
        Ground truth with ``extra["cell_id"]`` naming each vector's label.
    start_mask : ndarray of int
        Instance labels of the start structure.
    voxel_size : tuple of 3 floats
        (z, y, x) µm.

    Returns
    -------
    ndarray of bool, shape (N,)
    """
    if len(vectors) == 0:
        return np.zeros(0, dtype=bool)
    labels, cents = _label_centroids(np.asarray(start_mask))
    vs = np.asarray(voxel_size, float)
    own_ids = np.asarray(vectors.extra["cell_id"]).astype(int)
    end = vectors.end[:, 3 - start_mask.ndim:] * vs[3 - start_mask.ndim:]
    cents_um = cents * vs[3 - start_mask.ndim:]
    d_own = np.linalg.norm((vectors.end - vectors.start) * vs, axis=1)
    out = np.zeros(len(vectors), dtype=bool)
    for i, (e, k) in enumerate(zip(end, own_ids)):
        others = labels != k
        if others.any():
            out[i] = np.linalg.norm(cents_um[others] - e, axis=1).min() < d_own[i]
    return out


# ----------------------------------------------------------------------------- geometry

@dataclass
class _Ellipsoid:
    """An ellipse/ellipsoid in µm (or px), with an optional wavy surface.

    ``axes`` rows are its unit axes in world (z, y, x) / (y, x) coordinates;
    the surface lies at radius ``m(u)`` in axis-scaled coordinates, where
    ``m(u) = 1 + sum amp_k cos(freq_k . u + phase_k)`` and ``u`` is the unit
    direction in those coordinates.
    """

    center: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    freq: Optional[np.ndarray] = None
    amp: Optional[np.ndarray] = None
    phase: Optional[np.ndarray] = None

    def _mod(self, unit):
        if self.amp is None:
            return 1.0
        m = 1.0
        for f, a, p in zip(self.freq, self.amp, self.phase):
            arg = p
            for j in range(len(unit)):
                arg = arg + f[j] * unit[j]
            m = m + a * np.cos(arg)
        return m

    def max_scale(self) -> float:
        return 1.0 + (float(np.abs(self.amp).sum()) if self.amp is not None else 0.0)

    def half_extent(self) -> np.ndarray:
        """Half size of the axis-aligned bounding box, per world axis."""
        s = self.semi * self.max_scale()
        return np.sqrt(((self.axes * s[:, None]) ** 2).sum(axis=0))

    def radius(self, direction) -> float:
        """Distance from the centre to the surface along a world direction."""
        d = np.asarray(direction, float)
        s = (self.axes @ d) / self.semi
        rho = float(np.linalg.norm(s))
        return float(self._mod(s / rho)) / rho

    def scaled(self, factor: float) -> "_Ellipsoid":
        return _Ellipsoid(self.center, self.axes, self.semi * factor, self.freq, self.amp,
                          self.phase)

    def rasterize(self, origin, spacing, shape, *, shrink=0.0):
        """Voxels inside, within the bounding box only.

        Parameters
        ----------
        origin, spacing : array-like
            World position of voxel 0 and the voxel size, per axis.
        shape : tuple of int
            Grid shape.
        shrink : float
            Subtracted from the semi-axes (touching tolerance).

        Returns
        -------
        (slices, inside, rel) or None
            ``inside`` is a bool array over the box; ``rel`` is the relative
            radius (0 at the centre, 1 on the surface). None when the box
            misses the grid.
        """
        origin = np.asarray(origin, float)
        spacing = np.asarray(spacing, float)
        ext = self.half_extent()
        lo = np.floor((self.center - ext - origin) / spacing).astype(int)
        hi = np.ceil((self.center + ext - origin) / spacing).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(shape))
        if np.any(hi <= lo):
            return None
        nd = len(shape)
        coords = []
        for i in range(nd):
            c = (origin[i] + spacing[i] * np.arange(lo[i], hi[i]) - self.center[i]).astype(np.float32)
            coords.append(c.reshape([-1 if j == i else 1 for j in range(nd)]))
        semi = np.maximum(self.semi - shrink, 1e-3)
        scaled = []
        for j in range(nd):
            acc = np.zeros([1] * nd, np.float32)
            for i in range(nd):
                if self.axes[j, i] != 0.0:
                    acc = acc + np.float32(self.axes[j, i] / semi[j]) * coords[i]
            scaled.append(acc)
        rho = np.broadcast_to(np.sqrt(sum(s * s for s in scaled)), tuple(hi - lo))
        if self.amp is not None:
            safe = np.maximum(rho, 1e-6)
            m = self._mod([s / safe for s in scaled])
        else:
            m = 1.0
        rel = rho / m
        inside = rel <= 1.0
        slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        return slices, inside, rel


def _direction(azimuth, elevation=0.0, ndim=3) -> np.ndarray:
    """Unit vector for an azimuth (0 = +x, 90 = -y, radians) and an elevation toward +z."""
    if ndim == 2:
        return np.array([-math.sin(azimuth), math.cos(azimuth)])
    return np.array([math.sin(elevation), -math.cos(elevation) * math.sin(azimuth),
                     math.cos(elevation) * math.cos(azimuth)])


def _clipped_normal(rng, spec, hi=None) -> float:
    mean, sd, lo, top = spec
    top = top if hi is None else min(top, hi)
    return float(np.clip(rng.normal(mean, sd), lo, max(lo, top)))


def _wavy(rng, ndim, n, amplitude):
    """Random surface waviness parameters for :class:`_Ellipsoid`."""
    freq = rng.normal(size=(n, ndim))
    freq *= (rng.uniform(1.5, 3.5, n) / np.linalg.norm(freq, axis=1))[:, None]
    return freq, rng.uniform(0.0, amplitude, n), rng.uniform(0, 2 * math.pi, n)


def _axes_3d(azimuth, tilt, roll) -> np.ndarray:
    """Rows: major axis (mostly in xy), second axis, thickness axis (mostly z)."""
    u1 = _direction(azimuth, tilt)
    w = _direction(azimuth + math.pi / 2, 0.0)
    w = w - (w @ u1) * u1
    w /= np.linalg.norm(w)
    z = np.cross(u1, w)
    u2 = math.cos(roll) * w + math.sin(roll) * z
    u3 = -math.sin(roll) * w + math.cos(roll) * z
    return np.stack([u1, u2, u3])


def _axes_2d(angle) -> np.ndarray:
    u1 = np.array([-math.sin(angle), math.cos(angle)])
    return np.stack([u1, np.array([math.cos(angle), math.sin(angle)])])


def _random_rotation(rng, ndim) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    return q * np.sign(np.diag(r))


def _draw_azimuth(rng, mean_direction, concentration) -> float:
    if mean_direction is None or concentration <= 0:
        return float(rng.uniform(0, 2 * math.pi))
    return float(rng.vonmises(math.radians(mean_direction), concentration))


class _Occupancy:
    """A coarse label grid used to reject overlapping placements."""

    def __init__(self, origin, spacing, extent):
        self.origin = np.asarray(origin, float)
        self.spacing = np.asarray(spacing, float)
        shape = tuple(int(math.ceil(e / s)) + 1 for e, s in zip(extent, spacing))
        self.shape = shape
        self.labels = np.zeros(shape, np.int32)

    def hits(self, ell: _Ellipsoid, shrink) -> bool:
        r = ell.rasterize(self.origin, self.spacing, self.shape, shrink=shrink)
        if r is None:
            return False
        sl, inside, _ = r
        return bool(np.any(self.labels[sl][inside]))

    def mark(self, ell: _Ellipsoid, label, shrink):
        r = ell.rasterize(self.origin, self.spacing, self.shape, shrink=shrink)
        if r is not None:
            sl, inside, _ = r
            sub = self.labels[sl]
            sub[inside & (sub == 0)] = label


@dataclass
class _Cell:
    start: _Ellipsoid
    end: list  # of _Ellipsoid
    direction: np.ndarray
    start_brightness: float
    end_brightness: float
    dim: bool

    @property
    def end_center(self) -> np.ndarray:
        return np.mean([b.center for b in self.end], axis=0)


# ----------------------------------------------------------------------------- 3D cells

def _nucleus_3d(rng, center, azimuth) -> _Ellipsoid:
    major = _clipped_normal(rng, _NUC_MAJOR)
    minor = _clipped_normal(rng, _NUC_MINOR, hi=0.9 * major)
    # Retinal endothelial nuclei are flat: the third axis is the thinnest.
    thick = float(np.clip(minor * rng.uniform(0.5, 0.85), 3.5, min(minor, 9.0)))
    axes = _axes_3d(azimuth, math.radians(rng.normal(0, 8)), math.radians(rng.normal(0, 15)))
    freq, amp, phase = _wavy(rng, 3, 3, 0.05)
    return _Ellipsoid(np.asarray(center, float), axes, np.array([major, minor, thick]) / 2,
                      freq, amp, phase)


def _golgi_blobs(rng, nucleus: _Ellipsoid, direction) -> list:
    """Small blobs on the nucleus surface around ``direction``: a polar cap."""
    gmaj = _clipped_normal(rng, _GOLGI_MAJOR)
    gmin = _clipped_normal(rng, _GOLGI_MINOR, hi=gmaj)
    n = int(np.clip(round(gmaj * gmin / 7.0) + rng.integers(0, 3), 3, 10))
    d = np.asarray(direction, float)
    e1 = np.cross(d, [1.0, 0.0, 0.0])  # horizontal tangent
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.array([0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    r_d = nucleus.radius(d)
    blobs = []
    for _ in range(n):
        br = rng.uniform(0.8, 1.7)
        t1 = rng.uniform(-1, 1) * max(gmaj / 2 - br, 0.3)
        t2 = rng.uniform(-1, 1) * max(gmin / 2 - br, 0.3)
        di = d * r_d + t1 * e1 + t2 * e2
        di /= np.linalg.norm(di)
        dist = nucleus.radius(di) + br * rng.uniform(0.5, 1.0)
        semi = br * rng.uniform(0.7, 1.3, 3)
        blobs.append(_Ellipsoid(nucleus.center + di * dist, _random_rotation(rng, 3), semi))
    return blobs


def _sample_cells_3d(rng, shape, voxel_size, *, density, mean_direction, concentration,
                     dim_fraction, neighbour_fraction) -> list:
    extent = np.asarray(shape, float) * np.asarray(voxel_size, float)
    pad_xy, pad_z = 6.0, 5.0
    occ_origin = (-pad_z, -pad_xy - 4, -pad_xy - 4)
    occ_extent = (extent[0] + 2 * pad_z, extent[1] + 2 * pad_xy + 8, extent[2] + 2 * pad_xy + 8)
    occ_nuc = _Occupancy(occ_origin, (0.5, 1.0, 1.0), occ_extent)
    occ_golgi = _Occupancy(occ_origin, (0.5, 1.0, 1.0), occ_extent)
    area = (extent[1] + 2 * pad_xy) * (extent[2] + 2 * pad_xy)
    n_target = int(round(density * area / _AREA_PER_CELL_3D))
    z_lo, z_hi = 0.2 * extent[0], 0.8 * extent[0]
    cells = []
    attempts, max_attempts = 0, 40 * n_target + 20
    limit = MAX_PAIR_DISTANCE_3D - 2.5  # room for blob size and border clipping
    while len(cells) < n_target and attempts < max_attempts:
        attempts += 1
        if cells and rng.random() < neighbour_fraction:
            # Put a nucleus right beyond a neighbour's Golgi, its short side facing it.
            other = cells[rng.integers(len(cells))]
            g = other.end_center
            u = other.direction.copy()
            u[0] = 0.0
            az = math.atan2(-u[1], u[2]) + math.radians(rng.normal(0, 20))
            u = _direction(az, 0.0)
            nuc = _nucleus_3d(rng, g, az + math.pi / 2 + math.radians(rng.normal(0, 15)))
            reach = max(float((b.center - g) @ u) + float(b.semi.max()) for b in other.end)
            center = g + u * (nuc.radius(-u) + max(reach, 0.0) + 0.6)
            center[0] = float(np.clip(g[0] + rng.normal(0, 1.0), z_lo, z_hi))
            nuc.center = center
        else:
            center = np.array([rng.uniform(z_lo, z_hi), rng.uniform(-pad_xy, extent[1] + pad_xy),
                               rng.uniform(-pad_xy, extent[2] + pad_xy)])
            nuc = _nucleus_3d(rng, center, rng.uniform(0, 2 * math.pi))
        azimuth = _draw_azimuth(rng, mean_direction, concentration)
        elevation = math.radians(float(np.clip(rng.normal(0, 10), -25, 25)))
        d = _direction(azimuth, elevation)
        r_d = nuc.radius(d)
        if r_d > limit:  # keep the Golgi within reach of the nucleus centroid
            nuc = nuc.scaled(limit / r_d)
        if occ_nuc.hits(nuc, 0.5) or occ_golgi.hits(nuc, 0.5):
            continue
        blobs = _golgi_blobs(rng, nuc, d)
        if any(occ_nuc.hits(b, 0.2) or occ_golgi.hits(b, 0.2) for b in blobs):
            continue
        label = len(cells) + 1
        occ_nuc.mark(nuc, label, 0.5)
        for b in blobs:
            occ_golgi.mark(b, label, 0.2)
        dim = bool(rng.random() < dim_fraction)
        bn = float(rng.lognormal(math.log(1500), 0.2))
        bg = float(rng.lognormal(math.log(2600), 0.25))
        if dim:
            bn *= rng.uniform(0.15, 0.35)
            bg *= rng.uniform(0.15, 0.35)
        cells.append(_Cell(nuc, blobs, d, bn, bg, dim))
    return cells


# ----------------------------------------------------------------------------- 2D cells

def _sample_cells_2d(rng, shape, *, density, mean_direction, concentration, dim_fraction) -> list:
    extent = np.asarray(shape, float)
    pad = 30.0
    occ = _Occupancy((-pad - 100, -pad - 100), (2.0, 2.0), extent + 2 * pad + 200)
    n_target = int(round(density * (extent[0] + 2 * pad) * (extent[1] + 2 * pad)
                         / _AREA_PER_CELL_2D))
    cells = []
    attempts, max_attempts = 0, 40 * n_target + 20
    while len(cells) < n_target and attempts < max_attempts:
        attempts += 1
        center = np.array([rng.uniform(-pad, extent[0] + pad), rng.uniform(-pad, extent[1] + pad)])
        cmaj = _clipped_normal(rng, _CYTO_MAJOR)
        cmin = _clipped_normal(rng, _CYTO_MINOR, hi=0.95 * cmaj)
        freq, amp, phase = _wavy(rng, 2, 5, 0.08)
        cyto = _Ellipsoid(center, _axes_2d(rng.uniform(0, math.pi)), np.array([cmaj, cmin]) / 2,
                          freq, amp, phase)
        if occ.hits(cyto, 1.5):
            continue
        nmaj = _clipped_normal(rng, _NUC2_MAJOR)
        nmin = _clipped_normal(rng, _NUC2_MINOR, hi=0.95 * nmaj)
        freq, amp, phase = _wavy(rng, 2, 2, 0.04)
        nuc = _Ellipsoid(center, _axes_2d(rng.uniform(0, math.pi)), np.array([nmaj, nmin]) / 2,
                         freq, amp, phase)
        d = _direction(_draw_azimuth(rng, mean_direction, concentration), ndim=2)
        room = min(cyto.radius(d) - nuc.radius(-d) * nuc.max_scale() - 3.0,
                   MAX_PAIR_DISTANCE_2D - 6.0)
        if room < 4.0:
            continue
        nuc.center = center + d * rng.uniform(max(0.3 * room, 3.0), room)
        dim = bool(rng.random() < dim_fraction)
        bc = float(rng.lognormal(math.log(900), 0.2))
        bn = float(rng.lognormal(math.log(2200), 0.2))
        if dim:
            bc *= rng.uniform(0.25, 0.45)
            bn *= rng.uniform(0.25, 0.45)
        occ.mark(cyto, len(cells) + 1, 1.5)
        cells.append(_Cell(cyto, [nuc], d, bc, bn, dim))
    return cells


# ----------------------------------------------------------------------------- rendering

def _render_masks(cells, shape, spacing, *, nested, end_over_own_start=False):
    """Instance masks and noiseless signals (float32) of the cells.

    ``nested``: the end object lies inside the start object (2D cells);
    otherwise the end object stays outside every start object (Golgi), or
    outside every other cell's start object with ``end_over_own_start`` (2D
    projections, where a Golgi may lie over its own nucleus' rim).
    """
    nd = len(shape)
    origin = np.zeros(nd)
    start = np.zeros(shape, np.int32)
    end = np.zeros(shape, np.int32)
    s_sig = np.zeros(shape, np.float32)
    e_sig = np.zeros(shape, np.float32)
    for k, cell in enumerate(cells, start=1):
        r = cell.start.rasterize(origin, spacing, shape)
        if r is None:
            continue
        sl, inside, rel = r
        sub = start[sl]
        new = inside & (sub == 0)
        sub[new] = k
        # Brighter core, dimmer rim.
        s_sig[sl][new] = cell.start_brightness * (1.0 - 0.35 * rel[new] ** 2)
    for k, cell in enumerate(cells, start=1):
        for blob in cell.end:
            r = blob.rasterize(origin, spacing, shape)
            if r is None:
                continue
            sl, inside, rel = r
            sub = end[sl]
            host = start[sl]
            if nested:
                allowed = host == k
            else:
                allowed = (host == 0) | (host == k) if end_over_own_start else host == 0
            new = inside & allowed & ((sub == 0) | (sub == k))
            sub[new] = k
            val = cell.end_brightness * (1.0 - 0.5 * rel[new] ** 2)
            esub = e_sig[sl]
            esub[new] = np.maximum(esub[new], val)
    return start, end, s_sig, e_sig


def _label_centroids(mask):
    """Labels present in ``mask`` and their centroids (voxels), via bounding boxes."""
    labels, cents = [], []
    for i, sl in enumerate(ndimage.find_objects(mask)):
        if sl is None:
            continue
        k = i + 1
        idx = np.nonzero(mask[sl] == k)
        labels.append(k)
        cents.append([ix.mean() + s.start for ix, s in zip(idx, sl)])
    return np.asarray(labels, int), np.asarray(cents, float).reshape(-1, mask.ndim)


def _smooth_noise(rng, shape, sigma, out_shape=None):
    """Zero-mean, unit-variance smooth noise, optionally upsampled to ``out_shape``."""
    a = rng.standard_normal(tuple(int(s) for s in shape), dtype=np.float32)
    a = ndimage.gaussian_filter(a, sigma, mode="wrap")
    a -= a.mean()
    a /= a.std() + 1e-12
    if out_shape is not None:
        a = _upsample(a, out_shape)
    return a


def _upsample(a, out_shape):
    """Linear interpolation onto a finer grid covering the same extent (pixel centres)."""
    for ax, (n_in, n_out) in enumerate(zip(a.shape, out_shape)):
        if n_in == n_out:
            continue
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (x - i0).astype(np.float32).reshape([-1 if j == ax else 1 for j in range(a.ndim)])
        a = np.take(a, i0, axis=ax) * (1 - w) + np.take(a, i1, axis=ax) * w
    return a


def _coarse_shape(shape, spacing, step):
    return tuple(max(2, int(math.ceil(n * s / t))) for n, s, t in zip(shape, spacing, step))


def _vessels(rng, shape, spacing, step, corr, width):
    """Tube-like texture in [0, 1]: where two smooth random fields both cross zero."""
    cs = _coarse_shape(shape, spacing, step)
    sig = [corr / t for t in step]
    n1 = _smooth_noise(rng, cs, sig)
    n2 = _smooth_noise(rng, cs, sig) if len(shape) == 3 else 0.0
    v = np.exp(-(n1 * n1 + n2 * n2) / (2 * width * width)).astype(np.float32)
    return _upsample(v, shape)


def _add_distractors(rng, signal, shape, spacing, *, count, radius, brightness):
    origin = np.zeros(len(shape))
    extent = np.asarray(shape) * np.asarray(spacing)
    nd = len(shape)
    for _ in range(count):
        c = rng.uniform(0, 1, nd) * extent
        ell = _Ellipsoid(c, _random_rotation(rng, nd), rng.uniform(*radius) * rng.uniform(0.7, 1.3, nd))
        r = ell.rasterize(origin, spacing, shape)
        if r is None:
            continue
        sl, inside, rel = r
        sub = signal[sl]
        val = brightness * rng.uniform(0.6, 1.6) * (1.0 - 0.5 * rel[inside] ** 2)
        sub[inside] = np.maximum(sub[inside], val)


def _add_noise(rng, image, noise, read_noise):
    """Shot noise (gain ``noise**2``) plus read noise, as one Gaussian draw.

    The Gaussian approximation of Poisson noise is close at the counts used here
    (background ~100) and several times faster than drawing Poisson variates.
    """
    if noise <= 0:
        return image
    var = np.maximum(image, 0) * np.float32(noise * noise) + np.float32((read_noise * noise) ** 2)
    image += np.sqrt(var) * rng.standard_normal(image.shape, dtype=np.float32)
    return image


def _to_uint(a, dtype):
    top = np.iinfo(dtype).max
    return np.clip(np.rint(a), 0, top).astype(dtype)


def _ground_truth(masks, cells, ndim, voxel_size, max_distance, structures):
    """Vectors from the final masks; drops end objects too far from their start."""
    start, end = masks
    vs = np.asarray(voxel_size, float)[3 - ndim:]
    s_lab, s_cent = _label_centroids(start)
    e_lab, e_cent = _label_centroids(end)
    s_of = dict(zip(s_lab.tolist(), s_cent))
    pairs, dropped = [], 0
    for k, ec in zip(e_lab.tolist(), e_cent):
        if k not in s_of:
            continue
        if np.linalg.norm((ec - s_of[k]) * vs) > max_distance:
            end[end == k] = 0  # would break the pair-distance rule: not rendered
            dropped += 1
            continue
        pairs.append((k, s_of[k], ec))
    if not pairs:
        return VectorTable.empty(names=structures, ndim=ndim), dropped
    ids = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    e = np.array([p[2] for p in pairs])
    if ndim == 2:
        s = np.concatenate([np.zeros((len(s), 1)), s], axis=1)
        e = np.concatenate([np.zeros((len(e), 1)), e], axis=1)
    dim = np.array([1 if cells[k - 1].dim else 0 for k in ids])
    return VectorTable(s, e, names=structures, ndim=ndim,
                       extra={"cell_id": ids, "dim": dim}), dropped


# ----------------------------------------------------------------------------- public API

def _resolve_options(*, ndim=3, shape=None, voxel_size=None, structures=None, density=1.0,
                     concentration=0.0, dim_fraction=0.15, noise=1.0, distractors=1.0,
                     vessels=1.0, mean_direction=None, rgb=False, intensity=1.0,
                     neighbour_fraction=0.2, psf_sigma=None, seed=0, **_):
    """Check the options of :func:`generate_phantom`; return (shape, voxel_size, structures)."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed}")
    if ndim not in (2, 3):
        raise InputError(f"ndim must be 2 or 3, got {ndim}")
    shape = tuple(shape) if shape is not None else (DEFAULT_SHAPE_3D if ndim == 3 else DEFAULT_SHAPE_2D)
    if len(shape) != ndim or any(int(n) != n or n < 1 for n in shape):
        raise InputError(f"shape must be {ndim} positive integers, got {shape}")
    if voxel_size is None:
        voxel_size = PAPER_VOXEL_SIZE if ndim == 3 else (1.0, 1.0, 1.0)
    voxel_size = tuple(float(v) for v in voxel_size)
    if len(voxel_size) != 3 or any(not math.isfinite(v) or v <= 0 for v in voxel_size):
        raise InputError(f"voxel size must be 3 positive numbers (z, y, x), got {voxel_size}")
    structures = tuple(structures) if structures else (STRUCTURES_3D if ndim == 3 else STRUCTURES_2D)
    if len(structures) != 2:
        raise InputError(f"structures must be two names (start, end), got {structures}")
    for name, v in (("density", density), ("concentration", concentration), ("noise", noise),
                    ("distractors", distractors), ("vessels", vessels)):
        if not math.isfinite(v) or v < 0:
            raise InputError(f"{name} must be a number >= 0, got {v}")
    for name, v in (("dim_fraction", dim_fraction), ("neighbour_fraction", neighbour_fraction)):
        if not 0 <= v <= 1:
            raise InputError(f"{name} must be in [0, 1], got {v}")
    if mean_direction is not None and not math.isfinite(mean_direction):
        raise InputError(f"mean direction must be a finite angle in degrees, got {mean_direction}")
    if not math.isfinite(intensity) or intensity <= 0:
        raise InputError(f"intensity must be a number > 0, got {intensity}")
    if rgb and ndim != 2:
        raise InputError("rgb images are only made in 2D (ndim=2)")
    if psf_sigma is not None and (len(psf_sigma) != ndim or any(v < 0 for v in psf_sigma)):
        raise InputError(f"psf_sigma must be {ndim} numbers >= 0, got {tuple(psf_sigma)}")
    return tuple(int(n) for n in shape), voxel_size, structures


def generate_phantom(*, shape=None, voxel_size=None, seed=0, density=1.0,
                     mean_direction: Optional[float] = None, concentration=0.0, ndim=3,
                     dim_fraction=0.15, distractors=1.0, vessels=1.0, noise=1.0,
                     neighbour_fraction=0.2, psf_sigma=None, structures=None,
                     rgb=False, intensity=1.0, randomise=None) -> Phantom:
    """Generate one synthetic image with its ground-truth vectors and masks.

    Parameters
    ----------
    shape : tuple of int, optional
        Array shape (Z, Y, X), default (64, 256, 256); in 2D (Y, X), default
        (512, 512).
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm. Default: the paper's (0.270, 0.666, 0.666) in 3D,
        (1.0, 1.0, 1.0) in 2D. 2D geometry is always in pixels; the voxel
        size is only recorded.
    seed : int
        Random seed; the same seed and options give identical arrays.
    density : float
        Crowding; 1.0 is the default crowded tissue, 0 gives no cells.
    mean_direction : float, optional
        Mean polarity azimuth in degrees in the xy plane (0 = +x, 90 = up on
        screen i.e. -y, counter-clockwise). None: uniform directions.
    concentration : float
        Von Mises kappa of the azimuths around ``mean_direction`` (0 = uniform).
        3D directions also get a small random elevation (SD 10°).
    ndim : {3, 2}
        3D nucleus→Golgi or 2D cytoplasm→nucleus.
    dim_fraction : float
        Share of cells rendered at 15–35 % (2D: 25–45 %) of the usual brightness.
    distractors : float
        Amount of bright dirt in the end-structure channel (1.0 default, 0 none).
    vessels : float
        Strength of the vessel-like background texture (1.0 default, 0 none).
    noise : float
        Noise level: Poisson noise with gain ``noise**2`` plus Gaussian read
        noise; 0 gives a noiseless image.
    neighbour_fraction : float
        Share of placements (3D) that put a nucleus right beyond another cell's
        Golgi, making that Golgi closer to the wrong nucleus.
    psf_sigma : tuple of float, optional
        Gaussian blur SD per axis, µm (px in 2D). Default (0.6, 0.3, 0.3) in
        3D, (0.7, 0.7) in 2D.
    structures : (str, str), optional
        Start and end names; default ("nucleus", "golgi") in 3D and
        ("cytoplasm", "nucleus") in 2D. Used as channel names.
    rgb : bool
        2D only: return a (3, Y, X) uint8 bright-field-like RGB image.
    intensity : float
        Scale of the uint16 grey levels (signal, background and noise alike,
        like a camera gain; the signal-to-noise ratio does not change). At 1.0
        the background is about 100 and nuclei about 1500. Not used with
        ``rgb``.
    randomise : bool, str or DomainRandomisation, optional
        Draw every appearance factor from broad ranges instead
        (:func:`generate_randomised`): True for the broad randomisation of
        ``ndim`` and ``structures`` (2D: cytoplasm→nucleus unless the start
        structure is not "cytoplasm"), a family name from :data:`FAMILIES`, or
        the ranges themselves. Then only ``seed``, ``shape``, ``voxel_size``
        and ``structures`` are used.

    Returns
    -------
    Phantom

    Raises
    ------
    InputError
        On invalid options.
    """
    if randomise is not None and randomise is not False:
        if randomise is True:
            cyto = ndim == 2 and (structures is None or tuple(structures)[0] == "cytoplasm")
            randomise = DomainRandomisation(
                ndim=ndim, geometry="cytoplasm-nucleus" if cyto else "nucleus-golgi")
        return generate_randomised(seed=seed, config=randomise, shape=shape,
                                   voxel_size=voxel_size, structures=structures)
    shape, voxel_size, structures = _resolve_options(
        ndim=ndim, shape=shape, voxel_size=voxel_size, structures=structures, density=density,
        concentration=concentration, dim_fraction=dim_fraction, noise=noise,
        distractors=distractors, vessels=vessels, mean_direction=mean_direction, rgb=rgb,
        intensity=intensity, neighbour_fraction=neighbour_fraction, psf_sigma=psf_sigma,
        seed=seed)
    geom_rng, tex_rng, noise_rng = (np.random.default_rng(s)
                                    for s in np.random.SeedSequence(int(seed)).spawn(3))
    if ndim == 3:
        return _generate_3d(shape, voxel_size, geom_rng, tex_rng, noise_rng,
                            density=density, mean_direction=mean_direction,
                            concentration=concentration, dim_fraction=dim_fraction,
                            distractors=distractors, vessels=vessels, noise=noise,
                            neighbour_fraction=neighbour_fraction,
                            psf_sigma=psf_sigma or (0.6, 0.3, 0.3), structures=structures,
                            intensity=intensity)
    return _generate_2d(shape, voxel_size, geom_rng, tex_rng, noise_rng,
                        density=density, mean_direction=mean_direction,
                        concentration=concentration, dim_fraction=dim_fraction,
                        distractors=distractors, vessels=vessels, noise=noise,
                        psf_sigma=psf_sigma or (0.7, 0.7), structures=structures, rgb=rgb,
                        intensity=intensity)


def _generate_3d(shape, voxel_size, geom_rng, tex_rng, noise_rng, *, density, mean_direction,
                 concentration, dim_fraction, distractors, vessels, noise, neighbour_fraction,
                 psf_sigma, structures, intensity) -> Phantom:
    spacing = np.asarray(voxel_size, float)
    cells = _sample_cells_3d(geom_rng, shape, spacing, density=density,
                             mean_direction=mean_direction, concentration=concentration,
                             dim_fraction=dim_fraction, neighbour_fraction=neighbour_fraction)
    start, end, s_sig, e_sig = _render_masks(cells, shape, spacing, nested=False)
    vectors, dropped = _ground_truth((start, end), cells, 3, voxel_size, MAX_PAIR_DISTANCE_3D,
                                     structures)
    if dropped:
        e_sig[end == 0] = 0.0

    # Chromatin-like texture, ~1 µm grain, shared by both channels (objects never overlap).
    texture = _smooth_noise(tex_rng, _coarse_shape(shape, spacing, (0.6, 0.8, 0.8)), 1.0, shape)
    s_sig *= 1.0 + 0.3 * texture
    e_sig *= 1.0 + 0.2 * texture
    del texture
    extent_xy = shape[1] * spacing[1] * shape[2] * spacing[2]
    if distractors > 0:
        _add_distractors(tex_rng, e_sig, shape, spacing,
                         count=int(round(distractors * extent_xy / 900.0)),
                         radius=(0.35, 0.8), brightness=3000.0)
    sig_vox = np.asarray(psf_sigma, float) / spacing
    s_sig = ndimage.gaussian_filter(s_sig, sig_vox, truncate=3.0)
    e_sig = ndimage.gaussian_filter(e_sig, sig_vox, truncate=3.0)

    slow = _smooth_noise(tex_rng, _coarse_shape(shape, spacing, (2.0, 4.0, 4.0)), 5.0, shape)
    s_sig += 110.0 * (1.0 + 0.25 * slow)
    e_sig += 90.0 * (1.0 + 0.25 * slow)
    del slow
    if vessels > 0:
        v = _vessels(tex_rng, shape, spacing, (1.0, 2.0, 2.0), 9.0, 0.28)
        s_sig += (vessels * 120.0) * v
        e_sig += (vessels * 200.0) * v
        del v
    image = np.stack([_to_uint(_add_noise(noise_rng, s, noise, 6.0) * intensity, np.uint16)
                      for s in (s_sig, e_sig)])
    masks = np.stack([start, end])
    info = _info(cells, masks, vectors, dropped, density)
    return Phantom(image, vectors, masks, voxel_size, structures, structures, info)


def _generate_2d(shape, voxel_size, geom_rng, tex_rng, noise_rng, *, density, mean_direction,
                 concentration, dim_fraction, distractors, vessels, noise, psf_sigma,
                 structures, rgb, intensity) -> Phantom:
    spacing = np.ones(2)
    cells = _sample_cells_2d(geom_rng, shape, density=density, mean_direction=mean_direction,
                             concentration=concentration, dim_fraction=dim_fraction)
    start, end, s_sig, e_sig = _render_masks(cells, shape, spacing, nested=True)
    vectors, dropped = _ground_truth((start, end), cells, 2, voxel_size, MAX_PAIR_DISTANCE_2D,
                                     structures)
    if dropped:
        e_sig[end == 0] = 0.0
    # The cytoplasm looks thinner where the nucleus sits on it.
    texture = _smooth_noise(tex_rng, _coarse_shape(shape, spacing, (2.0, 2.0)), 1.5, shape)
    s_sig *= 1.0 + 0.25 * texture
    e_sig *= 1.0 + 0.15 * texture
    del texture
    if distractors > 0:
        _add_distractors(tex_rng, e_sig, shape, spacing,
                         count=int(round(distractors * shape[0] * shape[1] / 12000.0)),
                         radius=(1.0, 3.0), brightness=2000.0)
    if vessels > 0:  # faint strands of mucus in the cytoplasm channel
        s_sig += (vessels * 150.0) * _vessels(tex_rng, shape, spacing, (4.0, 4.0), 40.0, 0.12)
    s_sig = ndimage.gaussian_filter(s_sig, psf_sigma, truncate=3.0)
    e_sig = ndimage.gaussian_filter(e_sig, psf_sigma, truncate=3.0)
    masks = np.stack([start, end])
    if rgb:
        # Bright field: each stain absorbs per Beer-Lambert; background is light.
        dc = s_sig / 900.0
        dn = e_sig / 2200.0
        od_c = np.array([0.12, 0.45, 0.25], np.float32)
        od_n = np.array([1.10, 1.40, 0.55], np.float32)
        base = np.array([246.0, 242.0, 246.0], np.float32)
        image = np.empty((3,) + shape, np.float32)
        for c in range(3):
            image[c] = base[c] * np.exp(-(od_c[c] * dc + od_n[c] * dn))
        if noise > 0:
            image += noise_rng.standard_normal(image.shape, dtype=np.float32) * (2.5 * noise)
        image = _to_uint(image, np.uint8)
        names = RGB_CHANNELS
    else:
        slow = _smooth_noise(tex_rng, _coarse_shape(shape, spacing, (8.0, 8.0)), 8.0, shape)
        s_sig += 100.0 * (1.0 + 0.2 * slow)
        e_sig += 80.0 * (1.0 + 0.2 * slow)
        image = np.stack([_to_uint(_add_noise(noise_rng, s, noise, 6.0) * intensity, np.uint16)
                          for s in (s_sig, e_sig)])
        names = structures
    info = _info(cells, masks, vectors, dropped, density)
    return Phantom(image, vectors, masks, voxel_size, tuple(names), structures, info)


def _info(cells, masks, vectors, dropped, density) -> dict:
    return {
        "cells_placed": len(cells),
        "start_objects": int(len(_present(masks[0]))),
        "end_objects": int(len(_present(masks[1]))),
        "pairs": len(vectors),
        "dim_pairs": int(np.sum(vectors.extra.get("dim", []))),
        "dropped_far_ends": int(dropped),
        "density": float(density),
    }


def _present(mask):
    return [i + 1 for i, sl in enumerate(ndimage.find_objects(mask)) if sl is not None]


# ----------------------------------------------------------------------------- domain randomisation

@dataclass(frozen=True)
class DomainRandomisation:
    """Ranges of the appearance factors of a randomised phantom.

    Every factor is drawn per image from its ``(low, high)`` range (uniformly;
    ``photons`` and ``density`` log-uniformly); some are then drawn again per
    cell around the image's value. A range with equal ends fixes the factor.
    Lengths are in µm; the 2D cytoplasm→nucleus geometry works in pixels, as
    the plain 2D phantoms do, and scales its cells by ``cell_scale`` instead of
    a voxel size.

    Attributes
    ----------
    ndim : {3, 2}
    geometry : {"nucleus-golgi", "cytoplasm-nucleus"}
        Nucleus with a Golgi beside it (2D or 3D), or a cytoplasm holding a
        nucleus (2D only).
    voxel_xy, voxel_z : (float, float)
        Voxel size in µm (z only in 3D).
    field_xy_um, field_z_um : (float, float)
        Field of view; the array shape follows from it and the voxel size,
        clipped to ``pixels_xy`` and ``planes``.
    pixels_xy, planes : (int, int)
        Smallest and largest array size in y/x and in z.
    psf_xy_um, psf_z_um : (float, float)
        Gaussian PSF SD; ``defocus`` adds a wide out-of-focus copy of this share.
    density : (float, float)
        Crowding (1 = nuclei touching in places); log-uniform.
    overlap : (float, float)
        Share of a nucleus' short semi-axis by which neighbours may overlap.
    neighbour_fraction : (float, float)
        Share of nuclei placed right beyond another cell's Golgi.
    nucleus_scale, nucleus_aspect : (float, float)
        Nucleus size factor and long/short axis ratio.
    nucleus_waviness, nucleus_texture : (float, float)
        Surface waviness and chromatin texture strength (0 = smooth, even).
    texture_grain_um : (float, float)
        Size of the chromatin grain.
    nucleoli : (int, int)
        Most nucleoli per nucleus (each nucleus gets 0 up to the drawn number).
    golgi_fragmentation : (float, float)
        0: a compact cluster of a few blobs; 1: a ribbon of many small
        fragments spread around the nucleus.
    golgi_at_pole : (float, float)
        Share of cells whose Golgi sits at an end of the nucleus' long axis
        (the others: anywhere around it).
    golgi_elevation_deg : (float, float)
        SD of the Golgi's elevation above or below the nucleus (3D).
    brightness_spread : (float, float)
        Log-SD of the cells' brightness.
    dim_fraction, dim_factor : (float, float)
        Share of dim cells and their brightness factor.
    haze, vessels : (float, float)
        Smooth background haze and vessel-like tubes, relative to a nucleus.
    distractors : (float, float)
        Bright dirt in the end channel, relative to the default amount.
    crosstalk : (float, float)
        Share of each channel bleeding into the other.
    photons : (float, float)
        Photons at a typical nucleus' centre; log-uniform.
    read_noise : (float, float)
        Camera read noise SD in photons.
    noise_models : tuple of str
        Drawn from: "poisson", "gaussian" (the Gaussian approximation of shot
        noise), "poisson-gaussian" (with read noise).
    saturation : float
        Chance that the brightest voxels saturate.
    dtypes : tuple of str
        Drawn from: "uint8", "uint16", "float32".
    cell_scale : (float, float)
        Cytoplasm→nucleus geometry: cell size factor in pixels.
    """

    ndim: int = 3
    geometry: str = "nucleus-golgi"
    voxel_xy: tuple = (0.1, 0.7)
    voxel_z: tuple = (0.2, 2.0)
    field_xy_um: tuple = (50.0, 160.0)
    field_z_um: tuple = (10.0, 30.0)
    pixels_xy: tuple = (64, 320)
    planes: tuple = (8, 64)
    psf_xy_um: tuple = (0.1, 0.6)
    psf_z_um: tuple = (0.3, 1.6)
    defocus: tuple = (0.0, 0.4)
    density: tuple = (0.05, 1.5)
    overlap: tuple = (0.0, 0.3)
    neighbour_fraction: tuple = (0.0, 0.3)
    nucleus_scale: tuple = (0.75, 1.6)
    nucleus_aspect: tuple = (1.0, 2.4)
    nucleus_waviness: tuple = (0.0, 0.12)
    nucleus_texture: tuple = (0.0, 0.6)
    texture_grain_um: tuple = (0.4, 1.5)
    nucleoli: tuple = (0, 4)
    golgi_fragmentation: tuple = (0.0, 1.0)
    golgi_at_pole: tuple = (0.0, 1.0)
    golgi_elevation_deg: tuple = (0.0, 50.0)
    brightness_spread: tuple = (0.05, 0.6)
    dim_fraction: tuple = (0.0, 0.4)
    dim_factor: tuple = (0.12, 0.4)
    haze: tuple = (0.0, 0.6)
    vessels: tuple = (0.0, 0.4)
    distractors: tuple = (0.0, 2.0)
    crosstalk: tuple = (0.0, 0.25)
    photons: tuple = (15.0, 3000.0)
    read_noise: tuple = (0.0, 6.0)
    noise_models: tuple = ("poisson", "gaussian", "poisson-gaussian")
    saturation: float = 0.25
    dtypes: tuple = ("uint8", "uint16", "float32")
    cell_scale: tuple = (0.85, 1.2)

    def validate(self):
        """Raise InputError on an impossible range."""
        if self.ndim not in (2, 3):
            raise InputError(f"ndim must be 2 or 3, got {self.ndim}")
        if self.geometry not in ("nucleus-golgi", "cytoplasm-nucleus"):
            raise InputError(f"geometry must be nucleus-golgi or cytoplasm-nucleus, "
                             f"got {self.geometry}")
        if self.geometry == "cytoplasm-nucleus" and self.ndim != 2:
            raise InputError("the cytoplasm-nucleus geometry is 2D only")
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            if f in ("noise_models", "dtypes") or not isinstance(v, tuple):
                continue
            if len(v) != 2 or not all(math.isfinite(x) and x >= 0 for x in v) or v[0] > v[1]:
                raise InputError(f"randomisation range {f} must be (low, high) with "
                                 f"0 <= low <= high, got {v}")
        for name, allowed, got in (("noise model", _NOISE_MODELS, self.noise_models),
                                   ("dtype", _DTYPES, self.dtypes)):
            if not got or any(g not in allowed for g in got):
                raise InputError(f"{name}s must be some of {', '.join(allowed)}, got {got}")
        if min(self.voxel_xy) <= 0 or min(self.voxel_z) <= 0 or self.pixels_xy[0] < 16:
            raise InputError("voxel sizes must be > 0 and images at least 16 pixels wide")
        if not 0 <= self.saturation <= 1:
            raise InputError(f"saturation must be a chance in [0, 1], got {self.saturation}")
        return self

    def with_ranges(self, **ranges) -> "DomainRandomisation":
        """A copy with some ranges replaced."""
        return replace(self, **ranges)


_NOISE_MODELS = ("poisson", "gaussian", "poisson-gaussian")
_DTYPES = ("uint8", "uint16", "float32")

#: Named phantom families: benchmarks train on some and hold one out. Each is the
#: broad randomisation with some ranges narrowed.
FAMILIES = {
    "random-3d": DomainRandomisation(),
    "isolated": DomainRandomisation(density=(0.05, 0.2), overlap=(0.0, 0.0),
                                    neighbour_fraction=(0.0, 0.0), dim_fraction=(0.0, 0.1),
                                    haze=(0.0, 0.2), photons=(300.0, 3000.0)),
    "crowded": DomainRandomisation(density=(0.7, 1.0), overlap=(0.0, 0.05),
                                   neighbour_fraction=(0.1, 0.2), golgi_at_pole=(0.6, 1.0),
                                   photons=(200.0, 2000.0)),
    "touching": DomainRandomisation(density=(1.1, 1.5), overlap=(0.15, 0.3),
                                    neighbour_fraction=(0.2, 0.3), golgi_at_pole=(0.0, 0.2),
                                    dim_fraction=(0.25, 0.4), haze=(0.3, 0.6),
                                    crosstalk=(0.1, 0.25), photons=(15.0, 80.0)),
    "other-microscope": DomainRandomisation(voxel_xy=(0.4, 0.4), voxel_z=(1.0, 1.0),
                                            planes=(16, 16), field_z_um=(16.0, 16.0),
                                            psf_z_um=(1.0, 1.6), density=(0.4, 1.0)),
    "random-2d": DomainRandomisation(ndim=2, pixels_xy=(64, 640)),
    "cultured-2d": DomainRandomisation(ndim=2, pixels_xy=(64, 640), voxel_xy=(0.25, 0.7),
                                       density=(0.1, 0.5),
                                       overlap=(0.0, 0.05), neighbour_fraction=(0.0, 0.1)),
    "cultured-2d-dense": DomainRandomisation(ndim=2, pixels_xy=(64, 640), voxel_xy=(0.1, 0.4),
                                             density=(0.8, 1.5),
                                             overlap=(0.1, 0.3), neighbour_fraction=(0.1, 0.3),
                                             golgi_fragmentation=(0.4, 1.0),
                                             photons=(15.0, 300.0)),
    "cytology-2d": DomainRandomisation(ndim=2, geometry="cytoplasm-nucleus",
                                       density=(0.3, 1.4)),
}


def family(name: str) -> DomainRandomisation:
    """The :class:`DomainRandomisation` of a named family (see :data:`FAMILIES`)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise InputError(f"unknown phantom family {name!r}; known: "
                         f"{', '.join(FAMILIES)}") from None


def _uniform(rng, r):
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _loguniform(rng, r):
    if r[1] <= r[0]:
        return float(r[0])
    return float(math.exp(rng.uniform(math.log(max(r[0], 1e-9)), math.log(r[1]))))


def _draw_settings(rng, dr: DomainRandomisation) -> dict:
    """One image's factors, drawn from the ranges (always in the same order)."""
    s = {name: _uniform(rng, getattr(dr, name)) for name in (
        "voxel_xy", "voxel_z", "field_xy_um", "field_z_um", "psf_xy_um", "psf_z_um", "defocus",
        "overlap", "neighbour_fraction", "nucleus_scale", "nucleus_aspect", "nucleus_waviness",
        "nucleus_texture", "texture_grain_um", "golgi_fragmentation", "golgi_at_pole",
        "golgi_elevation_deg", "brightness_spread", "dim_fraction", "dim_factor", "haze",
        "vessels", "distractors", "crosstalk", "read_noise", "cell_scale")}
    s["crosstalk_back"] = _uniform(rng, dr.crosstalk)
    s["density"] = _loguniform(rng, dr.density)
    s["photons"] = _loguniform(rng, dr.photons)
    s["nucleoli"] = int(rng.integers(int(dr.nucleoli[0]), int(dr.nucleoli[1]) + 1))
    s["noise_model"] = str(dr.noise_models[rng.integers(len(dr.noise_models))])
    s["dtype"] = str(dr.dtypes[rng.integers(len(dr.dtypes))])
    s["saturate"] = bool(rng.random() < dr.saturation)
    return s


def _rand_nucleus(rng, nd, center, s, axis_angle):
    size = float(np.clip(rng.normal(11.0, 2.0), 6.0, 17.0)) * s["nucleus_scale"]
    aspect = float(np.clip(s["nucleus_aspect"] * rng.lognormal(0.0, 0.12), 1.0, 3.0))
    major, minor = size * math.sqrt(aspect), size / math.sqrt(aspect)
    if nd == 3:
        thick = float(np.clip(minor * rng.uniform(0.45, 0.9), 3.0, minor))
        axes = _axes_3d(axis_angle, math.radians(rng.normal(0, 8)), math.radians(rng.normal(0, 15)))
        semi = np.array([major, minor, thick]) / 2
    else:
        axes = _axes_2d(axis_angle)
        semi = np.array([major, minor]) / 2
    freq, amp, phase = _wavy(rng, nd, 3, s["nucleus_waviness"] + 1e-6)
    return _Ellipsoid(np.asarray(center, float), axes, semi, freq, amp, phase)


def _rand_golgi(rng, nucleus: _Ellipsoid, d, s) -> list:
    """Blobs hugging the nucleus around direction ``d``: compact or a fragmented ribbon."""
    nd = len(d)
    frag = s["golgi_fragmentation"] * rng.uniform(0.6, 1.0)
    n = int(3 + round(frag * 12) + rng.integers(0, 3))
    spread = 0.25 + 1.0 * frag  # half angle in radians around d
    if nd == 3:
        e1 = np.cross(d, [1.0, 0.0, 0.0])
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.array([0.0, 1.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(d, e1)
    blobs = []
    for _ in range(n):
        # Bigger nuclei (cultured cells) come with bigger Golgi.
        br = rng.uniform(0.8, 1.7) * (1.0 - 0.5 * frag) * math.sqrt(s["nucleus_scale"])
        a1 = rng.uniform(-spread, spread)
        if nd == 3:
            a2 = rng.uniform(-0.5, 0.5) * spread
            di = d + math.tan(a1) * e1 + math.tan(a2) * e2
        else:
            c, si = math.cos(a1), math.sin(a1)
            di = np.array([c * d[0] - si * d[1], si * d[0] + c * d[1]])
        di = di / np.linalg.norm(di)
        # 2D images are projections: the Golgi may lie over the nucleus' rim.
        lo = -0.6 if nd == 2 else 0.4
        dist = nucleus.radius(di) + br * rng.uniform(lo, 1.0)
        blobs.append(_Ellipsoid(nucleus.center + di * dist, _random_rotation(rng, nd),
                                br * rng.uniform(0.7, 1.3, nd)))
    return blobs


def _sample_cells_random(rng, shape, spacing, s) -> list:
    """Nucleus→Golgi cells (2D or 3D, µm) placed at the drawn density and overlap."""
    nd = len(shape)
    extent = np.asarray(shape, float) * spacing
    pad = 6.0
    if nd == 3:
        origin, step = (-5.0, -pad - 4, -pad - 4), (0.5, 1.0, 1.0)
        occ_extent = (extent[0] + 10.0, extent[1] + 2 * pad + 8, extent[2] + 2 * pad + 8)
    else:
        origin, step = (-pad - 4, -pad - 4), (1.0, 1.0)
        occ_extent = (extent[0] + 2 * pad + 8, extent[1] + 2 * pad + 8)
    occ_nuc, occ_golgi = _Occupancy(origin, step, occ_extent), _Occupancy(origin, step, occ_extent)
    area = (extent[-2] + 2 * pad) * (extent[-1] + 2 * pad)
    per_cell = (_AREA_PER_CELL_3D if nd == 3 else 2.0 * _AREA_PER_CELL_3D) * s["nucleus_scale"] ** 2
    n_target = int(round(s["density"] * area / per_cell))
    limit = MAX_PAIR_DISTANCE_3D - 2.5
    cells, attempts = [], 0
    while len(cells) < n_target and attempts < 40 * n_target + 20:
        attempts += 1
        if cells and rng.random() < s["neighbour_fraction"]:
            other = cells[rng.integers(len(cells))]
            g = other.end_center
            u = other.direction.copy()
            if nd == 3:
                u[0] = 0.0
            az = math.atan2(-u[-2], u[-1]) + math.radians(rng.normal(0, 20))
            u = _direction(az, 0.0, nd)
            nuc = _rand_nucleus(rng, nd, g, s, az + math.pi / 2)
            reach = max(float((b.center - g) @ u) + float(b.semi.max()) for b in other.end)
            center = g + u * (nuc.radius(-u) + max(reach, 0.0) + 0.6)
            if nd == 3:
                center[0] = float(np.clip(g[0] + rng.normal(0, 1.0), 0.2 * extent[0],
                                          0.8 * extent[0]))
            nuc.center = center
        else:
            center = [rng.uniform(-pad, e + pad) for e in extent[-2:]]
            if nd == 3:
                center = [rng.uniform(0.2 * extent[0], 0.8 * extent[0])] + center
            nuc = _rand_nucleus(rng, nd, center, s, rng.uniform(0, 2 * math.pi))
        if rng.random() < s["golgi_at_pole"]:  # along the long axis, either end
            d = nuc.axes[0] * (1.0 if rng.random() < 0.5 else -1.0)
            az = math.atan2(-d[-2], d[-1]) + math.radians(rng.normal(0, 12))
        else:
            az = rng.uniform(0, 2 * math.pi)
        if nd == 3:
            el = math.radians(float(np.clip(rng.normal(0, s["golgi_elevation_deg"] + 1e-6),
                                            -75, 75)))
            d = _direction(az, el)
        else:
            d = _direction(az, ndim=2)
        r_d = nuc.radius(d)
        if r_d > limit:  # keep the Golgi within the pair distance of the nucleus centroid
            nuc = nuc.scaled(limit / r_d)
        shrink = 0.5 + s["overlap"] * float(nuc.semi[1])
        if occ_nuc.hits(nuc, shrink) or occ_golgi.hits(nuc, 0.5):
            continue
        blobs = _rand_golgi(rng, nuc, d, s)
        if any(occ_nuc.hits(b, 0.2) or occ_golgi.hits(b, 0.2) for b in blobs):
            continue
        label = len(cells) + 1
        occ_nuc.mark(nuc, label, shrink)
        for b in blobs:
            occ_golgi.mark(b, label, 0.2)
        spread = s["brightness_spread"]
        dim = bool(rng.random() < s["dim_fraction"])
        bn = float(rng.lognormal(0.0, spread))
        bg = bn * float(rng.lognormal(math.log(1.6), 0.3))
        if dim:
            f = s["dim_factor"] * rng.uniform(0.8, 1.2)
            bn, bg = bn * f, bg * f
        cells.append(_Cell(nuc, blobs, d, bn, bg, dim))
    return cells


def _draw_shape(rng, dr, s, shape, voxel_size):
    """Array shape and (z, y, x) voxel size from the drawn field of view."""
    nd = dr.ndim
    if dr.geometry == "cytoplasm-nucleus":
        vs = (1.0, 1.0, 1.0) if voxel_size is None else tuple(voxel_size)
        if shape is None:
            # Cytology fields in pixels: 4-8 cells across at the drawn cell scale.
            n = int(np.clip(round(rng.uniform(300, 600)), dr.pixels_xy[0], max(dr.pixels_xy[1], 256)))
            shape = (n, int(np.clip(round(n * rng.uniform(0.8, 1.25)), 64, 640)))
        return tuple(shape), vs
    if voxel_size is None:
        voxel_size = (s["voxel_z"] if nd == 3 else 1.0, s["voxel_xy"], s["voxel_xy"])
    vs = tuple(float(v) for v in voxel_size)
    if shape is None:
        lo, hi = dr.pixels_xy
        ny = int(np.clip(round(s["field_xy_um"] / vs[1]), lo, hi))
        nx = int(np.clip(round(s["field_xy_um"] * rng.uniform(0.8, 1.25) / vs[2]), lo, hi))
        shape = (ny, nx)
        if nd == 3:
            nz = int(np.clip(round(s["field_z_um"] / vs[0]), dr.planes[0], dr.planes[1]))
            shape = (nz,) + shape
    return tuple(int(n) for n in shape), vs


def generate_randomised(*, seed=0, config=None, shape=None, voxel_size=None,
                        structures=None) -> Phantom:
    """A domain-randomised phantom: every appearance factor drawn from a broad range.

    Parameters
    ----------
    seed : int
        Random seed; the same seed and configuration give identical arrays.
    config : DomainRandomisation or str, optional
        The ranges, or the name of a family in :data:`FAMILIES`; default the
        broad 3D nucleus→Golgi randomisation.
    shape : tuple of int, optional
        Array shape (Z, Y, X) or (Y, X); default drawn from the field of view.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm; default drawn.
    structures : (str, str), optional
        Start and end names; default nucleus/Golgi, or cytoplasm/nucleus for
        that geometry.

    Returns
    -------
    Phantom
        ``info["randomisation"]`` holds the drawn factors; the image is
        uint8, uint16 or float32 as drawn.
    """
    dr = family(config) if isinstance(config, str) else (config or DomainRandomisation())
    dr.validate()
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed}")
    cyto = dr.geometry == "cytoplasm-nucleus"
    structures = tuple(structures) if structures else (STRUCTURES_2D if cyto else STRUCTURES_3D)
    if len(structures) != 2:
        raise InputError(f"structures must be two names (start, end), got {structures}")
    if shape is not None and (len(shape) != dr.ndim or any(int(n) != n or n < 1 for n in shape)):
        raise InputError(f"shape must be {dr.ndim} positive integers, got {tuple(shape)}")
    if voxel_size is not None and (len(voxel_size) != 3 or
                                   any(not math.isfinite(v) or v <= 0 for v in voxel_size)):
        raise InputError(f"voxel size must be 3 positive numbers (z, y, x), got {voxel_size}")
    # Separate streams, so that e.g. a new noise model leaves the geometry alone.
    set_rng, geom_rng, tex_rng, noise_rng = (
        np.random.default_rng(q) for q in np.random.SeedSequence([int(seed), 13]).spawn(4))
    s = _draw_settings(set_rng, dr)
    shape, vs = _draw_shape(set_rng, dr, s, shape, voxel_size)
    nd = dr.ndim
    if cyto:
        scale = s["cell_scale"]
        spacing = np.full(2, 1.0 / scale)  # cells drawn in px of a grid scaled by 1/scale
        cells = _sample_cells_2d(geom_rng, tuple(np.asarray(shape) / scale), density=s["density"],
                                 mean_direction=None, concentration=0.0,
                                 dim_fraction=s["dim_fraction"])
        for c in cells:
            f = float(geom_rng.lognormal(0.0, s["brightness_spread"]))
            c.start_brightness, c.end_brightness = c.start_brightness / 900 * f, \
                c.end_brightness / 900 * f
        start, end, s_sig, e_sig = _render_masks(cells, shape, spacing, nested=True)
        max_d, geom_vs = MAX_PAIR_DISTANCE_2D, vs
    else:
        spacing = np.asarray(vs[3 - nd:], float)
        cells = _sample_cells_random(geom_rng, shape, spacing, s)
        start, end, s_sig, e_sig = _render_masks(cells, shape, spacing, nested=False,
                                                 end_over_own_start=nd == 2)
        max_d, geom_vs = MAX_PAIR_DISTANCE_3D, vs
    vectors, dropped = _ground_truth((start, end), cells, nd, geom_vs, max_d, structures)
    if dropped:
        e_sig[end == 0] = 0.0
    s_sig, e_sig = _appearance(tex_rng, s, s_sig, e_sig, start, shape, spacing, nested=cyto)
    image = _camera(noise_rng, s, np.stack([s_sig, e_sig]))
    masks = np.stack([start, end])
    info = _info(cells, masks, vectors, dropped, s["density"])
    info["randomisation"] = dict(s, shape=tuple(shape), voxel_size=vs, geometry=dr.geometry)
    return Phantom(image, vectors, masks, vs, structures, structures, info)


def _appearance(rng, s, s_sig, e_sig, start, shape, spacing, *, nested):
    """Texture, nucleoli, dirt, blur, haze, vessels and crosstalk (noiseless, float32)."""
    nd = len(shape)
    um = 2.5 if nested else 1.0  # cytology geometry is in pixels: 2.5 px per nominal µm
    grain = s["texture_grain_um"] * um
    texture = _smooth_noise(rng, _coarse_shape(shape, spacing, (grain,) * nd), 1.0, shape)
    s_sig *= np.maximum(1.0 + s["nucleus_texture"] * texture, 0.05)
    e_sig *= np.maximum(1.0 + 0.2 * texture, 0.05)
    del texture
    if s["nucleoli"] and not nested:
        labels, cents = _label_centroids(start)
        origin = np.zeros(nd)
        for cen in cents:
            for _ in range(int(rng.integers(0, s["nucleoli"] + 1))):
                c = cen * spacing + rng.normal(0, 1.5, nd)
                ell = _Ellipsoid(c, _random_rotation(rng, nd), rng.uniform(0.5, 1.2, nd))
                r = ell.rasterize(origin, spacing, shape)
                if r is not None:
                    sl, inside, _ = r
                    s_sig[sl][inside] *= rng.uniform(0.3, 0.7)
    area = float(np.prod(np.asarray(shape[-2:]) * spacing[-2:]))
    if s["distractors"] > 0:
        _add_distractors(rng, e_sig, shape, spacing,
                         count=int(round(s["distractors"] * area / (900.0 * um * um))),
                         radius=(0.35 * um, 0.8 * um), brightness=2.0)
    psf = np.array(([s["psf_z_um"]] if nd == 3 else []) + [s["psf_xy_um"]] * 2) * um
    sig = psf / spacing
    wide = sig * 4.0 + 2.0
    out = []
    for ch in (s_sig, e_sig):
        b = ndimage.gaussian_filter(ch, sig, truncate=3.0)
        if s["defocus"] > 0:
            b = (1 - s["defocus"]) * b + s["defocus"] * ndimage.gaussian_filter(ch, wide, truncate=2.0)
        out.append(b)
    s_sig, e_sig = out
    base = rng.uniform(0.02, 0.12)
    haze = _smooth_noise(rng, _coarse_shape(shape, spacing, (4.0 * um,) * nd), 5.0, shape)
    haze = np.maximum(base + s["haze"] * (0.5 + 0.5 * haze), 0.0)
    s_sig += haze
    e_sig += haze * rng.uniform(0.6, 1.4)
    del haze
    if s["vessels"] > 0:
        step = (1.0, 2.0, 2.0)[3 - nd:]
        v = _vessels(rng, shape, spacing, tuple(t * um for t in step), 9.0 * um, 0.28)
        s_sig += s["vessels"] * 0.6 * v
        e_sig += s["vessels"] * v
        del v
    s_sig, e_sig = s_sig + s["crosstalk"] * e_sig, e_sig + s["crosstalk_back"] * s_sig
    return s_sig, e_sig


def _camera(rng, s, sig):
    """Photon counts, noise, saturation and the drawn dtype and range."""
    photons = sig * np.float32(s["photons"])
    model = s["noise_model"]
    if model == "gaussian":
        photons = photons + np.sqrt(np.maximum(photons, 0)) * rng.standard_normal(
            photons.shape, dtype=np.float32)
    else:
        photons = rng.poisson(np.maximum(photons, 0)).astype(np.float32)
    if model != "poisson":
        photons += np.float32(s["read_noise"]) * rng.standard_normal(photons.shape, dtype=np.float32)
    offset = rng.uniform(0.0, 0.05)
    dtype = np.dtype(s["dtype"])
    top = float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0
    ref = float(np.quantile(photons, 0.999)) + 1e-6
    fill = rng.uniform(0.6, 1.0) if dtype == np.uint8 else rng.uniform(0.05, 0.9)
    if s["saturate"]:
        fill *= rng.uniform(1.3, 2.5)
    gain = fill * top / ref
    raw = dtype.kind == "f" and rng.random() < 0.5  # floats as raw photon counts
    if raw:
        gain, offset = 1.0, 0.0
    out = photons * np.float32(gain) + np.float32(offset * top)
    if not raw and (s["saturate"] or dtype.kind == "u"):
        out = np.clip(out, 0, top)
    return _to_uint(out, dtype) if dtype.kind == "u" else out.astype(np.float32)


# ----------------------------------------------------------------------------- sets on disk

def write_phantom_set(outdir, *, n_images=1, shape=None, voxel_size=None, seed=0, ndim=3,
                      cancel: Optional[CancelToken] = None, **kwargs):
    """Write a reproducible set of phantoms (a job generator).

    For image ``i`` (seed ``seed + i``) it writes ``phantom_{i:03d}.ome.tif``
    (the image, channel names = structure names or red/green/blue),
    ``phantom_{i:03d}_vectors.csv`` (CellPol CSV with µm columns) and
    ``phantom_{i:03d}_masks.ome.tif`` (the 2-channel instance masks, uint16, or
    int32 beyond 65535 labels).

    Parameters
    ----------
    outdir : str or Path
        Output folder, created when missing.
    n_images : int
        Number of images.
    shape, voxel_size, ndim
        As in :func:`generate_phantom`.
    seed : int
        Seed of image 0.
    cancel : CancelToken, optional
        Checked before each image.
    **kwargs
        Passed to :func:`generate_phantom`.

    Yields
    ------
    ProgressEvent
        Stage ``"phantom"``, one per image.

    Returns
    -------
    list of Path
        The written files, three per image (image, vectors, masks).
    """
    from ..io.image import write_ome_tiff

    if int(n_images) != n_images or n_images < 1:
        raise InputError(f"the number of images must be a positive integer, got {n_images}")
    _resolve_options(ndim=ndim, shape=shape, voxel_size=voxel_size, seed=seed, **kwargs)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError("exists and is not a folder", outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    n = int(n_images)
    for i in range(n):
        if cancel is not None:
            cancel.check()
        yield ProgressEvent("phantom", i, n, f"phantom_{i:03d}")
        ph = generate_phantom(shape=shape, voxel_size=voxel_size, seed=int(seed) + i, ndim=ndim,
                              **kwargs)
        img_path = outdir / f"phantom_{i:03d}.ome.tif"
        csv_path = outdir / f"phantom_{i:03d}_vectors.csv"
        mask_path = outdir / f"phantom_{i:03d}_masks.ome.tif"
        write_ome_tiff(img_path, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
        write_vectors(csv_path, ph.vectors, voxel_size=ph.voxel_size)
        masks = ph.masks.astype(np.uint16) if ph.masks.max(initial=0) <= 65535 else ph.masks
        write_ome_tiff(mask_path, masks, voxel_size=ph.voxel_size, channel_names=ph.structures)
        paths += [img_path, csv_path, mask_path]
    yield ProgressEvent("phantom", n, n, "done", {"paths": [str(p) for p in paths]})
    return paths
