"""Dask prediction: batch scheduler overhead, and blockwise vs single-process on a large volume.

Part 1: a folder of N phantoms (768×768×64×2 uint16 by default) predicted
serially, then on `local:1` and `local:2` clusters; the outputs must be equal.
The scheduler overhead per image is (cluster time - serial time) / N, cluster
start-up excluded (it is printed apart).

Part 2: a 2048×2048×128×2 OME-Zarr volume predicted by a single process, then
block by block (512×512×128 blocks) on `local:2`: wall time, peak memory (the
single process; each worker), and the vectors of both (equal).

Each measured run is a child process, so that peak memory is its own.
Usage: python benchmarks/bench_cluster.py [--n-images 8] [--shape X Y Z] [--volume X Y Z]
       [--block X Y Z] [--model demo] [--skip-batch] [--skip-volume]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_description() -> str:
    """The CPU model, core count and the SIMD flags that matter for torch."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"]
    return (f"{model}; {os.cpu_count()} cores; flags: "
            + (" ".join(f for f in wanted if f in flags) or "none of " + " ".join(wanted)))


def tiled_phantom(shape_zyx, *, seed, distinct=4):
    """A (2, Z, Y, X) uint16 image tiled from 256×256 phantoms (cells at the paper's scale).

    ``distinct`` phantoms are made and reused, flipped, over the tiles (making
    one per tile would take minutes for a large volume).
    """
    import numpy as np

    from cellpol_core.synthetic.phantom import generate_phantom

    z, y, x = shape_zyx
    tiles = [generate_phantom(shape=(z, 256, 256), seed=seed * 100 + k).image
             for k in range(distinct)]
    out = np.empty((2, z, y, x), np.uint16)
    k = 0
    for y0 in range(0, y, 256):
        for x0 in range(0, x, 256):
            t = tiles[k % distinct]
            t = t[..., ::-1, :] if (k // distinct) % 2 else t
            t = t[..., ::-1] if (k // (2 * distinct)) % 2 else t
            k += 1
            sub = out[:, :, y0:y0 + 256, x0:x0 + 256]
            sub[...] = t[:, :, :sub.shape[2], :sub.shape[3]]
    return out


def _child(args) -> int:
    """One measured run; prints a JSON line."""
    from cellpol_core.detection.predict import predict_files
    from cellpol_core.jobs import run_job

    paths = [Path(p) for p in args.paths]
    out = {}
    block = None
    if args.block:
        x, y, z = args.block
        block = (z, y, x)
    if args.cluster:
        from cellpol_core.detection.cluster import open_client

        t0 = time.perf_counter()
        with open_client(args.cluster) as client:
            out["startup_s"] = time.perf_counter() - t0
            # warm the workers (imports, torch threads) so that startup is counted apart
            client.run(lambda: None)
            t1 = time.perf_counter()
            events = []
            res = run_job(predict_files(paths, outdir=args.outdir, model=args.model, device="cpu",
                                        client=client, block=block), events.append)
            out["wall_s"] = time.perf_counter() - t1
            stats = [e.data for e in events if "peak_rss_max" in e.data]
            out["worker_peak_gb"] = max((s["peak_rss_max"] for s in stats), default=0) / 1e9
            out["blocks"] = stats[-1]["blocks"] if stats else 0
            out["skipped"] = stats[-1]["skipped"] if stats else 0
            out["worker_rss_gb"] = sorted(v / 1e9 for v in client.run(_rss).values())
            out["task_s"] = sum(e.data.get("seconds", 0.0) for e in events)
            out["failed"] = len(res.failed)
    else:
        t1 = time.perf_counter()
        run_job(predict_files(paths, outdir=args.outdir, model=args.model, device="cpu"))
        out["wall_s"] = time.perf_counter() - t1
    out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(paths, outdir, *, model, cluster=None, block=None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--outdir", str(outdir), "--model", model]
    if cluster:
        cmd += ["--cluster", cluster]
    if block:
        cmd += ["--block", *map(str, block)]
    cmd += ["--paths", *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"run failed ({' '.join(cmd[:8])} ...):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _compare(dir_a, dir_b) -> tuple:
    """(vectors in a, vectors in b, largest coordinate difference in voxels) over all CSVs."""
    import numpy as np

    from cellpol_core.io.vectors import read_vectors

    na = nb = 0
    worst = 0.0
    for fa in sorted(Path(dir_a).glob("*_vectors.csv")):
        a, b = read_vectors(fa), read_vectors(Path(dir_b) / fa.name)
        na, nb = na + len(a), nb + len(b)
        if len(a) == len(b) and len(a):
            ka, kb = np.lexsort(a.start.T), np.lexsort(b.start.T)
            worst = max(worst, float(np.abs(a.start[ka] - b.start[kb]).max()),
                        float(np.abs(a.end[ka] - b.end[kb]).max()))
        elif len(a) != len(b):
            worst = float("inf")
    return na, nb, worst


def main(argv=None) -> int:
    import numpy as np

    from cellpol_core.io.image import write_ome_tiff
    from cellpol_core.io.ome_zarr import write_ome_zarr
    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=8)
    ap.add_argument("--shape", nargs=3, type=int, default=[768, 768, 64], metavar=("X", "Y", "Z"))
    ap.add_argument("--volume", nargs=3, type=int, default=[2048, 2048, 128],
                    metavar=("X", "Y", "Z"))
    ap.add_argument("--block", nargs=3, type=int, default=[512, 512, 128], metavar=("X", "Y", "Z"))
    ap.add_argument("--model", default="demo")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--skip-volume", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cluster", help=argparse.SUPPRESS)
    ap.add_argument("--outdir", help=argparse.SUPPRESS)
    ap.add_argument("--paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    print(f"CPU: {cpu_description()}")
    print(f"Python {platform.python_version()}; model {args.model}; device cpu", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_batch:
            x, y, z = args.shape
            t0 = time.perf_counter()
            paths = []
            for i in range(args.n_images):
                p = tmp / "batch" / f"img_{i}.ome.tif"
                write_ome_tiff(p, tiled_phantom((z, y, x), seed=i), voxel_size=PAPER_VOXEL_SIZE,
                               channel_names=["nucleus", "golgi"], compression=None)
                paths.append(p)
            print(f"\n## Batch: {args.n_images} phantoms of {x}×{y}×{z}×2 "
                  f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
            serial = _measure(paths, tmp / "serial", model=args.model)
            n = args.n_images
            print(f"serial:  {serial['wall_s']:.1f} s = {serial['wall_s'] / n:.2f} s per image, "
                  f"peak {serial['peak_gb']:.2f} GB", flush=True)
            for spec in ("local:1", "local:2"):
                r = _measure(paths, tmp / spec.replace(":", "_"), model=args.model, cluster=spec)
                na, nb, worst = _compare(tmp / "serial", tmp / spec.replace(":", "_"))
                over = (r["wall_s"] - serial["wall_s"]) / n
                print(f"{spec}: {r['wall_s']:.1f} s = {r['wall_s'] / n:.2f} s per image "
                      f"(cluster start-up {r['startup_s']:.1f} s apart); vs serial "
                      f"{over:+.2f} s per image = {100 * over / (serial['wall_s'] / n):+.1f} %; "
                      f"time in the tasks {r['task_s']:.1f} s, so scheduling and transfers "
                      f"{(r['wall_s'] - r['task_s'] / int(spec[-1])) / n:.2f} s per image "
                      f"(lower bound; {spec[-1]} worker(s)); "
                      f"worker peak RSS {', '.join(f'{v:.2f}' for v in r['worker_rss_gb'])} GB; "
                      f"vectors {nb} vs serial {na}, max coordinate difference {worst:.4f} voxel",
                      flush=True)
        if not args.skip_volume:
            x, y, z = args.volume
            t0 = time.perf_counter()
            zarr_path = tmp / "volume.ome.zarr"
            raw = np.lib.format.open_memmap(tmp / "volume.npy", mode="w+", dtype=np.uint16,
                                            shape=(2, z, y, x))
            for z0 in range(0, z, 64):
                slab = tiled_phantom((min(64, z - z0), y, x), seed=100 + z0)
                raw[:, z0:z0 + slab.shape[1]] = slab
                del slab
            raw.flush()
            write_ome_zarr(zarr_path, raw, voxel_size=PAPER_VOXEL_SIZE,
                           channel_names=["nucleus", "golgi"])
            del raw
            os.remove(tmp / "volume.npy")
            print(f"\n## Volume: {x}×{y}×{z}×2 uint16 OME-Zarr "
                  f"(written in {time.perf_counter() - t0:.0f} s)", flush=True)
            single = _measure([zarr_path], tmp / "v_single", model=args.model)
            print(f"single process: {single['wall_s']:.0f} s, peak RSS "
                  f"{single['peak_gb']:.2f} GB", flush=True)
            r = _measure([zarr_path], tmp / "v_local2", model=args.model, cluster="local:2",
                         block=args.block)
            na, nb, worst = _compare(tmp / "v_single", tmp / "v_local2")
            bx, by, bz = args.block
            print(f"local:2, blocks {bx}×{by}×{bz}: {r['wall_s']:.0f} s (cluster start-up "
                  f"{r['startup_s']:.1f} s apart), {r['blocks']} blocks ({r['skipped']} empty), "
                  f"peak RSS per worker {', '.join(f'{v:.2f}' for v in r['worker_rss_gb'])} GB "
                  f"(largest in a block task {r['worker_peak_gb']:.2f} GB), client "
                  f"{r['peak_gb']:.2f} GB", flush=True)
            print(f"vectors: single process {na}, blockwise {nb}; max coordinate difference "
                  f"{worst:.4f} voxel", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
