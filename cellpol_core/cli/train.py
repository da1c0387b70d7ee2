"""``cellpol train``: train or fine-tune a model folder."""

from __future__ import annotations

import argparse
import sys

from ..defaults import DEFAULT_DEVICE, DEVICES
from ..errors import InputError
from ..jobs import run_job
from ..io.paths import expand_inputs, match_vectors
from .common import ProgressBar, add_image_flags, run_epochs, voxel_size_from_args
from .predict import add_precision_flag


def add_pairs_flags(p, *, what="training"):
    p.add_argument("--images", nargs="+", required=True, metavar="IMAGE",
                   help=f"{what} images (files or folders)")
    p.add_argument("--vectors", nargs="+", required=True, metavar="CSV",
                   help="their vector CSVs (files or folders), matched to the images by order "
                        "or, for folders, by file stem (<stem>.csv or <stem>_vectors.csv)")


def register(sub):
    p = sub.add_parser(
        "train", help="train or fine-tune a CellPol model",
        description="Train a model folder from images and their paired-centroid CSVs.")
    add_pairs_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model folder")
    p.add_argument("--val", nargs="+", metavar="IMAGE",
                   help="validation images (their CSVs via --val-vectors); default: hold out "
                        "--val-fraction of each training image")
    p.add_argument("--val-vectors", nargs="+", metavar="CSV", help="validation vector CSVs")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of each training image (along x) held out (default 0.1)")
    p.add_argument("--epochs", type=int, default=50, help="number of epochs (default 50)")
    p.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one "
                                                       "coverage of the training voxels)")
    p.add_argument("--patch", nargs="+", type=int, metavar="N",
                   help="patch size X Y Z (2D: X Y); default 128 128 64, shrunk to the images")
    p.add_argument("--batch-size", type=int, default=2)
    from ..detection.config import FINETUNE_DEFAULTS, FREEZE_CHOICES, TrainConfig

    p.add_argument("--lr", type=float,
                   help=f"Adam learning rate (default {TrainConfig.lr:g}; "
                        f"{FINETUNE_DEFAULTS['lr']:g} when fine-tuning with --init)")
    p.add_argument("--minutes", type=float, metavar="N",
                   help="train for N minutes of wall time instead of --epochs, with the "
                        "learning rate schedule fitted to that time")
    p.add_argument("--freeze", choices=FREEZE_CHOICES,
                   help=f"network part kept fixed (default {TrainConfig.freeze}; "
                        f"{FINETUNE_DEFAULTS['freeze']} when fine-tuning)")
    p.add_argument("--offset-head", action="store_true",
                   help="give a new network the offset head (pairing by the predicted "
                        "displacement from each start structure to its end structure)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="weight of the heatmap losses (default 1)")
    p.add_argument("--beta", type=float, default=1.0,
                   help="weight of the pull/push embedding losses (default 1)")
    p.add_argument("--arch", default="light", help="network preset: light (default), paper, "
                                                   "ctrdet-light, ctrdet-paper")
    p.add_argument("--preset", default="nucleus-golgi",
                   help="structure sizes: nucleus-golgi (µm) or cytoplasm-nucleus (px)")
    p.add_argument("--model-voxel-size", nargs="+", type=float, metavar="UM",
                   help="voxel size X Y Z (2D: X Y) in µm the model works at; images are "
                        "resampled to it (default: the first image's)")
    p.add_argument("--init", metavar="MODEL", help="fine-tune from this model folder or name")
    p.add_argument("--resume", action="store_true",
                   help="continue MODEL_DIR's run from its checkpoint (an interrupted run, "
                        "else the finished one up to --epochs)")
    p.add_argument("--overwrite", action="store_true",
                   help="let a new run replace the model in MODEL_DIR (it is replaced only "
                        "when the new run ends)")
    p.add_argument("--synthetic", metavar="DIR",
                   help="pre-train on this folder of synthetic images and vector CSVs (from "
                        "`cellpol gan generate`) into MODEL_DIR_synthetic, then fine-tune on "
                        "the --images")
    p.add_argument("--synthetic-epochs", type=int,
                   help="epochs of the synthetic pre-training (default: --epochs)")
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE)
    add_precision_flag(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune", action=argparse.BooleanOptionalAction, default=True,
                   help="tune thresholds at the end, on the --val images or else on the "
                        "training images (default on)")
    add_image_flags(p)
    p.set_defaults(func=run)


