"""Stage 1 of the bundled 3D model: `make demo-model`.

A 3D nucleus→Golgi CellPol model trained on the CPU on phantoms of the
default family (crowded, paper voxel size). It shipped as ``demo`` until the
domain-randomised ``nucleus-golgi-3d`` replaced it (``demo`` is now an alias
of that); ``scripts/train_bundled_models.py nucleus-golgi-3d`` starts from the
folder this script writes. Steps:

1. write training, validation and held-out test phantoms (fixed seeds);
2. train the light network at half the phantoms' resolution
   (voxel 0.54 × 1.332 × 1.332 µm), which makes CPU training and prediction
   eight times cheaper; prediction resamples images automatically;
3. tune the thresholds on four validation phantoms;
4. evaluate on the held-out phantoms and store the table in metrics.json,
   in ``WORK/model`` (default build/demo_model/model).

Usage: python scripts/train_demo_model.py [--epochs N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_VOXEL_SIZE = (0.54, 1.332, 1.332)  # (z, y, x) µm
PATCH = (32, 64, 64)                     # (Z, Y, X) model voxels
TRAIN_SEEDS = range(1000, 1006)
VAL_SEEDS = range(1100, 1102)       # validation loss during training
TUNE_SEEDS = range(1100, 1104)      # threshold tuning: more images, steadier choices
TEST_SEEDS = range(1200, 1203)


def write_set(folder: Path, seeds, *, shape=None, voxel_size=None, prefix="phantom", **options):
    """Crowded phantoms (paper voxel size unless given), written once per seed.

    ``options`` go to :func:`generate_phantom` (a benchmark's own family);
    ``prefix`` names the files ``<prefix>_<seed>.ome.tif`` and ``..._vectors.csv``.
    """
    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom
    from cellpol_core.io.vectors import write_vectors

    folder.mkdir(parents=True, exist_ok=True)
    images, vectors = [], []
    for seed in seeds:
        img, csv = folder / f"{prefix}_{seed}.ome.tif", folder / f"{prefix}_{seed}_vectors.csv"
        if not img.exists():
            ph = generate_phantom(shape=shape, voxel_size=voxel_size or PAPER_VOXEL_SIZE,
                                  seed=seed, **options)
            write_ome_tiff(img, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
            write_vectors(csv, ph.vectors, voxel_size=ph.voxel_size)
        images.append(img)
        vectors.append(csv)
    return images, vectors


def evaluate_method(predict, images, vectors):
    """Pooled evaluation of ``predict(CellImage) -> VectorTable`` over image/CSV files."""
    from cellpol_core.detection.evaluate import evaluate_vectors, pool_results
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors

    results = []
    for img, vec in zip(images, vectors):
        image = read_image(img)
        results.append(evaluate_vectors(read_vectors(vec), predict(image),
                                        voxel_size=image.voxel_size, shape=image.spatial_shape))
    return pool_results(results)


def main(argv=None) -> int:
    from cellpol_core.cli.common import ProgressBar
    from cellpol_core.detection.evaluate import format_table
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.jobs import run_job
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.train import train
    from cellpol_core.detection.tune import format_report, tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--steps-per-epoch", type=int, default=12)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "demo_model")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    tr_img, tr_vec = write_set(args.work / "train", TRAIN_SEEDS)
    va_img, va_vec = write_set(args.work / "val", VAL_SEEDS)
    tu_img, tu_vec = write_set(args.work / "val", TUNE_SEEDS)
    te_img, te_vec = write_set(args.work / "test", TEST_SEEDS)
    model_dir = args.work / "model"
    with ProgressBar(disable=False) as bar:
        config = TrainConfig(arch="light", epochs=args.epochs,
                             steps_per_epoch=args.steps_per_epoch, patch_size=PATCH,
                             batch_size=2, model_voxel_size=MODEL_VOXEL_SIZE, device="cpu",
                             seed=0)
        run_job(train(tr_img, tr_vec, outdir=model_dir, config=config, val_images=va_img,
                      val_vectors=va_vec, resume=args.resume, overwrite=not args.resume), bar)
    # From the log, so that a resumed run reports its whole training time.
    from cellpol_core.detection.train import LOG_COLUMNS, read_training_log
    log = read_training_log(model_dir / "training_log.csv", LOG_COLUMNS)
    t_train = sum(float(r["seconds"]) for r in log)
    with ProgressBar(disable=False) as bar:
        _, report = run_job(tune(model_dir, tu_img, tu_vec, device="cpu"), bar)
    print(format_report(report))
    model = load_model(model_dir)
    pooled = evaluate_method(lambda im: run_job(predict_image(im, model)), te_img, te_vec)
    print("held-out test phantoms:")
    print(format_table(pooled))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    metrics["test"] = {"seeds": list(TEST_SEEDS), "table": pooled.rows(),
                       "train_seconds": round(t_train, 1), "epochs": args.epochs}
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
