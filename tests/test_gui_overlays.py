"""What the slice views draw over the image: arrows with heads that follow the zoom, the
colour legend, view labels with 0-based slices, the µm scale bar (also in exported PNGs),
the app's own context menu, and hover coordinates that follow the slice."""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import VectorTable  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (12, 48, 64)
VOXEL = (1.0, 0.5, 0.5)
NOMOD = Qt.KeyboardModifier.NoModifier


@pytest.fixture
def window(qtbot, tmp_path):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    data = np.full((2,) + SHAPE, 100, np.uint16)
    data[0, 6, 20, 20] = data[1, 6, 30, 40] = 5000  # dark image with two bright voxels
    path = tmp_path / "dark.ome.tif"
    write_ome_tiff(path, data, voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    w.set_project(Project.create(tmp_path / "proj"))
    assert w.load_image(path, background=False)
    QApplication.processEvents()
    return w


def _rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, :w * 3].reshape(h, w, 3).astype(int)


def _move(view, point):
    vp = view.viewport()
    pos = QPointF(view.view_to_widget(point))
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, pos, vp.mapToGlobal(pos),
                                           Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                           NOMOD))


def _wheel(view, dy, modifiers=NOMOD):
    vp = view.viewport()
    centre = QPointF(vp.width() / 2, vp.height() / 2)
    QApplication.sendEvent(vp, QWheelEvent(centre, vp.mapToGlobal(centre), QPoint(0, 0),
                                           QPoint(0, dy), Qt.MouseButton.NoButton, modifiers,
                                           Qt.ScrollPhase.NoScrollPhase, False))


def test_labels_and_z_are_0_based(window):
    views = window.ortho.views
    assert window.z_label.text() == "z 6 / 11"
    assert views["xy"].slice_label() == "XY · z 6 / 11"
    assert views["xz"].slice_label() == "XZ · y 24 / 47"
    assert views["yz"].slice_label() == "YZ · x 32 / 63"
    window.set_slice(0)
    assert window.z_label.text() == "z 0 / 11" and views["xy"].slice_label() == "XY · z 0 / 11"
    window.set_mip(True)
    assert "max projection of 12" in views["xy"].slice_label()
    assert window.z_label.text() == "MIP of 12"


def test_scale_bar_in_um_and_in_the_exported_png(window, tmp_path):
    xy = window.ortho.views["xy"]
    length, px, text = xy.scale_bar()
    mantissa = length / 10 ** np.floor(np.log10(length))
    assert round(mantissa, 6) in (1, 2, 5) and text == f"{length:g} µm"
    # Its length on screen is that many µm at this zoom (0.5 µm per voxel).
    assert px == pytest.approx(length / 0.5 * xy.pixels_per_voxel())
    assert 0.05 * xy.viewport().width() < px <= 0.22 * xy.viewport().width()
    out = tmp_path / "views.png"
    assert window.export_views(out)
    rgb = _rgb(QImage(str(out)))
    # The bar: a row of white pixels near the bottom right of the XY view.
    top_left = xy.mapTo(window.ortho, QPoint(0, 0))
    vw, vh = xy.viewport().width(), xy.viewport().height()
    region = rgb[top_left.y() + vh - 30:top_left.y() + vh, top_left.x():top_left.x() + vw]
    white_run = ((region > 240).all(-1)).sum(1).max()
    assert abs(white_run - px) <= 3
    # Zooming in shortens the length in µm.
    xy.view_box.scaleBy((0.25, 0.25))
    assert xy.scale_bar()[0] < length


