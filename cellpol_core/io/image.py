"""Image I/O: reading microscopy files into a :class:`CellImage`, writing OME-TIFF.

Supported files: TIFF, ImageJ hyperstacks, OME-TIFF and Zeiss LSM (all read
with tifffile). The result is always (C, Z, Y, X) or (C, Y, X) in the file's
dtype, with the voxel size in µm taken from the file's metadata.

Axis heuristic
--------------
Files with axes metadata (ImageJ hyperstacks, OME-TIFF, LSM) are read by their
axes. Files without it (plain numpy-written TIFFs) are interpreted as follows,
unless an explicit ``axes`` string is given:

* 2D arrays are (Y, X) with one channel;
* for 3D and 4D arrays, the smallest axis of length <= 4 is the channel axis
  (the first one on ties); the remaining axes keep their order and are read as
  (Z, Y, X) or (Y, X). A 3D array whose smallest axis is > 4 is a one-channel
  (Z, Y, X) stack;
* the 3DCellPol layout (Y, X, Z, C) is recognised: a 4D array whose channel
  axis is last and whose third axis is smaller than the first two is read as
  (Y, X, Z, C).

An RGB/samples axis (tifffile's ``S``) always counts as the channel axis.
Axes of length 1 other than Y and X are dropped (a single time point, a single
z-slice); a time axis longer than 1, or more than 4 axes longer than 1, is
refused.

Lazy reading
------------
``read_image(..., lazy=True)`` returns a :class:`LazyArray` in (C, Z, Y, X)
order that reads only what is indexed. Its source is a read-only
``numpy.memmap`` when the file stores its data contiguously and uncompressed;
otherwise a zarr array over tifffile's zarr store when zarr is installed;
otherwise a page reader that decodes only the TIFF pages (planes) an index
touches. When the pages of a file do not map onto the array in a simple way,
the data are loaded into memory once and wrapped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .atomic import atomic_path
from ..errors import InputError

__all__ = [
    "CellImage",
    "LazyArray",
    "read_image",
    "resolve_channels",
    "percentile_limits",
    "normalize_percentile",
    "write_ome_tiff",
    "fill_nonfinite",
    "PlaneVoxelSize",
    "VOXEL_SIZE_RANGE_UM",
]


@dataclass
class CellImage:
    """A multichannel 2D or 3D microscopy image.

    Attributes
    ----------
    data : array-like
        (C, Z, Y, X) for 3D or (C, Y, X) for 2D, in the file's dtype (uint16
        stays uint16). A numpy array when read eagerly; a :class:`LazyArray`
        (over a ``numpy.memmap``, a zarr array or a page reader) when read with
        ``lazy=True``: index it to load only what you need.
    voxel_size : tuple of 3 floats or None
        (z, y, x) in µm. 2D images carry z = 1.0. None when the file has no
        calibration and none was given.
    channel_names : list of str
        One name per channel (``"C0"``, ``"C1"``, ... when the file has none).
    path : Path or None
        The source file.
    axes : str
        The axes of the source array as read (tifffile letters), for information.
    nonfinite : int
        NaN/±Inf voxels found in the file. They are treated as missing: every
        read returns them filled with the value of the nearest finite voxel of
        their channel (:func:`fill_nonfinite`), so callers see finite data and
        should tell the user this count.
    """

    data: object
    voxel_size: Optional[tuple] = None
    channel_names: list = field(default_factory=list)
    path: Optional[Path] = None
    axes: str = ""
    nonfinite: int = 0

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.data.shape) - 1

    @property
    def is_3d(self) -> bool:
        return self.ndim == 3

    @property
    def spatial_shape(self) -> tuple:
        """(Z, Y, X) or (Y, X)."""
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def dtype(self):
        return self.data.dtype




# ---------------------------------------------------------------------------
# Lazy arrays


class LazyArray:
    """A read-only (C, Z, Y, X) / (C, Y, X) view of an array stored in another order.

    Indexing with integers, slices and ``...`` reads only the requested part of
    the source and returns a new numpy array (native byte order, writable).
    ``np.asarray(lazy)`` loads everything.

    Parameters
    ----------
    source : array-like
        Anything with ``shape``, ``dtype`` and ``__getitem__`` taking a full
        tuple of integers and slices: a ``numpy.memmap``, a zarr array, ...
    out_axes : sequence of int or None
        For each output axis, the source axis it shows, or None for a new axis
        of length 1 (a missing channel axis). Source axes not listed must have
        length 1.
    """

    def __init__(self, source, out_axes, *, fill_nonfinite=False):
        self._source = source
        self._fill = bool(fill_nonfinite)
        self._out_axes = tuple(None if a is None else int(a) for a in out_axes)
        src_shape = tuple(int(n) for n in source.shape)
        used = [a for a in self._out_axes if a is not None]
        if len(set(used)) != len(used) or any(not 0 <= a < len(src_shape) for a in used):
            raise ValueError(f"invalid axis map {out_axes} for source shape {src_shape}")
        for a, n in enumerate(src_shape):
            if a not in used and n != 1:
                raise ValueError(f"source axis {a} of length {n} is not mapped")
        self._src_shape = src_shape
        self._shape = tuple(1 if a is None else src_shape[a] for a in self._out_axes)
        self._dtype = np.dtype(source.dtype).newbyteorder("=")

    @property
    def base(self):
        """The wrapped source (a ``numpy.memmap`` for uncompressed contiguous files)."""
        return self._source

    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self._dtype.itemsize

    def __len__(self):
        return self._shape[0]

    def __repr__(self):
        return (f"<LazyArray shape={self._shape} dtype={self._dtype} "
                f"source={type(self._source).__name__}>")

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        key = _normalize_key(key, self._shape)
        src_key = [0] * len(self._src_shape)
        for k, a in zip(key, self._out_axes):
            if a is not None:
                src_key[a] = k
        sub = self._source[tuple(src_key)]
        if isinstance(self._source, np.ndarray):
            # detach from the (read-only) memory map
            sub = np.array(sub, dtype=self._dtype, copy=True)
        else:
            sub = np.asarray(sub).astype(self._dtype, copy=False)
        kept = [a for a in range(len(self._src_shape)) if isinstance(src_key[a], slice)]
        order = [a for k, a in zip(key, self._out_axes) if a is not None and isinstance(k, slice)]
        sub = sub.transpose([kept.index(a) for a in order])
        pos = 0
        for k, a in zip(key, self._out_axes):
            if not isinstance(k, slice):
                continue
            if a is None:
                sub = np.expand_dims(sub, pos)
                if len(range(1)[k]) == 0:
                    sub = sub[(slice(None),) * pos + (slice(0, 0),)]
            pos += 1
        if self._fill and sub.dtype.kind == "f":
            # a read block: fill within it, each channel apart when it holds several
            sub = fill_nonfinite(sub, channel_axis=0 if isinstance(key[0], slice) else None)
        return sub


def _fill_from_neighbours(part, mask, rounds=3):
    """Give masked voxels the median of their finite 3×3(×3) neighbours, growing inwards."""
    offsets = np.array(list(itertools.product((-1, 0, 1), repeat=part.ndim)))
    hi = np.array(part.shape) - 1
    for _ in range(rounds):
        idx = np.argwhere(mask)
        if not len(idx):
            break
        nb = np.clip(idx[:, None, :] + offsets[None], 0, hi)
        vals = part[tuple(np.moveaxis(nb, -1, 0))]
        vals = np.where(mask[tuple(np.moveaxis(nb, -1, 0))], np.nan, vals)
        ok = ~np.all(np.isnan(vals), axis=1)
        if not ok.any():
            break
        med = np.nanmedian(vals[ok], axis=1)
        where = tuple(idx[ok].T)
        part[where] = med
        mask[where] = False
    return mask


def fill_nonfinite(arr, *, channel_axis=0):
    """Replace NaN and ±Inf voxels with the median of their finite neighbours.

    A voxel whose 3×3(×3) neighbourhood holds no finite value after a few
    rounds (a large missing region) takes the value of the nearest finite voxel.

    Parameters
    ----------
    arr : ndarray
        Floating-point data; changed in place and returned.
    channel_axis : int or None
        Fill each channel from its own voxels; None fills the array as a whole.

    Returns
    -------
    ndarray
        ``arr``; a channel with no finite voxel at all becomes 0.
    """
    if arr.dtype.kind != "f" or arr.size == 0:
        return arr
    bad = ~np.isfinite(arr)
    if not bad.any():
        return arr
    from scipy import ndimage as ndi

    parts = [arr] if channel_axis is None else \
        [np.take(arr, i, axis=channel_axis) for i in range(arr.shape[channel_axis])]
    for k, part in enumerate(parts):
        mask = ~np.isfinite(part)
        if not mask.any():
            continue
        if mask.all():
            part[...] = 0
        elif _fill_from_neighbours(part, mask).any():
            nearest = ndi.distance_transform_edt(mask, return_distances=False,
                                                 return_indices=True)
            part[mask] = part[tuple(nearest)][mask]
        if channel_axis is not None:  # np.take copies: put the channel back
            idx = [slice(None)] * arr.ndim
            idx[channel_axis] = k
            arr[tuple(idx)] = part
    return arr


def nonfinite_note(image) -> str:
    """The one line telling the user that an image's NaN/Inf voxels were filled."""
    return (f"{image.path}: {image.nonfinite} NaN/Inf voxel(s) treated as missing, filled with "
            "the median of their neighbours")


