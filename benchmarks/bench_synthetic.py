"""Synthetic pre-training with a small real budget: real-only vs synthetic-only vs both.

The experiment of the synthetic-data issue, on crowded 3D nucleus–Golgi
phantoms with exact ground truth:

1. One annotated "real" phantom is the whole real budget. It trains the
   Vox2Vox GAN (its mask dictionary comes from its own annotations).
2. The GAN generates synthetic patches with exact vectors; their number of
   pairs per patch follows the real image's cell density.
3. Three light CellPol models are trained at equal epochs:
   - real-only: all epochs on the real image;
   - synthetic-only: all epochs on the synthetic patches;
   - synthetic pre-train + real fine-tune: half the epochs each.
4. Each model's thresholds are tuned on the one real image (the same for
   all three; synthetic images are never used for tuning or evaluation).
5. Evaluation on held-out phantoms at levels 0 and 5; SSIM between real
   images and the GAN's images of their masks, on the training image and on
   held-out images.

To fit a 2-core CPU the phantoms are drawn directly at the demo model's
working voxel size (0.54 × 1.332 × 1.332 µm; 32 × 128 × 128 voxels, the
same 17 × 170 × 170 µm field as the default phantoms), so nothing is
resampled and every network is 8 times cheaper than at full resolution.

Usage: python benchmarks/bench_synthetic.py [--epochs N] [--gan-epochs N]
       [--n-synthetic N] [--work DIR] [--device auto|cpu|cuda]
Prints the table in Markdown. Steps already done in --work are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
VOXEL = (0.54, 1.332, 1.332)     # (z, y, x) µm
SHAPE = (32, 128, 128)           # (Z, Y, X) voxels
PATCH = (32, 64, 64)
REAL_SEED = 2000
TEST_SEEDS = range(2100, 2104)


def pairs_per_patch(vectors_csv, shape, patch) -> tuple:
    """The real image's pair density scaled to one synthetic patch, ±20 %."""
    from cellpol_core.io.vectors import read_vectors

    n = len(read_vectors(vectors_csv))
    area = patch[-1] * patch[-2] / float(shape[-1] * shape[-2])
    mid = n * area
    return max(1, int(round(0.8 * mid))), max(1, int(round(1.2 * mid)))


def write_phantoms(folder: Path, seeds):
    from train_demo_model import write_set

    return write_set(folder, seeds, shape=SHAPE, voxel_size=VOXEL)


