"""Time to open a 768×768×64×2 uint16 TIFF in the desktop app and render it once.

Writes the image (noise plus bright blobs) to a temporary folder, then measures
in a fresh Python process (cold imports, as a user would see): reading and
preparing the image, showing it in the window (slices, MIP, contrast, the 3D
volume's texture), the first paint of the three slice views and the first draw
of the 3D view. Target: open + first render <= 3 s. Without a display the
measuring process runs under ``xvfb-run -a``.

Usage: python benchmarks/bench_gui_open.py [--shape X Y Z] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 3.0


def write_image(path, shape_xyz, *, seed=0):
    """A (2, Z, Y, X) uint16 OME-TIFF: background noise and a few hundred blobs per channel."""
    import numpy as np

    from cellpol_core.io.image import write_ome_tiff

    nx, ny, nz = shape_xyz
    rng = np.random.default_rng(seed)
    data = rng.integers(80, 140, size=(2, nz, ny, nx), dtype=np.uint16)
    r = 4
    g = np.arange(-2 * r, 2 * r + 1)
    zz, yy, xx = np.meshgrid(g // 2, g, g, indexing="ij")  # z half as fine
    blob = (3000 * np.exp(-(zz ** 2 + yy ** 2 + xx ** 2) / (2 * r ** 2 / 2))).astype(np.uint16)
    bz, by, bx = blob.shape
    for c in range(2):
        for _ in range(300):
            z0 = rng.integers(0, max(nz - bz, 1))
            y0, x0 = rng.integers(0, ny - by), rng.integers(0, nx - bx)
            view = data[c, z0:z0 + bz, y0:y0 + by, x0:x0 + bx]
            np.maximum(view, blob[:view.shape[0]], out=view)
    write_ome_tiff(path, data, voxel_size=(0.27, 0.666, 0.666),
                   channel_names=["nucleus", "golgi"], compression=None)
    return path


def measure(path) -> dict:
    """Run in the child process: seconds per part."""
    times = {}
    t = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.viewer import load_image_file

    app = QApplication.instance() or QApplication([])
    times["import Qt + app"] = time.perf_counter() - t

    t = time.perf_counter()
    window = AnnotatorWindow(detect_device=False)
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    times["create + show empty window"] = time.perf_counter() - t

    opened = {}
    t0 = t = time.perf_counter()
    loaded = load_image_file(path)  # what File → Open does, in two timed halves
    opened["read + prepare image"] = time.perf_counter() - t
    t = time.perf_counter()
    window.set_loaded(loaded, path=Path(path))
    opened["show in window (slices, 3D texture)"] = time.perf_counter() - t
    t = time.perf_counter()
    app.processEvents()
    window.ortho.grab()  # paints the three slice views
    opened["first paint of slice views"] = time.perf_counter() - t
    t = time.perf_counter()
    frame = window.view3d.render()  # draws the volume (uploads its textures)
    app.processEvents()
    opened["first draw of 3D view"] = time.perf_counter() - t
    opened["total open + first render"] = time.perf_counter() - t0
    times.update(opened)
    times["_3d_frame_nonblack"] = bool(frame[..., :3].max() > 30)
    times["_shape"] = list(loaded.planes.shape)
    window.close()
    return times


def _child(argv):
    print(json.dumps(measure(argv[0])))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs=3, type=int, default=[768, 768, 64], metavar=("X", "Y", "Z"))
    p.add_argument("--keep", metavar="DIR", help="write the image here and keep it")
    args = p.parse_args(argv)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_gui_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = folder / "bench_{}x{}x{}x2.ome.tif".format(*args.shape)
        t = time.perf_counter()
        write_image(path, args.shape)
        print(f"wrote {path.name} ({path.stat().st_size / 2 ** 20:.0f} MiB) "
              f"in {time.perf_counter() - t:.1f} s")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(path)]
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and \
                not os.environ.get("WAYLAND_DISPLAY"):
            if shutil.which("xvfb-run") is None:
                print("no display and no xvfb-run: cannot measure", file=sys.stderr)
                return 2
            cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"] + cmd
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout + run.stderr, file=sys.stderr)
            return 1
        times = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"image (C, Z, Y, X) = {tuple(times.pop('_shape'))} uint16; "
          f"3D frame not blank: {times.pop('_3d_frame_nonblack')}")
    for name, seconds in times.items():
        print(f"  {name:<40s} {seconds:7.3f} s")
    total = times["total open + first render"]
    verdict = "OK" if total <= TARGET_S else "OVER"
    print(f"open + first render: {total:.2f} s (target <= {TARGET_S:g} s): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
