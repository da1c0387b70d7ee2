"""Blockwise prediction of one large volume, for workers of a cluster or one at a time.

The volume is cut into blocks (``block`` voxels per axis). The blocks run the
tiles of the single-process tiler (:mod:`cellpol_core.detection.infer`), so
that their union equals a single-process prediction:

* **one tile grid.** The tiles are planned once, over the whole volume, as a
  single-process run plans them. A block owns the tiles whose interior (the
  region a tile wins in the merge) is centred in its core; each tile runs
  once, in one block.
* **halo.** A block reads its core plus a halo: its tiles reach past the core
  by their margins, so every voxel's network context is the one it has in a
  single-process run, and the start-end pairing within a tile sees pairs up
  to the tile's margin (at least the tile overlap, more than ``d_max`` for the
  bundled models).
* **normalisation once.** The percentile limits are computed once, over a
  subsample of the whole volume (as a single-process run computes them), and
  every block uses them.
* **merge.** Blocks return the vectors of each of their tiles (a few kB);
  the client merges them with the tiler's own duplicate suppression, in the
  single-process tile order, and keeps each vector found in the interior of
  the tile (hence the block core) that owns it. The result equals the
  single-process prediction apart from float noise.
* **empty blocks** are skipped: when the start channel over a block's read
  region (core and halo), read at low resolution (a pyramid level of an OME-Zarr image, else every 4th voxel
  in y and x), stays below ``empty_below`` of the normalisation range, its
  tiles are not run.

Each block reads its tiles one at a time from the lazy source (a memory map,
zarr chunks or TIFF pages), so a worker's memory is bounded by a few tiles
and the network, whatever the volume's size.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..io.vectors import VectorTable
from .infer import Timings, TileReader

#: Block size (z, y, x) in image voxels used for OME-Zarr volumes when none is given.
DEFAULT_BLOCK = (128, 512, 512)
#: A block is empty when its low-resolution start channel stays below this
#: fraction of the normalisation range.
EMPTY_BELOW = 0.1
#: Low-resolution reads for the empty test: at most this downsampling in y and x.
LOWRES_FACTOR = 4


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far, in bytes (0 where unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return int(rss if sys.platform == "darwin" else rss * 1024)


# ---------------------------------------------------------------------------
# What the workers share: opened images and loaded models, once per process

_CACHE_LOCK = threading.Lock()
_MODELS: dict = {}
_IMAGES: dict = {}
# Set by a cluster's worker plugin; applied when the first model is loaded, so
# that a worker imports torch only when it has work.
_WORKER_SETTINGS: dict = {}


def configure_worker(*, torch_threads=None, gpu_index=None):
    """Torch threads and GPU of this worker process, applied before its first model loads."""
    _WORKER_SETTINGS.update(torch_threads=torch_threads, gpu_index=gpu_index)


def _apply_worker_settings():
    import torch

    threads = _WORKER_SETTINGS.get("torch_threads")
    if threads:
        torch.set_num_threads(int(threads))
    gpu = _WORKER_SETTINGS.get("gpu_index")
    if gpu is not None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        torch.cuda.set_device(int(gpu) % torch.cuda.device_count())


def cached_model(ref, device=DEFAULT_DEVICE):
    """The model ``ref`` (a folder or bundled name), loaded once per process and device.

    A :class:`~cellpol_core.detection.model.LoadedModel` is returned as is.
    """
    from .model import LoadedModel, load_model
    from .network import select_device

    if isinstance(ref, LoadedModel):
        return ref
    key = (str(ref), str(device))
    with _CACHE_LOCK:
        if key not in _MODELS:
            if _WORKER_SETTINGS:
                _apply_worker_settings()
            _MODELS[key] = load_model(ref, device=select_device(device))
        return _MODELS[key]


@dataclass(frozen=True)
class ImageSpec:
    """How a worker opens an image: its path and the reading overrides."""

    path: str
    axes: Optional[str] = None
    voxel_size: Optional[tuple] = None

    def open(self):
        """The image, read lazily; opened once per process."""
        from ..io.image import read_image

        with _CACHE_LOCK:
            if self not in _IMAGES:
                if len(_IMAGES) > 8:  # a worker moves on to other volumes
                    _IMAGES.clear()
                _IMAGES[self] = read_image(self.path, axes=self.axes, voxel_size=self.voxel_size,
                                           lazy=True)
            return _IMAGES[self]


# ---------------------------------------------------------------------------
# Planning


@dataclass
class Block:
    """One block of a volume.

    Attributes
    ----------
    index : tuple of int
        Position in the block grid, (z, y, x) or (y, x).
    core : tuple of (int, int)
        The block's own region, image voxels per spatial axis.
    region : tuple of (int, int)
        What its tiles read: the core plus the halo, image voxels.
    tiles : list of int
        Indices of its tiles in the volume's tile plan.
    """

    index: tuple
    core: tuple
    region: tuple
    tiles: list

    def halo(self) -> tuple:
        """How far the read region reaches past the core on each side, voxels per axis."""
        return tuple((c[0] - r[0], r[1] - c[1]) for c, r in zip(self.core, self.region))


@dataclass
class BlockTask:
    """Everything a worker needs to run one block (small, picklable)."""

    image: object
    model: object
    device: str
    block: Block
    dims: int
    channels: tuple
    work_vs: tuple
    model_shape: tuple
    tile: tuple
    origins: list
    limits: np.ndarray
    thresholds: object
    names: tuple
    batch_size: int = 1
    empty_below: Optional[float] = EMPTY_BELOW
    precision: str = DEFAULT_PRECISION


@dataclass
class BlockResult:
    """What a block returns: the vectors of each of its tiles, and its costs."""

    index: tuple
    tiles: list = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0
    peak_rss: int = 0
    timings: dict = field(default_factory=dict)


@dataclass
class VolumePlan:
    """The single-process tile plan of a volume and its blocks."""

    plan: object
    blocks: list
    block_size: tuple
    limits: np.ndarray
    thresholds: object
    names: tuple

    @property
    def n_tiles(self) -> int:
        return len(self.plan.origins)


def _block_size(image, block) -> tuple:
    """Block (z, y, x) or (y, x) in image voxels, from a (z, y, x) request."""
    dims = image.ndim
    size = tuple(int(b) for b in (block or DEFAULT_BLOCK))
    if len(size) == 2:
        size = (1,) + size
    if len(size) != 3 or any(b < 1 for b in size):
        raise InputError(f"a block is 3 positive sizes (X Y Z), got {tuple(block)}")
    return size[-dims:]


def plan_volume(image, model, *, block=None, channels=None, tile=None, overlap=None,
                thresholds=None, force=False) -> VolumePlan:
    """Plan the tiles of ``image`` as a single-process run does, and group them in blocks.

    Parameters
    ----------
    image : CellImage
        The volume, read lazily.
    model : LoadedModel
        The model (its configuration fixes the tile grid).
    block : (int, int, int), optional
        Block size (z, y, x) in image voxels; default :data:`DEFAULT_BLOCK`.
    channels, tile, overlap
        As :func:`~cellpol_core.detection.infer.predict_image`.
    thresholds : Thresholds, optional
        Default: the model's.
    """
    from .infer import _plan

    plan = _plan(image, model, channels=channels, tile=tile, overlap=overlap, timings=Timings(),
                 force=force)
    limits = np.asarray(plan.reader.limits, np.float32)  # once, over the whole volume
    size = np.asarray(_block_size(image, block))
    src_shape = np.asarray(image.spatial_shape)
    n_blocks = np.maximum(-(-src_shape // size), 1)
    to_model = np.asarray(plan.reader.to_model, float)
    model_shape = np.asarray(plan.model_shape, float)
    groups: dict = {}
    for i, (lo, hi) in enumerate(plan.interiors):
        centre = (np.clip(lo, 0, model_shape) + np.clip(hi, 0, model_shape)) / 2.0 / to_model
        idx = tuple(int(v) for v in np.minimum(centre // size, n_blocks - 1))
        groups.setdefault(idx, []).append(i)
    blocks = []
    for idx in sorted(groups):
        tiles = groups[idx]
        core = tuple((int(k * s), int(min((k + 1) * s, n)))
                     for k, s, n in zip(idx, size, src_shape))
        lo = np.min([plan.origins[i] for i in tiles], axis=0)
        hi = np.max([np.asarray(plan.origins[i]) + plan.tile for i in tiles], axis=0)
        lo = np.clip(np.floor(lo / to_model), 0, src_shape).astype(int)
        hi = np.clip(np.ceil(np.minimum(hi, model_shape) / to_model), 0, src_shape).astype(int)
        region = tuple((min(int(a), c[0]), max(int(b), c[1])) for a, b, c in zip(lo, hi, core))
        blocks.append(Block(idx, core, region, tiles))
    thr = thresholds or model.thresholds
    return VolumePlan(plan, blocks, tuple(int(s) for s in size), limits, thr,
                      tuple(model.config.structures))


def block_tasks(vplan: VolumePlan, *, image, model, device=DEFAULT_DEVICE, batch_size=1,
                empty_below=EMPTY_BELOW, precision=DEFAULT_PRECISION) -> list:
    """One :class:`BlockTask` per block; ``image`` and ``model`` as the workers will open them."""
    p = vplan.plan
    return [BlockTask(image=image, model=model, device=device, block=b, dims=p.dims,
                      channels=tuple(p.channels), work_vs=tuple(p.work_vs),
                      model_shape=tuple(p.model_shape), tile=tuple(p.tile),
                      origins=[tuple(p.origins[i]) for i in b.tiles], limits=vplan.limits,
                      thresholds=vplan.thresholds, names=vplan.names, batch_size=batch_size,
                      empty_below=empty_below, precision=precision)
            for b in vplan.blocks]


# ---------------------------------------------------------------------------
# Running one block (on a worker)


class _GridTileReader(TileReader):
    """A tile reader whose padding noise for tile ``i`` is the single-process run's.

    The tiler draws the padding of its tiles, in order, from one generator;
    here each tile starts the generator where a single-process run would be
    when reading it.
    """

    def __init__(self, data, *, index_of, **kw):
        super().__init__(data, **kw)
        self._index_of = index_of

    def read(self, origin, tile):
        rng = np.random.default_rng(0)
        rng.bit_generator.advance(self._index_of[tuple(origin)] * 2 * int(np.prod(tile)))
        self.rng = rng
        return super().read(origin, tile)


def _lowres_max(image, channel, region) -> float:
    """The largest value of ``channel`` over ``region`` (image voxels), read at low resolution."""
    from ..io.ome_zarr import is_zarr_path, lowres_image

    low = None
    if image.path is not None and is_zarr_path(image.path):
        low = lowres_image(image.path, max_factor=LOWRES_FACTOR)
    if low is not None:
        low_image, factors = low
        key = tuple(slice(int(a // f), max(int(math.ceil(b / f)), int(a // f) + 1))
                    for (a, b), f in zip(region, factors))
        values = np.asarray(low_image.data[(channel,) + key])
    else:
        steps = (1,) * (len(region) - 2) + (LOWRES_FACTOR, LOWRES_FACTOR)
        key = tuple(slice(a, b, s) for (a, b), s in zip(region, steps))
        values = np.asarray(image.data[(channel,) + key])
    return float(values.max()) if values.size else -math.inf


def block_is_empty(image, task: BlockTask) -> bool:
    """True when the block's start channel stays below ``task.empty_below`` at low resolution."""
    if task.empty_below is None:
        return False
    low, high = (float(v) for v in task.limits[0])
    level = low + float(task.empty_below) * (high - low)
    # The whole read region: a tile owned by the block may find cells past its core.
    return _lowres_max(image, task.channels[0], task.block.region) < level


