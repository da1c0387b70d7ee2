"""Accuracy parity of bf16 (``--precision auto``) and fp32 inference, with the demo model.

On held-out crowded phantoms (the demo recipe's default 256×256×64 phantoms
at the paper's voxel size, new seeds), each image is predicted with
``precision="fp32"`` and with ``precision="auto"`` (bf16 where the CPU or GPU
runs it natively). Printed:

* the vector F1 at level 5 of each, against the ground truth (pooled);
* per image, the number of vectors of each;
* the vectors of the two runs matched one to one (Hungarian on the summed
  start and end distance, matches under 2 voxels), and the distance between
  matched start points and matched end points (mean, 95th percentile, max),
  in voxels.

Targets: |ΔF1| ≤ 0.005, matched endpoints within 0.1 voxel (mean), the same
count ±1 per image.

Usage: python benchmarks/bench_precision.py [--seeds 1400 1401 ...] [--work DIR]
       [--precision bf16]   (compare this instead of auto, e.g. on a CPU without bf16)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

TEST_SEEDS = range(1400, 1406)


def match_tables(a, b, *, max_cost=2.0):
    """Indices (ia, ib) of one-to-one matches of two VectorTables, by start + end distance."""
    from scipy.optimize import linear_sum_assignment

    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    cost = (np.linalg.norm(a.start[:, None] - b.start[None], axis=2)
            + np.linalg.norm(a.end[:, None] - b.end[None], axis=2))
    ia, ib = linear_sum_assignment(cost)
    keep = cost[ia, ib] < max_cost
    return ia[keep], ib[keep]


def main(argv=None) -> int:
    import train_demo_model as recipe
    from bench_predict import cpu_line

    from cellpol_core.detection.evaluate import evaluate_vectors, pool_results
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.detection.network import device_description
    from cellpol_core.detection.precision import resolve_precision
    from cellpol_core.io.image import read_image
    from cellpol_core.io.vectors import read_vectors
    from cellpol_core.jobs import run_job

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(TEST_SEEDS))
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench_precision")
    ap.add_argument("--precision", default="auto", help="compared with fp32 (default auto)")
    args = ap.parse_args(argv)

    print(cpu_line())
    prec = resolve_precision(args.precision, "cpu")
    print(f"{args.precision} -> {device_description('cpu', prec)}; baseline fp32")
    images, vectors = recipe.write_set(args.work / "test", args.seeds)
    model = load_model(args.model)
    res = {"fp32": [], args.precision: []}
    starts, ends, counts, matched = [], [], [], 0
    print(f"{'image':<24} {'fp32 n':>7} {args.precision + ' n':>7} {'matched':>8} "
          f"{'start mean':>10} {'end mean':>9}")
    for img, vec in zip(images, vectors):
        image = read_image(img)
        gt = read_vectors(vec)
        tables = {}
        for name, p in (("fp32", "fp32"), (args.precision, prec)):
            tables[name] = run_job(predict_image(image, model, precision=p))
            res[name].append(evaluate_vectors(gt, tables[name], voxel_size=image.voxel_size,
                                              shape=image.spatial_shape))
        a, b = tables["fp32"], tables[args.precision]
        ia, ib = match_tables(a, b)
        ds = np.linalg.norm(a.start[ia] - b.start[ib], axis=1)
        de = np.linalg.norm(a.end[ia] - b.end[ib], axis=1)
        starts.append(ds)
        ends.append(de)
        counts.append((len(a), len(b)))
        matched += len(ia)
        print(f"{Path(img).name:<24} {len(a):>7} {len(b):>7} {len(ia):>8} "
              f"{ds.mean() if len(ds) else 0:10.3f} {de.mean() if len(de) else 0:9.3f}")
    f1 = {k: pool_results(v).f1(5) for k, v in res.items()}
    ds, de = np.concatenate(starts), np.concatenate(ends)
    n32 = sum(c[0] for c in counts)
    d_f1 = abs(f1[args.precision] - f1["fp32"])
    worst_count = max(abs(x - y) for x, y in counts)
    both = np.concatenate([ds, de])
    print(f"vector F1 at level 5: fp32 {f1['fp32']:.4f}, {args.precision} "
          f"{f1[args.precision]:.4f}, |Δ| = {d_f1:.4f} (target ≤ 0.005: "
          f"{'met' if d_f1 <= 0.005 else 'not met'})")
    print(f"matched {matched} of {n32} fp32 vectors; endpoint distance (voxels): start mean "
          f"{ds.mean():.3f} p95 {np.percentile(ds, 95):.3f} max {ds.max():.3f}; end mean "
          f"{de.mean():.3f} p95 {np.percentile(de, 95):.3f} max {de.max():.3f} (target mean "
          f"≤ 0.1: {'met' if both.mean() <= 0.1 else 'not met'})")
    print(f"count difference per image: max {worst_count} (target ≤ 1: "
          f"{'met' if worst_count <= 1 else 'not met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
