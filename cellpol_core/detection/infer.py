"""Tiled inference: a trained model over an image of any size.

The image is cut into overlapping tiles over x, y and z (so it may have any
number of slices). Tiles stream from the (possibly memory-mapped) source, are
normalised with whole-image percentiles, padded with background-like values
where they pass the image edge, run through the network in batches, and
decoded one by one. Duplicates across overlapping tiles are suppressed, with
vectors found in a tile's interior winning over those at its margin. Only
vectors are kept, so memory stays bounded by a few tiles whatever the image
size.

When the image's voxel size differs from the model's by more than 10 % on an
axis, tiles are resampled to the model's voxel size on the fly and the
coordinates are mapped back to the image's voxels.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..defaults import DEFAULT_PRECISION, FLIP_CHOICES
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..io.resample import check_resampling, coord_scale, needs_resampling, resampled_shape
from ..io.vectors import VectorTable

DEFAULT_TILE_3D = (64, 192, 192)
DEFAULT_TILE_2D = (512, 512)
DEFAULT_OVERLAP_3D = (16, 32, 32)
DEFAULT_OVERLAP_2D = (64, 64)


@dataclass
class Timings:
    """Wall-clock seconds spent in each part of a prediction."""

    read: float = 0.0
    normalise: float = 0.0
    network: float = 0.0
    decode: float = 0.0
    write: float = 0.0
    tiles: int = 0
    extra: dict = field(default_factory=dict)

    def total(self) -> float:
        return self.read + self.normalise + self.network + self.decode + self.write

    def as_dict(self) -> dict:
        return {"read_s": self.read, "normalise_s": self.normalise, "network_s": self.network,
                "decode_s": self.decode, "write_s": self.write, "tiles": self.tiles}


def tile_origins(size, tile, overlap) -> list:
    """Start positions of tiles of length ``tile`` covering ``size`` with ``overlap``."""
    if size <= tile:
        return [0]
    step = max(tile - overlap, 1)
    n = math.ceil((size - tile) / step) + 1
    starts = [min(i * step, size - tile) for i in range(n)]
    return sorted(set(starts))


def plan_tiles(shape, *, tile, overlap, multiple) -> tuple:
    """Tile size (valid for the network), tile origins and each tile's interior.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape in model voxels.
    tile, overlap : tuple of int
        Requested tile size and overlap per axis. The overlap is capped at
        half a tile.
    multiple : tuple of int
        The network's size rule: each tile side is a multiple of it.

    Returns
    -------
    tile : tuple of int
    origins : list of tuple of int
    interiors : list of (lo, hi) arrays
        Per tile, the region it owns: neighbouring tiles meet in the middle
        of their overlap, and the outer tiles own everything past the image
        edges, so the interiors partition space.
    """
    sizes = []
    for s, t, m in zip(shape, tile, multiple):
        t = int(math.ceil(min(int(t), max(int(s), 1)) / m) * m)
        sizes.append(max(t, m))
    overlap = [min(int(o), t // 2) for o, t in zip(overlap, sizes)]
    per_axis = [tile_origins(s, t, o) for s, t, o in zip(shape, sizes, overlap)]
    bounds = []
    for starts, t in zip(per_axis, sizes):
        cuts = [(a + t + b) / 2.0 for a, b in zip(starts, starts[1:])]
        bounds.append(([-np.inf] + cuts, cuts + [np.inf]))
    origins, interiors = [], []
    for idx in np.ndindex(*[len(o) for o in per_axis]):
        origins.append(tuple(int(per_axis[a][i]) for a, i in enumerate(idx)))
        interiors.append((np.array([bounds[a][0][i] for a, i in enumerate(idx)]),
                          np.array([bounds[a][1][i] for a, i in enumerate(idx)])))
    return tuple(sizes), origins, interiors


class TileReader:
    """Reads normalised (2, *tile) model-space tiles from a source image.

    Parameters
    ----------
    data : array-like
        (C, Z, Y, X) or (C, Y, X) source; only the needed region is read.
    channels : (int, int)
        Start and end channel.
    limits : ndarray, (2, 2), or Future
        Per-channel (low, high) intensities mapped to 0 and 1. A
        ``concurrent.futures.Future`` of ``(limits, seconds)`` lets the first
        tile be read while the limits are still being computed.
    model_shape : tuple of int
        The image's spatial shape in model voxels.
    seed : int
        For the background-like padding.
    """

    def __init__(self, data, *, channels, limits, model_shape, seed=0):
        self.data = data
        self.channels = tuple(channels)
        self._limits = None if isinstance(limits, Future) else np.asarray(limits, np.float32)
        self._limits_future = limits if isinstance(limits, Future) else None
        self.src_shape = tuple(int(s) for s in data.shape[1:])
        self.model_shape = tuple(int(s) for s in model_shape)
        self.resampled = self.src_shape != self.model_shape
        self.to_model = coord_scale(self.src_shape, self.model_shape)
        self.rng = np.random.default_rng(seed)
        self.t_read = 0.0
        self.t_norm = 0.0

    @property
    def limits(self) -> np.ndarray:
        """The (2, 2) normalisation limits (waits for them if still computing)."""
        if self._limits is None:
            limits, seconds = self._limits_future.result()
            self._limits = np.asarray(limits, np.float32)
            self.t_norm += seconds
        return self._limits

    def read(self, origin, tile) -> np.ndarray:
        out = self.rng.uniform(0.0, 10.0 / 255.0, size=(2,) + tuple(tile)).astype(np.float32)
        lo = np.maximum(np.asarray(origin), 0)
        hi = np.minimum(np.asarray(origin) + np.asarray(tile), self.model_shape)
        if np.any(hi <= lo):
            return out
        t0 = time.perf_counter()
        if not self.resampled:
            region = [self._read_channel(c, tuple(slice(a, b) for a, b in zip(lo, hi)))
                      for c in self.channels]
        else:
            region = self._read_resampled(lo, hi)
        limits = self.limits
        t1 = time.perf_counter()
        dst = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin))
        for k, r in enumerate(region):
            low, high = limits[k]
            scale = 1.0 / max(float(high - low), 1e-12)
            np.clip((r.astype(np.float32, copy=False) - low) * scale, 0.0, 1.0, out=out[k][dst])
        self.t_read += t1 - t0
        self.t_norm += time.perf_counter() - t1
        return out

    def _read_channel(self, c, region):
        return np.asarray(self.data[(c,) + tuple(region)])

    def _read_resampled(self, lo, hi):
        from scipy import ndimage as ndi

        # Model voxel m sits at source position m / to_model.
        src_lo = np.floor(lo / self.to_model).astype(int)
        src_hi = np.minimum(np.ceil((hi - 1) / self.to_model).astype(int) + 2, self.src_shape)
        src_lo = np.clip(src_lo, 0, np.asarray(self.src_shape) - 1)
        region = tuple(slice(a, b) for a, b in zip(src_lo, src_hi))
        out = []
        for c in self.channels:
            block = np.asarray(self.data[(c,) + region], dtype=np.float32)
            grid = np.meshgrid(*[np.arange(a, b) / s - o
                                 for a, b, s, o in zip(lo, hi, self.to_model, src_lo)],
                               indexing="ij")
            out.append(ndi.map_coordinates(block, grid, order=1, mode="nearest"))
        return out


def image_limits(data, channels, *, low=0.05, high=99.95) -> np.ndarray:
    """Per-channel percentile limits of the start and end channels, subsampled for big images."""
    from ..io.image import percentile_limits

    return np.stack([percentile_limits(_ChannelView(data, c), low=low, high=high)[0]
                     for c in channels])


class _ChannelView:
    """A one-channel (1, ...) view of a (C, ...) array-like without reading it."""

    def __init__(self, data, c):
        self._data = data
        self._c = int(c)
        self.shape = (1,) + tuple(data.shape[1:])
        self.dtype = data.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            if int(first) not in (0, -1):
                raise IndexError(first)
            return self._data[(self._c,) + rest]
        block = np.asarray(self._data[(self._c,) + rest])
        return block[None][first]

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self._data[self._c])[None]
        return a if dtype is None else a.astype(dtype)


@dataclass
class _Plan:
    """Everything needed to run a model over one image's tiles."""

    dims: int
    channels: tuple
    work_vs: tuple
    model_shape: tuple
    tile: tuple
    origins: list
    interiors: list
    reader: "TileReader"


