"""``cellpol tune``: choose a model's decoding thresholds on validation images."""

from __future__ import annotations

from ..defaults import BORDER_UM, DEFAULT_DEVICE, DEVICES, EVAL_LEVEL
from ..jobs import run_job
from ..io.paths import expand_inputs
from .common import ProgressBar, add_image_flags, voxel_size_from_args
from .predict import add_flips_flag, add_precision_flag
from .train import add_pairs_flags, match_vectors


def register(sub):
    p = sub.add_parser(
        "tune", help="tune a model's thresholds on annotated images",
        description="Grid-search the heatmap thresholds, peak distances and pair distance that "
                    f"maximise the vector F1 at evaluation level {EVAL_LEVEL}; writes "
                    "thresholds.json and metrics.json into the model folder.")
    p.add_argument("model", metavar="MODEL_DIR", help="model folder or bundled model name")
    add_pairs_flags(p, what="validation")
    p.add_argument("--level", type=int, default=EVAL_LEVEL,
                   help=f"evaluation level to optimise (default {EVAL_LEVEL})")
    p.add_argument("--border-um", type=float, default=BORDER_UM, metavar="UM",
                   help=f"evaluation border exclusion in µm (default {BORDER_UM:g})")
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE)
    add_precision_flag(p)
    add_flips_flag(p)
    add_image_flags(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..detection.precision import check_precision
    from ..detection.tune import format_report, tune

    check_precision(args.precision)
    images = expand_inputs(args.images)
    vectors = match_vectors(images, args.vectors)
    with ProgressBar() as bar:
        _, report = run_job(tune(args.model, images, vectors, channels=args.channels,
                                 axes=args.axes, voxel_size=voxel_size_from_args(args),
                                 level=args.level, border_um=args.border_um,
                                 device=args.device, precision=args.precision,
                                 flips=args.flips), bar)
    print(format_report(report))
    return 0
