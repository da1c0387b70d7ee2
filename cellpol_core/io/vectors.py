"""Paired-centroid vector tables and their CSV formats.

In memory, a :class:`VectorTable` holds (N, 3) ``start`` and ``end`` arrays in
(z, y, x) voxels (z = 0 for 2D tables), an optional per-vector ``score`` and
any extra columns.

CellPol CSV
-----------
A header row, then ``<start>_x,<start>_y,<start>_z,<end>_x,<end>_y,<end>_z``
(start columns first; 2D files have no ``_z`` columns), optional ``score``.
Coordinates are 0-based voxels: x = column (last array axis), y = row,
z = plane. When the voxel size is known, writers add µm coordinates,
``dx_um,dy_um,dz_um,length_um``, ``azimuth_deg`` (xy-plane angle, 0 = +x,
90 = up on screen (-y), counter-clockwise, in [0, 360)) and
``elevation_deg`` (angle out of the xy plane toward +z). Readers ignore
unknown columns.

VectorAnnotationTool (VAT) CSV
------------------------------
No header; six numeric columns ``XN,YN,XG,YG,ZN,ZG`` (X = column, Y = row,
Z = slice, nucleus first), 0-based. Detected automatically on reading.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .atomic import write_text_atomic
from ..errors import InputError

DEFAULT_STRUCTURES = ("nucleus", "golgi")
_COORD_RE = re.compile(r"^(?P<name>.+)_(?P<axis>[xyz])$")


@dataclass
class VectorTable:
    """Paired centroids: one vector per cell, from start to end structure.

    Attributes
    ----------
    start, end : ndarray, shape (N, 3)
        Centroids in (z, y, x) voxels, float64. z is 0 for 2D tables.
    score : ndarray, shape (N,), optional
        Confidence per vector (predictions), or None.
    names : tuple of str
        (start structure, end structure), e.g. ``("nucleus", "golgi")``.
    ndim : int
        2 or 3 spatial dimensions.
    extra : dict of str to ndarray
        Other per-vector columns, kept through reading and writing.
    """

    start: np.ndarray
    end: np.ndarray
    score: Optional[np.ndarray] = None
    names: tuple = DEFAULT_STRUCTURES
    ndim: int = 3
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.start = _as_points(self.start)
        self.end = _as_points(self.end)
        if self.start.shape != self.end.shape:
            raise ValueError(f"start {self.start.shape} and end {self.end.shape} differ in shape")
        if self.score is not None:
            self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
            if len(self.score) != len(self.start):
                raise ValueError("score must have one value per vector")
        self.names = tuple(self.names)
        if len(self.names) != 2:
            raise ValueError("names must be (start, end)")
        if self.ndim not in (2, 3):
            raise ValueError("ndim must be 2 or 3")

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls, *, names=DEFAULT_STRUCTURES, ndim=3) -> "VectorTable":
        """A table with zero vectors."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), None, names=names, ndim=ndim)

    def subset(self, index) -> "VectorTable":
        """The vectors selected by a boolean mask or an index array."""
        return VectorTable(
            self.start[index], self.end[index],
            None if self.score is None else self.score[index],
            names=self.names, ndim=self.ndim,
            extra={k: np.asarray(v)[index] for k, v in self.extra.items()},
        )

    def scaled(self, factor) -> "VectorTable":
        """The table with coordinates multiplied per axis, extra columns kept.

        Parameters
        ----------
        factor : float or tuple of floats
            One factor, (z, y, x) factors, or (y, x) factors (z unchanged). To
            move from voxel size ``a`` to voxel size ``b``, use ``a / b``.

        Examples
        --------
        >>> t = VectorTable([[1.0, 2.0, 2.0]], [[1.0, 4.0, 6.0]])
        >>> t.scaled((2.0, 0.5, 0.5)).end.tolist()
        [[2.0, 2.0, 3.0]]
        """
        return self._with_points(self.start * _per_axis(factor, 1.0),
                                 self.end * _per_axis(factor, 1.0))

    def shifted(self, offset) -> "VectorTable":
        """The table with ``offset`` voxels added to all coordinates, extra columns kept.

        Parameters
        ----------
        offset : float or tuple of floats
            One offset, (z, y, x) offsets, or (y, x) offsets (z unchanged),
            in voxels. The z of a 2D table stays 0: one offset moves only y
            and x, and a non-zero z offset is an error.

        Examples
        --------
        >>> t = VectorTable([[0.0, 2.0, 2.0]], [[0.0, 4.0, 6.0]], ndim=2)
        >>> t.shifted((-2, -2)).start.tolist()
        [[0.0, 0.0, 0.0]]
        """
        off = _per_axis(offset, 0.0)
        if self.ndim == 2:
            if np.ndim(offset) == 0:
                off[0] = 0.0
            elif off[0] != 0:
                raise ValueError(f"a 2D table cannot be shifted in z, got offset {tuple(off)}")
        return self._with_points(self.start + off, self.end + off)

    def _with_points(self, start, end) -> "VectorTable":
        return VectorTable(start, end, None if self.score is None else self.score.copy(),
                           names=self.names, ndim=self.ndim,
                           extra={k: np.array(v, copy=True) for k, v in self.extra.items()})

    def geometry(self, voxel_size) -> dict:
        """Per-vector geometry in µm; see :func:`vector_geometry`."""
        return vector_geometry(self.start, self.end, voxel_size)