def run_block(task: BlockTask, *, image=None, model=None,
              cancel: Optional[CancelToken] = None) -> BlockResult:
    """Run the tiles of one block; return their vectors (model voxels, volume coordinates).

    Parameters
    ----------
    task : BlockTask
        The block, from :func:`block_tasks`.
    image : CellImage, optional
        The opened volume; default: ``task.image.open()`` (once per process).
    model : LoadedModel, optional
        Default: ``task.model`` loaded once per process.
    cancel : CancelToken, optional
        Checked between tile batches.
    """
    from .decode import decode_maps, offset_maps_of
    from .infer import _Plan, _run_tiles

    t0 = time.perf_counter()
    image = image if image is not None else task.image.open()
    if block_is_empty(image, task):
        return BlockResult(task.block.index, skipped=True, seconds=time.perf_counter() - t0,
                           peak_rss=peak_rss_bytes())
    model = model if model is not None else cached_model(task.model, task.device)
    index_of = {tuple(o): i for o, i in zip(task.origins, task.block.tiles)}
    reader = _GridTileReader(image.data, index_of=index_of, channels=task.channels,
                             limits=task.limits, model_shape=task.model_shape)
    plan = _Plan(task.dims, task.channels, task.work_vs, task.model_shape, task.tile,
                 list(task.origins), [None] * len(task.origins), reader)
    timings = Timings()
    tables = []
    for item in _run_tiles(plan, model, batch_size=task.batch_size, device=None,
                           timings=timings, cancel=cancel, precision=task.precision,
                           flips=task.thresholds.flips):
        if item[0] != "tile":
            continue
        _, k, maps = item
        t = time.perf_counter()
        offset = np.zeros(3)
        offset[-task.dims:] = task.origins[k]
        table = decode_maps(maps["heatmap_start"], maps["heatmap_end"], maps.get("embed_start"),
                            maps.get("embed_end"), voxel_size=task.work_vs,
                            thresholds=task.thresholds, names=task.names, offset=tuple(offset),
                            offset_maps=offset_maps_of(maps))
        timings.decode += time.perf_counter() - t
        tables.append((task.block.tiles[k], table))
    return BlockResult(task.block.index, tables, seconds=time.perf_counter() - t0,
                       peak_rss=peak_rss_bytes(), timings=timings.as_dict())


