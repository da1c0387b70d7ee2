"""The 3D view's channel settings (limits, gamma, colour, visibility) and its colour legend."""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("vispy")

pytestmark = pytest.mark.gui


@pytest.fixture
def view(qtbot):
    from cellpol_app.view3d import View3D

    v = View3D()
    qtbot.addWidget(v)
    planes = np.zeros((2, 4, 8, 8), np.uint16)
    planes[0, 1, 2, 3] = 1000
    planes[1, 2, 5, 5] = 3000
    v.set_volume(planes, [(10, 900), (20, 2500)], voxel_size=(1.0, 0.5, 0.5))
    return v


def test_set_channel_reaches_the_volumes(view):
    assert tuple(view.volumes[1].clim) == (20, 2500)
    view.set_channel(1, clim=(300, 1500), gamma=0.5)
    assert tuple(view.volumes[1].clim) == (300, 1500) and view.clims[1] == (300, 1500)
    assert view.volumes[1].gamma == pytest.approx(0.5)
    assert tuple(view.volumes[0].clim) == (10, 900)  # the other channel is untouched
    view.set_channel(0, color="#0000ff", visible=False)
    assert view.colors[0] == (0.0, 0.0, 1.0) and not view.volumes[0].visible


def test_colour_legend_follows_the_mode_and_sources(view, tmp_path):
    from PySide6.QtGui import QImage

    from cellpol_core.io.vectors import VectorTable

    view.set_pairs([(1, 2, 3)], [(2, 5, 5)])
    assert view.legend.mode == "source" and view.legend.entries == ("annotation",)
    view.set_vectors(VectorTable(np.array([(1.0, 2, 3)]), np.array([(2.0, 6, 6)]), score=[0.4]))
    assert view.legend.entries == ("annotation", "prediction")
    view.set_color_by("angle")
    assert view.legend.mode == "angle"
    # The legend is painted into the exported PNG, top right.
    out = tmp_path / "v.png"
    assert view.save_png(out)
    img = QImage(str(out)).convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    bpl = img.bytesPerLine()
    rgb = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    rgb = rgb[:, :w * 3].reshape(h, w, 3).astype(int)
    corner = rgb[8:60, w - 130:w - 8]
    saturated = (corner.max(-1) - corner.min(-1)) > 120  # the hue wheel
    assert saturated.sum() > 200
