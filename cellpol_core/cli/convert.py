"""``cellpol convert``: between vector formats (CellPol, VAT, napari, Polarity-JaM), and images
to OME-Zarr (with a pyramid) or OME-TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.ome_zarr import DEFAULT_NGFF_VERSION, NGFF_VERSIONS, is_zarr_path
from ..io.vectors import read_vectors, write_vat, write_vectors
from .common import voxel_size_from_args


def register(sub):
    p = sub.add_parser(
        "convert", help="convert vector CSVs (CellPol, VectorAnnotationTool, napari, Polarity-JaM), "
                        "or images to OME-Zarr",
        description="Images: `cellpol convert IN.tif -o OUT.ome.zarr` writes an OME-Zarr image "
                    "with a pyramid (streamed in z-slabs, so larger than memory is fine); an "
                    "OME-Zarr input with -o OUT.ome.tif writes OME-TIFF. "
                    "Vectors: read vectors and write them in the chosen format. Input: a CellPol, "
                    "VectorAnnotationTool or Polarity-JaM CSV (detected automatically), or two "
                    "napari points CSVs (start and end structure, paired by pair_id). Output "
                    "--to napari writes OUT_<start>.csv and OUT_<end>.csv (index,axis-0,axis-1,"
                    "axis-2,pair_id in voxels, z y x order); --to polarityjam writes a 2D table "
                    "nuc_X,nuc_Y,organelle_X,organelle_Y,organelle_orientation_rad/deg in pixels.")
    p.add_argument("input", nargs="+", metavar="IN",
                   help="input CSV (two files for napari input: start points, end points), "
                        "or an image")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output CSV (for napari: the stem of the two files), or an image: "
                        "OUT.ome.zarr or OUT.ome.tif")
    p.add_argument("--to", choices=["cellpol", "vat", "napari", "polarityjam"], default="cellpol",
                   help="output format (default cellpol)")
    p.add_argument("--from", dest="source_format",
                   choices=["auto", "cellpol", "vat", "napari", "polarityjam"], default="auto",
                   help="input format (default auto: napari for two files, else from the header)")
    p.add_argument("--voxel-size", nargs="+", type=float, metavar="UM",
                   help="X Y Z µm; adds µm columns, length and angles to a CellPol CSV")
    p.add_argument("--structures", nargs=2, metavar=("START", "END"),
                   help="structure names: which columns to read from a CellPol CSV, or the names "
                        "to give a VectorAnnotationTool, napari or Polarity-JaM input "
                        "(default: as found, nucleus golgi for VAT/Polarity-JaM)")
    p.add_argument("--axes", metavar="STR",
                   help="images: axes letters of the stored array, e.g. YXZC, overriding the "
                        "heuristic")
    p.add_argument("--ngff", choices=list(NGFF_VERSIONS), default=DEFAULT_NGFF_VERSION,
                   help=f"images: OME-NGFF version written (default {DEFAULT_NGFF_VERSION}; "
                        "0.4 for older viewers)")
    p.add_argument("--levels", type=int, metavar="N",
                   help="images: pyramid levels including full resolution (default: halve y and "
                        "x down to about 256 voxels)")
    p.set_defaults(func=run)


def _is_image_job(args) -> bool:
    from ..io.paths import is_image_path

    return len(args.input) == 1 and (is_image_path(args.input[0]) or is_zarr_path(args.output)
                                     or Path(args.input[0]).is_dir())


def _convert_image(args) -> int:
    """An image to OME-Zarr (streamed, with a pyramid) or to OME-TIFF."""
    from ..io.image import read_image, write_ome_tiff
    from ..jobs import ProgressEvent
    from .common import ProgressBar

    src, out = Path(args.input[0]), Path(args.output)
    if args.levels is not None and args.levels < 1:
        raise InputError(f"--levels must be at least 1, got {args.levels}")
    image = read_image(src, axes=args.axes, voxel_size=voxel_size_from_args(args), lazy=True)
    if is_zarr_path(out):
        from ..io.ome_zarr import write_ome_zarr

        with ProgressBar() as bar:
            n = write_ome_zarr(out, image.data, voxel_size=image.voxel_size,
                               channel_names=image.channel_names, version=args.ngff,
                               n_levels=args.levels,
                               progress=lambda k, n: bar(ProgressEvent("convert", k, n)))
        print(f"{src} -> {out} (OME-NGFF {args.ngff}, shape {tuple(image.data.shape)}, "
              f"{n} level{'s' * (n > 1)})")
    elif out.name.lower().endswith((".tif", ".tiff")):
        write_ome_tiff(out, np.asarray(image.data), voxel_size=image.voxel_size,
                       channel_names=image.channel_names)
        print(f"{src} -> {out} (OME-TIFF, shape {tuple(image.data.shape)})")
    else:
        raise InputError("an image converts to OUT.ome.zarr or OUT.ome.tif", out)
    return 0


def _read(args):
    from ..io.export import is_polarityjam_csv, read_napari_vectors, read_polarityjam

    inputs = [Path(p) for p in args.input]
    fmt = args.source_format
    if fmt == "auto":
        if len(inputs) == 2:
            fmt = "napari"
        elif inputs[0].is_file() and is_polarityjam_csv(inputs[0]):
            fmt = "polarityjam"
        else:
            fmt = "cellpol"
    if fmt == "napari":
        if len(inputs) != 2:
            raise InputError("napari input needs two files: the start and the end points CSV")
        return read_napari_vectors(inputs[0], inputs[1], names=args.structures), inputs[0]
    if len(inputs) != 1:
        raise InputError(f"{fmt} input is one file, got {len(inputs)}")
    if fmt == "polarityjam":
        kwargs = {"names": tuple(args.structures)} if args.structures else {}
        return read_polarityjam(inputs[0], **kwargs), inputs[0]
    return read_vectors(inputs[0], structures=args.structures), inputs[0]


def run(args) -> int:
    if _is_image_job(args):
        return _convert_image(args)
    table, src = _read(args)
    if args.to == "vat":
        if table.ndim != 3:
            raise InputError("the VectorAnnotationTool format is 3D; this table is 2D", src)
        write_vat(args.output, table)
        written = [args.output]
    elif args.to == "napari":
        from ..io.export import write_napari_points

        written = write_napari_points(args.output, table)
    elif args.to == "polarityjam":
        from ..io.export import write_polarityjam

        write_polarityjam(args.output, table)
        written = [args.output]
    else:
        write_vectors(args.output, table, voxel_size=voxel_size_from_args(args))
        written = [args.output]
    print(f"{len(table)} vectors -> {', '.join(map(str, written))}")
    return 0
