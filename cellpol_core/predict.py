"""Prediction over image files: the long job behind ``cellpol predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .errors import InputError
from .jobs import CancelToken, ProgressEvent
from .vectors import write_vectors


def image_stem(path) -> str:
    """File name without its image suffixes: ``a/b.ome.tif`` -> ``b``."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".lsm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def vectors_path_for(image_path, outdir) -> Path:
    """Where the vectors of ``image_path`` go: ``OUTDIR/<stem>_vectors.csv``."""
    return Path(outdir) / f"{image_stem(image_path)}_vectors.csv"


def predict_files(paths: Sequence, *, outdir, method="otsu", channels=None,
                  structures=("nucleus", "golgi"), voxel_size=None, axes=None, d_max=14.0,
                  min_size_um=(20.0, 2.0), cancel: Optional[CancelToken] = None):
    """Predict vectors for each image file and write ``<stem>_vectors.csv``.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` and
    returns the list of written CSV paths.

    Parameters
    ----------
    paths : sequence of path
        Image files.
    outdir : path
        Output folder, created if needed.
    method : {"otsu"}
        The prediction method.
    channels : (int, int), optional
        Start and end channels; default from channel names, else (0, 1).
    structures : (str, str)
        Start and end structure names.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm overriding the files' metadata.
    axes : str, optional
        Axes of the stored arrays, overriding the heuristic.
    d_max : float
        Longest allowed pair in µm.
    min_size_um : (float, float)
        Smallest start/end components for the Otsu method, µm³ (µm² in 2D).
    cancel : CancelToken, optional
        Checked between images.
    """
    from .classical import predict_otsu
    from .image import read_image, resolve_channels

    if method != "otsu":
        raise InputError(f"unknown method {method!r}; available: otsu")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    n = len(paths)
    for k, path in enumerate(paths):
        if cancel is not None:
            cancel.check()
        yield ProgressEvent("predict", k, n, message=Path(path).name)
        image = read_image(path, axes=axes, voxel_size=voxel_size)
        if image.is_3d and image.voxel_size is None:
            raise InputError("3D image has no voxel size in its metadata; pass --voxel-size X Y Z",
                             path)
        ch = resolve_channels(image, channels=channels, structures=structures)
        table = predict_otsu(image, channels=ch, d_max=d_max, min_size_um=min_size_um,
                             names=tuple(structures))
        out = vectors_path_for(path, outdir)
        write_vectors(out, table, voxel_size=image.voxel_size)
        written.append(out)
        yield ProgressEvent("predict", k + 1, n, message=f"{Path(path).name}: {len(table)} vectors",
                            data={"path": str(out), "n_vectors": len(table)})
    return written