def _per_axis(value, fill) -> np.ndarray:
    """A scalar, (z, y, x) or (y, x) value as a (3,) array; ``fill`` for a missing z."""
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if len(v) == 1:
        return np.full(3, v[0])
    if len(v) == 2:
        return np.concatenate([[fill], v])
    if len(v) != 3:
        raise ValueError(f"expected one value, (z, y, x) or (y, x), got {tuple(v)}")
    return v


def _as_points(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 3))
    if a.ndim != 2 or a.shape[1] not in (2, 3):
        raise ValueError(f"points must be (N, 3) in (z, y, x), got shape {a.shape}")
    if a.shape[1] == 2:  # (y, x) points of a 2D image
        a = np.concatenate([np.zeros((len(a), 1)), a], axis=1)
    return a


def vector_geometry(start, end, voxel_size) -> dict:
    """Vector components, length and angles in µm.

    Parameters
    ----------
    start, end : ndarray, shape (N, 3)
        (z, y, x) voxels.
    voxel_size : tuple of 3 floats
        (z, y, x) µm per voxel.

    Returns
    -------
    dict
        ``dx_um, dy_um, dz_um, length_um`` and ``azimuth_deg`` (xy-plane angle,
        0 = +x, 90 = up on screen i.e. -y, counter-clockwise, in [0, 360)) and
        ``elevation_deg`` (angle out of the xy plane toward +z, in [-90, 90]).
    """
    d = (np.asarray(end, float) - np.asarray(start, float)) * np.asarray(voxel_size, float)
    dz, dy, dx = d[:, 0], d[:, 1], d[:, 2]
    length = np.sqrt(dx * dx + dy * dy + dz * dz)
    azimuth = np.mod(np.degrees(np.arctan2(-dy, dx)), 360.0)
    # 359.99999 rounds to 360 in CSV output; keep the half-open interval.
    azimuth = np.where(azimuth >= 360.0, 0.0, azimuth)
    elevation = np.degrees(np.arctan2(dz, np.hypot(dx, dy)))
    return {"dx_um": dx, "dy_um": dy, "dz_um": dz, "length_um": length,
            "azimuth_deg": azimuth, "elevation_deg": elevation}


# ----------------------------------------------------------------------------- reading

def read_vectors(path, *, structures: Optional[Sequence[str]] = None) -> VectorTable:
    """Read a CellPol or VectorAnnotationTool CSV.

    Parameters
    ----------
    path : str or Path
        The CSV file. A file with a header is a CellPol CSV; a file without one
        and six numeric columns is a VAT CSV. An empty file, or one with only a
        header, is a valid table of zero vectors.
    structures : (str, str), optional
        Start and end structure names to read. By default the first two
        structures whose ``_x``/``_y`` columns appear in the header.

    Returns
    -------
    VectorTable

    Raises
    ------
    InputError
        When the file is missing, unreadable, lacks columns, or holds
        non-numeric or NaN coordinates.
    """
    path = Path(path)
    rows = read_csv_rows(path)
    names = tuple(structures) if structures else DEFAULT_STRUCTURES
    if not rows:
        return VectorTable.empty(names=names)
    if _is_numeric_row(rows[0]) or _is_vat_header(rows[0]):
        return _read_vat(rows, path, names=tuple(structures) if structures else DEFAULT_STRUCTURES)
    return _read_cellpol(rows, path, structures)


