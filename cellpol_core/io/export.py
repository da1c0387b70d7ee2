"""Vector exports for other tools: napari points layers and Polarity-JaM tables.

napari points CSV
-----------------
One file per structure, ``<stem>_<structure>.csv``, in the layout napari's
built-in CSV reader/writer uses for a points layer::

    index,axis-0,axis-1,axis-2,pair_id[,score]

``axis-k`` are array-index coordinates in voxels, in napari's (z, y, x)
order (2D: ``axis-0, axis-1`` = y, x). ``index`` is the row number and
``pair_id`` (a point property) links a start point to its end point: row i of
the vector table is pair i in both files. To show the points at the image's
scale, give the layer the voxel size as its ``scale``.

Polarity-JaM CSV
----------------
A 2D table with Polarity-JaM's column names (``polarityjam/polarityjam``,
``model/collection.py`` and ``compute/compute.py``)::

    label,nuc_X,nuc_Y,organelle_X,organelle_Y,organelle_orientation_rad,organelle_orientation_deg

``*_X`` is the column and ``*_Y`` the row of the centroid, in pixels (as
Polarity-JaM takes them from scikit-image's ``(row, col)`` centroids).
The start structure is written as ``nuc`` and the end structure as
``organelle``. The orientation is Polarity-JaM's
``pi - atan2(nuc_Y - organelle_Y, nuc_X - organelle_X)``, i.e.
``atan2(-(organelle_Y - nuc_Y), organelle_X - nuc_X)`` in [0, 2π): 0 = the
organelle lies to the right of the nucleus (+X), π/2 = above it on screen
(smaller row), counter-clockwise as seen on screen. That is CellPol's
``azimuth_deg`` computed in pixels. 3D tables are projected onto the xy plane
(z is dropped). ``label`` numbers the cells from 1.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .atomic import write_text_atomic
from ..errors import InputError
from .vectors import DEFAULT_STRUCTURES, VectorTable, read_csv_rows

POLARITYJAM_COLUMNS = ("label", "nuc_X", "nuc_Y", "organelle_X", "organelle_Y",
                       "organelle_orientation_rad", "organelle_orientation_deg")


def _fmt(v, digits=4) -> str:
    v = float(v)
    if not math.isfinite(v):
        return ""
    s = f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _number(value, path, line, column, *, allow_empty=False):
    text = value.strip()
    if allow_empty and text.lower() in ("", "nan"):
        return math.nan
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"line {line}: column '{column}' is not a number: {value!r}",
                         path) from None
    if not math.isfinite(v):
        raise InputError(f"line {line}: column '{column}' is {text}, expected a finite number",
                         path)
    return v


# ----------------------------------------------------------------------------- napari

def napari_paths(out, names) -> list:
    """The two files :func:`write_napari_points` writes for ``out`` (a path or stem)."""
    out = Path(out)
    stem = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    s, e = names
    if s == e:
        s, e = f"{s}_start", f"{e}_end"
    return [out.with_name(f"{stem}_{s}.csv"), out.with_name(f"{stem}_{e}.csv")]


def write_napari_points(out, table: VectorTable) -> list:
    """Write the start and end points as two napari points CSVs.

    Parameters
    ----------
    out : str or Path
        Output path or stem; ``a/b.csv`` gives ``a/b_<start>.csv`` and
        ``a/b_<end>.csv``.
    table : VectorTable
        The vectors.

    Returns
    -------
    list of Path
        [start file, end file].
    """
    paths = napari_paths(out, table.names)
    ndim = table.ndim
    header = ["index"] + [f"axis-{k}" for k in range(ndim)] + ["pair_id"]
    if table.score is not None:
        header.append("score")
    for path, pts in zip(paths, (table.start, table.end)):
        coords = pts if ndim == 3 else pts[:, 1:]
        rows = []
        for i, p in enumerate(coords):
            row = [str(i)] + [_fmt(c) for c in p] + [str(i)]
            if table.score is not None:
                row.append(_fmt(table.score[i], 5))
            rows.append(row)
        _write_csv(path, header, rows)
    return paths


def read_napari_points(path) -> tuple:
    """Read one napari points CSV.

    Returns
    -------
    points : ndarray, shape (N, 3)
        (z, y, x) voxels (z = 0 for 2D files).
    pair_id : ndarray of int, shape (N,)
        The ``pair_id`` property, or the row number when the column is missing.
    ndim : int
        2 or 3 (the number of ``axis-k`` columns).

    Raises
    ------
    InputError
        Missing axis columns, more than 3 axes, bad numbers, duplicate pair ids.
    """
    rows = read_csv_rows(path)
    if not rows:
        raise InputError("empty file; expected a napari points CSV (index,axis-0,axis-1,...)", path)
    header = [c.strip() for c in rows[0]]
    axes = sorted((int(c[5:]) for c in header if c.startswith("axis-") and c[5:].isdigit()))
    if axes not in ([0, 1], [0, 1, 2]):
        raise InputError("expected columns axis-0,axis-1[,axis-2] of a napari points CSV; "
                         "header is " + ",".join(header), path)
    ndim = len(axes)
    col = {c: i for i, c in enumerate(header)}
    pts, ids = [], []
    for line, row in enumerate(rows[1:], start=2):
        row = list(row) + [""] * (len(header) - len(row))
        p = [_number(row[col[f"axis-{k}"]], path, line, f"axis-{k}") for k in range(ndim)]
        pts.append(([0.0] + p) if ndim == 2 else p)
        if "pair_id" in col:
            v = _number(row[col["pair_id"]], path, line, "pair_id")
            if v != int(v):
                raise InputError(f"line {line}: pair_id must be an integer, got {v}", path)
            ids.append(int(v))
        else:
            ids.append(line - 2)
    ids = np.asarray(ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise InputError("duplicate pair_id values", path)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3), ids, ndim


def _names_from_paths(start_path, end_path):
    a, b = Path(start_path).stem, Path(end_path).stem
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    cut = a.rfind("_", 0, k + 1)
    if cut < 0 or cut + 1 >= len(a) or cut + 1 >= len(b):
        return DEFAULT_STRUCTURES
    return a[cut + 1:], b[cut + 1:]


def read_napari_vectors(start_path, end_path, *,
                        names: Optional[Sequence[str]] = None) -> VectorTable:
    """Pair two napari points CSVs into a vector table by their ``pair_id``.

    Points whose ``pair_id`` appears in one file only are left out. Vectors
    come in increasing ``pair_id`` order.

    Parameters
    ----------
    start_path, end_path : path
        Start- and end-structure points.
    names : (str, str), optional
        Structure names; default: the differing suffixes of the two file
        names (``x_nucleus.csv``, ``x_golgi.csv`` -> nucleus, golgi).
    """
    ps, ids_s, nd_s = read_napari_points(start_path)
    pe, ids_e, nd_e = read_napari_points(end_path)
    if nd_s != nd_e:
        raise InputError(f"the two napari files differ in dimensions ({nd_s}D and {nd_e}D)",
                         end_path)
    common = np.intersect1d(ids_s, ids_e)
    order_s = {int(i): k for k, i in enumerate(ids_s)}
    order_e = {int(i): k for k, i in enumerate(ids_e)}
    start = ps[[order_s[int(i)] for i in common]] if len(common) else np.zeros((0, 3))
    end = pe[[order_e[int(i)] for i in common]] if len(common) else np.zeros((0, 3))
    names = tuple(names) if names else _names_from_paths(start_path, end_path)
    return VectorTable(start, end, names=names, ndim=nd_s, extra={"pair_id": common.astype(float)})


# ----------------------------------------------------------------------------- Polarity-JaM

def polarityjam_orientation_rad(nuc_x, nuc_y, organelle_x, organelle_y) -> np.ndarray:
    """Polarity-JaM's organelle orientation in radians, in [0, 2π) (see module docstring)."""
    nx, ny = np.asarray(nuc_x, float), np.asarray(nuc_y, float)
    ox, oy = np.asarray(organelle_x, float), np.asarray(organelle_y, float)
    a = np.pi - np.arctan2(ny - oy, nx - ox)
    return np.where(a >= 2 * np.pi, a - 2 * np.pi, a)


