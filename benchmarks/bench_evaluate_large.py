"""Evaluation of very many vectors: time and peak memory of the gated sparse matching.

The first evaluation built dense G×P matrices (1 M × 1 M vectors: 7.3 TiB for
each float64 matrix; it failed at once). Random vectors at about one cell per 10⁴ µm³ (3D), predictions a few
µm off; prints the vector count, TP at level 0, seconds and peak RSS.

Usage: python benchmarks/bench_evaluate_large.py [N ...]   (default 100000 1000000)
"""

from __future__ import annotations

import platform
import resource
import sys
import time


def main(argv=None) -> int:
    import numpy as np

    from cellpol_core.detection.evaluate import evaluate_vectors
    from cellpol_core.io.vectors import VectorTable

    sizes = [int(a) for a in (sys.argv[1:] if argv is None else argv)] or [100_000, 1_000_000]
    print(f"cpu: {platform.processor() or platform.machine()}")
    for n in sizes:
        rng = np.random.default_rng(0)
        side = (n * 1e4) ** (1 / 3)
        gs = rng.uniform(0, side, (n, 3))
        ge = gs + rng.normal(0, 3, (n, 3))
        perm = rng.permutation(n)
        ps, pe = gs[perm] + rng.normal(0, 2, (n, 3)), ge[perm] + rng.normal(0, 2, (n, 3))
        t = time.perf_counter()
        r = evaluate_vectors(VectorTable(gs, ge), VectorTable(ps, pe), voxel_size=(1.0, 1.0, 1.0))
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"{n} x {n} vectors: TP at level 0 {r.levels[0].tp}, {seconds:.1f} s, "
              f"peak RSS {peak:.2f} GB (one dense G×P float64 matrix: {8 * n * n / 2**30:.0f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