def main(argv=None) -> int:
    from train_demo_model import evaluate_method

    from cellpol_core.cli.common import ProgressBar
    from cellpol_core.synthetic.gan import evaluate_gan, generate, train_gan
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.jobs import run_job
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.train import train
    from cellpol_core.detection.tune import tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="epochs of every model (default 30)")
    ap.add_argument("--steps-per-epoch", type=int, default=12)
    ap.add_argument("--gan-epochs", type=int, default=60)
    ap.add_argument("--gan-steps-per-epoch", type=int, default=8)
    ap.add_argument("--n-synthetic", type=int, default=48)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench_synthetic")
    args = ap.parse_args(argv)
    work = args.work
    times = {}

    real_img, real_vec = write_phantoms(work / "real", [REAL_SEED])
    test_img, test_vec = write_phantoms(work / "test", TEST_SEEDS)

    gan_dir = work / "gan"
    t0 = time.perf_counter()
    with ProgressBar(disable=False) as bar:
        run_job(train_gan(real_img, real_vec, outdir=gan_dir, epochs=args.gan_epochs,
                          patch=PATCH, steps_per_epoch=args.gan_steps_per_epoch,
                          device=args.device, seed=0,
                          resume=(gan_dir / "checkpoint_last.pt").exists()), bar)
    times["GAN training"] = time.perf_counter() - t0

    synth_dir = work / "synthetic"
    if not (synth_dir / f"synthetic_{args.n_synthetic - 1:04d}.ome.tif").exists():
        n_pairs = pairs_per_patch(real_vec[0], SHAPE, PATCH)
        t0 = time.perf_counter()
        with ProgressBar(disable=False) as bar:
            run_job(generate(gan_dir, n=args.n_synthetic, outdir=synth_dir, seed=0,
                             n_pairs=n_pairs, shape=PATCH, device=args.device), bar)
        times["generation"] = time.perf_counter() - t0
    syn_img = sorted(synth_dir.glob("synthetic_*.ome.tif"))[:args.n_synthetic]
    syn_vec = [p.with_name(p.name.replace(".ome.tif", "_vectors.csv")) for p in syn_img]

    common = TrainConfig(arch="light", steps_per_epoch=args.steps_per_epoch, patch_size=PATCH,
                         batch_size=2, model_voxel_size=VOXEL, device=args.device, seed=0)
    half = max(1, args.epochs // 2)
    plans = {
        "real-only": [("real", real_img, real_vec, args.epochs)],
        "synthetic-only": [("synthetic", syn_img, syn_vec, args.epochs)],
        "synthetic pre-train + real fine-tune": [("synthetic", syn_img, syn_vec, half),
                                                 ("real", real_img, real_vec,
                                                  args.epochs - half)],
    }
    models = {}
    for name, stages in plans.items():
        init = None
        t0 = time.perf_counter()
        for k, (kind, imgs, vecs, epochs) in enumerate(stages):
            out = work / "models" / f"{name.split()[0]}_{k}_{kind}"
            if not (out / "weights_best.pt").exists() or \
                    len((out / "training_log.csv").read_text().splitlines()) <= epochs:
                with ProgressBar(disable=False) as bar:
                    run_job(train(imgs, vecs, outdir=out, config=common.replace(epochs=epochs),
                                  init=init, resume=(out / "checkpoint_last.pt").exists(),
                                  overwrite=True), bar)
            init = out
        times[name] = time.perf_counter() - t0
        with ProgressBar(disable=False) as bar:
            run_job(tune(init, real_img, real_vec, device=args.device), bar)
        models[name] = init

    results = {}
    for name, path in models.items():
        model = load_model(path)
        results[name] = evaluate_method(lambda im, model=model: run_job(predict_image(im, model)),
                                        test_img, test_vec)

    ssim_train = evaluate_gan(gan_dir, real_img, real_vec, device=args.device)
    ssim_test = evaluate_gan(gan_dir, test_img, test_vec, device=args.device)

    n_gt = next(iter(results.values())).g
    print(f"\nreal budget: 1 phantom (seed {REAL_SEED}); {len(syn_img)} synthetic patches of "
          f"{PATCH}; {args.epochs} epochs × {args.steps_per_epoch} steps per model; held-out "
          f"test: {len(test_img)} phantoms, {n_gt} ground-truth vectors")
    print("| training | level | TPR | FDR | F1 | CS |")
    print("|---|---|---|---|---|---|")

    def f(v, d=3):
        return "–" if v is None else f"{v:.{d}f}"

    for name, res in results.items():
        for lv in (0, 5):
            r = res.levels[lv]
            print(f"| {name} | {lv} | {f(r.tpr)} | {f(r.fdr)} | {f(r.f1)} | {f(r.stat('cs'))} |")
    print(f"\nSSIM (real vs generated from its mask): training image "
          f"{ssim_train['ssim_mean']:.3f} ± {ssim_train['ssim_sd']:.3f} "
          f"({ssim_train['n_patches']} patches); held-out images "
          f"{ssim_test['ssim_mean']:.3f} ± {ssim_test['ssim_sd']:.3f} "
          f"({ssim_test['n_patches']} patches)")
    print("wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()))
    summary = {name: {lv: res.levels[lv].row() for lv in (0, 5)}
               for name, res in results.items()}
    (work / "results.json").write_text(json.dumps(
        {"table": summary, "ssim_train": ssim_train, "ssim_test": ssim_test,
         "times_s": times}, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