def _count_nonfinite(data) -> int:
    """NaN/±Inf voxels of a (C, ...) array-like, read a plane at a time."""
    if np.dtype(data.dtype).kind != "f":
        return 0
    n = 0
    for c in range(int(data.shape[0])):
        planes = range(int(data.shape[1])) if len(data.shape) == 4 else [None]
        for z in planes:
            block = data[c] if z is None else data[c, z]
            n += int(np.count_nonzero(~np.isfinite(np.asarray(block))))
    return n


def _normalize_key(key, shape):
    """A full tuple of ints (non-negative, in range) and slices for ``shape``."""
    if not isinstance(key, tuple):
        key = (key,)
    n_ell = sum(1 for k in key if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell:
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:i] + (slice(None),) * max(fill, 0) + key[i + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape):
        if isinstance(k, slice):
            out.append(k)
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis with size {n}")
            out.append(k + n if k < 0 else k)
        else:
            raise TypeError("LazyArray takes integers, slices and '...' only; "
                            "use np.asarray() first for other indexing")
    return tuple(out)


class _TiffPageReader:
    """Array-like over the pages of one TIFF series: decodes only the pages indexed.

    The series shape must be (leading..., page shape...) with one page per
    leading index. The file is opened for each read, so no handle stays open.
    """

    def __init__(self, path, shape, dtype, page_shape, n_pages):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.page_shape = tuple(int(n) for n in page_shape)
        self.n_lead = len(self.shape) - len(self.page_shape)
        if self.shape[self.n_lead:] != self.page_shape or \
                int(np.prod(self.shape[:self.n_lead], dtype=np.int64)) != n_pages:
            raise ValueError("series does not map onto its pages")

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, key):
        import tifffile

        key = _normalize_key(key, self.shape)
        lead_key, page_key = key[:self.n_lead], key[self.n_lead:]
        lead_shape = self.shape[:self.n_lead]
        ranges = [range(n)[k] if isinstance(k, slice) else [k]
                  for k, n in zip(lead_key, lead_shape)]
        lead_out = [len(r) for r in ranges]
        page_out = [len(range(n)[k]) for k, n in zip(page_key, self.page_shape)
                    if isinstance(k, slice)]
        out = np.empty(lead_out + page_out, dtype=self.dtype)
        if out.size:
            with tifffile.TiffFile(self.path) as tif:
                pages = tif.series[0].pages
                for pos in itertools.product(*[range(n) for n in lead_out]):
                    idx = tuple(r[p] for r, p in zip(ranges, pos))
                    flat = int(np.ravel_multi_index(idx, lead_shape)) if idx else 0
                    plane = pages[flat].asarray().reshape(self.page_shape)
                    out[pos] = plane[page_key]
        # integer keys on leading axes drop those axes
        drop = tuple(0 if not isinstance(k, slice) else slice(None) for k in lead_key)
        return out[drop]


