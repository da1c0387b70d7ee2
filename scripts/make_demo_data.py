"""Write the bundled demo image and its ground truth to resources/demo/.

``demo_3d.ome.tif`` is a 3D nucleus/Golgi phantom of (Z, Y, X) = (48, 192, 192)
voxels at the paper's voxel size (x 0.666, y 0.666, z 0.270 µm), and
``demo_3d_vectors.csv`` holds its ground-truth vectors (CellPol CSV with µm
columns). The seed is fixed, so running this again gives the same files.

Usage: python scripts/make_demo_data.py [OUTDIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from cellpol_core.io.image import write_ome_tiff
from cellpol_core.synthetic.phantom import PAPER_VOXEL_SIZE, generate_phantom
from cellpol_core.io.vectors import write_vectors

DEMO_SHAPE = (48, 192, 192)
DEMO_SEED = 20250107
# Half the default grey levels: same signal-to-noise, fewer distinct noise
# levels, so the zlib-compressed file stays under 4 MB.
DEMO_INTENSITY = 0.5


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parent.parent
    outdir = Path(argv[0]) if argv else root / "resources" / "demo"
    ph = generate_phantom(shape=DEMO_SHAPE, voxel_size=PAPER_VOXEL_SIZE, seed=DEMO_SEED,
                          intensity=DEMO_INTENSITY)
    image_path = outdir / "demo_3d.ome.tif"
    csv_path = outdir / "demo_3d_vectors.csv"
    write_ome_tiff(image_path, ph.image, voxel_size=ph.voxel_size, channel_names=ph.channel_names)
    write_vectors(csv_path, ph.vectors, voxel_size=ph.voxel_size)
    size_mb = image_path.stat().st_size / 1e6
    print(f"wrote {image_path} ({size_mb:.1f} MB, {len(ph.vectors)} vectors) and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