def _plan(image, model, *, channels, tile, overlap, timings, force=False) -> _Plan:
    from ..io.image import resolve_channels

    cfg = model.config
    dims = image.ndim
    if dims != cfg.spatial_dims:
        raise InputError(f"the model is {cfg.spatial_dims}D but the image is {dims}D", image.path)
    if image.n_channels < 2:
        raise InputError(f"needs 2 channels (start and end), image has {image.n_channels}",
                         image.path)
    n_in = int(cfg.network.get("in_channels", 2))
    if n_in != 2:  # the network is fed the start and end channels, always two
        raise InputError(f"the model takes {n_in} input channels (config.json in_channels) but "
                         "CellPol feeds it 2, the start and end channels", model.path)
    ch = resolve_channels(image, channels=channels, structures=cfg.structures)
    src_vs = image.voxel_size
    if src_vs is None:
        if dims == 3:
            raise InputError("3D image has no voxel size; pass --voxel-size X Y Z", image.path)
        src_vs = tuple(cfg.voxel_size)
    model_vs = np.asarray(cfg.voxel_size, float)
    src_shape = np.asarray(image.spatial_shape)
    if needs_resampling(np.asarray(src_vs)[-dims:], model_vs[-dims:]):
        model_shape = resampled_shape(src_shape, np.asarray(src_vs)[-dims:], model_vs[-dims:])
        check_resampling(src_shape, model_shape, force=force, path=image.path)
        work_vs = tuple(float(v) for v in model_vs)
    else:
        model_shape = tuple(int(s) for s in src_shape)
        work_vs = tuple(float(v) for v in src_vs) if dims == 3 else (1.0,) + tuple(src_vs[-2:])
    # The image-wide percentiles are computed in their own thread while the
    # first tile is read and resampled; the reader waits for them to normalise.
    def timed_limits():
        t0 = time.perf_counter()
        out = image_limits(image.data, ch, low=cfg.normalisation.get("low", 0.05),
                           high=cfg.normalisation.get("high", 99.95))
        return out, time.perf_counter() - t0

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellpol-limits")
    limits = pool.submit(timed_limits)
    pool.shutdown(wait=False)
    tile = tuple(tile or (DEFAULT_TILE_3D if dims == 3 else DEFAULT_TILE_2D))
    overlap = tuple(overlap or (DEFAULT_OVERLAP_3D if dims == 3 else DEFAULT_OVERLAP_2D))
    tile, origins, interiors = plan_tiles(model_shape, tile=tile, overlap=overlap,
                                          multiple=model.net.size_multiple())
    reader = TileReader(image.data, channels=ch, limits=limits, model_shape=model_shape)
    return _Plan(dims, ch, work_vs, model_shape, tile, origins, interiors, reader)