# ---------------------------------------------------------------------------
# Merging, and the whole job


def merge_blocks(vplan: VolumePlan, results) -> VectorTable:
    """The volume's vectors from its blocks' results, in image voxels.

    The tiles' vectors are merged as a single-process run merges them (same
    order, same interiors), so skipped blocks aside the result is the same.
    """
    from .decode import merge_tile_vectors
    from .infer import _to_image_voxels

    p = vplan.plan
    items = sorted((i, t) for r in results if not r.skipped for i, t in r.tiles)
    if not items:
        return VectorTable.empty(names=vplan.names, ndim=p.dims)
    boxes = []
    for i, _ in items:
        lo, hi = p.interiors[i]
        full_lo, full_hi = np.full(3, -np.inf), np.full(3, np.inf)
        full_lo[-p.dims:], full_hi[-p.dims:] = lo, hi
        boxes.append((full_lo, full_hi))
    merged = merge_tile_vectors([t for _, t in items], voxel_size=p.work_vs,
                                d_min_um=tuple(vplan.thresholds.d_min_um), margins=boxes)
    return _to_image_voxels(merged, p)


def core_vectors(vplan: VolumePlan, result: BlockResult, block: Block) -> VectorTable:
    """The vectors of one block alone whose start lies in its core (image voxels)."""
    table = merge_blocks(vplan, [result])
    dims = vplan.plan.dims
    inside = np.ones(len(table), bool)
    for a, (lo, hi) in enumerate(block.core):
        v = table.start[:, 3 - dims + a]
        inside &= (v >= lo - 0.5) & (v < hi - 0.5)
    return table.subset(inside)


