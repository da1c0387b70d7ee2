"""``cellpol predict``: polarity vectors for one or more images."""

from __future__ import annotations

import sys

from ..defaults import (DEFAULT_DEVICE, DEFAULT_PRECISION, DEVICES, FLIP_CHOICES, OTSU_MIN_SIZE_UM,
                        PAIR_DISTANCE_UM)
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
                   help="a model folder, or the name of a bundled model (e.g. demo); default "
                        "without --method: the bundled model for the first image's "
                        "dimensions and --structures (nucleus-golgi-3d, nucleus-golgi-2d, "
                        "cytoplasm-nucleus-2d)")
    p.add_argument("--method", choices=["model", "otsu"],
                   help="model (default when --model is given) or otsu: the classical baseline "
                        "(Otsu thresholds, components, Hungarian pairing), which needs no training")
    p.add_argument("--d-max", type=float, metavar="UM",
                   help="longest start-end pair in µm (pixels for uncalibrated 2D); default: "
                        f"the model's tuned value, {PAIR_DISTANCE_UM:g} for otsu")
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE,
                   help="where a model runs (auto: CUDA when present)")
    add_precision_flag(p)
    add_flips_flag(p)
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
    p.add_argument("--cluster", metavar="SPEC",
                   help="run on Dask: local, local:N (N worker processes), tcp://HOST:PORT (a "
                        "running scheduler), slurm:FILE.yaml, pbs:FILE.yaml or lsf:FILE.yaml (job "
                        "settings); one task per image, failed images reported while the others "
                        "go on (needs the cluster extra)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="--cluster: workers of `local`, jobs of slurm/pbs/lsf (default 1)")
    p.add_argument("--block", nargs=3, type=int, metavar=("X", "Y", "Z"),
                   help="predict images larger than this block (voxels) block by block; with "
                        "--cluster, OME-Zarr volumes always are (default block 512 512 128)")
    p.add_argument("--test-block", action="store_true",
                   help="run one block of the first image and report its time and peak memory, "
                        "as a rehearsal before a cluster run (writes nothing)")
    add_image_flags(p)
    p.set_defaults(func=run)


def add_precision_flag(p):
    """``--precision``, shared by predict, tune and train (checked by check_precision)."""
    p.add_argument("--precision", default=DEFAULT_PRECISION, metavar="{auto,fp32,bf16}",
                   help="network arithmetic (auto: bf16 on CUDA and on CPUs with AMX or AVX-512 "
                        "BF16, else fp32)")


def add_flips_flag(p):
    """``--flips``, shared by predict and tune."""
    p.add_argument("--flips", type=int, choices=FLIP_CHOICES, metavar="{1,2,4,8}",
                   help="test-time flips: average the model's maps over this many mirrored "
                        "copies (1 = none, fastest; 8 mirrors z too, 3D only); default the "
                        "model's (thresholds.json)")


def run(args) -> int:
    from ..detection.precision import check_precision

    check_precision(args.precision)
    if args.d_max is not None and not 0 < args.d_max < float("inf"):  # NaN fails too
        raise InputError(f"--d-max must be a finite distance above 0, got {args.d_max:g}")
    paths = expand_inputs(args.images)
    if not paths:
        raise InputError("no images found in " + ", ".join(args.images))
    method = args.method or "model"
    if method == "model" and not args.model and not args.method:
        args.model = _bundled_choice(paths[0], args)
    if method == "model" and not args.model:
        raise InputError("--method model needs --model MODEL_DIR|NAME")
    if getattr(args, "manifest", None):  # check it before a long prediction, not after
        from ..analysis.batch import read_manifest, vector_name

        entries = read_manifest(args.manifest)
        unknown = [p.name for p in paths if vector_name(p).casefold() not in entries]
        if unknown:
            raise InputError(f"image(s) not in the manifest: {', '.join(unknown[:5])}",
                             args.manifest)
    client_cm, cluster_kwargs = _cluster_options(args)
    try:
        job = predict_files(
            paths, outdir=args.output, method=method, model=args.model if method == "model" else None,
            channels=args.channels, structures=args.structures, voxel_size=voxel_size_from_args(args),
            axes=args.axes, d_max_um=args.d_max, flips=args.flips if method == "model" else None,
            min_size_um=tuple(args.min_size), device=args.device,
            precision=args.precision, batch_size=args.batch_size, skip_existing=args.skip_existing,
            force=args.force, **cluster_kwargs)
        with ProgressBar() as bar:
            written = run_job(job, bar)
    finally:
        if client_cm is not None:
            client_cm.__exit__(None, None, None)
    status = _report_batch(written)
    if status is not None:
        return status
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


def _bundled_choice(path, args) -> str:
    """The bundled model for the first image's dimensions and --structures; says so on stderr."""
    from ..io.image import read_image
    from ..io.resources import default_model_name

    image = read_image(path, axes=args.axes, lazy=True)  # the header only
    ndim = len(image.spatial_shape)
    structures = tuple(args.structures) if args.structures else ("nucleus", "golgi")
    name = default_model_name(ndim, structures)
    print(f"using the bundled model {name} ({ndim}D, {structures[0]}→{structures[1]}); "
          f"choose another with --model or --method otsu", file=sys.stderr)
    return name


def _cluster_options(args):
    """The open client's context (or None) and predict_files' cluster keywords."""
    if args.workers is not None and not args.cluster:
        raise InputError("--workers needs --cluster")
    kwargs = {}
    if args.block is not None:
        if any(b < 1 for b in args.block):
            raise InputError(f"--block takes 3 positive sizes X Y Z, got {' '.join(map(str, args.block))}")
        x, y, z = args.block
        kwargs["block"] = (z, y, x)
    if args.test_block:
        kwargs["test_block"] = True
    if not args.cluster:
        return None, kwargs
    from ..detection.cluster import open_client

    cm = open_client(args.cluster, workers=args.workers)
    kwargs["client"] = cm.__enter__()
    return cm, kwargs


def _report_batch(result):
    """Print a cluster run's failures, summary or rehearsal; its exit code, or None to go on."""
    report = getattr(result, "report", None)
    if report is not None:
        gb = report["peak_rss"] / 1e9
        print(f"test block {report['block']} of {report['n_blocks']} in {report['path']}: "
              f"{report['tiles']} tiles, {report['seconds']:.1f} s, peak memory {gb:.2f} GB, "
              f"{report['n_vectors']} vectors in its core; halo (voxels per axis, before/after) "
              f"{report['halo']}; all blocks on one worker: about "
              f"{report['projected_seconds']:.0f} s", file=sys.stdout)
        return 0
    failed = getattr(result, "failed", None)
    if failed is None:
        return None
    for _, message, _ in failed:
        print(f"cellpol predict: error: {message}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    if failed:
        return 2 if all(is_input for _, _, is_input in failed) else 1
    return None