def flip_axes(flips: int, dims: int) -> list:
    """The mirrorings of test-time flips: tuples of tensor axes, identity first.

    2 mirrors y and x together (a half turn), 4 adds y and x alone, 8 (3D
    only) adds z to each of those.
    """
    plane = [(), (-2, -1), (-1,), (-2,)]
    if flips not in FLIP_CHOICES:
        raise InputError(f"flips must be one of {', '.join(map(str, FLIP_CHOICES))}, "
                         f"got {flips!r}")
    if flips == 8 and dims != 3:
        raise InputError("8 flips mirror z too: they need a 3D model (use 1, 2 or 4)")
    sets = plane[:min(flips, 4)]
    return sets + [(-3, *a) for a in sets] if flips == 8 else sets


def flip_averaged(net, x, axes_list) -> dict:
    """The network's maps on ``x``, averaged over the mirrorings in ``axes_list``.

    Heatmaps and offsets are averaged (an offset's component along a mirrored
    axis changes sign); embeddings come from the unmirrored pass, since the
    pairing compares embedding values between peaks of one pass.
    """
    import torch

    from .network import OFFSET_KEYS

    out = {k: v.float() for k, v in net(x).items()}
    if len(axes_list) <= 1:
        return out
    averaged = [k for k in out if k.startswith("heatmap") or k in OFFSET_KEYS]
    for axes in axes_list[1:]:
        mirrored = net(torch.flip(x, axes))
        for k in averaged:
            m = torch.flip(mirrored[k].float(), axes)
            if k in OFFSET_KEYS and (OFFSET_KEYS.index(k) - 3) in axes:
                m = -m
            out[k] = out[k] + m
    for k in averaged:
        out[k] = out[k] / len(axes_list)
    return out


