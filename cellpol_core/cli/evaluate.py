"""`cellpol evaluate`: the paper's 14-level metrics of predicted against ground-truth vectors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..defaults import BORDER_UM
from ..errors import InputError
from ..io.paths import expand_inputs, image_stem, vectors_stem
from .common import voxel_size_from_args

DESCRIPTION = """\
Match predicted vectors to ground-truth vectors (Hungarian method on the sum of
start- and end-point distances, once) and report, at 14 threshold levels from
loosest (0) to strictest (13): TP, FP, FN, TPR, FDR and, over the true
positives, mean and SD of the cosine similarity, the vector error and the
start/end point distances. Distances are in µm when a voxel size is known
(--voxel-size or --image metadata), else in pixels; 3D tables need a voxel size.

--gt and --pred may both be folders: each GT file NAME.csv or NAME_vectors.csv
is paired with the prediction file whose name, without .csv and a trailing
_vectors, is also NAME (give an empty CSV for an image without predictions).
--image may then be a folder of images matched on NAME (file name without its
extension and a trailing .ome). The metrics are pooled over all images.
"""


def register(sub):
    p = sub.add_parser("evaluate", help="score predicted vectors against ground truth",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, metavar="CSV|DIR",
                   help="ground-truth vectors: a CSV file or a folder of them")
    p.add_argument("--pred", required=True, metavar="CSV|DIR",
                   help="predicted vectors: a CSV file or a folder of them")
    p.add_argument("--voxel-size", nargs="+", type=float, metavar="UM",
                   help="voxel size in µm as X Y Z (2D: X Y), overriding the image metadata")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--image", metavar="IMG|DIR",
                       help="the image (or a folder of images): gives the shape for the border "
                            "exclusion and, unless --voxel-size is given, the voxel size")
    where.add_argument("--shape", nargs="+", type=int, metavar="N",
                       help="image size in voxels as X Y Z (2D: X Y), for the border exclusion")
    p.add_argument("--axes", metavar="STR",
                   help="axes letters of the --image array, e.g. YXZC, overriding the heuristic")
    p.add_argument("--border-um", type=float, default=BORDER_UM, metavar="UM",
                   help="exclude vectors with an endpoint closer than this to the x/y edge "
                        "(µm; pixels without voxel size; needs --image or --shape; "
                        f"default {BORDER_UM:g})")
    lv = p.add_mutually_exclusive_group()
    lv.add_argument("--levels", choices=["nucleus-golgi", "cytoplasm-nucleus"],
                    default="nucleus-golgi",
                    help="threshold preset: nucleus-golgi (16 and 8 µm major axes, default) or "
                         "cytoplasm-nucleus (96 and 17 px)")
    lv.add_argument("--major-axes", nargs=2, type=float, metavar=("A", "B"),
                    help="custom major axes of the start and end structures: "
                         "tau_start = MAF*A, tau_end = MAF*B")
    p.add_argument("--structures", nargs=2, metavar=("START", "END"),
                   help="start and end structure names to read (default: the first two "
                        "structures in each file's header)")
    p.add_argument("-o", "--output", required=True, metavar="CSV",
                   help="metrics CSV to write (one row per level)")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- file matching

def _index(files, stem, folder):
    out = {}
    for f in files:
        key = stem(f)
        if key in out:
            raise InputError(f"{out[key].name} and {f.name} both match the name '{key}'", folder)
        out[key] = f
    return out


def _csv_files(folder):
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(".csv"))
    if not files:
        raise InputError("no CSV files in folder", folder)
    return files


def match_inputs(gt, pred, image=None) -> list:
    """Pair ground-truth, prediction and image files.

    Returns
    -------
    list of (name, gt_path, pred_path, image_path or None)
    """
    gt, pred = Path(gt), Path(pred)
    image = None if image is None else Path(image)
    if image is not None and not image.exists():
        raise InputError("file not found", image)
    if gt.is_dir() != pred.is_dir():
        folder, other = (gt, pred) if gt.is_dir() else (pred, gt)
        if not other.exists():
            raise InputError("file not found", other)
        raise InputError(f"--gt and --pred must both be files or both folders ({folder} is a "
                         "folder)", other)
    images = None
    if image is not None and image.is_dir():
        images = _index(expand_inputs([image]), image_stem, image)
        if not images:
            raise InputError("no image files (.tif, .tiff, .lsm) in folder", image)

    def image_for(name, gt_path):
        if images is None:
            return image
        if name not in images:
            raise InputError(f"no image named '{name}' in the --image folder {image}", gt_path)
        return images[name]

    if not gt.is_dir():
        return [(vectors_stem(gt), gt, pred, image_for(vectors_stem(gt), gt))]
    gts = _index(_csv_files(gt), vectors_stem, gt)
    preds = _index(sorted(f for f in pred.iterdir()
                          if f.is_file() and f.name.lower().endswith(".csv")), vectors_stem, pred)
    out = []
    for name, g in gts.items():
        if name not in preds:
            raise InputError(f"no prediction for this ground truth: expected {pred / name}.csv or "
                             f"{pred / name}_vectors.csv (use an empty CSV for no vectors)", g)
        out.append((name, g, preds[name], image_for(name, g)))
    unused = sorted(set(preds) - set(gts))
    if unused:
        print(f"cellpol evaluate: note: ignoring {len(unused)} prediction file(s) without ground "
              f"truth: {', '.join(preds[n].name for n in unused)}", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- running

def _shape_from_args(args):
    if args.shape is None:
        return None
    if len(args.shape) not in (2, 3) or min(args.shape) < 1:
        raise InputError(f"--shape takes X Y Z (or X Y in 2D) positive sizes, got "
                         f"{' '.join(map(str, args.shape))}")
    return tuple(reversed(args.shape))  # X Y [Z] -> (Z,) Y, X


def _evaluate_one(args, gt_path, pred_path, image_path, shape):
    from ..detection.evaluate import evaluate_vectors
    from ..io.vectors import read_vectors

    gt = read_vectors(gt_path, structures=args.structures)
    pred = read_vectors(pred_path, structures=args.structures)
    if len(gt) and len(pred):
        if gt.ndim != pred.ndim:
            raise InputError(f"{pred.ndim}D predictions for {gt.ndim}D ground truth {gt_path}",
                             pred_path)
        if gt.names != pred.names:
            print(f"cellpol evaluate: warning: {pred_path.name} has structures "
                  f"{pred.names[0]}->{pred.names[1]} but {gt_path.name} has "
                  f"{gt.names[0]}->{gt.names[1]}", file=sys.stderr)
    voxel_size = voxel_size_from_args(args)
    if image_path is not None:
        from .common import load_image

        img = load_image(args, image_path, lazy=True)
        shape = img.spatial_shape
        if voxel_size is None:
            voxel_size = img.voxel_size
    is_3d = any(len(t) and t.ndim == 3 for t in (gt, pred)) or (shape is not None and len(shape) == 3)
    if is_3d:
        where = image_path if image_path is not None else gt_path
        if voxel_size is None:
            raise InputError("3D vectors without voxel size: distances would be in voxels of "
                             "unequal size; pass --voxel-size X Y Z", where)
        if args.voxel_size is not None and len(args.voxel_size) != 3:
            raise InputError("3D vectors need --voxel-size X Y Z (3 values)", where)
    if args.levels == "cytoplasm-nucleus" and args.major_axes is None and voxel_size is not None \
            and tuple(voxel_size[1:]) != (1.0, 1.0):
        print("cellpol evaluate: warning: the cytoplasm-nucleus thresholds are in pixels but "
              f"distances are in µm (voxel size {voxel_size[2]:g} x {voxel_size[1]:g})",
              file=sys.stderr)
    return evaluate_vectors(gt, pred, voxel_size=voxel_size, shape=shape,
                            border_um=args.border_um, levels=args.levels,
                            major_axes=args.major_axes)


def run(args) -> int:
    from ..detection.evaluate import format_table, pool_results, write_metrics_csv

    if args.border_um < 0:
        raise InputError(f"--border-um must be >= 0, got {args.border_um:g}")
    if args.major_axes is not None and min(args.major_axes) <= 0:
        raise InputError("--major-axes must be positive")
    shape = _shape_from_args(args)
    pairs = match_inputs(args.gt, args.pred, args.image)
    results = [_evaluate_one(args, g, p, img, shape) for _, g, p, img in pairs]
    units = {r.unit for r in results}
    if len(units) > 1:
        raise InputError("some images have a voxel size and some do not; pass --voxel-size "
                         "to evaluate all in µm", args.image)
    result = pool_results(results) if len(results) > 1 else results[0]
    unit = "µm" if result.unit == "um" else "pixels"
    border = ""
    if shape is not None or args.image is not None:
        border = (f"; excluded near the border ({args.border_um:g} {unit}): "
                  f"{result.gt_excluded} GT, {result.pred_excluded} predicted")
    print(f"{result.n_images} image(s): {result.g} ground-truth and {result.p} predicted "
          f"vectors evaluated{border}; distances in {unit}")
    print(format_table(result), end="")
    write_metrics_csv(args.output, result)
    print(f"metrics written to {args.output}")
    return 0