def _patch(args):
    if not args.patch:
        return None
    if len(args.patch) == 3:
        x, y, z = args.patch
        return (z, y, x)
    if len(args.patch) == 2:
        x, y = args.patch
        return (y, x)
    raise InputError("--patch takes X Y Z (or X Y in 2D)")


def _model_voxel_size(args):
    if not args.model_voxel_size:
        return None
    from types import SimpleNamespace

    return voxel_size_from_args(SimpleNamespace(voxel_size=args.model_voxel_size))


def _check_synthetic_flags(args):
    if args.init:
        raise InputError("--synthetic and --init both choose the starting model; give one")
    if args.resume:
        raise InputError("--resume continues the fine-tuning alone; leave out --synthetic")
    if args.synthetic_epochs is not None and args.synthetic_epochs < 1:
        raise InputError("--synthetic-epochs must be at least 1")


def train_config(args):
    """The :class:`~cellpol_core.detection.config.TrainConfig` of ``cellpol train``'s flags."""
    from ..detection.config import FINETUNE_DEFAULTS, TrainConfig
    from ..detection.precision import check_precision

    # Options left out take the fine-tuning defaults when a model is fine-tuned.
    base = (TrainConfig(**{k: v for k, v in FINETUNE_DEFAULTS.items() if k != "minutes"})
            if getattr(args, "init", None) else TrainConfig())
    chosen = {k: v for k, v in (("lr", args.lr), ("freeze", args.freeze)) if v is not None}
    return base.replace(**chosen, minutes=args.minutes, offset_head=bool(args.offset_head),
                        arch=args.arch, preset=args.preset, structures=args.structures,
                        model_voxel_size=_model_voxel_size(args), epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch, patch_size=_patch(args),
                        batch_size=args.batch_size, val_fraction=args.val_fraction,
                        alpha=args.alpha, beta=args.beta, seed=args.seed, device=args.device,
                        precision=check_precision(args.precision))


def run(args) -> int:
    from ..detection.train import train

    images = expand_inputs(args.images)
    vectors = match_vectors(images, args.vectors)
    val_images = expand_inputs(args.val) if args.val else []
    val_vectors = []
    if val_images:
        if not args.val_vectors:
            raise InputError("--val needs --val-vectors")
        val_vectors = match_vectors(val_images, args.val_vectors)
    config = train_config(args)
    if args.resume and args.overwrite:
        raise InputError("--resume continues the folder's run and --overwrite replaces it; "
                         "give one")
    data = dict(val_images=val_images, val_vectors=val_vectors, channels=args.channels,
                axes=args.axes, voxel_size=voxel_size_from_args(args))
    if getattr(args, "synthetic", None):
        from ..synthetic.pretrain import train_with_synthetic

        _check_synthetic_flags(args)
        job = train_with_synthetic(images, vectors, synthetic=args.synthetic,
                                   outdir=args.output, config=config,
                                   synthetic_epochs=args.synthetic_epochs,
                                   prefixes=("synthetic pre-training: ", ""),
                                   overwrite=args.overwrite, **data)
    else:
        job = train(images, vectors, outdir=args.output, config=config, init=args.init,
                    resume=args.resume, overwrite=args.overwrite, **data)
    model_dir = run_epochs(job)
    if getattr(args, "synthetic", None):
        from ..synthetic.pretrain import pretrain_dir

        print(f"pre-trained model written to {pretrain_dir(args.output)}")
    if args.tune:
        from ..detection.tune import format_report, tune

        tune_imgs, tune_vecs = (val_images, val_vectors) if val_images else (images, vectors)
        with ProgressBar() as bar:
            _, report = run_job(tune(model_dir, tune_imgs, tune_vecs, channels=args.channels,
                                     axes=args.axes, voxel_size=voxel_size_from_args(args),
                                     device=args.device, precision=args.precision), bar)
        print(format_report(report))
    print(f"model written to {model_dir}", file=sys.stdout)
    return 0