def read_csv_rows(path) -> list:
    """The non-blank rows of a CSV file; InputError when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, expected a CSV file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not a text CSV file", path) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from None
    return [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]


def _is_numeric_row(row) -> bool:
    try:
        [float(c) for c in row if c.strip() != ""]
    except ValueError:
        return False
    return True


def _is_vat_header(row) -> bool:
    return len(row) == 6 and all(re.fullmatch(r"\s*[XYZ][NG]\s*", c) for c in row)


#: Largest coordinate (voxels) a vector CSV may hold; beyond it the value is no image
#: position and would overflow the µm arithmetic (±1e300 did).
MAX_COORDINATE = 1e7


def _parse_float(value, path, line, column, *, coordinate=False) -> float:
    try:
        v = float(value)
    except ValueError:
        raise InputError(f"line {line}: column '{column}' is not a number: {value!r}", path) from None
    if not math.isfinite(v):
        raise InputError(f"line {line}: column '{column}' is {value.strip() or 'empty'}, "
                         "expected a finite number", path)
    if coordinate and abs(v) > MAX_COORDINATE:
        raise InputError(f"line {line}: column '{column}' is {value.strip()}, not an image "
                         f"coordinate (beyond ±{MAX_COORDINATE:g} voxels)", path)
    return v


def _read_vat(rows, path, *, names) -> VectorTable:
    first = 1 if _is_vat_header(rows[0]) else 0
    cols = ["XN", "YN", "XG", "YG", "ZN", "ZG"]
    values = []
    for i, row in enumerate(rows[first:], start=first + 1):
        cells = [c for c in row]
        if len(cells) != 6:
            raise InputError(f"line {i}: VectorAnnotationTool CSV needs 6 columns "
                             f"(XN,YN,XG,YG,ZN,ZG), found {len(cells)}", path)
        values.append([_parse_float(c, path, i, cols[j], coordinate=True)
                       for j, c in enumerate(cells)])
    if not values:
        return VectorTable.empty(names=names)
    v = np.asarray(values)
    xn, yn, xg, yg, zn, zg = v.T
    return VectorTable(np.stack([zn, yn, xn], 1), np.stack([zg, yg, xg], 1), names=names, ndim=3)


def _header_structures(header) -> list:
    """Structure names having both _x and _y columns, in order of appearance."""
    axes_by_name = {}
    order = []
    for col in header:
        m = _COORD_RE.match(col.strip())
        if not m:
            continue
        name = m.group("name")
        if name not in axes_by_name:
            axes_by_name[name] = set()
            order.append(name)
        axes_by_name[name].add(m.group("axis"))
    return [n for n in order if {"x", "y"} <= axes_by_name[n]], axes_by_name


def _read_cellpol(rows, path, structures) -> VectorTable:
    header = [c.strip() for c in rows[0]]
    found, axes_by_name = _header_structures(header)
    if structures:
        names = tuple(structures)
        missing = [f"{n}_{a}" for n in names for a in "xy" if f"{n}_{a}" not in header]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}; header is "
                             f"{','.join(header)}", path)
    else:
        if len(found) < 2:
            raise InputError("missing coordinate columns: expected <start>_x,<start>_y[,<start>_z],"
                             f"<end>_x,<end>_y[,<end>_z]; header is {','.join(header)}", path)
        names = (found[0], found[1])
    has_z = [f"{n}_z" in header for n in names]
    if has_z[0] != has_z[1]:
        raise InputError(f"only one structure has a _z column ({names[0]}: {has_z[0]}, "
                         f"{names[1]}: {has_z[1]})", path)
    ndim = 3 if has_z[0] else 2
    index = {c: i for i, c in enumerate(header)}
    coord_cols = [f"{n}_{a}" for n in names for a in ("zyx" if ndim == 3 else "yx")]
    known = set(coord_cols) | {"score"}
    extra_cols = [c for c in header if c not in known and c]
    data = {c: [] for c in coord_cols}
    score = [] if "score" in index else None
    extra = {c: [] for c in extra_cols}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            row = list(row) + [""] * (len(header) - len(row))
        for c in coord_cols:
            data[c].append(_parse_float(row[index[c]], path, line, c, coordinate=True))
        if score is not None:
            score.append(_parse_float(row[index["score"]], path, line, "score"))
        for c in extra_cols:
            extra[c].append(row[index[c]])
    n = len(rows) - 1

    def points(name):
        if n == 0:
            return np.zeros((0, 3))
        z = data[f"{name}_z"] if ndim == 3 else [0.0] * n
        return np.stack([z, data[f"{name}_y"], data[f"{name}_x"]], axis=1)

    return VectorTable(points(names[0]), points(names[1]),
                       None if score is None else np.asarray(score),
                       names=names, ndim=ndim, extra={k: _maybe_numeric(v) for k, v in extra.items()})


def _maybe_numeric(values):
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.asarray(values, dtype=object)


# ----------------------------------------------------------------------------- writing

def _fmt(v, digits=4) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return ""
        s = f"{v:.{digits}f}".rstrip("0").rstrip(".")
        return "0" if s in ("-0", "") else s
    return str(v)


# Columns that writers derive from coordinates; they are recomputed, never copied.
_DERIVED = ("dx_um", "dy_um", "dz_um", "length_um", "azimuth_deg", "elevation_deg")


def vectors_to_rows(table: VectorTable, *, voxel_size=None) -> tuple:
    """Header and rows of the CellPol CSV for ``table`` (see module docstring)."""
    s, e = table.names
    axes = "xyz" if table.ndim == 3 else "xy"
    col_of = {"x": 2, "y": 1, "z": 0}
    header = [f"{s}_{a}" for a in axes] + [f"{e}_{a}" for a in axes]
    columns = [table.start[:, col_of[a]] for a in axes] + [table.end[:, col_of[a]] for a in axes]
    digits = [4] * len(columns)
    if table.score is not None:
        header.append("score")
        columns.append(table.score)
        digits.append(5)
    if voxel_size is not None:
        vs = np.asarray(voxel_size, float)
        for name, pts in ((s, table.start), (e, table.end)):
            for a in axes:
                header.append(f"{name}_{a}_um")
                columns.append(pts[:, col_of[a]] * vs[col_of[a]])
                digits.append(4)
        geo = vector_geometry(table.start, table.end, vs)
        keys = ["dx_um", "dy_um", "dz_um", "length_um", "azimuth_deg", "elevation_deg"]
        if table.ndim == 2:
            keys = ["dx_um", "dy_um", "length_um", "azimuth_deg"]
        for k in keys:
            header.append(k)
            columns.append(geo[k])
            digits.append(3 if k.endswith("_deg") else 4)
    coord_um = {f"{n}_{a}_um" for n in (s, e) for a in "xyz"}
    for k, v in table.extra.items():
        if k in header or k in _DERIVED or k in coord_um:
            continue
        header.append(k)
        columns.append(np.asarray(v))
        digits.append(6)
    rows = []
    for i in range(len(table)):
        rows.append([_fmt(c[i].item() if hasattr(c[i], "item") else c[i], d)
                     for c, d in zip(columns, digits)])
    return header, rows


def write_vectors(path, table: VectorTable, *, voxel_size=None):
    """Write a CellPol CSV atomically.

    Parameters
    ----------
    path : str or Path
        Target CSV.
    table : VectorTable
        The vectors.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm. When given, µm coordinates, components, length, azimuth and
        elevation columns are added.
    """
    header, rows = vectors_to_rows(table, voxel_size=voxel_size)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_vat(path, table: VectorTable):
    """Write a VectorAnnotationTool CSV (no header, ``XN,YN,XG,YG,ZN,ZG``), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for a, b in zip(table.start, table.end):
        w.writerow([_fmt(a[2]), _fmt(a[1]), _fmt(b[2]), _fmt(b[1]), _fmt(a[0]), _fmt(b[0])])
    write_text_atomic(path, buf.getvalue())