def write_polarityjam(path, table: VectorTable):
    """Write a Polarity-JaM-compatible CSV (see the module docstring), atomically."""
    nx, ny = table.start[:, 2], table.start[:, 1]
    ox, oy = table.end[:, 2], table.end[:, 1]
    rad = polarityjam_orientation_rad(nx, ny, ox, oy)
    rows = []
    for i in range(len(table)):
        rows.append([str(i + 1), _fmt(nx[i]), _fmt(ny[i]), _fmt(ox[i]), _fmt(oy[i]),
                     _fmt(rad[i], 6), _fmt(np.degrees(rad[i]), 4)])
    _write_csv(path, list(POLARITYJAM_COLUMNS), rows)


def is_polarityjam_csv(path) -> bool:
    """Whether the file's header has Polarity-JaM's nucleus and organelle columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    header = {c.strip() for c in header}
    return {"nuc_X", "nuc_Y", "organelle_X", "organelle_Y"} <= header


def read_polarityjam(path, *, names: Sequence[str] = DEFAULT_STRUCTURES) -> VectorTable:
    """Read a Polarity-JaM CSV (its own output or :func:`write_polarityjam`'s) as a 2D table.

    Rows without an organelle (empty or NaN coordinates, as Polarity-JaM
    writes for cells without one) are skipped. Other columns are ignored
    except ``label``, kept as ``extra["label"]``.

    Parameters
    ----------
    path : path
        The CSV.
    names : (str, str)
        Names to give the nucleus (start) and organelle (end) structures.
    """
    rows = read_csv_rows(path)
    if not rows:
        raise InputError("empty file; expected a Polarity-JaM CSV", path)
    header = [c.strip() for c in rows[0]]
    need = ["nuc_X", "nuc_Y", "organelle_X", "organelle_Y"]
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(f"missing Polarity-JaM column(s) {', '.join(missing)}; header is "
                         + ",".join(header), path)
    col = {c: i for i, c in enumerate(header)}
    start, end, labels = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        row = list(row) + [""] * (len(header) - len(row))
        v = [_number(row[col[c]], path, line, c, allow_empty=True) for c in need]
        if any(math.isnan(x) for x in v):
            continue
        start.append([0.0, v[1], v[0]])
        end.append([0.0, v[3], v[2]])
        if "label" in col:
            labels.append(_number(row[col["label"]], path, line, "label", allow_empty=True))
    extra = {"label": np.asarray(labels)} if "label" in col else {}
    return VectorTable(np.asarray(start).reshape(-1, 3), np.asarray(end).reshape(-1, 3),
                       names=tuple(names), ndim=2, extra=extra)
