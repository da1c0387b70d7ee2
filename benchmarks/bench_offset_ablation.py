"""Offset pairing ablation: embeddings only, offsets only, both, on held-out crowded phantoms.

One network is trained with both the embedding and the offset heads: the
bundled ``demo`` model (light preset) fine-tuned with an offset head added
(``TrainConfig(offset_head=True)``) on the demo's training phantoms, for a
wall-time budget (``--minutes``; a small experiment on a shared 2-core CPU).
By default only the new head learns (``freeze="backbone"``), so the
heatmaps and embeddings are the demo's and the rows differ by pairing only;
``--freeze none`` also moves the backbone (which, in 82 steps, cost the
demo's detections much more than any pairing term changed).
Its thresholds are then tuned three times on the demo's tuning phantoms, each
time allowing only some pairing terms (``tune(terms=...)``):

* embeddings only: distance + λ·embedding difference (the embedding gate on);
* offsets only: distance + μ·|predicted end − end peak| (no embeddings);
* both: all three terms.

Each is evaluated on held-out crowded phantoms (denser than the training
family, with more nuclei placed beyond a neighbour's Golgi), vector F1 at
levels 0, 5 and 10, beside the demo model as shipped.

Usage: python benchmarks/bench_offset_ablation.py [--minutes 10] [--lr 1e-3]
       [--freeze backbone|encoder|none] [--work DIR]
       [--model DIR]  (reuse a trained offset model)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

#: Held-out crowded phantoms: denser, more wrong-neighbour placements.
TEST = dict(density=1.6, neighbour_fraction=0.5)
TEST_SEEDS = range(1400, 1404)
VARIANTS = (("embeddings only", ("embedding",)), ("offsets only", ("offset",)),
            ("both", ("embedding", "offset")))


def main(argv=None) -> int:
    import train_demo_model as recipe

    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.evaluate import format_table
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.loop import read_training_log
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.train import LOG_COLUMNS, train
    from cellpol_core.detection.tune import format_report, tune
    from cellpol_core.jobs import run_job

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--freeze", default="backbone", help="none, encoder or backbone (backbone: "
                    "only the new offset head learns; the demo's other outputs stay)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench_offset_ablation")
    ap.add_argument("--model", type=Path, help="an already trained offset model")
    args = ap.parse_args(argv)

    print(f"CPU: {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f}")
    tr_img, tr_vec = recipe.write_set(args.work / "train", recipe.TRAIN_SEEDS)
    tu_img, tu_vec = recipe.write_set(args.work / "val", recipe.TUNE_SEEDS)
    te_img, te_vec = recipe.write_set(args.work / "test", TEST_SEEDS, prefix="crowded", **TEST)
    model_dir = args.model or args.work / "offset_model"
    if args.model is None:
        config = TrainConfig(offset_head=True, minutes=args.minutes, lr=args.lr,
                             freeze=args.freeze,
                             patch_size=recipe.PATCH, batch_size=2, steps_per_epoch=12,
                             device="cpu", seed=0, val_fraction=0.0)
        t0 = time.perf_counter()
        steps = []
        run_job(train(tr_img, tr_vec, outdir=model_dir, config=config, init="demo",
                      overwrite=True),
                lambda e: steps.append(1) if e.stage == "train" and "loss" in e.data else None)
        log = read_training_log(model_dir / "training_log.csv", LOG_COLUMNS)
        print(f"trained {len(steps)} steps (batch 2, patch {recipe.PATCH}) in "
              f"{time.perf_counter() - t0:.0f} s from demo + a new offset head; last epoch "
              f"offset loss {log[-1].get('offset', float('nan')):.4f}")

    def evaluate(model, thresholds=None):
        return recipe.evaluate_method(
            lambda im: run_job(predict_image(im, model, thresholds=thresholds)), te_img, te_vec)

    rows = [("demo as shipped (embeddings, tuned)", evaluate(load_model("demo")))]
    model = load_model(model_dir)
    for name, terms in VARIANTS:
        t0 = time.perf_counter()
        thr, report = run_job(tune(model_dir, tu_img, tu_vec, device="cpu", terms=terms,
                                   write=False))
        print(f"\n{name}: tuned in {time.perf_counter() - t0:.0f} s")
        print(format_report(report))
        rows.append((name, evaluate(model, thr)))
    print(f"\nheld-out crowded phantoms {TEST}, seeds {list(TEST_SEEDS)}:")
    print("| pairing | F1@0 | F1@5 | F1@10 |")
    print("|---|---|---|---|")
    for name, pooled in rows:
        f = [pooled.f1(level) for level in (0, 5, 10)]
        print(f"| {name} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in f) + " |")
    for name, pooled in rows:
        print(f"\n{name}:\n{format_table(pooled)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
