"""``cellpol predict``: polarity vectors for one or more images."""

from __future__ import annotations

import sys

from ..errors import InputError
from ..jobs import run_job
from ..predict import predict_files
from .common import ProgressBar, add_image_flags, expand_inputs, voxel_size_from_args


def register(sub):
    p = sub.add_parser(
        "predict", help="predict polarity vectors for images",
        description="Predict one polarity vector per cell for each image and write "
                    "OUTDIR/<image-stem>_vectors.csv.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--method", choices=["otsu"], default="otsu",
                   help="otsu: the classical baseline (Otsu thresholds, components, Hungarian "
                        "pairing); needs no training")
    p.add_argument("--d-max", type=float, default=14.0, metavar="UM",
                   help="longest start-end pair in µm (pixels for uncalibrated 2D); default 14")
    p.add_argument("--min-size", nargs=2, type=float, default=[20.0, 2.0], metavar=("START", "END"),
                   help="otsu: smallest start/end components in µm³ (µm² in 2D); default 20 2")
    add_image_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    paths = expand_inputs(args.images)
    if not paths:
        raise InputError("no images found in " + ", ".join(args.images))
    job = predict_files(
        paths, outdir=args.output, method=args.method, channels=args.channels,
        structures=tuple(args.structures), voxel_size=voxel_size_from_args(args),
        axes=args.axes, d_max=args.d_max, min_size_um=tuple(args.min_size))
    with ProgressBar() as bar:
        written = run_job(job, bar)
    for path in written:
        print(path, file=sys.stdout)
    return 0
