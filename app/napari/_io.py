"""Reader, writers and sample data of the napari plugin (npe2 commands)."""

from __future__ import annotations

from pathlib import Path

from cellpol_core.errors import InputError
from cellpol_core.io.vectors import read_vectors, write_vectors

from ._convert import (points_layers_to_table, table_to_layer_data, vectors_layer_to_table,
                       voxel_size_from_table)


def _single_path(path):
    if isinstance(path, (list, tuple)):
        return Path(path[0]) if len(path) == 1 else None
    return Path(path)


def get_reader(path):
    """npe2 reader: a function reading ``path`` when it is a CellPol or VectorAnnotationTool CSV.

    Returns None for other files, so that napari tries its other readers.
    """
    p = _single_path(path)
    if p is None or p.suffix.lower() != ".csv" or not p.is_file():
        return None
    try:
        table = read_vectors(p)
    except InputError:
        return None  # not a vectors CSV (e.g. napari's own points CSV)
    return lambda _path: layers_from_table(table, name=p.stem)


def layers_from_table(table, *, name="vectors"):
    """LayerData tuples of a table, scaled by the voxel size its µm columns imply."""
    return table_to_layer_data(table, voxel_size=voxel_size_from_table(table), name=name)


def read_vectors_layers(path) -> list:
    """Read a CellPol or VectorAnnotationTool CSV as LayerData tuples."""
    p = Path(path)
    return layers_from_table(read_vectors(p), name=p.stem)


def write_vectors_layer(path: str, data, meta: dict) -> list:
    """npe2 single-layer writer: a Vectors layer to a CellPol CSV (written atomically)."""
    table, voxel_size = vectors_layer_to_table(data, meta)
    write_vectors(path, table, voxel_size=voxel_size)
    return [str(path)]


def write_points_pairs(path: str, layer_data: list) -> list:
    """npe2 multi-layer writer: two Points layers joined on ``pair_id`` to a CellPol CSV."""
    table, voxel_size = points_layers_to_table(layer_data)
    write_vectors(path, table, voxel_size=voxel_size)
    return [str(path)]


def demo_sample() -> list:
    """npe2 sample data: the bundled 3D demo image and its ground-truth vectors."""
    from cellpol_core.io.image import read_image
    from cellpol_core.io.resources import demo_image_path, demo_vectors_path

    image = read_image(demo_image_path())
    vs = tuple(image.voxel_size) if image.voxel_size is not None else None
    names = list(image.channel_names) or [f"C{i}" for i in range(image.n_channels)]
    colormaps = ["magenta", "green", "cyan", "yellow"]
    kwargs = {"channel_axis": 0, "name": [f"demo {n}" for n in names],
              "colormap": [colormaps[i % len(colormaps)] for i in range(len(names))],
              "blending": "additive", "metadata": {"cellpol": {"voxel_size": vs}}}
    if vs is not None:
        kwargs["scale"] = vs[-image.ndim:]
    table = read_vectors(demo_vectors_path())
    vectors = table_to_layer_data(table, voxel_size=vs or voxel_size_from_table(table),
                                  name="demo ground truth")
    return [(image.data, kwargs, "image")] + vectors
