"""Fine-tuning in minutes: F1 on an unseen phantom family after 1, 2, 5, 10 minutes.

A bundled model (``--init``, default ``nucleus-golgi-3d``) is fine-tuned with a
wall-time budget
(``TrainConfig(minutes=...)``, what ``cellpol train --init MODEL --minutes N``
runs) on ONE annotated phantom of a family it never saw, "another
microscope": 0.5 × 0.5 × 1.0 µm voxels (x, y, z), 16 planes, wider PSF,
denser cells with more nuclei beyond a neighbour's Golgi, more noise,
background texture and dirt. Each fine-tuned model is then tuned on that same
image (``cellpol train`` tunes at the end by default) and evaluated on
other images of the family (vector F1 at level 5, pooled), beside the demo
model as shipped and the Otsu baseline.

``--sweep`` first compares fine-tuning options (learning rate, frozen
encoder, patch sampling) at ``--sweep-minutes``: the measurement behind
``FINETUNE_DEFAULTS``. Wall time on a shared CPU buys fewer steps than on a
free machine: the steps each run made are printed.

Usage: python benchmarks/bench_finetune.py [--minutes 1 2 5 10] [--sweep]
       [--sweep-minutes 2] [--only K ...] [--test-images 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

#: The unseen family: phantom options (voxel size is (z, y, x) µm).
FAMILY = dict(shape=(16, 160, 160), voxel_size=(1.0, 0.5, 0.5), density=1.8,
              psf_sigma=(1.2, 0.5, 0.5), noise=2.0, neighbour_fraction=0.6, vessels=2.0,
              distractors=2.0)
TRAIN_SEED = 3000
TEST_SEEDS = range(3001, 3010)
#: Options compared by --sweep (lr, freeze, pair_bias).
SWEEP = ((1e-3, "none", 1.0), (3e-4, "none", 1.0), (3e-4, "encoder", 1.0),
         (3e-4, "none", 0.8), (3e-4, "encoder", 0.8), (1e-4, "none", 0.8))


def f1_of(predict, images, vectors, level=5):
    from cellpol_core.detection.evaluate import evaluate_vectors, pool_results
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors

    results = []
    for img, vec in zip(images, vectors):
        image = read_image(img)
        results.append(evaluate_vectors(read_vectors(vec), predict(image),
                                        voxel_size=image.voxel_size, shape=image.spatial_shape))
    f1 = pool_results(results).f1(level)
    return 0.0 if f1 is None else f1


def finetune(out: Path, train_img, train_vec, *, minutes, lr, freeze, pair_bias, seed=0,
             init="nucleus-golgi-3d"):
    """Fine-tune ``init`` for ``minutes``, tune on the training image; returns (model, steps, s)."""
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.loop import read_training_log
    from cellpol_core.detection.train import LOG_COLUMNS, train
    from cellpol_core.detection.tune import tune
    from cellpol_core.jobs import run_job

    config = TrainConfig(minutes=minutes, lr=lr, freeze=freeze, pair_bias=pair_bias,
                         val_fraction=0.0, device="cpu", seed=seed)
    steps = []
    t0 = time.perf_counter()
    run_job(train(train_img, train_vec, outdir=out, config=config, init=init,
                  overwrite=True),
            lambda e: steps.append(e) if e.stage == "train" and "loss" in e.data else None)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_job(tune(out, train_img, train_vec, device="cpu"))
    t_tune = time.perf_counter() - t0
    epochs = len(read_training_log(out / "training_log.csv", LOG_COLUMNS))
    return out, len(steps), epochs, t_train, t_tune


def write_family(folder: Path, seeds):
    """The unseen family's phantoms, written once per seed (the demo recipe's writer)."""
    import train_demo_model as recipe

    return recipe.write_set(folder, seeds, prefix="family", **FAMILY)


def main(argv=None) -> int:
    import torch

    from cellpol_core.detection.classical import predict_otsu
    from cellpol_core.detection.config import FINETUNE_DEFAULTS
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.jobs import run_job

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", nargs="*", type=float, default=[1, 2, 5, 10])
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--sweep-minutes", type=float, default=2.0)
    ap.add_argument("--only", nargs="+", type=int, metavar="K",
                    help="run only these entries of SWEEP (0-based)")
    ap.add_argument("--test-images", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--init", default="nucleus-golgi-3d",
                    help="model to fine-tune (default the bundled 3D model)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench_finetune")
    args = ap.parse_args(argv)

    print(f"CPU: {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    train_img, train_vec = write_family(args.work / "data", [TRAIN_SEED])
    test_img, test_vec = write_family(args.work / "data",
                                      list(TEST_SEEDS)[:args.test_images])
    n_pairs = sum(1 for _ in open(train_vec[0])) - 1
    print(f"unseen family {FAMILY}; fine-tuned on 1 image ({n_pairs} pairs), "
          f"evaluated on {len(test_img)}")

    def model_f1(path):
        model = load_model(path)
        return f1_of(lambda im: run_job(predict_image(im, model)), test_img, test_vec)

    otsu = f1_of(lambda im: predict_otsu(im, voxel_size=im.voxel_size), test_img, test_vec)
    demo = model_f1(args.init)
    print(f"Otsu F1@5 {otsu:.3f}; {args.init} as shipped F1@5 {demo:.3f}")

    if args.sweep:
        print(f"\nsweep at {args.sweep_minutes:g} min (lr, freeze, pair_bias):")
        print("| lr | frozen | pair bias | steps | F1@5 |")
        print("|---|---|---|---|---|")
        for k, (lr, freeze, bias) in enumerate(SWEEP):
            if args.only and k not in args.only:
                continue
            out, n, _, _, _ = finetune(args.work / f"sweep_{lr:g}_{freeze}_{bias:g}_s{args.seed}",
                                       train_img, train_vec, minutes=args.sweep_minutes,
                                       lr=lr, freeze=freeze, pair_bias=bias, init=args.init,
                                       seed=args.seed)
            print(f"| {lr:g} | {freeze} | {bias:g} | {n} | {model_f1(out):.3f} |", flush=True)

    d = FINETUNE_DEFAULTS
    print(f"\nfine-tune curve (defaults: lr {d['lr']:g}, freeze {d['freeze']}, "
          f"pair bias {d['pair_bias']:g}):")
    print("| minutes | steps | epochs | train s | tune s | F1@5 |")
    print("|---|---|---|---|---|---|")
    print(f"| 0 ({args.init} as shipped) | 0 | 0 | 0 | 0 | {demo:.3f} |")
    for minutes in args.minutes:
        out, n, epochs, t_train, t_tune = finetune(
            args.work / f"curve_{minutes:g}", train_img, train_vec, minutes=minutes,
            lr=d["lr"], freeze=d["freeze"], pair_bias=d["pair_bias"], init=args.init,
            seed=args.seed)
        print(f"| {minutes:g} | {n} | {epochs} | {t_train:.0f} | {t_tune:.0f} | "
              f"{model_f1(out):.3f} |", flush=True)
    print(f"Otsu on the same images: {otsu:.3f}; load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