def run_inline(tasks, *, image=None, model=None, cancel=None):
    """Run block tasks one after another in this process: yields (task index, result)."""
    for k, task in enumerate(tasks):
        if cancel is not None:
            cancel.check()
        yield k, run_block(task, image=image, model=model, cancel=cancel)


def predict_volume(image, model, *, block=None, channels=None, tile=None, overlap=None,
                   batch_size=1, thresholds=None, device=DEFAULT_DEVICE, image_spec=None, model_ref=None,
                   runner: Optional[Callable] = None, empty_below=EMPTY_BELOW,
                   precision=DEFAULT_PRECISION, force=False, cancel: Optional[CancelToken] = None):
    """Predict the vectors of one volume block by block.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` (stage
    ``"blocks"``, one step per finished block) and returns a
    :class:`~cellpol_core.io.vectors.VectorTable` in image voxels, with
    ``extra`` untouched and the block statistics in the last event's data.

    Parameters
    ----------
    image : CellImage
        The volume, read lazily.
    model : LoadedModel
        The loaded model (plans the tiles; runs them when ``runner`` is None).
    block : (int, int, int), optional
        Block (z, y, x) in image voxels.
    channels, tile, overlap, batch_size, thresholds
        As :func:`~cellpol_core.detection.infer.predict_image`.
    device : str
        Where workers run the model.
    image_spec, model_ref : optional
        How workers open the image (:class:`ImageSpec`) and the model (folder);
        needed with a ``runner`` that sends blocks to other processes.
    runner : callable, optional
        ``runner(tasks)`` yields (task index, :class:`BlockResult` or an
        exception) as blocks finish, e.g. on a Dask cluster; default: one
        block after another in this process.
    empty_below : float or None
        Skip blocks whose start channel stays below this fraction of the
        normalisation range at low resolution; None runs every block.
    precision, force
        As :func:`~cellpol_core.detection.infer.predict_image`.
    cancel : CancelToken, optional
        Checked between blocks.

    Raises
    ------
    RuntimeError
        When a block fails on the cluster (after its retry).
    """
    vplan = plan_volume(image, model, block=block, channels=channels, tile=tile, overlap=overlap,
                        thresholds=thresholds, force=force)
    if runner is None:
        tasks = block_tasks(vplan, image=None, model=None, device=device, batch_size=batch_size,
                            empty_below=empty_below, precision=precision)
        results_iter = run_inline(tasks, image=image, model=model, cancel=cancel)
    else:
        tasks = block_tasks(vplan, image=image_spec, model=model_ref, device=device,
                            batch_size=batch_size, empty_below=empty_below, precision=precision)
        results_iter = runner(tasks)
    n = len(tasks)
    name = Path(image.path).name if image.path is not None else "image"
    yield ProgressEvent("blocks", 0, n, message=f"{name}: {n} blocks, {vplan.n_tiles} tiles")
    results = []
    for done, (k, res) in enumerate(results_iter, start=1):
        if isinstance(res, BaseException):
            raise RuntimeError(f"block {tasks[k].block.index} failed: "
                               f"{type(res).__name__}: {res}") from res
        results.append(res)
        yield ProgressEvent("blocks", done, n, message=f"{name}: block {res.index}"
                            + (" (empty, skipped)" if res.skipped else ""))
    table = merge_blocks(vplan, results)
    stats = {"blocks": n, "skipped": sum(r.skipped for r in results), "tiles": vplan.n_tiles,
             "peak_rss_max": max((r.peak_rss for r in results), default=0),
             "block_seconds": [r.seconds for r in results], "n_vectors": len(table)}
    yield ProgressEvent("blocks", n, n, message=f"{name}: {len(table)} vectors", data=stats)
    return table


