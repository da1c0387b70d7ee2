"""The vispy 3D view: additive channel volumes, markers and arrows, µm scaling."""

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, SHAPE, VOXEL, blobs

pytest.importorskip("PySide6")
pytest.importorskip("vispy")

from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import VectorTable  # noqa: E402

pytestmark = pytest.mark.gui



@pytest.fixture
def planes():
    rng = np.random.default_rng(1)
    return np.stack([blobs(NUCLEI, rng), blobs(GOLGI, rng)])


@pytest.fixture
def view(qtbot):
    from cellpol_app.view3d import View3D

    v = View3D()
    qtbot.addWidget(v)
    v.resize(320, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


def _colour_pixels(rgba):
    r, g = rgba[..., 0].astype(int), rgba[..., 1].astype(int)
    return int(((g > 80) & (g > 2 * r)).sum()), int(((r > 80) & (r > 2 * g)).sum())


def test_downsample_max_keeps_spots_and_factors():
    from cellpol_app.view3d import downsample_max

    vol = np.zeros((10, 600, 300), np.uint16)
    vol[3, 401, 7] = 500  # a one-voxel spot survives max pooling
    out, factors = downsample_max(vol, max_size=256)
    assert factors == (1, 3, 2) and out.shape == (10, 200, 150) and out.dtype == np.float32
    assert out[3, 133, 3] == 500 and out.sum() == 500
    small, f1 = downsample_max(vol[:, :200, :200], max_size=256)
    assert f1 == (1, 1, 1) and small.shape == (10, 200, 200)


def test_renders_both_channels_with_scale_and_markers(view, planes):
    from cellpol_core.io.image import percentile_limits

    limits = percentile_limits(planes)
    view.set_volume(planes, limits, voxel_size=VOXEL)
    assert len(view.volumes) == 2
    # vispy order (x, y, z) µm per texture voxel; no pooling for this small stack.
    np.testing.assert_allclose(view.volumes[0].transform.scale[:3], (0.25, 0.5, 1.0))
    np.testing.assert_allclose(view.volumes[0].clim, limits[0])
    rgba = view.render()
    assert rgba.ndim == 3 and rgba.shape[2] == 4
    green, red = _colour_pixels(rgba)
    assert green > 50 and red > 50

    view.set_channel(1, visible=False)  # the end channel off: no red left
    green2, red2 = _colour_pixels(view.render())
    assert green2 > 50 and red2 == 0
    view.set_channel(1, visible=True)

    view.set_pairs(NUCLEI[:2], GOLGI[:2])
    view.set_vectors(VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float),
                                 score=[0.9, 0.2, 0.6]))
    assert view.n_markers == 5
    assert view.marker_sources == ["annotation"] * 2 + ["prediction"] * 3
    ann, pred = view.marker_colors[0], view.marker_colors[2]
    assert not np.allclose(ann, pred)  # coloured by source by default
    np.testing.assert_array_equal(view.markers._data["a_position"][:, :3][0],
                                  np.array(NUCLEI[0])[::-1] * np.array(VOXEL)[::-1])
    view.set_min_score(0.5)
    assert view.n_markers == 4
    view.set_layer("pairs", visible=False)
    assert view.n_markers == 2
    view.set_color_by("score")
    assert view.marker_colors.shape == (2, 4)


def test_big_volume_is_pooled_and_scaled(view):
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 1000, (2, 4, 300, 520), dtype=np.uint16)
    view.set_volume(planes, [(0, 999), (0, 999)], voxel_size=(2.0, 0.3, 0.3))
    assert view.factors == (1, 2, 3)
    assert view.volumes[0]._vol_shape == (4, 150, 174)
    np.testing.assert_allclose(view.volumes[0].transform.scale[:3], (0.9, 0.6, 2.0))


def test_method_and_gamma(view, planes):
    view.set_volume(planes, [(100, 2000), (100, 2000)], voxel_size=VOXEL)
    view.method_combo.setCurrentIndex(1)
    assert view.method == "translucent"
    assert all(v.method == "translucent" for v in view.volumes)
    view.set_gamma(0, 2.0)
    assert view.volumes[0].gamma == pytest.approx(2.0) and view.volumes[1].gamma == 1.0
    green, red = _colour_pixels(view.render())
    assert green > 20 and red > 20
    with pytest.raises(ValueError):
        view.set_method("iso-surface")


def test_window_3d_dock_follows_image_layers_and_pairs(qtbot, tmp_path, planes):
    from cellpol_app.annotator import AnnotatorWindow

    path = tmp_path / "phantom.ome.tif"
    write_ome_tiff(path, planes, voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(1000, 600)
    w.show()
    qtbot.waitExposed(w)
    assert w.load_image(path, background=False)
    assert w.view3d_dock.isVisibleTo(w)
    np.testing.assert_allclose(w.view3d.voxel_size, VOXEL)
    assert w.view3d.shape == SHAPE
    w.annotations.add_pair(NUCLEI[0], GOLGI[0])
    assert w.view3d.n_markers == 1 and w.view3d.marker_sources == ["annotation"]
    w.layer_panel.boxes["end"].setChecked(False)
    assert not w.view3d.volumes[1].visible
    w.layer_panel.boxes["pairs"].setChecked(False)
    assert w.view3d.n_markers == 0
    green, red = _colour_pixels(w.view3d.render())
    assert green > 20 and red == 0


def test_export_3d_png(view, planes, tmp_path):
    from PySide6.QtGui import QImage

    view.set_volume(planes, [(100, 2000), (100, 2000)], voxel_size=VOXEL)
    out = tmp_path / "v3d.png"
    assert view.save_png(out)
    img = QImage(str(out))
    rgba = view.render()
    assert (img.width(), img.height()) == (rgba.shape[1], rgba.shape[0])
