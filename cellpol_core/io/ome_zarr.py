"""OME-Zarr (OME-NGFF 0.4 and 0.5) images: lazy reading of level 0, writing with a pyramid.

Reading takes the first multiscale image of the group: its axes (``c``, ``z``,
``y``, ``x``; a ``t`` axis of length 1 is dropped), the voxel size from the
level-0 scale (with the axes' units), and the channel names from the
``omero`` block. Version 0.4 stores this metadata in the group attributes
(zarr format 2); version 0.5 stores it under the ``ome`` key (zarr format 3).

Writing streams the source in slabs of z-planes, so a volume larger than
memory can be converted; each pyramid level halves y and x (mean of 2 × 2
voxels). The folder is written beside the target and renamed onto it, so an
interrupted conversion never leaves a half-written image under the target's
name.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError

#: Suffixes of OME-Zarr folders, longest first.
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
#: NGFF versions this module reads and writes.
NGFF_VERSIONS = ("0.4", "0.5")
DEFAULT_NGFF_VERSION = "0.5"
#: Chunk (z, y, x) of written arrays: a few MB each, about one model tile deep.
DEFAULT_CHUNKS = (32, 256, 256)
#: Pyramid levels stop once y or x would fall below this many voxels.
MIN_LEVEL_SIZE = 256

_AXIS_LETTER = {"c": "C", "z": "Z", "y": "Y", "x": "X", "t": "T"}


def is_zarr_path(path) -> bool:
    """True for a name ending in ``.zarr`` / ``.ome.zarr`` (any case)."""
    return str(path).rstrip("/\\").lower().endswith(ZARR_SUFFIXES)


def _zarr():
    try:
        import zarr
    except ImportError:
        raise InputError("reading and writing OME-Zarr needs zarr: "
                         "pip install 'cellpol[cluster]'") from None
    return zarr


def _open_group(path):
    zarr = _zarr()
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is not a group
        raise InputError(f"not a readable OME-Zarr image ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})", path) from None


def _multiscale(group, path):
    """(version, multiscale dict, omero dict or None) of a group."""
    attrs = dict(group.attrs)
    if isinstance(attrs.get("ome"), dict):
        meta = attrs["ome"]
        version = str(meta.get("version", "0.5"))
    else:
        meta = attrs
        version = None
    scales = meta.get("multiscales")
    if not isinstance(scales, list) or not scales or not isinstance(scales[0], dict):
        raise InputError("no OME-NGFF multiscales metadata (not an OME-Zarr image?)", path)
    ms = scales[0]
    version = version or str(ms.get("version", "0.4"))
    omero = meta.get("omero") if isinstance(meta.get("omero"), dict) else None
    return version, ms, omero


def _scale_of(transforms) -> Optional[list]:
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    return None


def _level_scales(ms, n_axes, path):
    """Per-level scale vectors (dataset scale times the multiscale's own scale)."""
    top = _scale_of(ms.get("coordinateTransformations")) or [1.0] * n_axes
    out = []
    for ds in ms.get("datasets", []):
        s = _scale_of(ds.get("coordinateTransformations")) or [1.0] * n_axes
        if len(s) != n_axes or len(top) != n_axes:
            raise InputError(f"scale of dataset {ds.get('path')!r} has {len(s)} values for "
                             f"{n_axes} axes", path)
        out.append([a * b for a, b in zip(s, top)])
    return out


def levels(path) -> list:
    """The arrays of an OME-Zarr multiscale image, level 0 first, with their scales.

    Returns
    -------
    list of (zarr.Array, list of float)
        Each level's array (stored axis order) and its scale per stored axis.
    """
    group = _open_group(path)
    _, ms, _ = _multiscale(group, path)
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise InputError("the multiscales metadata lists no datasets", path)
    n_axes = len(ms.get("axes", [])) or None
    out = []
    for ds in datasets:
        try:
            arr = group[str(ds["path"])]
        except (KeyError, TypeError):
            raise InputError(f"dataset {ds.get('path')!r} listed in the metadata is missing",
                             path) from None
        out.append(arr)
        n_axes = n_axes or len(arr.shape)
    scales = _level_scales(ms, n_axes, path)
    return list(zip(out, scales))


def read_ome_zarr(path, *, axes=None, voxel_size=None, lazy=True, level=0):
    """Read one level (default 0, full resolution) of an OME-Zarr image into a :class:`~cellpol_core.io.image.CellImage`.

    Parameters
    ----------
    path : str or Path
        The ``.ome.zarr`` / ``.zarr`` folder.
    axes : str, optional
        Axis letters of the stored array, overriding the metadata.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm, overriding the metadata.
    lazy : bool
        Keep the data on disk behind a :class:`~cellpol_core.io.image.LazyArray`
        (the default; only indexed chunks are read); False loads it.
    level : int
        Pyramid level; the voxel size is that level's.

    Raises
    ------
    InputError
        Missing folder, no NGFF metadata, an unsupported version, a missing
        level, or axes that cannot be interpreted.
    """
    from .image import CellImage, LazyArray, _parse_override, _resolve_axes, _unit_factor

    path = Path(path)
    group = _open_group(path)
    version, ms, omero = _multiscale(group, path)
    if version not in NGFF_VERSIONS:
        raise InputError(f"OME-NGFF version {version} is not supported "
                         f"(supported: {', '.join(NGFF_VERSIONS)})", path)
    all_levels = levels(path)
    if not 0 <= level < len(all_levels):
        raise InputError(f"no pyramid level {level} (the image has {len(all_levels)})", path)
    arr, scale = all_levels[level]
    shape = tuple(int(n) for n in arr.shape)
    if any(n == 0 for n in shape):
        raise InputError(f"the image is empty (shape {shape})", path)
    axis_meta = ms.get("axes") or []
    names = [(a.get("name") if isinstance(a, dict) else str(a)) or "" for a in axis_meta]
    if axes is not None:
        letters = _parse_override(axes, shape, path)
    else:
        if len(names) != len(shape):
            raise InputError(f"the metadata names {len(names)} axes but level 0 has "
                             f"{len(shape)} dimensions", path)
        letters = "".join(_AXIS_LETTER.get(str(n).lower(), "?") for n in names)
    out_axes, disk_axes = _resolve_axes(shape, letters, path)
    is_3d = len(out_axes) == 4

    sizes = {}
    for k, n in enumerate(names):
        a = axis_meta[k] if k < len(axis_meta) and isinstance(axis_meta[k], dict) else {}
        letter = _AXIS_LETTER.get(str(n).lower())
        if letter not in ("Z", "Y", "X") or k >= len(scale):
            continue
        unit = a.get("unit")
        factor = _unit_factor(unit) if unit else None
        value = float(scale[k])
        if factor is not None and math.isfinite(value) and value > 0:
            sizes[letter] = value * factor
        elif unit is None and value > 0 and value != 1.0:
            sizes[letter] = value  # no unit given: NGFF's usual micrometre
    if voxel_size is not None:
        from .image import check_voxel_size

        vs = check_voxel_size(voxel_size, path)
        vs = vs if is_3d else (1.0,) + vs[1:]
    elif is_3d:
        vs = tuple(sizes[a] for a in "ZYX") if all(a in sizes for a in "ZYX") else None
    else:
        vs = (1.0, sizes["Y"], sizes["X"]) if "Y" in sizes and "X" in sizes else None

    data = LazyArray(arr, out_axes)
    if not lazy:
        data = np.asarray(data)
    n_c = int(data.shape[0])
    labels = []
    if omero and isinstance(omero.get("channels"), list):
        labels = [str(ch.get("label") or "") if isinstance(ch, dict) else ""
                  for ch in omero["channels"]]
    if len(labels) != n_c:
        labels = [""] * n_c
    channel_names = [lab or f"C{i}" for i, lab in enumerate(labels)]
    return CellImage(data, vs, channel_names, path, disk_axes)


# ---------------------------------------------------------------------------
# Writing


def _pyramid_shapes(yx, n_levels):
    shapes = [tuple(yx)]
    while len(shapes) < n_levels:
        y, x = shapes[-1]
        shapes.append((y // 2, x // 2))
    return shapes


def default_levels(yx) -> int:
    """Levels down to about :data:`MIN_LEVEL_SIZE` voxels in y or x (at least 1)."""
    n = 1
    y, x = (int(v) for v in yx)
    while min(y, x) // 2 >= MIN_LEVEL_SIZE:
        y, x, n = y // 2, x // 2, n + 1
    return n


def _halve(block):
    """Mean of 2 × 2 voxels over the last two axes (odd edges dropped)."""
    y, x = (block.shape[-2] // 2) * 2, (block.shape[-1] // 2) * 2
    b = block[..., :y, :x].astype(np.float32)
    return 0.25 * (b[..., 0::2, 0::2] + b[..., 1::2, 0::2] + b[..., 0::2, 1::2]
                   + b[..., 1::2, 1::2])


def _cast(values, dtype):
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _create_array(group, name, *, shape, chunks, dtype):
    if hasattr(group, "create_array"):  # zarr >= 3
        return group.create_array(name=name, shape=shape, chunks=chunks, dtype=dtype)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype)


@contextlib.contextmanager
def _atomic_folder(path):
    """Yield a temporary folder beside ``path``; put it in place of ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ngff_metadata(*, ndim, voxel_size, channel_names, n_levels, name="", version="0.5") -> dict:
    """The group attributes of an NGFF ``version`` image (axes c[, z], y, x)."""
    spatial = ["z", "y", "x"][-ndim:]
    axes = [{"name": "c", "type": "channel"}]
    axes += [{"name": a, "type": "space", "unit": "micrometer"} for a in spatial]
    vs = list(voxel_size) if voxel_size is not None else [1.0, 1.0, 1.0]
    datasets = []
    for level in range(n_levels):
        f = 2.0 ** level
        scale = [1.0] + [float(vs[0])] * (ndim == 3) + [float(vs[1]) * f, float(vs[2]) * f]
        datasets.append({"path": str(level),
                         "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    if voxel_size is None:
        for a in axes[1:]:
            a.pop("unit")  # uncalibrated: no physical unit
    ms = {"name": name, "axes": axes, "datasets": datasets}
    omero = {"channels": [{"label": str(n), "active": True} for n in channel_names]}
    if version == "0.4":
        ms = {"version": "0.4", **ms}
        return {"multiscales": [ms], "omero": {"version": "0.4", **omero}}
    return {"ome": {"version": "0.5", "multiscales": [ms], "omero": omero}}


def write_ome_zarr(path, data, *, voxel_size=None, channel_names: Optional[Sequence[str]] = None,
                   version=DEFAULT_NGFF_VERSION, chunks=DEFAULT_CHUNKS, n_levels=None,
                   progress=None):
    """Write a (C, Z, Y, X) or (C, Y, X) array as an OME-Zarr image with a pyramid.

    Parameters
    ----------
    path : str or Path
        The target folder (``.ome.zarr``); replaced when it exists.
    data : array-like
        (C, Z, Y, X) or (C, Y, X); numpy or a lazy array, read in z-slabs.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm; omitted from the metadata when None.
    channel_names : sequence of str, optional
        One per channel (default C0, C1, ...).
    version : {"0.5", "0.4"}
        NGFF version: 0.5 writes zarr format 3, 0.4 zarr format 2.
    chunks : (int, int, int)
        Chunk (z, y, x); each chunk holds one channel.
    n_levels : int, optional
        Pyramid levels including level 0 (default: halve y and x down to
        about 256 voxels).
    progress : callable, optional
        Called with (slabs done, slabs) after each slab.

    Returns
    -------
    int
        The number of levels written.
    """
    zarr = _zarr()
    version = str(version)
    if version not in NGFF_VERSIONS:
        raise InputError(f"OME-NGFF version {version} cannot be written "
                         f"(choose {' or '.join(NGFF_VERSIONS)})")
    shape = tuple(int(n) for n in data.shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"expected (C, Z, Y, X) or (C, Y, X) data, got shape {shape}")
    ndim = len(shape) - 1
    n_c = shape[0]
    names = [f"C{i}" for i in range(n_c)] if channel_names is None else list(channel_names)
    if len(names) != n_c:
        raise ValueError("one channel name per channel is needed")
    n_levels = int(n_levels) if n_levels else default_levels(shape[-2:])
    yx_shapes = _pyramid_shapes(shape[-2:], n_levels)
    if min(yx_shapes[-1]) < 1:
        raise InputError(f"{n_levels} pyramid levels are too many for a {shape[-2]} × "
                         f"{shape[-1]} image")
    nz = shape[1] if ndim == 3 else 1
    cz = int(min(chunks[0], nz))
    dtype = np.dtype(data.dtype).newbyteorder("=")
    with _atomic_folder(path) as tmp:
        if version == "0.5":
            if not hasattr(zarr, "create_array"):
                raise InputError("OME-NGFF 0.5 needs zarr >= 3; write --ngff 0.4 instead")
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        elif hasattr(zarr, "create_array"):
            group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        else:
            group = zarr.open_group(str(tmp), mode="w")
        arrays = []
        for level, (y, x) in enumerate(yx_shapes):
            lshape = (n_c,) + ((nz,) if ndim == 3 else ()) + (y, x)
            lchunks = (1,) + ((cz,) if ndim == 3 else ()) + (min(chunks[1], y), min(chunks[2], x))
            arrays.append(_create_array(group, str(level), shape=lshape, chunks=lchunks,
                                        dtype=dtype))
        group.attrs.update(ngff_metadata(ndim=ndim, voxel_size=voxel_size, channel_names=names,
                                         n_levels=n_levels, name=Path(path).name,
                                         version=version))
        slabs = list(range(0, nz, cz))
        for k, z0 in enumerate(slabs):
            z = (slice(z0, min(z0 + cz, nz)),) if ndim == 3 else ()
            for c in range(n_c):
                block = np.asarray(data[(c,) + z])
                arrays[0][(c,) + z] = block
                for level in range(1, n_levels):
                    block = _halve(block)
                    arrays[level][(c,) + z] = _cast(block, dtype)
            if progress is not None:
                progress(k + 1, len(slabs))
    return n_levels


def lowres_image(path, *, max_factor=8, axes=None):
    """The coarsest pyramid level downsampled at most ``max_factor`` times, lazily.

    Returns
    -------
    (CellImage, ndarray) or None
        That level and its downsampling factor per spatial axis against
        level 0; None when the image has a single level.
    """
    lv = levels(path)
    if len(lv) < 2:
        return None
    full = np.asarray(lv[0][0].shape, float)
    best = None
    for k, (arr, _) in enumerate(lv[1:], start=1):
        factors = full / np.maximum(np.asarray(arr.shape, float), 1.0)
        if factors.max() <= max_factor + 1e-6:
            best = k
    if best is None:
        return None
    low = read_ome_zarr(path, axes=axes, level=best)
    base = read_ome_zarr(path, axes=axes)
    return low, np.asarray(base.spatial_shape, float) / np.asarray(low.spatial_shape, float)