def rehearse_block(image, model, *, block=None, which=None, channels=None, tile=None, overlap=None,
               batch_size=1, thresholds=None, device=DEFAULT_DEVICE, image_spec=None, model_ref=None,
               runner: Optional[Callable] = None, precision=DEFAULT_PRECISION, force=False) -> dict:
    """Run one block as a rehearsal: its time, peak memory and vectors.

    Parameters
    ----------
    which : tuple of int, optional
        The block's grid index; default: the block at the middle of the grid.
    Others
        As :func:`predict_volume`; the empty test is off.

    Returns
    -------
    dict
        ``block`` (index), ``core``, ``halo``, ``tiles``, ``seconds``, ``peak_rss``
        (bytes, the process that ran it), ``n_vectors`` (in its core),
        ``n_blocks`` and ``projected_seconds`` (blocks × seconds, one worker).
    """
    vplan = plan_volume(image, model, block=block, channels=channels, tile=tile, overlap=overlap,
                        thresholds=thresholds, force=force)
    by_index = {b.index: b for b in vplan.blocks}
    if which is None:
        b = vplan.blocks[len(vplan.blocks) // 2]
    elif tuple(which) in by_index:
        b = by_index[tuple(which)]
    else:
        raise InputError(f"no block {tuple(which)}; blocks: {sorted(by_index)[:3]}...")
    if runner is None:
        task, = block_tasks(replace(vplan, blocks=[b]), image=None, model=None, device=device,
                            batch_size=batch_size, empty_below=None, precision=precision)
        res = run_block(task, image=image, model=model)
    else:
        task, = block_tasks(replace(vplan, blocks=[b]), image=image_spec, model=model_ref,
                            device=device, batch_size=batch_size, empty_below=None,
                            precision=precision)
        (_, res), = list(runner([task]))
        if isinstance(res, BaseException):
            raise RuntimeError(f"the test block failed: {type(res).__name__}: {res}") from res
    vectors = core_vectors(vplan, res, b)
    return {"block": b.index, "core": b.core, "halo": b.halo(), "tiles": len(b.tiles),
            "seconds": res.seconds, "peak_rss": res.peak_rss, "n_vectors": len(vectors),
            "n_blocks": len(vplan.blocks),
            "projected_seconds": res.seconds * len(vplan.blocks), "timings": res.timings}
