"""Vector tables to and from napari layer data (no Qt, no napari import).

napari holds a Vectors layer as an (N, 2, D) array: for each vector its
start position and its projection (end - start), in the layer's data
coordinates. CellPol keeps coordinates in voxels, so the layers get the voxel
size as their ``scale`` and stay aligned with an image layer of the same scale.
Layer ``metadata["cellpol"]`` keeps the structure names, the voxel size and
each Points layer's role (start or end) for writing back.
"""

from __future__ import annotations

import numpy as np

from cellpol_core.errors import InputError
from cellpol_core.io.vectors import DEFAULT_STRUCTURES, VectorTable, vector_geometry

# Colours of the two structures and the vectors, shared by every layer the plugin adds.
# Cyan and yellow stand out on the usual magenta/green channel colours.
START_COLOR = "cyan"
END_COLOR = "yellow"
VECTOR_COLOR = "white"
POINT_SIZE = 3.5
FEATURES = ("pair_id", "score", "length_um", "azimuth_deg")
_DERIVED = ("dx_um", "dy_um", "dz_um", "length_um", "azimuth_deg", "elevation_deg")


def voxel_size_from_table(table: VectorTable):
    """The (z, y, x) voxel size implied by a table's µm columns, or None.

    CellPol CSVs written with a voxel size carry ``<name>_<axis>_um`` next to
    the voxel coordinates; their ratio is the voxel size. 2D tables get z = 1.
    """
    start_name = table.names[0]
    col_of = {"z": 0, "y": 1, "x": 2}
    vs = [1.0, None, None]
    for axis in ("zyx" if table.ndim == 3 else "yx"):
        key = f"{start_name}_{axis}_um"
        um = table.extra.get(key)
        if um is None or um.dtype == object:
            return None
        vox = table.start[:, col_of[axis]]
        ok = np.abs(vox) > 1e-6
        if not np.any(ok):
            return None
        ratio = float(np.median(np.asarray(um, float)[ok] / vox[ok]))
        if not np.isfinite(ratio) or ratio <= 0:
            return None
        vs[col_of[axis]] = ratio
    return tuple(float(round(v, 6)) for v in vs)


def _extra_features(table: VectorTable) -> dict:
    """Extra per-vector columns worth keeping as features (not µm coordinates or geometry)."""
    coord_um = {f"{n}_{a}_um" for n in table.names for a in "xyz"}
    out = {}
    for key, values in table.extra.items():
        if key in _DERIVED or key in coord_um or key in FEATURES:
            continue
        out[key] = np.asarray(values)
    return out


def table_features(table: VectorTable, voxel_size=None) -> dict:
    """Per-vector features: pair_id, score, length_um, azimuth_deg, then other columns.

    Without a voxel size the length is unknown (NaN) and the azimuth is taken
    in pixels, which is right for square pixels.
    """
    n = len(table)
    if "pair_id" in table.extra and table.extra["pair_id"].dtype != object:
        pair_id = np.asarray(table.extra["pair_id"]).astype(np.int64)
    else:
        pair_id = np.arange(1, n + 1, dtype=np.int64)
    score = np.full(n, np.nan) if table.score is None else np.asarray(table.score, float)
    geo = vector_geometry(table.start, table.end, voxel_size if voxel_size is not None else (1, 1, 1))
    length = geo["length_um"] if voxel_size is not None else np.full(n, np.nan)
    feats = {"pair_id": pair_id, "score": score, "length_um": length, "azimuth_deg": geo["azimuth_deg"]}
    feats.update(_extra_features(table))
    return feats


def table_to_layer_data(table: VectorTable, *, voxel_size=None, name="vectors", translate=None,
                        scale=None) -> list:
    """napari LayerData tuples for a table: a Points layer per structure and a Vectors layer.

    Parameters
    ----------
    table : VectorTable
        The vectors, in voxels.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm, for the features and, when ``scale`` is not given, the layer scale.
    name : str
        Prefix of the layer names.
    translate, scale : sequence of float, optional
        The layers' translate and scale (default: no translation, the voxel
        size or 1), e.g. those of the image layer the vectors belong to.

    Returns
    -------
    list of (data, kwargs, layer_type)
    """
    dims = 3 if table.ndim == 3 else 2
    if scale is None and voxel_size is not None:
        scale = tuple(float(v) for v in voxel_size)[-dims:]
    common = {}
    if scale is not None:
        common["scale"] = tuple(float(v) for v in scale)[-dims:]
    if translate is not None:
        common["translate"] = tuple(float(v) for v in translate)[-dims:]
    feats = table_features(table, voxel_size)
    start = table.start[:, -dims:]
    end = table.end[:, -dims:]
    meta = {"structures": list(table.names),
            "voxel_size": None if voxel_size is None else [float(v) for v in voxel_size]}
    s_name, e_name = table.names
    point_feats = {"pair_id": feats["pair_id"], "score": feats["score"]}
    layers = []
    for pts, struct, role, color in ((start, s_name, "start", START_COLOR),
                                     (end, e_name, "end", END_COLOR)):
        layers.append((pts.copy(), {
            **common, "name": f"{name} {struct}", "features": dict(point_feats),
            "face_color": color, "border_width": 0, "size": POINT_SIZE, "projection_mode": "all",
            "metadata": {"cellpol": {**meta, "role": role}}}, "points"))
    vec = np.stack([start, end - start], axis=1) if len(table) else np.zeros((0, 2, dims))
    layers.append((vec, {
        **common, "name": f"{name}", "features": feats, "edge_color": VECTOR_COLOR,
        "edge_width": 1.0, "length": 1.0, "vector_style": "arrow", "projection_mode": "all",
        "metadata": {"cellpol": {**meta, "role": "vectors"}}}, "vectors"))
    return layers


