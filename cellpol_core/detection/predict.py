"""Prediction over image files: the long job behind ``cellpol predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, OTSU_MIN_SIZE_UM, PAIR_DISTANCE_UM
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from ..io.atomic import check_writable
from ..io.image import nonfinite_note
from ..io.paths import (IMAGE_SUFFIXES, expand_inputs, image_stem, match_vectors,  # noqa: F401
                        vectors_path_for, vectors_paths_for)
from ..io.vectors import DEFAULT_STRUCTURES, write_vectors


def predict_files(paths: Sequence, *, outdir, method="otsu", model=None, channels=None,
                  structures=None, voxel_size=None, axes=None, d_max_um=None, flips=None,
                  min_size_um=OTSU_MIN_SIZE_UM, device=DEFAULT_DEVICE, batch_size=1, tile=None,
                  timings=None, skip_existing=False, client=None, block=None, test_block=False,
                  precision=DEFAULT_PRECISION, force=False,
                  cancel: Optional[CancelToken] = None):
    """Predict vectors for each image file and write ``<stem>_vectors.csv``.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` and
    returns the list of written CSV paths.

    Parameters
    ----------
    paths : sequence of path
        Image files.
    outdir : path
        Output folder, created if needed.
    method : {"otsu", "model"}
        The classical baseline, or a trained model (``model``).
    model : str, Path or LoadedModel, optional
        Model folder, bundled model name or a model loaded by
        :func:`~cellpol_core.detection.model.load_model` (for inference, on
        ``device``); implies ``method="model"``.
    channels : (int, int), optional
        Start and end channels; default from channel names, else (0, 1).
    structures : (str, str), optional
        Start and end structure names (default: the model's, or nucleus golgi).
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm overriding the files' metadata.
    axes : str, optional
        Axes of the stored arrays, overriding the heuristic.
    d_max_um : float, optional
        Longest allowed pair in µm (default: the model's tuned value, or
        :data:`~cellpol_core.defaults.PAIR_DISTANCE_UM` for the Otsu method).
    flips : {1, 2, 4, 8}, optional
        Test-time flips of a model (default the model's ``thresholds.json``;
        see :attr:`~cellpol_core.detection.model.Thresholds.flips`).
    min_size_um : (float, float)
        Smallest start/end components for the Otsu method, µm³ (µm² in 2D).
    device : {"auto", "cpu", "cuda"}
        Where a model runs.
    batch_size : int
        Tiles per network call.
    tile : tuple of int, optional
        Tile size in model voxels.
    timings : Timings, optional
        Accumulates the time per part (read, normalise, network, decode, write).
    skip_existing : bool
        Skip images whose output CSV exists (resuming a batch run).
    client : distributed.Client, optional
        Run one task per image (and per block of a large volume) on this Dask
        cluster; failed images are reported in the result's ``failed`` while
        the others go on (:mod:`cellpol_core.detection.cluster`).
    block : (int, int, int), optional
        Predict images larger than this (z, y, x) block, and OME-Zarr
        volumes, block by block (on ``client`` when given).
    test_block : bool
        Run one block of the first image and report its time and memory.
    precision : {"auto", "fp32", "bf16"}
        Network arithmetic; "auto" is bf16 where the CPU (or CUDA) runs it
        natively (:mod:`cellpol_core.detection.precision`).
    force : bool
        Resample images to the model's voxel size even when that grows them
        more than :data:`~cellpol_core.io.resample.MAX_GROWTH` times.
    cancel : CancelToken, optional
        Checked between images (and between tiles for models).
    """
    import time

    if client is not None or block is not None or test_block:
        from .cluster import predict_distributed

        return (yield from predict_distributed(
            paths, outdir=outdir, method=method, model=model, channels=channels,
            structures=structures, voxel_size=voxel_size, axes=axes, d_max_um=d_max_um,
            flips=flips,
            min_size_um=min_size_um, device=device, batch_size=batch_size, tile=tile,
            skip_existing=skip_existing, client=client, block=block, test_block=test_block,
            precision=precision, force=force, cancel=cancel))

    from ..io.image import read_image, resolve_channels
    from .infer import Timings, predict_image

    if model is not None:
        method = "model"
    if method not in ("otsu", "model"):
        raise InputError(f"unknown method {method!r}; available: otsu, model")
    timings = timings if timings is not None else Timings()
    check_writable(outdir, folder=True)  # before any work, not after it
    loaded = None
    if method == "model":
        if model is None:
            raise InputError("--method model needs --model MODEL_DIR|NAME")
        from .model import LoadedModel, load_model
        from .network import device_description, select_device
        from .precision import resolve_precision

        dev = select_device(device)
        prec = resolve_precision(precision, dev)
        # A LoadedModel is used as it is: a caller predicting many batches loads it once.
        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=dev)
        if d_max_um is not None:
            from dataclasses import replace

            loaded = replace(loaded, thresholds=replace(loaded.thresholds, d_max_um=float(d_max_um)))
        if flips is not None:
            from dataclasses import replace

            from .infer import flip_axes

            flip_axes(flips, loaded.config.spatial_dims)  # 8 flips on a 2D model: refused now
            loaded = replace(loaded, thresholds=replace(loaded.thresholds, flips=int(flips)))
        structures = tuple(structures or loaded.config.structures)
        desc = device_description(dev, prec)
        yield ProgressEvent("predict", 0, len(paths), message=f"model on {desc}",
                            data={"device": desc, **({"notice": prec.notice} if prec.notice else {})})
    structures = tuple(structures or DEFAULT_STRUCTURES)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    n = len(paths)
    outputs, renamed = vectors_paths_for(paths, outdir)
    for image_path, csv_path in renamed:
        yield ProgressEvent("predict", 0, n, data={"notice": (
            f"{image_path}: another input has the same name; its vectors go to {csv_path.name}")})
    for k, path in enumerate(paths):
        if cancel is not None:
            cancel.check()
        out = outputs[k]
        if skip_existing and out.exists():
            written.append(out)
            continue
        yield ProgressEvent("predict", k, n, message=Path(path).name)
        t0 = time.perf_counter()
        image = read_image(path, axes=axes, voxel_size=voxel_size, lazy=loaded is not None)
        timings.read += time.perf_counter() - t0
        if image.nonfinite:
            yield ProgressEvent("predict", k, n, data={"notice": nonfinite_note(image)})
        if image.is_3d and image.voxel_size is None:
            raise InputError("3D image has no voxel size in its metadata; pass --voxel-size X Y Z",
                             path)
        ch = resolve_channels(image, channels=channels, structures=structures)
        if loaded is None:
            from .classical import predict_otsu

            t1 = time.perf_counter()
            table = predict_otsu(image, channels=ch,
                                 d_max_um=PAIR_DISTANCE_UM if d_max_um is None else d_max_um,
                                 min_size_um=min_size_um, names=structures)
            timings.decode += time.perf_counter() - t1
        else:
            table = yield from predict_image(image, loaded, channels=ch, batch_size=batch_size,
                                             tile=tile, timings=timings, precision=prec,
                                             force=force, cancel=cancel)
        t2 = time.perf_counter()
        write_vectors(out, table, voxel_size=image.voxel_size)
        timings.write += time.perf_counter() - t2
        written.append(out)
        yield ProgressEvent("predict", k + 1, n, message=f"{Path(path).name}: {len(table)} vectors",
                            data={"path": str(out), "n_vectors": len(table)})
    return written
