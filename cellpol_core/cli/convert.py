"""``cellpol convert``: between the CellPol and VectorAnnotationTool vector CSVs."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..vectors import read_vectors, write_vat, write_vectors
from .common import voxel_size_from_args


def register(sub):
    p = sub.add_parser(
        "convert", help="convert vector CSVs (CellPol <-> VectorAnnotationTool)",
        description="Read a CellPol or VectorAnnotationTool CSV (detected automatically) and "
                    "write it in the chosen format.")
    p.add_argument("input", metavar="IN", help="input CSV")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output CSV")
    p.add_argument("--to", choices=["cellpol", "vat"], default="cellpol",
                   help="output format (default cellpol)")
    p.add_argument("--voxel-size", nargs="+", type=float, metavar="UM",
                   help="X Y Z µm; adds µm columns, length and angles to a CellPol CSV")
    p.add_argument("--structures", nargs=2, metavar=("START", "END"),
                   help="structure names: which columns to read from a CellPol CSV, or the names "
                        "to give a VectorAnnotationTool CSV (default: as found, nucleus golgi for VAT)")
    p.set_defaults(func=run)


def run(args) -> int:
    src = Path(args.input)
    table = read_vectors(src, structures=args.structures)
    if args.to == "vat":
        if table.ndim != 3:
            raise InputError("the VectorAnnotationTool format is 3D; this table is 2D", src)
        write_vat(args.output, table)
    else:
        write_vectors(args.output, table, voxel_size=voxel_size_from_args(args))
    print(f"{len(table)} vectors -> {args.output}")
    return 0
