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


def open_window(qtbot, tmp_path):
    """An AnnotatorWindow with a new project and this image open."""
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project
    from cellpol_core.io.image import write_ome_tiff

    rng = np.random.default_rng(1)
    image = tmp_path / "phantom.ome.tif"
    write_ome_tiff(image, np.stack([blobs(NUCLEI, rng), blobs(GOLGI, rng)]),
                   voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.set_project(Project.create(tmp_path / "proj"))
    assert w.load_image(image, background=False)
    return w