def _cellpol_meta(meta: dict) -> dict:
    md = meta.get("metadata") or {}
    out = md.get("cellpol") if isinstance(md, dict) else None
    return out if isinstance(out, dict) else {}


def _voxel_size_of(meta: dict, dims: int):
    """The (z, y, x) voxel size of a layer: its CellPol metadata, else a non-unit scale."""
    cp = _cellpol_meta(meta)
    if cp.get("voxel_size") is not None:
        return tuple(float(v) for v in cp["voxel_size"])
    scale = meta.get("scale")
    if scale is None:
        return None
    scale = [float(v) for v in scale][-dims:]
    if np.allclose(scale, 1.0):
        return None
    return tuple(scale) if dims == 3 else (1.0,) + tuple(scale)


def _feature_columns(features) -> dict:
    """A layer's features (pandas DataFrame or dict) as a dict of arrays."""
    if features is None:
        return {}
    if hasattr(features, "to_dict") and hasattr(features, "columns"):
        return {str(c): np.asarray(features[c]) for c in features.columns}
    return {str(k): np.asarray(v) for k, v in dict(features).items()}


def _score_and_extra(feats: dict, n: int):
    score = feats.get("score")
    if score is not None:
        score = np.asarray(score, float)
        if len(score) != n or np.all(np.isnan(score)):
            score = None
    extra = {}
    for key, values in feats.items():
        if key in ("score",) or key in _DERIVED or len(values) != n:
            continue
        extra[key] = values
    return score, extra


def _check_dims(dims: int, what: str):
    if dims not in (2, 3):
        raise InputError(f"{what} has {dims} dimensions; CellPol writes 2D or 3D vectors")


def vectors_layer_to_table(data, meta: dict) -> tuple:
    """A Vectors layer's (data, meta) as a (VectorTable, voxel size or None).

    Raises
    ------
    InputError
        When the layer is not 2D or 3D.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.size == 0:
        dims = data.shape[-1] if data.ndim == 3 else 3
        data = np.zeros((0, 2, dims))
    if data.ndim != 3 or data.shape[1] != 2:
        raise InputError(f"Vectors layer '{meta.get('name', '')}' has data of shape {data.shape}, "
                         "expected (N, 2, D)")
    dims = data.shape[2]
    _check_dims(dims, f"Vectors layer '{meta.get('name', '')}'")
    start, end = data[:, 0], data[:, 0] + data[:, 1]
    names = tuple(_cellpol_meta(meta).get("structures") or DEFAULT_STRUCTURES)
    score, extra = _score_and_extra(_feature_columns(meta.get("features")), len(data))
    table = VectorTable(start, end, score, names=names, ndim=dims, extra=extra)
    return table, _voxel_size_of(meta, dims)


def _pair_index(ids, layer_name) -> dict:
    out = {}
    for i, v in enumerate(ids):
        key = int(v)
        if key in out:
            raise InputError(f"Points layer '{layer_name}' has pair_id {key} twice")
        out[key] = i
    return out


def points_layers_to_table(layer_data) -> tuple:
    """Two Points layers joined on their ``pair_id`` feature as a (VectorTable, voxel size or None).

    The start layer is the one whose CellPol metadata says so, else the first.

    Raises
    ------
    InputError
        When there are not two layers, a ``pair_id`` is missing, repeated or
        has no partner, or the layers' dimensions differ.
    """
    layers = [ld for ld in layer_data if ld[2] == "points"]
    if len(layers) != 2:
        raise InputError(f"select exactly two Points layers (start and end), got {len(layers)}")
    roles = [_cellpol_meta(m).get("role") for _, m, _ in layers]
    if roles == ["end", "start"]:
        layers = layers[::-1]
    (d0, m0, _), (d1, m1, _) = layers
    n0, n1 = m0.get("name", "start"), m1.get("name", "end")
    d0, d1 = np.asarray(d0, float), np.asarray(d1, float)
    if d0.ndim != 2 or d1.ndim != 2 or (len(d0) and len(d1) and d0.shape[1] != d1.shape[1]):
        raise InputError(f"Points layers '{n0}' and '{n1}' differ in dimensions")
    dims = d0.shape[1] if len(d0) else (d1.shape[1] if len(d1) else 3)
    _check_dims(dims, f"Points layer '{n0}'")
    f0, f1 = _feature_columns(m0.get("features")), _feature_columns(m1.get("features"))
    for f, name, d in ((f0, n0, d0), (f1, n1, d1)):
        if len(d) and "pair_id" not in f:
            raise InputError(f"Points layer '{name}' has no pair_id feature to pair its points")
    i0 = _pair_index(f0.get("pair_id", []), n0)
    i1 = _pair_index(f1.get("pair_id", []), n1)
    lonely = sorted(set(i0) ^ set(i1))
    if lonely:
        shown = ", ".join(str(v) for v in lonely[:10]) + (" ..." if len(lonely) > 10 else "")
        raise InputError(f"pair_id {shown} appear(s) in only one of '{n0}' and '{n1}'")
    ids = list(i0)
    a = np.asarray([i0[k] for k in ids], dtype=int)
    b = np.asarray([i1[k] for k in ids], dtype=int)
    start = d0[a] if len(a) else np.zeros((0, dims))
    end = d1[b] if len(b) else np.zeros((0, dims))
    names = _cellpol_meta(m0).get("structures")
    if not names:
        names = tuple(str(n).strip().replace(" ", "_") or role
                      for n, role in ((n0, "start"), (n1, "end")))
    f0 = {k: np.asarray(v)[a] for k, v in f0.items()}
    score, extra = _score_and_extra(f0, len(ids))
    table = VectorTable(start, end, score, names=tuple(names), ndim=dims, extra=extra)
    return table, _voxel_size_of(m0, dims)
