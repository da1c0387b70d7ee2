"""Clicks that always land: the end of a pair a few voxels from its start, at the default zoom.

Real mouse events (QTest press/move/release on the view's viewport) on the
bundled demo image in a window of the default size.
"""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

pytestmark = pytest.mark.gui

LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier


@pytest.fixture(scope="module")
def demo():
    from cellpol_core.io.image import read_image
    from cellpol_core.io.resources import demo_image_path
    from cellpol_core.io.vectors import read_vectors
    from cellpol_core.io.resources import demo_vectors_path

    return read_image(demo_image_path()), read_vectors(demo_vectors_path())


@pytest.fixture
def window(qtbot, demo, tmp_path):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.main import DEFAULT_SIZE
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(*DEFAULT_SIZE)
    w.show()
    qtbot.waitExposed(w)
    w.set_project(Project.create(tmp_path / "proj"))
    w.set_image(demo[0], path=tmp_path / "demo_3d.ome.tif")
    QApplication.processEvents()
    w.set_annotate(True)
    return w


def _press_release(view, a, b, *, steps=0):
    """Press at 3D point ``a``, move to ``b`` in ``steps`` moves, release at ``b``."""
    vp = view.viewport()
    pa, pb = view.view_to_widget(a), view.view_to_widget(b)
    QTest.mousePress(vp, LEFT, NOMOD, pa)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        QTest.mouseMove(vp, pa + (pb - pa) * float(t))
    QTest.mouseRelease(vp, LEFT, NOMOD, pb)


def test_default_zoom_is_about_1_6_pixels_per_voxel(window):
    zoom = window.ortho.views["xy"].pixels_per_voxel()
    assert 1.0 < zoom < 2.6


@pytest.mark.parametrize("offset", [2, 3, 4, 5, 6])
def test_end_click_near_the_start_makes_a_pair(window, offset):
    ortho, xy = window.ortho, window.ortho.views["xy"]
    z = ortho.cursor[0]
    start = np.array([z, 96.0, 96.0])
    end = start + (0, offset * 0.6, offset * 0.8)  # `offset` voxels away in XY
    QTest.mouseClick(xy.viewport(), LEFT, NOMOD, xy.view_to_widget(start))
    assert window.annotations.pending_start is not None
    # The click lands on the ring of the half-placed start: it still makes the end.
    assert float(xy.pixel_distance(start, end[None])[0]) < ortho.pending_size
    QTest.mouseClick(xy.viewport(), LEFT, NOMOD, xy.view_to_widget(end))
    assert window.annotations.pending_start is None
    assert len(window.annotations) == 1
    pair = window.annotations.get(window.annotations.ids[0])
    tol = 1.0 / xy.pixels_per_voxel() + 0.05  # within a screen pixel
    np.testing.assert_allclose(pair.start[1:], start[1:], atol=tol)
    np.testing.assert_allclose(pair.end[1:], end[1:], atol=tol)


def test_a_start_next_to_an_existing_pair_is_placed(window):
    xy = window.ortho.views["xy"]
    z = window.ortho.cursor[0]
    window.annotations.add_pair((z, 50, 50), (z, 50, 60))
    QTest.mouseClick(xy.viewport(), LEFT, NOMOD, xy.view_to_widget((z, 52, 61)))
    assert window.annotations.pending_start is not None  # not taken as a selection
    QTest.mouseClick(xy.viewport(), LEFT, NOMOD, xy.view_to_widget((z, 55, 64)))
    assert len(window.annotations) == 2
    # Shift+click selects the pair under the pointer instead.
    QTest.mouseClick(xy.viewport(), LEFT, Qt.KeyboardModifier.ShiftModifier,
                     xy.view_to_widget((z, 50, 50)))
    assert window.ortho.selected == 1 and window.annotations.pending_start is None


def test_press_and_move_drags_an_endpoint(window):
    xy = window.ortho.views["xy"]
    z = window.ortho.cursor[0]
    window.annotations.add_pair((z, 80, 80), (z, 80, 86))
    _press_release(xy, (z, 80, 86), (z, 90, 100), steps=8)
    pair = window.annotations.get(1)
    tol = 1.0 / xy.pixels_per_voxel() + 0.05
    np.testing.assert_allclose(pair.end[1:], (90, 100), atol=tol)
    np.testing.assert_array_equal(pair.start, (z, 80, 80))
    assert len(window.annotations) == 1 and window.annotations.pending_start is None
    assert window.undo_stack.count() == 1
    # A press and release without a move is a click: it places a start, moves nothing.
    _press_release(xy, (z, 90, 100), (z, 90, 100))
    np.testing.assert_allclose(window.annotations.get(1).end[1:], (90, 100), atol=tol)
    assert window.annotations.pending_start is not None
