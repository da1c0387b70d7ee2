"""`cellpol phantom`: write synthetic images with their ground truth."""

from __future__ import annotations

import math

from ..errors import InputError
from .common import ProgressBar, add_debug_flag


def register(sub):
    p = sub.add_parser(
        "phantom",
        help="write synthetic images with known ground-truth vectors",
        description="Write synthetic images with known ground truth: for each image i, "
                    "phantom_<i>.ome.tif, phantom_<i>_vectors.csv (CellPol CSV) and "
                    "phantom_<i>_masks.ome.tif (instance masks). 3D images are nucleus/Golgi "
                    "stacks at the 3DCellPol scale; --2d makes cytoplasm/nucleus images.",
    )
    p.add_argument("outdir", metavar="OUTDIR", help="output folder (created when missing)")
    p.add_argument("--n-images", type=int, default=1, metavar="N", help="number of images (default 1)")
    p.add_argument("--shape", type=int, nargs="+", metavar="N",
                   help="image size as X Y Z (2D: X Y); default 256 256 64 (2D: 512 512)")
    p.add_argument("--voxel-size", type=float, nargs="+", metavar="UM",
                   help="voxel size in µm as X Y Z (2D: X Y); default 0.666 0.666 0.270 "
                        "(2D: 1 1, i.e. pixels)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses "
                                                       "seed + i (default 0)")
    p.add_argument("--2d", dest="two_d", action="store_true",
                   help="2D cytoplasm/nucleus images instead of 3D nucleus/Golgi stacks")
    p.add_argument("--density", type=float, default=1.0,
                   help="cell crowding; 1 is the default crowded tissue")
    p.add_argument("--mean-direction", type=float, default=None, metavar="DEG",
                   help="mean polarity azimuth in degrees (0 = +x, 90 = up on screen, "
                        "counter-clockwise); default uniform directions")
    p.add_argument("--concentration", type=float, default=0.0, metavar="K",
                   help="von Mises kappa around --mean-direction (default 0 = uniform)")
    p.add_argument("--noise", type=float, default=1.0, help="noise level (default 1; 0 = none)")
    p.add_argument("--dim-fraction", type=float, default=0.15,
                   help="share of dim cells (default 0.15)")
    p.add_argument("--rgb", action="store_true",
                   help="with --2d: an RGB bright-field-like uint8 image instead of two "
                        "fluorescence channels")
    p.add_argument("--randomise", action="store_true",
                   help="domain-randomised images: voxel size, blur, crowding, shapes, "
                        "brightness, haze, crosstalk, noise, saturation and dtype drawn per "
                        "image and cell (by seed); other look options are then ignored")
    p.add_argument("--family", metavar="NAME", default=None,
                   help="randomised images of a named family (implies --randomise): "
                        + ", ".join(_family_names()))
    p.add_argument("--structures", nargs=2, metavar=("START", "END"), default=None,
                   help="with --randomise --2d: nucleus golgi for cultured cells (default "
                        "cytoplasm nucleus)")
    add_debug_flag(p)
    p.set_defaults(func=run)


def _family_names():
    from ..synthetic.phantom import FAMILIES

    return list(FAMILIES)


def _shape(args, ndim):
    if args.shape is None:
        return None
    if len(args.shape) != ndim:
        want = "X Y Z" if ndim == 3 else "X Y (with --2d)"
        raise InputError(f"--shape takes {ndim} values {want}, got {len(args.shape)}")
    if any(n < 1 for n in args.shape):
        raise InputError(f"--shape values must be positive, got {' '.join(map(str, args.shape))}")
    return tuple(reversed(args.shape))  # X Y Z -> array order Z Y X


def _voxel_size(args, ndim):
    vs = args.voxel_size
    if vs is None:
        return None
    if len(vs) not in ((3,) if ndim == 3 else (2, 3)):
        want = "X Y Z" if ndim == 3 else "X Y (with --2d)"
        raise InputError(f"--voxel-size takes {want}, got {len(vs)} values")
    if any(not math.isfinite(v) or v <= 0 for v in vs):
        raise InputError(f"--voxel-size values must be positive, got {' '.join(map(str, vs))}")
    if len(vs) == 2:
        return (1.0, vs[1], vs[0])
    return (vs[2], vs[1], vs[0])


def run(args) -> int:
    from ..jobs import run_job
    from ..synthetic.phantom import write_phantom_set

    ndim = 2 if args.two_d else 3
    if args.rgb and ndim != 2:
        raise InputError("--rgb needs --2d")
    if args.n_images < 1:
        raise InputError(f"--n-images must be at least 1, got {args.n_images}")
    if args.family is not None or args.randomise:
        return _run_randomised(args, ndim)
    if args.structures is not None:
        raise InputError("--structures needs --randomise or --family")
    job = write_phantom_set(
        args.outdir, n_images=args.n_images, shape=_shape(args, ndim),
        voxel_size=_voxel_size(args, ndim), seed=args.seed, ndim=ndim, density=args.density,
        mean_direction=args.mean_direction, concentration=args.concentration,
        noise=args.noise, dim_fraction=args.dim_fraction, rgb=args.rgb,
    )
    with ProgressBar() as bar:
        paths = run_job(job, bar)
    print(f"wrote {args.n_images} phantom image(s) with ground truth to {args.outdir} "
          f"({len(paths)} files)")
    return 0


def _run_randomised(args, ndim) -> int:
    from ..jobs import run_job
    from ..synthetic.phantom import DomainRandomisation, family, write_phantom_set

    if args.rgb:
        raise InputError("--rgb cannot be combined with --randomise or --family")
    if args.family is not None:
        config = family(args.family)
        if args.two_d and config.ndim != 2:
            raise InputError(f"family {args.family} is 3D; leave out --2d")
        ndim = config.ndim
    else:
        cyto = ndim == 2 and (args.structures is None or args.structures[0] == "cytoplasm")
        config = DomainRandomisation(ndim=ndim,
                                     geometry="cytoplasm-nucleus" if cyto else "nucleus-golgi")
    job = write_phantom_set(
        args.outdir, n_images=args.n_images, shape=_shape(args, ndim),
        voxel_size=_voxel_size(args, ndim), seed=args.seed, ndim=ndim, randomise=config,
        structures=tuple(args.structures) if args.structures else None)
    with ProgressBar() as bar:
        paths = run_job(job, bar)
    print(f"wrote {args.n_images} randomised phantom image(s) "
          f"({args.family or 'broad ranges'}) with ground truth to {args.outdir} "
          f"({len(paths)} files)")
    return 0