# ---------------------------------------------------------------------------
# Reading


_UNIT_TO_UM = {
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "å": 1e-4, "angstrom": 1e-4,
    "pm": 1e-6,
    "inch": 25400.0, "in": 25400.0,
}

# series kinds whose axis letters come from real metadata
_AXES_KINDS = {"imagej", "ome", "lsm", "stk", "fluoview", "mmstack", "ndtiff", "nih", "sis",
               "scanimage", "qpi", "scn", "svs", "ndpi", "bif", "philips", "eer", "avs"}
# tifffile log messages that mean the file structure is broken (e.g. truncated)
_CORRUPT_SIGNS = ("invalid page offset", "invalid offset to page", "failed to reshape")
_OVERRIDE_LETTERS = set("CZYXSTQ")
#: Voxel sizes (µm) outside this range are refused as metadata errors (a 1e30 or
#: 1e-6 µm voxel made prediction allocate gigabytes or smoothing run for hours).
VOXEL_SIZE_RANGE_UM = (1e-3, 1e3)
# TIFF deflate compression codes, and a bound on deflate's compression ratio (1032:1)
_DEFLATE_CODES = (8, 32946)
_DEFLATE_MAX_RATIO = 1100


class PlaneVoxelSize(tuple):
    """A (1.0, y, x) voxel size given as X Y only: right for 2D images; a 3D image
    read with it is refused, since its z would be a guess."""


def check_voxel_size(voxel_size, path=None) -> tuple:
    """A voxel size given by the user, checked: 3 finite positive numbers (z, y, x) in µm,
    each within :data:`VOXEL_SIZE_RANGE_UM`.

    Raises
    ------
    InputError
        Naming ``path`` and what is wrong.
    """
    try:
        vs = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        raise InputError(f"voxel size must be 3 numbers (z, y, x) in µm, got {voxel_size!r}",
                         path) from None
    if len(vs) != 3 or any(not (math.isfinite(v) and v > 0) for v in vs):
        raise InputError(f"voxel size must be 3 positive numbers (z, y, x) in µm, "
                         f"got {tuple(voxel_size)}", path)
    if any(not VOXEL_SIZE_RANGE_UM[0] <= v <= VOXEL_SIZE_RANGE_UM[1] for v in vs):
        raise InputError(f"voxel size {_vs_text(vs)} is outside the plausible "
                         f"{VOXEL_SIZE_RANGE_UM[0]:g}-{VOXEL_SIZE_RANGE_UM[1]:g} µm", path)
    return vs


def _vs_text(vs) -> str:
    return " x ".join(f"{float(v):g}" for v in vs) + " µm"


def _unit_factor(unit):
    """µm per ``unit``, or None when the unit is not a length (e.g. 'pixel')."""
    if unit is None:
        return None
    u = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return _UNIT_TO_UM.get(u)


