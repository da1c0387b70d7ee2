"""The prediction job of the Predict widget, on plain arrays (no Qt, no napari).

The widget stacks two image layers into a two-channel :class:`CellImage`
view and runs :func:`predict_job` in a napari thread worker.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from cellpol_core.defaults import DEVICES  # noqa: F401 (used by the widgets)
from cellpol_core.errors import Cancelled, InputError
from cellpol_core.io.image import CellImage
from cellpol_core.jobs import CancelToken, ProgressEvent

PRECISIONS = ("auto", "fp32", "bf16")


class StackedChannels:
    """A read-only (2, ...) view of two same-shaped arrays (the start and end channels).

    Indexing reads only the requested region of the chosen channel, so large
    (e.g. dask or memory-mapped) layers are not copied.
    """

    def __init__(self, start, end):
        if tuple(start.shape) != tuple(end.shape):
            raise InputError(f"start and end layers differ in shape: {tuple(start.shape)} "
                             f"and {tuple(end.shape)}")
        self._arrays = (start, end)
        self.shape = (2,) + tuple(int(s) for s in start.shape)
        self.dtype = np.result_type(start.dtype, end.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return np.asarray(self._arrays[int(first)][rest], dtype=self.dtype)
        return np.stack([np.asarray(a[rest], dtype=self.dtype) for a in self._arrays])[first]

    def __array__(self, dtype=None, copy=None):
        out = np.stack([np.asarray(a, dtype=self.dtype) for a in self._arrays])
        return out if dtype is None else out.astype(dtype)


def make_image(start, end, *, voxel_size, names=("start", "end")) -> CellImage:
    """A two-channel CellImage over the arrays of two image layers.

    Parameters
    ----------
    start, end : array-like
        (Z, Y, X) or (Y, X) arrays of the same shape.
    voxel_size : tuple of 3 floats or None
        (z, y, x) µm; 2D images use z = 1.
    """
    if getattr(start, "ndim", 0) not in (2, 3):
        raise InputError(f"image layers must be 2D or 3D, got {getattr(start, 'ndim', 0)}D")
    return CellImage(StackedChannels(start, end), voxel_size=voxel_size, channel_names=list(names))


@dataclass
class PredictResult:
    """What the job returns: the vectors in image voxels and, optionally, the CNN maps."""

    table: object
    maps: Optional[dict] = None
    maps_scale: Optional[tuple] = None
    precision_used: bool = False


def supports_precision() -> bool:
    """Whether the engine's predict_image takes ``precision=`` (added in a later engine)."""
    from cellpol_core.detection.infer import predict_image

    return "precision" in inspect.signature(predict_image).parameters


def predict_job(image: CellImage, model, *, device="auto", precision="auto", tile=None,
                thresholds=None, show_maps=False, cancel: Optional[CancelToken] = None):
    """Load a model and predict an image's vectors: a generator job.

    Yields :class:`ProgressEvent` and returns a :class:`PredictResult`.

    Parameters
    ----------
    image : CellImage
        Two channels: start then end.
    model : str or Path
        A model folder or the name of a bundled model.
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "fp32", "bf16"}
        Passed to the engine when it supports it.
    tile : tuple of int, optional
        Tile size in model voxels.
    thresholds : dict, optional
        Overrides of the model's thresholds (``tau``, ``d_max_um``...).
    show_maps : bool
        Also return the whole-image heatmaps and embeddings (a second pass of
        the network over the tiles).
    cancel : CancelToken, optional
    """
    from cellpol_core.detection.infer import predict_image, predict_maps
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.network import device_description, select_device

    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    yield ProgressEvent("load", 0, 1, message="loading the model")
    dev = select_device(device)
    loaded = load_model(model, device=dev)
    if thresholds:
        loaded.thresholds = replace(loaded.thresholds, **thresholds)
    if cancel is not None:
        cancel.check()
    yield ProgressEvent("load", 1, 1, message=f"model loaded on {device_description(dev)}",
                        data={"device": str(dev)})
    extra = {"precision": precision} if supports_precision() else {}
    table = yield from predict_image(image, loaded, channels=(0, 1), tile=tile, device=dev,
                                     thresholds=loaded.thresholds, cancel=cancel, **extra)
    if not show_maps:
        return PredictResult(table, precision_used=bool(extra))
    # The maps come from a second pass, so that showing them never changes the vectors.
    maps_extra = extra if "precision" in inspect.signature(predict_maps).parameters else {}
    maps = yield from predict_maps(image, loaded, channels=(0, 1), tile=tile, device=dev,
                                   cancel=cancel, **maps_extra)
    # Model voxel m sits at image voxel m / to_model (see TileReader).
    scale = np.ones(image.ndim)
    if maps.plan.reader.resampled:
        scale = 1.0 / np.asarray(maps.plan.reader.to_model, float)
    return PredictResult(table, maps.maps, tuple(float(s) for s in scale), precision_used=bool(extra))


def run_safely(job):
    """Drive ``job`` (yield from it) and return ``("ok", result)`` or ``("error", one line)``.

    napari shows a worker's uncaught exception with its traceback; users get one line.
    """
    try:
        result = yield from job
    except Cancelled:
        return "cancelled", "cancelled"
    except InputError as exc:
        return "error", str(exc)
    except MemoryError:
        return "error", "out of memory; use a smaller tile or the CPU"
    except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        return "error", f"prediction failed ({type(exc).__name__}: {first})"
    return "ok", result
