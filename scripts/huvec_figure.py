"""docs/huvec_2d.png: nucleus-golgi-2d's vectors on the real HUVEC image beside Otsu's.

The image (../shared/data/huvec_ecs.tif, see its README) has the Golgi in
channel 0 and the nuclei in channel 2. A vector counts as a whole cell's when
its nucleus centroid lies at least ``--border`` µm inside the image. Each model
vector is matched to the nearest Otsu vector whose start lies within
``--match`` µm; the script prints the direction differences of the matched
pairs and the count of model vectors that match none ("extra").

Usage: python scripts/huvec_figure.py [--model nucleus-golgi-2d] [--image PATH] [-o PNG]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT.parent / "shared" / "data" / "huvec_ecs.tif"
CHANNELS = (2, 0)  # nucleus (start), Golgi (end)


def whole(table, shape, vs, border_um):
    """Vectors whose start lies at least ``border_um`` from every image edge."""
    if len(table) == 0:
        return np.zeros(0, bool)
    yx = table.start[:, 1:] * vs[1:]
    ext = np.asarray(shape[-2:]) * vs[1:]
    return np.all((yx >= border_um) & (yx <= ext - border_um), axis=1)


def azimuth(table, vs):
    d = (table.end - table.start) * vs
    return np.degrees(np.arctan2(-d[:, 1], d[:, 2]))


def compare(model_vec, otsu_vec, shape, vs, *, border_um, match_um):
    """Whole-cell counts, matched direction differences and extra model vectors."""
    wm = whole(model_vec, shape, vs, border_um)
    wo = whole(otsu_vec, shape, vs, border_um)
    am, ao = azimuth(model_vec, vs), azimuth(otsu_vec, vs)
    diffs, extra, used = [], 0, set()
    for i in np.nonzero(wm)[0]:
        if len(otsu_vec) == 0:
            extra += 1
            continue
        d = np.linalg.norm((otsu_vec.start - model_vec.start[i]) * vs, axis=1)
        j = int(np.argmin(d))
        if d[j] <= match_um and j not in used:
            used.add(j)
            diffs.append(abs((am[i] - ao[j] + 180.0) % 360.0 - 180.0))
        else:
            extra += 1
    missed = int(sum(1 for j in np.nonzero(wo)[0] if j not in used))
    return {"model_whole": int(wm.sum()), "otsu_whole": int(wo.sum()), "matched": len(diffs),
            "angle_diffs": [round(float(a), 1) for a in diffs], "extra": extra,
            "otsu_missed": missed}


def draw(ax, image, table, vs, title, color):
    nuc = image[CHANNELS[0]].astype(float)
    gol = image[CHANNELS[1]].astype(float)
    rgb = np.zeros(nuc.shape + (3,))
    for c, ch in ((2, nuc), (1, gol), (0, gol)):
        lo, hi = np.percentile(ch, (1, 99.7))
        rgb[..., c] = np.clip((ch - lo) / (hi - lo + 1e-9), 0, 1) * (0.8 if c == 0 else 1.0)
    if image.shape[0] > 3:  # junctions, faint grey
        j = image[3].astype(float)
        lo, hi = np.percentile(j, (1, 99.7))
        rgb = np.clip(rgb + 0.25 * np.clip((j - lo) / (hi - lo + 1e-9), 0, 1)[..., None], 0, 1)
    ax.imshow(rgb)
    if len(table):
        s, e = table.start, table.end
        ax.quiver(s[:, 2], s[:, 1], e[:, 2] - s[:, 2], e[:, 1] - s[:, 1], color=color,
                  angles="xy", scale_units="xy", scale=1, width=0.008, headwidth=3)
        ax.plot(s[:, 2], s[:, 1], "o", ms=3, color=color)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    bar = 20.0 / vs[2]  # 20 µm scale bar
    h, w = image.shape[-2:]
    ax.plot([w - bar - 8, w - 8], [h - 10, h - 10], color="w", lw=2)


def main(argv=None) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellpol_core.detection.classical import predict_otsu
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.io.image import read_image
    from cellpol_core.jobs import run_job

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nucleus-golgi-2d")
    ap.add_argument("--image", type=Path, default=IMAGE)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "huvec_2d.png")
    ap.add_argument("--border", type=float, default=8.0, help="µm (default 8)")
    ap.add_argument("--match", type=float, default=6.0, help="µm (default 6)")
    args = ap.parse_args(argv)

    image = read_image(args.image)
    vs = np.asarray(image.voxel_size, float)
    otsu = predict_otsu(image, channels=CHANNELS)
    model = load_model(args.model)
    net = run_job(predict_image(image, model, channels=CHANNELS))
    stats = compare(net, otsu, image.spatial_shape, vs, border_um=args.border,
                    match_um=args.match)
    print(stats)
    data = np.asarray(image.data)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    draw(axes[0], data, net, vs, f"{args.model}: {len(net)} vectors, "
         f"{stats['model_whole']} whole cells", "#ffd000")
    draw(axes[1], data, otsu, vs, f"Otsu: {len(otsu)} vectors, {stats['otsu_whole']} whole cells",
         "#ff4040")
    med = np.median(stats["angle_diffs"]) if stats["angle_diffs"] else math.nan
    fig.suptitle(f"HUVEC (2D, {vs[2]:.3f} µm pixels): matched {stats['matched']}, median "
                 f"direction difference {med:.0f}°, {stats['extra']} extra", fontsize=10)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
