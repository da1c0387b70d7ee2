"""``cellpol predict``: polarity vectors for one or more images."""

from __future__ import annotations

import sys

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, DEVICES, OTSU_MIN_SIZE_UM, PAIR_DISTANCE_UM
from ..errors import InputError
from ..jobs import run_job
from ..detection.predict import predict_files
from ..io.paths import expand_inputs
from ..io.resample import MAX_GROWTH
from .common import ProgressBar, add_image_flags, voxel_size_from_args


def register(sub):
    p = sub.add_parser(
        "predict", help="predict polarity vectors for images",
        description="Predict one polarity vector per cell for each image and write "
                    "OUTDIR/<image-stem>_vectors.csv.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--model", metavar="MODEL_DIR|NAME",
                   help="a model folder, or the name of a bundled model (e.g. demo)")
    p.add_argument("--method", choices=["model", "otsu"],
                   help="model (default when --model is given) or otsu: the classical baseline "
                        "(Otsu thresholds, components, Hungarian pairing), which needs no training")
    p.add_argument("--d-max", type=float, metavar="UM",
                   help="longest start-end pair in µm (pixels for uncalibrated 2D); default: "
                        f"the model's tuned value, {PAIR_DISTANCE_UM:g} for otsu")
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE,
                   help="where a model runs (auto: CUDA when present)")
    add_precision_flag(p)
    p.add_argument("--batch-size", type=int, default=1, help="tiles per network call")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip images whose output CSV exists (resume a batch run)")
    p.add_argument("--force", action="store_true",
                   help="resample to the model's voxel size even when that grows an image "
                        f"more than {MAX_GROWTH:g} times (usually a sign of a wrong voxel size)")
    p.add_argument("--min-size", nargs=2, type=float, default=list(OTSU_MIN_SIZE_UM),
                   metavar=("START", "END"),
                   help="otsu: smallest start/end components in µm³ (µm² in 2D); default "
                        + " ".join(f"{v:g}" for v in OTSU_MIN_SIZE_UM))
    p.add_argument("--manifest", metavar="CSV",
                   help="conditions manifest (image,condition[,reference_deg]): after predicting, "
                        "run `cellpol stats` on the written CSVs into OUTDIR")
    add_image_flags(p)
    p.set_defaults(func=run)


def add_precision_flag(p):
    """``--precision``, shared by predict, tune and train (checked by check_precision)."""
    p.add_argument("--precision", default=DEFAULT_PRECISION, metavar="{auto,fp32,bf16}",
                   help="network arithmetic (auto: bf16 on CUDA and on CPUs with AMX or AVX-512 "
                        "BF16, else fp32)")


def run(args) -> int:
    from ..detection.precision import check_precision

    check_precision(args.precision)
    paths = expand_inputs(args.images)
    if not paths:
        raise InputError("no images found in " + ", ".join(args.images))
    method = args.method or ("model" if args.model else None)
    if method is None:
        raise InputError("choose a method: --model MODEL_DIR|NAME (e.g. --model demo) "
                         "or --method otsu")
    if method == "model" and not args.model:
        raise InputError("--method model needs --model MODEL_DIR|NAME")
    if getattr(args, "manifest", None):  # check it before a long prediction, not after
        from ..analysis.batch import read_manifest, vector_name

        entries = read_manifest(args.manifest)
        unknown = [p.name for p in paths if vector_name(p).casefold() not in entries]
        if unknown:
            raise InputError(f"image(s) not in the manifest: {', '.join(unknown[:5])}",
                             args.manifest)
    job = predict_files(
        paths, outdir=args.output, method=method, model=args.model if method == "model" else None,
        channels=args.channels, structures=args.structures, voxel_size=voxel_size_from_args(args),
        axes=args.axes, d_max_um=args.d_max, min_size_um=tuple(args.min_size), device=args.device,
        precision=args.precision, batch_size=args.batch_size, skip_existing=args.skip_existing,
        force=args.force)
    with ProgressBar() as bar:
        written = run_job(job, bar)
    for path in written:
        print(path, file=sys.stdout)
    if getattr(args, "manifest", None):
        from ..analysis.batch import analyse
        from .stats import markdown_tables

        job = analyse(written, manifest=args.manifest, voxel_size=voxel_size_from_args(args),
                      outdir=args.output, structures=args.structures)
        with ProgressBar() as bar:
            summary = run_job(job, bar)
        print(markdown_tables(summary), file=sys.stdout)
    return 0
