"""Accuracy on held-out crowded phantoms: CellPol vs CtrDet vs Otsu.

CellPol and CtrDet (the same light backbone without embedding heads, pairing
by distance) are trained with the same recipe and budget (60 epochs by
default) as the demo model (scripts/train_demo_model.py), tuned on the same
validation phantoms, and evaluated with the Otsu baseline on new phantom
seeds. CellPol is shown twice: with the 3DCellPol greedy pairing (closest
embeddings first) and with the pairing rule chosen by `cellpol tune` (by
default the joint assignment). Prints the evaluation at levels 0, 5 and 10.

Usage: python benchmarks/bench_accuracy.py [--epochs N] [--work DIR]
       [--cellpol MODEL_DIR]   (reuse a trained CellPol model of the same recipe)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

TEST_SEEDS = range(1300, 1303)


def main(argv=None) -> int:
    import train_demo_model as recipe

    from cellpol_core.detection.classical import predict_otsu
    from cellpol_core.cli.common import ProgressBar
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.jobs import run_job
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.train import train
    from cellpol_core.detection.tune import tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--steps-per-epoch", type=int, default=12)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench_accuracy")
    ap.add_argument("--cellpol", help="an already trained CellPol model (same recipe)")
    args = ap.parse_args(argv)

    tr_img, tr_vec = recipe.write_set(args.work / "train", recipe.TRAIN_SEEDS)
    va_img, va_vec = recipe.write_set(args.work / "val", recipe.VAL_SEEDS)
    tu_img, tu_vec = recipe.write_set(args.work / "val", recipe.TUNE_SEEDS)
    te_img, te_vec = recipe.write_set(args.work / "test", TEST_SEEDS)
    models = {}
    for name, arch in (("CellPol", "light"), ("CtrDet", "ctrdet-light")):
        out = args.work / name.lower()
        if name == "CellPol" and args.cellpol:
            if Path(args.cellpol).resolve() != out.resolve():
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(args.cellpol, out,
                                ignore=shutil.ignore_patterns("checkpoint_last.pt"))
        if not (out / "weights_best.pt").exists():
            with ProgressBar(disable=False) as bar:
                config = TrainConfig(arch=arch, epochs=args.epochs,
                                     steps_per_epoch=args.steps_per_epoch,
                                     patch_size=recipe.PATCH, batch_size=2,
                                     model_voxel_size=recipe.MODEL_VOXEL_SIZE, device="cpu",
                                     seed=0)
                run_job(train(tr_img, tr_vec, outdir=out, config=config, val_images=va_img,
                              val_vectors=va_vec, overwrite=True), bar)
        with ProgressBar(disable=False) as bar:
            run_job(tune(out, tu_img, tu_vec, device="cpu"), bar)
        models[name] = out

    pooled = {}
    for name, path in models.items():
        model = load_model(path)
        pooled[name] = recipe.evaluate_method(lambda im, model=model: run_job(predict_image(im, model)), te_img, te_vec)
        if name == "CellPol":
            greedy = replace(model.thresholds, embed_weight=None)
            pooled["CellPol, greedy pairing"] = recipe.evaluate_method(
                lambda im, model=model, greedy=greedy: run_job(predict_image(im, model, thresholds=greedy)), te_img, te_vec)
    pooled["Otsu"] = recipe.evaluate_method(lambda im: predict_otsu(im), te_img, te_vec)

    n_gt = next(iter(pooled.values())).g
    print(f"held-out crowded phantoms: {len(te_img)} images (seeds {TEST_SEEDS.start}-"
          f"{TEST_SEEDS.stop - 1}), {n_gt} ground-truth vectors after border exclusion")
    print("| method | level | TPR | FDR | F1 | CS | start dist (µm) | end dist (µm) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in pooled.items():
        for lv in (0, 5, 10):
            r = res.levels[lv]

            def f(v, d=3):
                return "–" if v is None else f"{v:.{d}f}"

            print(f"| {name} | {lv} | {f(r.tpr)} | {f(r.fdr)} | {f(r.f1)} | "
                  f"{f(r.stat('cs'))} | {f(r.stat('start_dist'), 2)} | "
                  f"{f(r.stat('end_dist'), 2)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
