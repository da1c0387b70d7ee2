"""`cellpol info`: show how cellpol reads an image file."""

from __future__ import annotations

import numpy as np

from .common import add_image_flags, load_image

# voxels per channel above which min/max are estimated from a sample
_MAX_SAMPLES = 2_000_000


def register(sub):
    p = sub.add_parser(
        "info", help="show shape, axes, voxel size and channels of an image",
        description="Show how cellpol reads an image: shape as (C, Z, Y, X) or (C, Y, X), "
                    "dtype, voxel size in µm, channel names and per-channel min/max. Use it to "
                    "check the axes and calibration before predicting; --axes and "
                    "--voxel-size override the file's metadata as in the other commands.")
    p.add_argument("image", help="image file (TIFF, ImageJ TIFF, OME-TIFF, LSM)")
    add_image_flags(p, channels=False)
    p.set_defaults(func=run)


def _fmt(v):
    return f"{v:.4g}"


def voxel_size_text(image) -> str:
    """'x 0.415 y 0.415 z – µm (2D)', or a clear 'unknown'."""
    if image.voxel_size is None:
        hint = "X Y Z" if image.is_3d else "X Y"
        return f"unknown (not in the file's metadata; pass --voxel-size {hint})"
    z, y, x = image.voxel_size
    if image.is_3d:
        return f"x {_fmt(x)} y {_fmt(y)} z {_fmt(z)} µm"
    return f"x {_fmt(x)} y {_fmt(y)} z – µm (2D)"


def run(args) -> int:
    from ..io.image import percentile_limits

    image = load_image(args, args.image, lazy=True)
    labels = "(C, Z, Y, X)" if image.is_3d else "(C, Y, X)"
    shape = tuple(int(n) for n in image.data.shape)
    n_vox = int(np.prod(shape[1:], dtype=np.int64))
    sampled = n_vox > _MAX_SAMPLES
    ranges = percentile_limits(image.data, low=0.0, high=100.0, max_samples=_MAX_SAMPLES)
    lines = [
        f"file:          {image.path}",
        f"shape:         {shape} {labels}",
        f"dimensions:    {'3D' if image.is_3d else '2D'}, {image.n_channels} channel(s)",
        f"dtype:         {np.dtype(image.dtype).name}",
        f"voxel size:    {voxel_size_text(image)}",
        f"on-disk axes:  {image.axes}",
        f"channels:      {image.n_channels}" + ("  (min/max estimated from a sample)"
                                              if sampled else ""),
    ]
    if image.nonfinite:
        lines.append(f"non-finite:    {image.nonfinite} NaN/Inf voxel(s), treated as missing "
                     "(filled with the median of their neighbours)")
    width = max(len(n) for n in image.channel_names)
    for i, (name, (lo, hi)) in enumerate(zip(image.channel_names, ranges)):
        lines.append(f"  {i}  {name:<{width}}  min {lo:.6g}  max {hi:.6g}")
    print("\n".join(lines))
    return 0