def test_arrows_have_heads_colours_and_a_legend(window, tmp_path):
    ortho, xy = window.ortho, window.ortho.views["xy"]
    window.set_slice(6)
    window.annotations.add_pair((6, 10, 10), (6, 10, 30))
    window.set_vectors(VectorTable(np.array([(6.0, 30, 10), (6.0, 40, 10)]),
                                   np.array([(6.0, 30, 50), (6.0, 40, 12)]), score=[0.9, 0.1]))
    pairs, vectors = xy.arrows["pairs"], xy.arrows["vectors"]
    assert len(pairs) == 1 and len(vectors) == 2
    assert tuple(pairs.rgba[0][:3]) == (255, 255, 255)  # annotations white
    assert tuple(vectors.rgba[0][:3]) == (80, 200, 255)  # predictions blue
    assert xy.legend_entries() == ("annotation", "prediction")
    # The head: the arrow is wider near its tip than along its shaft.
    xy.view_box.setRange(xRange=(0, 63), yRange=(0, 47), padding=0)
    QApplication.processEvents()
    img = _rgb(xy.grab().toImage())
    cyan = (img[..., 2] > 150) & (img[..., 0] < 150)

    def spread(x):
        col = xy.view_to_widget((6, 30, x))
        return int(cyan[col.y() - 12:col.y() + 12, col.x()].sum())

    head_len, width = xy.arrows["vectors"].head_size(xy.pixels_per_voxel())
    tip_x = 50 - 0.5 * head_len / xy.pixels_per_voxel()
    assert spread(tip_x) >= spread(30) + 3
    # Colour by score (viridis) and by angle; the 3D view follows.
    ortho.set_color_by("score")
    assert window.view3d.color_by == "score" and window.layer_panel.color_combo.currentIndex() == 1
    high, low = vectors.rgba[:, :3]
    assert high[1] > low[1] and low[2] > low[1]  # yellow-green (0.9) vs purple (0.1)
    window.view3d.set_color_by("angle")
    assert ortho.color_by == "angle"
    down = VectorTable(np.array([(6.0, 10, 50)]), np.array([(6.0, 30, 50)]))
    window.set_vectors(down)
    right = tuple(pairs.rgba[0][:3])
    assert right != tuple(vectors.rgba[0][:3])  # 0° and 90° differ


def test_markers_and_heads_grow_when_zoomed(window):
    xy = window.ortho.views["xy"]
    window.set_slice(6)
    window.annotations.add_pair((6, 20, 20), (6, 30, 40))
    xy.view_box.setRange(xRange=(0, 320), padding=0)  # zoomed out: about 2 px per voxel
    QApplication.processEvents()
    assert xy.pixels_per_voxel() < 3
    size = xy.dots.data["size"].copy()
    head = xy.arrows["pairs"].head_size(xy.pixels_per_voxel())[0]
    xy.view_box.scaleBy((0.25, 0.25))  # zoom in 4×
    QApplication.processEvents()
    assert (xy.dots.data["size"] > size * 1.5).all()
    assert xy.arrows["pairs"].head_size(xy.pixels_per_voxel())[0] > 1.5 * head


def test_context_menu_is_the_apps(window, qtbot, tmp_path, monkeypatch):
    xy = window.ortho.views["xy"]
    window.set_slice(6)
    window.annotations.add_pair((6, 20, 20), (6, 30, 40))
    assert not xy.view_box.menuEnabled()
    QTest.mouseClick(xy.viewport(), Qt.MouseButton.RightButton, NOMOD,
                     xy.view_to_widget((6, 30, 40)))
    menu = xy.menu
    qtbot.waitUntil(menu.isVisible, timeout=2000)
    texts = [a.text() for a in menu.actions() if a.text()]
    assert "Reset view (F)" in texts and "Export views as PNG…" in texts
    assert not any("Mouse Mode" in t or "X axis" in t for t in texts)
    assert xy.view_box.menu is None or not xy.view_box.menu.isVisible()
    delete = next(a for a in menu.actions() if a.text() == "Delete pair under cursor")
    assert delete.isEnabled()
    delete.trigger()
    menu.close()
    assert len(window.annotations) == 0
    window.undo_stack.undo()  # one undo step
    assert len(window.annotations) == 1
    # Annotation mode and export from the menu reach the window.
    menu = xy.context_menu(np.array([6.0, 5, 5]))
    mode = next(a for a in menu.actions() if a.text().startswith("Annotation mode"))
    assert not next(a for a in menu.actions()
                    if a.text() == "Delete pair under cursor").isEnabled()
    mode.trigger()
    assert window.ortho.annotate and window.annotate_box.isChecked()
    assert xy.hint().startswith("Annotating")
    out = tmp_path / "from_menu.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    next(a for a in menu.actions() if a.text() == "Export views as PNG…").trigger()
    assert out.is_file()  # the window's export, through its file dialog
    QTest.mouseClick(xy.viewport(), Qt.MouseButton.LeftButton, NOMOD, xy.view_to_widget((6, 5, 5)))
    assert xy.hint().startswith("Click the end")


def test_hover_text_follows_the_slice(window):
    xy = window.ortho.views["xy"]
    _move(xy, (6, 30, 40))
    assert "x 40  y 30  z 6" in window.position_label.text()
    _wheel(xy, 120)  # next slice, the mouse has not moved
    assert window.ortho.cursor[0] == 7
    assert "x 40  y 30  z 7" in window.position_label.text()
    window.z_slider.setValue(2)
    assert "x 40  y 30  z 2" in window.position_label.text()
    xy.view_box.translateBy(x=5)  # panning moves the image under the still mouse
    assert "x 45  y 30  z 2" in window.position_label.text()
