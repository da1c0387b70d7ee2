"""A tiny two-channel test image shared by the GUI tests: three cells with known centroids."""

import numpy as np

SHAPE = (12, 48, 64)  # Z, Y, X
VOXEL = (1.0, 0.5, 0.25)  # z, y, x µm
NUCLEI = [(2, 12, 14), (6, 30, 30), (10, 20, 50)]
GOLGI = [(3, 14, 20), (6, 36, 34), (11, 26, 54)]


def blobs(centres, rng, shape=SHAPE):
    """A uint16 channel: noisy background plus one anisotropic Gaussian per centre."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    out = rng.normal(100, 5, shape)
    for cz, cy, cx in centres:
        out += 3000 * np.exp(-(((z - cz) / 1.2) ** 2 + ((y - cy) / 2.0) ** 2
                               + ((x - cx) / 3.0) ** 2) / 2)
    return np.clip(out, 0, 65535).astype(np.uint16)
