"""Peak memory of `cellpol predict` on a 2048×2048×128×2 uint16 image (2 GB on disk).

The image is written uncompressed (so it is memory-mapped) with cells from a
phantom tiled over it, then `cellpol predict --model demo` runs in a child
process whose peak RSS is reported. Target: about 4 GB or less.

Usage: python benchmarks/bench_memory.py [--shape X Y Z] [--model demo] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    import numpy as np
    import tifffile

    from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[2048, 2048, 128], metavar=("X", "Y", "Z"))
    ap.add_argument("--model", default="demo")
    args = ap.parse_args(argv)
    x, y, z = args.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.ome.tif"
        t0 = time.perf_counter()
        block = generate_phantom(shape=(min(z, 64), 256, 256), voxel_size=PAPER_VOXEL_SIZE,
                                 seed=3).image
        vz, vy, vx = PAPER_VOXEL_SIZE
        out = tifffile.memmap(path, shape=(2, z, y, x), dtype=np.uint16, ome=True,
                              metadata={"axes": "CZYX", "PhysicalSizeX": vx, "PhysicalSizeY": vy,
                                        "PhysicalSizeZ": vz, "Channel": {"Name": ["nucleus",
                                                                                  "golgi"]}})
        bz = block.shape[1]
        for z0 in range(0, z, bz):
            for y0 in range(0, y, 256):
                for x0 in range(0, x, 256):
                    sub = out[:, z0:z0 + bz, y0:y0 + 256, x0:x0 + 256]
                    sub[...] = block[:, :sub.shape[1], :sub.shape[2], :sub.shape[3]]
        out.flush()
        del out
        size_gb = path.stat().st_size / 1e9
        print(f"wrote {x}×{y}×{z}×2 uint16 ({size_gb:.2f} GB) in {time.perf_counter() - t0:.0f} s")
        t1 = time.perf_counter()
        cmd = [sys.executable, "-m", "cellpol_core", "predict", str(path), "--model", args.model,
               "-o", str(Path(tmp) / "out"), "--device", "cpu"]
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t1
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        n = sum(1 for _ in open(Path(tmp) / "out" / "big_vectors.csv")) - 1
    print(f"predict: {wall:.0f} s, {n} vectors, peak RSS {peak_kb / 1e6:.2f} GB "
          f"(image on disk {size_gb:.2f} GB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