def _run_tiles(plan: _Plan, model, *, batch_size, device, timings, cancel,
               precision=DEFAULT_PRECISION, flips=1):
    """Yield ("progress", event) and ("tile", tile_index, maps) items, maps as float32 numpy.

    ``flips``: test-time flips (:func:`flip_axes`), averaged by :func:`flip_averaged`.
    """
    import torch

    from .network import to_device_input
    from .precision import Precision, inference_net, resolve_precision

    dev = torch.device(device or next(model.net.parameters()).device)
    prec = resolve_precision(precision, dev)
    # predict_files passes a resolved Precision and shows its notice once per batch.
    notice = None if isinstance(precision, Precision) else prec.notice
    n = len(plan.origins)
    mirrorings = flip_axes(int(flips), plan.dims)
    yield "progress", ProgressEvent("tiles", 0, n, message=f"{n} tiles of {plan.tile}",
                                    data={"notice": notice} if notice else {})
    starts = list(range(0, n, batch_size))

    def read_batch(b):
        return np.stack([plan.reader.read(o, plan.tile) for o in plan.origins[b:b + batch_size]])

    # One reader thread prepares the next batch (read, resample, normalise)
    # while the network and the decoding of this one run; one batch in flight
    # keeps memory bounded and the reader's state single-threaded.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellpol-tiles") as pool:
        pending = pool.submit(read_batch, starts[0]) if starts else None
        net = inference_net(model.net, prec)  # cast (once per model) while tile 1 is read
        for i, b in enumerate(starts):
            if cancel is not None:
                cancel.check()
            x = pending.result()
            pending = pool.submit(read_batch, starts[i + 1]) if i + 1 < len(starts) else None
            count = x.shape[0]
            t1 = time.perf_counter()
            xt = to_device_input(x, dev, plan.dims, dtype=prec.dtype)
            with torch.inference_mode():
                out = flip_averaged(net, xt, mirrorings)
            maps = {k: v.cpu().numpy()[:, 0] for k, v in out.items()}
            timings.network += time.perf_counter() - t1
            timings.tiles += count
            for k in range(count):
                yield "tile", b + k, {name: m[k] for name, m in maps.items()}
            yield "progress", ProgressEvent("tiles", min(b + batch_size, n), n)
    timings.read += plan.reader.t_read
    timings.normalise += plan.reader.t_norm


def predict_image(image, model, *, channels=None, tile=None, overlap=None, batch_size=1,
                  device=None, thresholds=None, timings: Optional[Timings] = None,
                  precision=DEFAULT_PRECISION, force=False,
                  cancel: Optional[CancelToken] = None):
    """Predict the polarity vectors of one image with a loaded model.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` (stage
    ``"tiles"``) and returns a :class:`~cellpol_core.io.vectors.VectorTable` in
    the image's voxel coordinates.

    Parameters
    ----------
    image : CellImage
        The image (its data may be memory-mapped).
    model : LoadedModel
        From :func:`cellpol_core.detection.model.load_model`.
    channels : (int, int), optional
        Start and end channels; default by channel names, else (0, 1).
    tile, overlap : tuple of int, optional
        Tile size and overlap in model voxels, (Z, Y, X) or (Y, X).
    batch_size : int
        Tiles per network call.
    device : torch.device, optional
        Default: where the model's parameters are.
    thresholds : Thresholds, optional
        Default: the model's ``thresholds.json``.
    timings : Timings, optional
        Filled with the time spent per part.
    precision : {"auto", "fp32", "bf16"} or Precision
        Network arithmetic (:func:`~cellpol_core.detection.precision.resolve_precision`);
        the output maps are decoded in float32 either way.
    force : bool
        Resample even when that grows the image more than
        :data:`~cellpol_core.io.resample.MAX_GROWTH` times.
    cancel : CancelToken, optional
        Checked between tile batches.
    """
    from .decode import decode_maps, offset_maps_of, merge_tile_vectors

    thr = thresholds or model.thresholds
    timings = timings if timings is not None else Timings()
    plan = _plan(image, model, channels=channels, tile=tile, overlap=overlap, timings=timings,
                 force=force)
    dims = plan.dims
    names = tuple(model.config.structures)
    futures, boxes = [], []

    def decode(index, maps):
        t = time.perf_counter()
        offset = np.zeros(3)
        offset[-dims:] = plan.origins[index]
        table = decode_maps(maps["heatmap_start"], maps["heatmap_end"], maps.get("embed_start"),
                            maps.get("embed_end"), voxel_size=plan.work_vs, thresholds=thr,
                            names=names, offset=tuple(offset), offset_maps=offset_maps_of(maps))
        return table, time.perf_counter() - t

    # Tiles are decoded in a thread while the network runs on the next ones.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cellpol-decode") as pool:
        for item in _run_tiles(plan, model, batch_size=batch_size, device=device,
                               timings=timings, cancel=cancel, precision=precision,
                               flips=thr.flips):
            if item[0] == "progress":
                yield item[1]
                continue
            _, index, maps = item
            # At most two tiles' maps wait for decoding: memory stays bounded.
            if len(futures) >= 2:
                futures[-2].result()
            futures.append(pool.submit(decode, index, maps))
            lo, hi = plan.interiors[index]
            full_lo, full_hi = np.full(3, -np.inf), np.full(3, np.inf)
            full_lo[-dims:], full_hi[-dims:] = lo, hi
            boxes.append((full_lo, full_hi))
        tables = []
        for f in futures:
            table, seconds = f.result()
            tables.append(table)
            timings.decode += seconds
    t3 = time.perf_counter()
    merged = merge_tile_vectors(tables, voxel_size=plan.work_vs, d_min_um=tuple(thr.d_min_um),
                                margins=boxes)
    merged = _to_image_voxels(merged, plan)
    timings.decode += time.perf_counter() - t3
    return merged


