"""``cellpol gan``: train a Vox2Vox GAN, generate synthetic training data, evaluate it."""

from __future__ import annotations

from ..defaults import DEFAULT_DEVICE, DEVICES, PAIR_DISTANCE_UM
from ..errors import InputError
from ..jobs import run_job
from ..io.paths import expand_inputs
from .common import ProgressBar, add_image_flags, run_epochs, voxel_size_from_args


def _add_pairs(p):
    from .train import add_pairs_flags

    add_pairs_flags(p, what="annotated")
    add_image_flags(p)


def register(sub):
    p = sub.add_parser(
        "gan", help="synthetic training data with a Vox2Vox GAN",
        description="Train a Vox2Vox (3D Pix2Pix) GAN on annotated images, generate synthetic "
                    "images with ground-truth vectors, or measure the GAN's SSIM.")
    gsub = p.add_subparsers(dest="gan_command", metavar="ACTION")
    gsub.required = True

    t = gsub.add_parser("train", help="train a GAN folder",
                        description="Train a GAN folder from images and their vector CSVs.")
    _add_pairs(t)
    t.add_argument("-o", "--output", required=True, metavar="GAN_DIR", help="GAN folder")
    t.add_argument("--epochs", type=int, default=200, help="number of epochs (default 200)")
    t.add_argument("--steps-per-epoch", type=int,
                   help="batches per epoch (default: one coverage of the training voxels)")
    t.add_argument("--patch", nargs="+", type=int, metavar="N",
                   help="patch size X Y Z (2D: X Y); default 128 128 64, shrunk to the images")
    t.add_argument("--base-filters", type=int, default=16,
                   help="filters of the first network level (default 16)")
    t.add_argument("--start-box", nargs="+", type=float, metavar="UM", default=None,
                   help="mask box around start centroids, X Y Z µm (2D: X Y); default 16 16 9")
    t.add_argument("--end-box", nargs="+", type=float, metavar="UM", default=None,
                   help="mask box around end centroids, X Y Z µm (2D: X Y); default 8 8 5")
    t.add_argument("--resume", action="store_true", help="continue from GAN_DIR's checkpoint")
    t.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    g = gsub.add_parser("generate", help="write synthetic images and vector CSVs",
                        description="Write N synthetic OME-TIFF images with their vector CSVs "
                                    "(a folder that `cellpol train` reads directly).")
    g.add_argument("gan_dir", metavar="GAN_DIR", help="GAN folder")
    g.add_argument("--n", type=int, required=True, help="number of images")
    g.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--pairs", nargs=2, type=int, default=(11, 18), metavar=("MIN", "MAX"),
                   help="pairs per image, drawn in [MIN, MAX] (default 11 18)")
    g.add_argument("--shape", nargs="+", type=int, metavar="N",
                   help="image size X Y Z (2D: X Y); default the training patch")
    g.add_argument("--max-pair-um", type=float, default=PAIR_DISTANCE_UM,
                   help=f"longest start-end distance in µm (default {PAIR_DISTANCE_UM:g})")
    g.add_argument("--min-sep-um", type=float, default=6.0,
                   help="shortest distance between any two centroids in µm (default 6)")
    g.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE)
    g.set_defaults(func=run_generate)

    e = gsub.add_parser("evaluate", help="SSIM of real images and images generated from "
                                         "their masks",
                        description="Generate each image from its own annotation masks and "
                                    "print the SSIM (mean ± SD over patches).")
    e.add_argument("gan_dir", metavar="GAN_DIR", help="GAN folder")
    _add_pairs(e)
    e.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE)
    e.set_defaults(func=run_evaluate)


def _zyx(values, flag):
    if not values:
        return None
    if len(values) == 3:
        x, y, z = values
        return (z, y, x)
    if len(values) == 2:
        x, y = values
        return (y, x)
    raise InputError(f"{flag} takes X Y Z (or X Y in 2D)")


def _box_um(args):
    from ..synthetic.masks import DEFAULT_BOX_UM

    out = []
    for values, default, flag in ((args.start_box, DEFAULT_BOX_UM[0], "--start-box"),
                                  (args.end_box, DEFAULT_BOX_UM[1], "--end-box")):
        if values is None:
            out.append(tuple(default))
            continue
        if any(v <= 0 for v in values):
            raise InputError(f"{flag} sizes must be positive")
        zyx = _zyx(values, flag)
        out.append(tuple(zyx) if len(zyx) == 3 else (1.0,) + tuple(zyx))
    return tuple(out)


def _pairs(args):
    from ..io.paths import match_vectors

    images = expand_inputs(args.images)
    if not images:
        raise InputError("no images found")
    return images, match_vectors(images, args.vectors)


def run_train(args) -> int:
    from ..synthetic.gan import train_gan

    images, vectors = _pairs(args)
    patch = _zyx(args.patch, "--patch")
    if patch is None:
        from ..io.image import read_image

        first = read_image(images[0], axes=args.axes, voxel_size=voxel_size_from_args(args),
                           lazy=True)
        patch = (64, 128, 128) if first.is_3d else (256, 256)
    if args.epochs < 1:
        raise InputError("--epochs must be at least 1")
    job = train_gan(images, vectors, outdir=args.output, epochs=args.epochs, patch=patch,
                    base_filters=args.base_filters, steps_per_epoch=args.steps_per_epoch,
                    seed=args.seed, device=args.device, resume=args.resume,
                    channels=args.channels, structures=args.structures, axes=args.axes,
                    voxel_size=voxel_size_from_args(args), box_um=_box_um(args))
    out = run_epochs(job)
    print(f"GAN written to {out}")
    return 0


def run_generate(args) -> int:
    from ..synthetic.gan import generate

    if args.n < 1:
        raise InputError("--n must be at least 1")
    lo, hi = args.pairs
    if not 1 <= lo <= hi:
        raise InputError("--pairs needs 1 <= MIN <= MAX")
    with ProgressBar() as bar:
        paths = run_job(generate(args.gan_dir, n=args.n, outdir=args.output, seed=args.seed,
                                 n_pairs=(lo, hi), shape=_zyx(args.shape, "--shape"),
                                 max_pair_um=args.max_pair_um, min_sep_um=args.min_sep_um,
                                 device=args.device), bar)
    print(f"{len(paths)} synthetic images with vector CSVs written to {args.output}")
    return 0


def run_evaluate(args) -> int:
    from ..synthetic.gan import evaluate_gan

    images, vectors = _pairs(args)
    res = evaluate_gan(args.gan_dir, images, vectors, channels=args.channels,
                       structures=args.structures, axes=args.axes,
                       voxel_size=voxel_size_from_args(args), device=args.device)
    for item in res["per_image"]:
        print(f"{item['image']}: SSIM {item['ssim_mean']:.4f} ({item['n_patches']} patches)")
    print(f"SSIM {res['ssim_mean']:.4f} ± {res['ssim_sd']:.4f} over {res['n_patches']} patches")
    return 0
