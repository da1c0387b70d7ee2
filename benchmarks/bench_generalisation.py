"""Generalisation: F1 per held-out phantom family for each bundled model and Otsu.

For every family of :data:`cellpol_core.synthetic.phantom.FAMILIES` (the broad
``random-*`` ones left out), and for the plain phantoms of
:data:`PLAIN_FAMILIES`, a few phantoms with seeds no training
recipe uses are written to a temporary folder, read back like a user's files,
and predicted by

- each bundled model that fits the family's dimensions and structures
  (:data:`cellpol_core.io.resources.DEFAULT_MODELS`),
- any model folder given with ``--model NAME=DIR`` (e.g. a CtrDet model, or a
  model still in training),
- the Otsu baseline (:func:`cellpol_core.detection.classical.predict_otsu`).

It prints the vector F1 at levels 0, 5 and 10 (pooled over the family's
images) and the CPU it ran on.

``--finetune-minutes 1 2 5 10`` adds the fine-tune curve (F1 on held-out
images of one family after N minutes of fine-tuning on one annotated image):
it needs ``TrainConfig.minutes`` (``cellpol train --minutes``) and is skipped
with a note where that is missing.

Usage: python benchmarks/bench_generalisation.py [--images 2] [--families isolated crowded]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED_BASE = 20000  # no training recipe uses seeds this high
LEVELS = (0, 5, 10)


#: Plain phantoms (the generator's own appearance, :func:`generate_phantom`
#: without randomisation) at a few settings: images unlike the randomised
#: families, closer to a simple generator of another lab.
PLAIN_FAMILIES = {
    "plain-isolated": dict(shape=(24, 256, 256), voxel_size=(1.0, 0.5, 0.5), density=0.3,
                           distractors=0.0, vessels=0.0, noise=0.5, dim_fraction=0.0,
                           neighbour_fraction=0.0),
    "plain-crowded": dict(shape=(24, 320, 320), voxel_size=(0.8, 0.3, 0.3)),
    "plain-other-microscope": dict(shape=(16, 256, 256), voxel_size=(1.0, 0.4, 0.4)),
}


def family_structures(config):
    from cellpol_core.synthetic.phantom import STRUCTURES_2D, STRUCTURES_3D

    return STRUCTURES_2D if config.geometry == "cytoplasm-nucleus" else STRUCTURES_3D


def write_family(folder: Path, name: str, n: int, seed_base: int):
    """``n`` phantoms of family ``name`` as OME-TIFF + CSV; returns (images, csvs)."""
    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.io.vectors import write_vectors
    from cellpol_core.synthetic.phantom import generate_randomised

    from cellpol_core.synthetic.phantom import generate_phantom

    folder.mkdir(parents=True, exist_ok=True)
    images, csvs = [], []
    for i in range(n):
        if name in PLAIN_FAMILIES:
            ph = generate_phantom(seed=seed_base + i, **PLAIN_FAMILIES[name])
        else:
            ph = generate_randomised(seed=seed_base + i, config=name)
        img, csv = folder / f"{name}_{i}.ome.tif", folder / f"{name}_{i}_vectors.csv"
        write_ome_tiff(img, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
        write_vectors(csv, ph.vectors, voxel_size=ph.voxel_size)
        images.append(img)
        csvs.append(csv)
    return images, csvs


def evaluate(predict, images, csvs, preset):
    """Pooled EvalResult of ``predict(CellImage) -> VectorTable`` over the files."""
    from cellpol_core.detection.evaluate import evaluate_vectors, pool_results
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors

    results = []
    for img, csv in zip(images, csvs):
        image = read_image(img)
        results.append(evaluate_vectors(read_vectors(csv), predict(image),
                                        voxel_size=image.voxel_size,
                                        shape=image.spatial_shape, levels=preset))
    return pool_results(results)


def fitting_models(ndim, structures, extra):
    """(label, model folder) of the bundled models for these images, plus ``extra``."""
    from cellpol_core.detection.model import read_config
    from cellpol_core.io.resources import DEFAULT_MODELS, bundled_model_dir

    out = []
    for (nd, start, end), name in DEFAULT_MODELS.items():
        folder = bundled_model_dir(name)
        if nd == ndim and (start, end) == tuple(structures) and folder is not None:
            out.append((name, folder))
    for label, folder in extra:
        cfg = read_config(folder)
        if cfg.spatial_dims == ndim and tuple(cfg.structures) == tuple(structures):
            out.append((label, Path(folder)))
    return out


def finetune_curve(minutes, images, csvs):
    """The fine-tune curve hook: runs only where training takes a time budget."""
    from dataclasses import fields

    from cellpol_core.detection.config import TrainConfig

    if "minutes" not in {f.name for f in fields(TrainConfig)}:
        print(f"fine-tune curve ({', '.join(map(str, minutes))} min): skipped, "
              f"TrainConfig has no time budget (`cellpol train --minutes`) here")
        return None
    print("fine-tune curve: see benchmarks/bench_finetune.py for the measured runs")
    return None


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    from bench_predict import cpu_line

    from cellpol_core.defaults import PAIR_DISTANCE_2D_PX, PAIR_DISTANCE_UM
    from cellpol_core.detection.classical import predict_otsu
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.jobs import run_job
    from cellpol_core.synthetic.phantom import FAMILIES

    held_out = [n for n in FAMILIES if not n.startswith("random-")] + list(PLAIN_FAMILIES)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=held_out,
                    choices=list(FAMILIES) + list(PLAIN_FAMILIES))
    ap.add_argument("--images", type=int, default=6, help="phantoms per family (default 6)")
    ap.add_argument("--seed", type=int, default=SEED_BASE, help=f"first seed (default {SEED_BASE})")
    ap.add_argument("--model", nargs="*", default=[], metavar="NAME=DIR",
                    help="more model folders to compare (e.g. ctrdet=path/to/ctrdet-model)")
    ap.add_argument("--finetune-minutes", nargs="*", type=float, default=[],
                    help="also the fine-tune curve at these budgets (needs train --minutes)")
    args = ap.parse_args(argv)
    extra = [tuple(item.split("=", 1)) for item in args.model]

    print(cpu_line())
    print(f"{args.images} phantoms per family, seeds {args.seed}..{args.seed + args.images - 1}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cellpol_generalisation_") as tmp:
        for fam in args.families:
            config = FAMILIES["random-3d" if fam in PLAIN_FAMILIES else fam]
            structures = family_structures(config)
            preset = "cytoplasm-nucleus" if config.geometry == "cytoplasm-nucleus" else "nucleus-golgi"
            d_max = PAIR_DISTANCE_2D_PX if preset == "cytoplasm-nucleus" else PAIR_DISTANCE_UM
            images, csvs = write_family(Path(tmp) / fam, fam, args.images, args.seed)
            methods = [("otsu", lambda im, d=d_max: predict_otsu(im, channels=(0, 1),
                                                                 d_max_um=d))]
            for label, folder in fitting_models(config.ndim, structures, extra):
                model = load_model(folder)
                methods.append((label, lambda im, m=model: run_job(predict_image(im, m))))
            for label, predict in methods:
                t0 = time.perf_counter()
                res = evaluate(predict, images, csvs, preset)
                f1 = [res.f1(lv) for lv in LEVELS]
                counts = (res.levels[5].g, res.levels[5].p)  # after border exclusion
                rows.append((fam, label, f1, counts, time.perf_counter() - t0))
                print(f"  {fam:18s} {label:22s} " + " ".join(
                    "  -  " if v is None else f"{v:.3f}" for v in f1), flush=True)
        if args.finetune_minutes:
            finetune_curve(args.finetune_minutes, None, None)

    print()
    print("| family | method | F1@0 | F1@5 | F1@10 | GT | predicted | s |")
    print("|---|---|---|---|---|---|---|---|")
    for fam, label, f1, (g, p), secs in rows:
        cells = " | ".join("–" if v is None else f"{v:.3f}" for v in f1)
        print(f"| {fam} | {label} | {cells} | {g} | {p} | {secs:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