def _to_image_voxels(table: VectorTable, plan: _Plan) -> VectorTable:
    """Drop detections in the padding past the image edge; map model voxels to image voxels."""
    dims = plan.dims
    inside = np.ones(len(table), bool)
    for pts in (table.start, table.end):
        sp = pts[:, -dims:]
        inside &= np.all((sp > -0.5) & (sp < np.asarray(plan.model_shape) - 0.5), axis=1)
    back = np.ones(3)
    if plan.reader.resampled:
        back[-dims:] = 1.0 / plan.reader.to_model
    return table.subset(inside).scaled(back)


@dataclass
class ImageMaps:
    """The four output maps of a whole image, stitched from tile interiors (model voxels)."""

    maps: dict
    voxel_size: tuple
    plan: object

    def to_image_voxels(self, table: VectorTable) -> VectorTable:
        return _to_image_voxels(table, self.plan)

    def to_model_voxels(self, table: VectorTable) -> VectorTable:
        scale = np.ones(3)
        if self.plan.reader.resampled:
            scale[-self.plan.dims:] = self.plan.reader.to_model
        return table.scaled(scale)


def predict_maps(image, model, *, channels=None, tile=None, overlap=None, batch_size=1,
                 device=None, precision=DEFAULT_PRECISION, force=False, flips=None,
                 cancel: Optional[CancelToken] = None):
    """Whole-image output maps, for threshold tuning on (small) validation images.

    A generator job returning :class:`ImageMaps`. Each voxel takes its value
    from the tile whose interior holds it. ``flips``: test-time flips,
    default the model's (``thresholds.json``).
    """
    timings = Timings()
    plan = _plan(image, model, channels=channels, tile=tile, overlap=overlap, timings=timings,
                 force=force)
    maps = {}
    flips = model.thresholds.flips if flips is None else flips
    for item in _run_tiles(plan, model, batch_size=batch_size, device=device, timings=timings,
                           cancel=cancel, precision=precision, flips=flips):
        if item[0] == "progress":
            yield item[1]
            continue
        _, index, tile_maps = item
        origin = plan.origins[index]
        lo, hi = plan.interiors[index]
        dst, src = [], []
        for o, t, s, a, b in zip(origin, plan.tile, plan.model_shape, lo, hi):
            # Interior bounds may be infinite at the image edges.
            a = int(max(math.ceil(max(a, -1.0)), o, 0))
            b = int(min(math.ceil(min(b, s + 1.0)), o + t, s))
            dst.append(slice(a, b))
            src.append(slice(a - o, b - o))
        for name, m in tile_maps.items():
            if name not in maps:
                maps[name] = np.zeros(plan.model_shape, np.float32)
            maps[name][tuple(dst)] = m[tuple(src)]
    return ImageMaps(maps=maps, voxel_size=plan.work_vs, plan=plan)