def _positive(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


class _LogCapture(logging.Handler):
    """Collect tifffile's warnings from this thread (and keep them off stderr)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages = []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _capture_tifffile_log():
    log = logging.getLogger("tifffile")
    handler = _LogCapture()
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _stored_letters(tif, series):
    """Axis letters of the stored series: C Z Y X S T, or '?' where unknown."""
    axes = str(series.axes)
    kind = str(getattr(series, "kind", "") or "").lower()
    trusted = kind in _AXES_KINDS
    if kind == "shaped":
        meta = tif.shaped_metadata
        trusted = bool(meta) and isinstance(meta[0], dict) and "axes" in meta[0]
    if not trusted:
        # tifffile's own writer heuristics (e.g. RGB samples) still name S reliably
        return "".join("S" if a == "S" else "?" for a in axes)
    return "".join(a if a in "CZYXST" else "?" for a in axes)


def _parse_override(axes, shape, path):
    text = str(axes).strip().upper()
    if len(text) != len(shape):
        raise InputError(f"--axes {axes!r} has {len(text)} letters but the stored array has "
                         f"{len(shape)} dimensions (shape {tuple(shape)})", path)
    bad = sorted(set(text) - _OVERRIDE_LETTERS)
    if bad:
        raise InputError(f"--axes {axes!r}: unknown letter(s) {''.join(bad)} "
                         "(use C, Z, Y, X, S, T, Q)", path)
    dup = sorted({a for a in text if text.count(a) > 1})
    if dup:
        raise InputError(f"--axes {axes!r}: letter(s) {''.join(dup)} used more than once", path)
    if "Y" not in text or "X" not in text:
        raise InputError(f"--axes {axes!r} must contain Y and X", path)
    return text.replace("Q", "?")


def _resolve_axes(shape, letters, path):
    """Interpret a stored array.

    Parameters
    ----------
    shape : tuple of int
        Stored shape.
    letters : str
        One letter per stored axis: C Z Y X S T, or '?' for unknown.

    Returns
    -------
    out_axes : list
        Stored axis for each output axis (C, [Z,] Y, X); None for a missing C.
    disk_axes : str
        Letters of the stored axes as interpreted (for information).
    """
    shape = tuple(int(n) for n in shape)
    given = str(letters)
    lt = list(given)
    desc = f"shape {shape}, axes {given.replace('?', 'Q')}"
    if "S" in lt:
        si = lt.index("S")
        if "C" in lt:
            ci = lt.index("C")
            if shape[si] == 1:
                lt[si] = "?"
            elif shape[ci] == 1:
                lt[ci], lt[si] = "?", "C"
            else:
                raise InputError(f"images with both channels and RGB samples are not supported "
                                 f"({desc})", path)
        else:
            lt[si] = "C"
    if "T" in lt and shape[lt.index("T")] > 1:
        raise InputError(f"5D/time-lapse images are not supported ({desc}); "
                         "save a single time point", path)
    big = [n for n in shape if n > 1]
    if len(big) > 4:
        raise InputError(f"5D/time-lapse images are not supported: {len(big)} dimensions longer "
                         f"than 1 in shape {shape}", path)
    # axes of length 1 other than Y and X carry nothing
    keep = [i for i, n in enumerate(shape) if n > 1 or lt[i] in "YX"]
    res = {i: lt[i] for i in keep}
    if "Y" in res.values() and "X" in res.values():
        unknown = [i for i in keep if res[i] == "?"]
        if "C" not in res.values():
            small = [i for i in unknown if shape[i] <= 4]
            if small:
                c = min(small, key=lambda i: (shape[i], i))
                res[c] = "C"
                unknown.remove(c)
        if "Z" not in res.values() and unknown:
            res[unknown.pop(0)] = "Z"
        if unknown:
            raise InputError(f"cannot tell what axis {unknown[0]} is ({desc}); "
                             "pass --axes", path)
    else:
        # no layout information: the heuristic of the module docstring
        for i in keep:
            if res[i] != "C":
                res[i] = "?"
        n = len(keep)
        if n < 2:
            raise InputError(f"not an image: shape {shape}", path)
        cs = [i for i in keep if res[i] == "C"]
        if not cs and n >= 3:
            small = [i for i in keep if shape[i] <= 4]
            if small:
                cs = [min(small, key=lambda i: (shape[i], i))]
            elif n == 4:
                raise InputError(f"cannot tell which axis holds the channels ({desc}); "
                                 "pass --axes", path)
        rest = [i for i in keep if i not in cs]
        if len(rest) == 3:
            if cs and cs[0] == keep[-1] and shape[rest[2]] < min(shape[rest[0]], shape[rest[1]]):
                names = "YXZ"  # 3DCellPol layout (Y, X, Z, C)
            else:
                names = "ZYX"
        elif len(rest) == 2:
            names = "YX"
        else:
            raise InputError(f"cannot interpret {desc}; pass --axes", path)
        for i, a in zip(rest, names):
            res[i] = a
        for i in cs:
            res[i] = "C"
    found = list(res.values())
    for a in "CZYX":
        if found.count(a) > 1:
            raise InputError(f"axis {a} appears more than once ({desc})", path)
    by_letter = {a: i for i, a in res.items()}
    out_axes = [by_letter.get("C")] + ([by_letter["Z"]] if "Z" in by_letter else []) + \
        [by_letter["Y"], by_letter["X"]]
    disk = "".join(given[i] if given[i] in "CZYXST" else res.get(i, "?") for i in range(len(shape)))
    return out_axes, disk.replace("?", "Q")


def _apply_axes(arr, out_axes):
    """Eagerly rearrange ``arr`` to the output axes (drops length-1 leftovers)."""
    used = [a for a in out_axes if a is not None]
    sub = arr[tuple(slice(None) if i in used else 0 for i in range(arr.ndim))]
    kept = [i for i in range(arr.ndim) if i in used]
    sub = np.transpose(sub, [kept.index(a) for a in used])
    if out_axes[0] is None:
        sub = sub[np.newaxis]
    return np.ascontiguousarray(sub)


def _ome_metadata(tif):
    """((z, y, x) sizes in µm or None each, channel names) from OME-XML."""
    sizes, names = [None, None, None], []
    try:
        root = ET.fromstring(tif.ome_metadata)
    except (ET.ParseError, TypeError, ValueError):
        return sizes, names
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return sizes, names
    for k, ax in enumerate("ZYX"):
        value = _positive(pixels.get(f"PhysicalSize{ax}"))
        factor = _unit_factor(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if value is not None and factor is not None:
            sizes[k] = value * factor
    names = [ch.get("Name") or "" for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"]
    return sizes, names


def _resolution_size(page, tag):
    """Pixel size along a resolution tag, in the tag's unit (None if absent)."""
    try:
        num, den = page.tags[tag].value
    except (KeyError, TypeError, ValueError):
        return None
    if not num or not den:
        return None
    return _positive(den / num)


def _imagej_metadata(tif, series):
    sizes, names = [None, None, None], []
    meta = tif.imagej_metadata or {}
    page = series.keyframe if series.keyframe is not None else tif.pages.first
    unit = meta.get("unit")
    for k, (tag, key) in enumerate([(None, "zunit"), ("YResolution", "yunit"),
                                    ("XResolution", None)]):
        factor = _unit_factor(meta.get(key, unit) if key else unit)
        if factor is None:
            continue
        if tag is None:
            # ImageJ omits spacing when the z-step is 1 unit
            value = _positive(meta.get("spacing", 1.0))
        else:
            value = _resolution_size(page, tag)
        if value is not None:
            sizes[k] = value * factor
    labels = meta.get("Labels")
    if isinstance(labels, (list, tuple)):
        names = [str(x) for x in labels]
    return sizes, names


def _imagej_channel_names(labels, n_channels, n_z):
    """Slice labels as channel names when they are per channel (same for all z)."""
    if not labels or n_channels < 1:
        return []
    if len(labels) == n_channels:
        return list(labels)
    if n_z > 1 and len(labels) == n_channels * n_z:
        first = labels[:n_channels]
        if all(labels[z * n_channels:(z + 1) * n_channels] == first for z in range(n_z)):
            return list(first)
    return []


def _lsm_metadata(tif):
    sizes, names = [None, None, None], []
    meta = tif.lsm_metadata or {}
    for k, ax in enumerate("ZYX"):
        value = _positive(meta.get(f"VoxelSize{ax}"))
        if value is not None:
            sizes[k] = value * 1e6  # metres
    colors = meta.get("ChannelColors")
    if isinstance(colors, dict):
        names = [str(x) for x in colors.get("ColorNames", [])]
    return sizes, names


def _available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable, else free physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _gib(n) -> str:
    return f"{n / 2**30:.1f} GiB"


def _check_planned_read(series, path, *, lazy):
    """Refuse, before allocating, a read that cannot fit in memory or a header that lies.

    Deflate cannot compress more than about 1032:1, so a deflate file whose
    header claims far more pixels than its data could hold is corrupt (or a
    decompression bomb). An eager read needs the whole image (twice, while
    its axes are rearranged); a lazy read decodes a whole TIFF page at a time.
    """
    nbytes = int(series.nbytes)
    page = series.keyframe
    compression = int(getattr(page, "compression", 1) or 1)
    if compression in _DEFLATE_CODES:
        stored = sum(int(b) for p in series.pages if p is not None
                     for b in getattr(p, "databytecounts", ()))
        if nbytes > _DEFLATE_MAX_RATIO * max(stored, 1):
            raise InputError(f"the file is corrupt: its header claims {series.shape} pixels "
                             f"({_gib(nbytes)}) but holds only {stored} bytes of deflate data",
                             path)
    need = int(getattr(page, "nbytes", 0) or 0) if lazy else 2 * nbytes
    free = _available_memory()
    if need > free:
        what = "a single plane of the image" if lazy else "the image"
        raise InputError(f"reading {what} needs {_gib(need)} of memory but only {_gib(free)} "
                         f"are available (shape {tuple(series.shape)})", path)


def _check_complete(tif, series, path):
    """Raise InputError when image data lie beyond the end of the file."""
    size = tif.filehandle.size
    offset = series.dataoffset
    if offset is not None:
        if offset + series.nbytes > size:
            raise InputError("the file is truncated: image data end beyond the end of the file",
                             path)
        return
    for page in series.pages:
        if page is None:
            continue
        end = max((o + b for o, b in zip(page.dataoffsets, page.databytecounts) if b),
                  default=0)
        if end > page.parent.filehandle.size:
            raise InputError("the file is truncated: image data end beyond the end of the file",
                             path)


def _zarr_source(path, series):
    """A zarr array over the series when zarr is installed, else None."""
    try:
        import tifffile
        import zarr
    except ImportError:
        return None
    try:
        # the store keeps the file open for as long as the array lives
        store = tifffile.imread(path, aszarr=True)
        z = zarr.open(store, mode="r")
        if not hasattr(z, "shape") and hasattr(z, "__getitem__"):
            z = z["0"]  # multiscale group: full resolution
        if tuple(z.shape) != tuple(series.shape):
            return None
        return z
    except Exception:  # any zarr/tifffile version mismatch: use the page reader
        return None


def _lazy_source(tif, series, path):
    if series.dataoffset is not None and series.keyframe is not None \
            and series.keyframe.is_memmappable:
        dtype = np.dtype(tif.byteorder + np.dtype(series.dtype).char)
        return np.memmap(path, dtype=dtype, mode="r", offset=series.dataoffset,
                         shape=tuple(series.shape))
    z = _zarr_source(path, series)
    if z is not None:
        return z
    try:
        return _TiffPageReader(path, series.shape, series.dtype, series.keyframe.shape,
                               len(series.pages))
    except (ValueError, TypeError, AttributeError):
        # pages do not map onto the array simply: load it once
        return np.asarray(series.asarray())


def _is_zarr_folder(path) -> bool:
    """An OME-Zarr image folder: a ``.zarr`` name, or zarr group metadata inside."""
    from .ome_zarr import is_zarr_path

    return is_zarr_path(path) or (path / "zarr.json").is_file() or (path / ".zattrs").is_file()


def read_image(path, *, axes=None, voxel_size=None, lazy=False) -> CellImage:
    """Read a TIFF, ImageJ, OME-TIFF, LSM file or OME-Zarr folder into a :class:`CellImage`.

    Parameters
    ----------
    path : str or Path
        The image file.
    axes : str, optional
        tifffile axis letters of the stored array (C, Z, Y, X, S = samples
        counted as channels, T = time, Q = unknown), e.g. ``"YXZC"``,
        ``"ZCYX"``, ``"CYX"``; overrides the file's metadata and the heuristic.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) in µm, overriding the metadata. For 2D images z is ignored
        and stored as 1.0.
    lazy : bool
        Return a :class:`LazyArray` that reads only what is indexed instead of
        loading the whole file (see the module docstring).

    Returns
    -------
    CellImage
        ``data`` is (C, Z, Y, X) or (C, Y, X) in the file's dtype;
        ``voxel_size`` is (z, y, x) µm or None when not known; ``axes`` holds
        the stored axes as interpreted (e.g. ``"YXZC"``).

    Raises
    ------
    InputError
        Missing file, folder, not a TIFF, truncated or corrupt file, 5D or
        time-lapse data, empty image, or a bad ``axes``/``voxel_size``.
    """
    import tifffile

    path = Path(path)
    if path.is_dir() and _is_zarr_folder(path):
        from .ome_zarr import read_ome_zarr

        return read_ome_zarr(path, axes=axes, voxel_size=voxel_size, lazy=lazy)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, not an image file", path)
    override_vs = None if voxel_size is None else check_voxel_size(voxel_size, path)

    with _capture_tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except MemoryError:
            raise
        except Exception as exc:
            raise InputError(f"not a readable TIFF/OME-TIFF/LSM file ({_first_line(exc)})",
                             path) from None
        try:
            with tif:
                try:
                    series_list = tif.series
                    series = series_list[0] if series_list else None
                    shape = tuple(int(n) for n in series.shape) if series is not None else ()
                except MemoryError:
                    raise
                except Exception as exc:
                    raise InputError(f"cannot read the image structure ({_first_line(exc)})",
                                     path) from None
                if series is None or not shape:
                    raise InputError("the file contains no image (empty or truncated file?)", path)
                if any(n == 0 for n in shape):
                    raise InputError(f"the image is empty (shape {shape})", path)
                if any(s in m for m in log.messages for s in _CORRUPT_SIGNS):
                    raise InputError("the file is truncated or corrupt (broken TIFF structure)",
                                     path)
                _check_complete(tif, series, path)
                if any("invalid value offset" in m for m in log.messages):
                    raise InputError("the file is truncated: part of its metadata (e.g. the "
                                     "OME-XML) lies beyond the end of the file", path)
                missing = [m for m in log.messages if "series is missing" in m]
                if missing:  # tifffile would zero the planes the metadata promise
                    n = re.search(r"missing (\d+)", missing[0])
                    raise InputError("the file is truncated: its metadata describe "
                                     f"{n.group(1) + ' ' if n else ''}more plane(s) than the "
                                     "file holds", path)
                _check_planned_read(series, path, lazy=lazy)

                letters = _parse_override(axes, shape, path) if axes is not None \
                    else _stored_letters(tif, series)
                out_axes, disk_axes = _resolve_axes(shape, letters, path)
                is_3d = len(out_axes) == 4
                kind = str(getattr(series, "kind", "") or "").lower()
                sizes, names = [None, None, None], []
                try:
                    if kind == "ome":
                        sizes, names = _ome_metadata(tif)
                    elif kind == "imagej":
                        sizes, names = _imagej_metadata(tif, series)
                    elif kind == "lsm":
                        sizes, names = _lsm_metadata(tif)
                except Exception:  # odd metadata must not stop reading the pixels
                    sizes, names = [None, None, None], []

                if lazy:
                    source = _lazy_source(tif, series, path)
                    data = LazyArray(source, out_axes)
                    nonfinite = _count_nonfinite(data)
                    if nonfinite:
                        data = LazyArray(source, out_axes, fill_nonfinite=True)
                else:
                    try:
                        arr = series.asarray()
                    except MemoryError:
                        raise
                    except Exception as exc:
                        raise InputError(f"cannot read the image data, the file may be "
                                         f"truncated or corrupt ({_first_line(exc)})",
                                         path) from None
                    if any(s in m for m in log.messages for s in _CORRUPT_SIGNS):
                        raise InputError("the file is truncated or corrupt", path)
                    arr = np.asarray(arr).reshape(shape)
                    data = _apply_axes(arr, out_axes)
                    nonfinite = _count_nonfinite(data)
                    fill_nonfinite(data, channel_axis=0)
        except InputError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read the image ({_first_line(exc)})", path) from None

    n_c = int(data.shape[0])
    n_z = int(data.shape[1]) if is_3d else 1
    n_dims = 3 if is_3d else 2
    if kind == "imagej":
        names = _imagej_channel_names(names, n_c, n_z)
    if len(names) != n_c:
        names = []
    channel_names = [str(n) if n else f"C{i}" for i, n in
                     itertools.zip_longest(range(n_c), names, fillvalue="")]

    if override_vs is not None:
        if is_3d and isinstance(voxel_size, PlaneVoxelSize):
            raise InputError("a 3D image needs the voxel size X Y Z (3 values); only X Y "
                             "were given", path)
        vs = override_vs if is_3d else (1.0, override_vs[1], override_vs[2])
    elif is_3d:
        vs = tuple(sizes) if all(v is not None for v in sizes) else None
    else:
        vs = (1.0, sizes[1], sizes[2]) if sizes[1] is not None and sizes[2] is not None else None
    if vs is not None:
        vs = tuple(float(v) for v in vs)
        if override_vs is None and any(
                not VOXEL_SIZE_RANGE_UM[0] <= v <= VOXEL_SIZE_RANGE_UM[1] for v in vs[-n_dims:]):
            raise InputError(f"the file's metadata give an implausible voxel size "
                             f"{_vs_text(vs[-n_dims:])} (outside {VOXEL_SIZE_RANGE_UM[0]:g}-"
                             f"{VOXEL_SIZE_RANGE_UM[1]:g} µm); pass --voxel-size", path)
    return CellImage(data, vs, channel_names, path, disk_axes, nonfinite=nonfinite)


# ---------------------------------------------------------------------------
# Channels and intensities


def resolve_channels(image, *, channels=None, structures=("nucleus", "golgi")) -> tuple:
    """Pick the start and end channels of an image.

    Parameters
    ----------
    image : CellImage
        The image.
    channels : (int, int), optional
        Explicit 0-based (start, end) channels.
    structures : (str, str) or None
        Start and end structure names; channels whose names contain them
        (case-insensitive) are used when ``channels`` is not given. None means
        the default ("nucleus", "golgi").

    Returns
    -------
    (int, int)
        The start and end channel indices: ``channels`` if given, else the
        channels named after the structures, else (0, 1).

    Raises
    ------
    InputError
        A channel out of range, start == end, or fewer than 2 channels.
    """
    n = int(image.n_channels)
    path = getattr(image, "path", None)
    if channels is not None:
        try:
            start, end = (int(c) for c in channels)
        except (TypeError, ValueError):
            raise InputError(f"channels must be two integers (start end), got {channels!r}",
                             path) from None
        for c in (start, end):
            if c < 0:
                raise InputError(f"channel {c} requested: channels are 0-based and not negative",
                                 path)
            if c >= n:
                raise InputError(f"channel {c} requested but the image has {n} channel(s)", path)
        if start == end:
            raise InputError(f"start and end channels must differ (both are {start})", path)
        return start, end
    if n < 2:
        raise InputError(f"needs 2 channels (start and end), image has {n}", path)
    if structures is None:
        structures = ("nucleus", "golgi")
    names = [str(x).lower() for x in (image.channel_names or [])]
    if len(names) == n and len(structures) == 2:
        s_name, e_name = (str(x).lower() for x in structures)
        starts = [i for i, nm in enumerate(names) if s_name and s_name in nm]
        if starts:
            ends = [i for i, nm in enumerate(names) if e_name and e_name in nm and i != starts[0]]
            if ends:
                return starts[0], ends[0]
    return 0, 1


def _channel_sample(data, c, max_samples, rng):
    """Up to about ``max_samples`` values of channel ``c`` as a 1D array."""
    spatial = tuple(int(n) for n in data.shape[1:])
    n = int(np.prod(spatial, dtype=np.int64))
    if n <= max_samples:
        return np.asarray(data[c]).reshape(-1)
    if isinstance(data, np.ndarray):
        idx = np.sort(rng.integers(0, n, size=max_samples))
        return np.asarray(data[c][np.unravel_index(idx, spatial)])
    # lazy data: a few evenly spaced z-planes, each read whole or with a stride
    if len(spatial) == 3:
        plane = spatial[1] * spatial[2]
        k = int(min(spatial[0], max(1, math.ceil(max_samples / plane))))
        zs = [int(z) for z in np.unique(np.linspace(0, spatial[0] - 1, k).round())]
    else:
        plane, k, zs = n, 1, [None]
    step = max(1, int(math.sqrt(k * plane / max_samples)))
    parts = [data[c, ::step, ::step] if z is None else data[c, z, ::step, ::step] for z in zs]
    values = np.concatenate([np.asarray(p).reshape(-1) for p in parts])
    if values.size > max_samples:
        values = values[np.sort(rng.choice(values.size, size=max_samples, replace=False))]
    return values


def percentile_limits(data, *, low=0.05, high=99.95, max_samples=2_000_000, seed=0) -> np.ndarray:
    """Per-channel intensity percentiles.

    Parameters
    ----------
    data : array-like
        (C, Z, Y, X) or (C, Y, X); numpy, memmap or :class:`LazyArray`.
    low, high : float
        Percentiles in [0, 100], ``low < high``.
    max_samples : int
        Channels with more voxels are subsampled (random voxels for in-memory
        arrays, evenly spaced planes for lazy data) with a fixed seed.
    seed : int
        Seed of the subsampling, so results are reproducible.

    Returns
    -------
    ndarray, shape (C, 2), float64
        (low, high) values per channel. NaNs are ignored.
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    if max_samples < 1:
        raise ValueError("max_samples must be positive")
    rng = np.random.default_rng(seed)
    n_c = int(data.shape[0])
    out = np.zeros((n_c, 2), dtype=np.float64)
    for c in range(n_c):
        values = _channel_sample(data, c, int(max_samples), rng)
        if values.size == 0:
            continue
        values = values.astype(np.float64, copy=False)
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size == 0:
            continue
        out[c] = np.percentile(finite, [low, high])
    return out


def normalize_percentile(data, *, limits=None, low=0.05, high=99.95, clip=True,
                         out_dtype=np.float32) -> np.ndarray:
    """Scale each channel so that its low limit maps to 0 and its high limit to 1.

    Parameters
    ----------
    data : array-like
        (C, Z, Y, X) or (C, Y, X); numpy, memmap or :class:`LazyArray`.
    limits : array-like, shape (C, 2), optional
        (low, high) per channel; computed with :func:`percentile_limits` when
        not given.
    low, high : float
        Percentiles used when ``limits`` is None.
    clip : bool
        Clip the result to [0, 1].
    out_dtype : dtype
        Floating dtype of the result.

    Returns
    -------
    ndarray
        Same shape as ``data``. A channel whose limits are equal maps to
        ``value - low`` (0 at the limit) instead of dividing by zero.
    """
    n_c = int(data.shape[0])
    if limits is None:
        limits = percentile_limits(data, low=low, high=high)
    limits = np.asarray(limits, dtype=np.float64)
    if limits.shape != (n_c, 2):
        raise ValueError(f"limits must have shape ({n_c}, 2), got {limits.shape}")
    out = np.empty(tuple(int(n) for n in data.shape), dtype=out_dtype)
    for c in range(n_c):
        lo, hi = limits[c]
        span = hi - lo if hi > lo else 1.0
        x = np.asarray(data[c])
        np.subtract(x, lo, out=out[c], casting="unsafe")
        out[c] /= np.asarray(span, dtype=out_dtype)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def write_ome_tiff(path, data, *, voxel_size=None, channel_names: Optional[Sequence[str]] = None,
                   compression="zlib"):
    """Write a (C, Z, Y, X) or (C, Y, X) array as OME-TIFF, atomically.

    Parameters
    ----------
    path : str or Path
        Target file, normally ending in ``.ome.tif``.
    data : ndarray
        (C, Z, Y, X) or (C, Y, X).
    voxel_size : tuple of 3 floats, optional
        (z, y, x) in µm. For 2D data only y and x are written.
    channel_names : sequence of str, optional
        One name per channel.
    compression : str or None
        tifffile compression (default zlib, lossless).
    """
    import tifffile

    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"expected (C, Z, Y, X) or (C, Y, X) data, got shape {data.shape}")
    axes = "CZYX" if data.ndim == 4 else "CYX"
    metadata = {"axes": axes}
    if voxel_size is not None:
        vz, vy, vx = (float(v) for v in voxel_size)
        metadata.update(PhysicalSizeX=vx, PhysicalSizeXUnit="µm",
                        PhysicalSizeY=vy, PhysicalSizeYUnit="µm")
        if data.ndim == 4:
            metadata.update(PhysicalSizeZ=vz, PhysicalSizeZUnit="µm")
    if channel_names is not None:
        if len(channel_names) != data.shape[0]:
            raise ValueError("one channel name per channel is needed")
        metadata["Channel"] = {"Name": [str(n) for n in channel_names]}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, ome=True, metadata=metadata, compression=compression,
                         photometric="minisblack")
