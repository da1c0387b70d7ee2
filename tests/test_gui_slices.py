"""Orthogonal slice views, annotation with the mouse and keys, pairs table, projects."""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vectors  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (12, 48, 64)  # Z, Y, X
VOXEL = (1.0, 0.5, 0.25)
NUCLEI = [(2, 12, 14), (6, 30, 30), (10, 20, 50)]
GOLGI = [(3, 14, 20), (6, 36, 34), (11, 26, 54)]
LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier


def _blobs(centres, rng):
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    out = rng.normal(100, 5, SHAPE)
    for cz, cy, cx in centres:
        out += 3000 * np.exp(-(((z - cz) / 1.2) ** 2 + ((y - cy) / 2.0) ** 2
                               + ((x - cx) / 3.0) ** 2) / 2)
    return np.clip(out, 0, 65535).astype(np.uint16)


@pytest.fixture
def phantom(tmp_path):
    rng = np.random.default_rng(1)
    data = np.stack([_blobs(NUCLEI, rng), _blobs(GOLGI, rng)])
    path = tmp_path / "phantom.ome.tif"
    write_ome_tiff(path, data, voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    return path, data


@pytest.fixture
def window(qtbot, phantom, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(1100, 750)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitActive(w)  # window shortcuts need an active window
    w.set_project(Project.create(tmp_path / "proj"))
    assert w.load_image(phantom[0], background=False)
    QApplication.processEvents()
    return w


def _click(view, point, button=LEFT):
    QTest.mouseClick(view.viewport(), button, NOMOD, view.view_to_widget(point))


def _wheel(view, dy, modifiers=NOMOD):
    vp = view.viewport()
    centre = QPointF(vp.width() / 2, vp.height() / 2)
    QApplication.sendEvent(vp, QWheelEvent(centre, vp.mapToGlobal(centre), QPoint(0, 0),
                                           QPoint(0, dy), Qt.MouseButton.NoButton, modifiers,
                                           Qt.ScrollPhase.NoScrollPhase, False))


def _drag(view, a, b, steps=6):
    vp = view.viewport()
    pa, pb = QPointF(view.view_to_widget(a)), QPointF(view.view_to_widget(b))

    def send(kind, pos, button, buttons):
        QApplication.sendEvent(vp, QMouseEvent(kind, pos, vp.mapToGlobal(pos), button,
                                               buttons, NOMOD))

    send(QEvent.Type.MouseButtonPress, pa, LEFT, LEFT)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        send(QEvent.Type.MouseMove, pa + (pb - pa) * float(t), Qt.MouseButton.NoButton, LEFT)
    send(QEvent.Type.MouseButtonRelease, pb, LEFT, Qt.MouseButton.NoButton)


def test_three_views_shapes_aspect_and_linked_cursor(window, phantom):
    from cellpol_app.viewer import composite_rgb

    _, data = phantom
    ortho = window.ortho
    views = ortho.views
    assert all(v.isVisible() for v in views.values())
    assert tuple(ortho.cursor) == (6, 24, 32)
    assert views["xy"].rgb.shape == (48, 64, 3)
    assert views["xz"].rgb.shape == (12, 64, 3)  # rows z, columns x
    assert views["yz"].rgb.shape == (48, 12, 3)  # rows y, columns z
    # Screen pixels per horizontal voxel / per vertical voxel = voxel size ratio.
    assert views["xy"].view_box.state["aspectLocked"] == pytest.approx(0.25 / 0.5)
    assert views["xz"].view_box.state["aspectLocked"] == pytest.approx(0.25 / 1.0)
    assert views["yz"].view_box.state["aspectLocked"] == pytest.approx(1.0 / 0.5)

    _click(views["xy"], (6, 20, 50))  # navigate mode: moves the cursor
    assert tuple(ortho.cursor) == (6, 20, 50)
    limits = window.loaded.limits
    np.testing.assert_array_equal(views["xz"].rgb, composite_rgb(data[:, :, 20, :], limits))
    np.testing.assert_array_equal(views["yz"].rgb,
                                  composite_rgb(np.swapaxes(data[:, :, :, 50], 1, 2), limits))
    assert views["xy"].v_line.value() == 50 and views["xy"].h_line.value() == 20
    assert views["xz"].h_line.value() == 6 and views["yz"].v_line.value() == 6

    _click(views["xz"], (10, 20, 50))  # picks the z of the XY view
    assert ortho.cursor[0] == 10 and window.z_slider.value() == 10
    np.testing.assert_array_equal(views["xy"].rgb, composite_rgb(data[:, 10], limits))
    window.z_slider.setValue(3)  # and the slider drives the views
    assert ortho.cursor[0] == 3 and window.current_slice == 3


def test_wheel_steps_each_views_slice_and_ctrl_zooms(window):
    ortho = window.ortho
    _wheel(ortho.views["xz"], 120)
    assert tuple(ortho.cursor) == (6, 25, 32)
    _wheel(ortho.views["yz"], -120)
    _wheel(ortho.views["yz"], -120)
    assert tuple(ortho.cursor) == (6, 25, 30)
    before = ortho.views["xy"].view_box.viewRange()
    _wheel(ortho.views["xy"], 120)
    assert ortho.cursor[0] == 7 and ortho.views["xy"].view_box.viewRange() == before
    _wheel(ortho.views["xy"], 120, Qt.KeyboardModifier.ControlModifier)
    assert ortho.cursor[0] == 7 and ortho.views["xy"].view_box.viewRange() != before


def test_annotate_across_slices_with_undo_keys_and_autosave(window, qtbot):
    ortho = window.ortho
    path = window.annotations.autosave_path
    assert path == window.project.root / "annotations" / "phantom_annotations.csv"
    QTest.keyClick(window, Qt.Key.Key_A)
    assert ortho.annotate and window.annotate_box.isChecked()

    window.set_slice(2)
    _click(ortho.views["xy"], NUCLEI[0])
    np.testing.assert_allclose(window.annotations.pending_start, NUCLEI[0], atol=0.2)
    assert len(window.annotations) == 0 and not path.exists()
    # The half-placed pair is drawn (a ring) and survives a change of slice.
    window.set_slice(3)
    from cellpol_app.arrows import zoom_scale

    xy = ortho.views["xy"]
    assert xy.dots.data["size"].tolist() == pytest.approx(
        [ortho.pending_size * zoom_scale(xy.pixels_per_voxel())])
    assert ortho.views["xz"].dots.data["size"].tolist() == []  # y 12 is far from y 24
    _click(ortho.views["xy"], GOLGI[0])
    assert window.annotations.pending_start is None and window.annotations.ids == [1]
    pair = window.annotations.get(1)
    np.testing.assert_allclose(pair.start, NUCLEI[0], atol=0.2)
    np.testing.assert_allclose(pair.end, GOLGI[0], atol=0.2)
    saved = read_vectors(path)
    np.testing.assert_allclose(saved.start, [NUCLEI[0]], atol=0.2)
    assert window.pairs_proxy.rowCount() == 1 and ortho.selected == 1
    ids, level = ortho.visible("xy", "pairs")
    assert ids.tolist() == [1] and level.tolist() == [0]
    ids, level = ortho.visible("xz", "pairs")  # xz at y = 24: 10 rows away, hidden
    assert ids.tolist() == []
    # The manifest now lists the annotations.
    from cellpol_app.project import Project

    entry = Project.load(window.project.root).images[0]
    assert entry.annotations == "annotations/phantom_annotations.csv"
    assert entry.voxel_size == VOXEL

    window.activateWindow()
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(window.annotations) == 0 and len(read_vectors(path)) == 0
    QTest.keyClick(window, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.annotations.ids == [1] and len(read_vectors(path)) == 1

    assert ortho.selected is None  # undo dropped the selection of the removed pair
    ortho.select(1)
    QTest.keyClick(window, Qt.Key.Key_Delete)
    assert len(window.annotations) == 0 and len(read_vectors(path)) == 0
    window.undo_stack.undo()
    assert window.annotations.ids == [1]

    # Esc drops a half-placed pair.
    _click(ortho.views["xy"], (3, 40, 40))
    assert window.annotations.pending_start is not None
    QTest.keyClick(window, Qt.Key.Key_Escape)
    assert window.annotations.pending_start is None and window.annotations.ids == [1]


def test_snap_goes_to_the_3d_maximum(window):
    ortho = window.ortho
    window.set_annotate(True)
    QTest.keyClick(window, Qt.Key.Key_S)
    assert ortho.snap
    window.set_slice(5)  # one slice above both blobs of cell 1
    _click(ortho.views["xy"], (5, 29, 27))
    np.testing.assert_array_equal(window.annotations.pending_start, NUCLEI[1])
    _click(ortho.views["xy"], (5, 35, 32))  # snaps on the golgi (end) channel
    pair = window.annotations.get(window.annotations.ids[0])
    np.testing.assert_array_equal(pair.start, NUCLEI[1])
    np.testing.assert_array_equal(pair.end, GOLGI[1])


def test_drag_endpoint_is_one_undo_step(window):
    ortho = window.ortho
    window.set_annotate(True)
    window.set_slice(6)
    window.annotations.add_pair(NUCLEI[1], GOLGI[1])
    pid = window.annotations.ids[0]
    _drag(ortho.views["xy"], GOLGI[1], (6, 40, 44))
    end = window.annotations.get(pid).end
    assert end[0] == 6  # the depth is kept
    np.testing.assert_allclose(end[1:], [40, 44], atol=0.3)
    assert window.undo_stack.count() == 1
    np.testing.assert_allclose(read_vectors(window.annotations.autosave_path).end[0], end,
                               atol=1e-4)  # 4 decimals in the CSV
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.annotations.get(pid).end, GOLGI[1])
    # Dragging empty space pans instead.
    before = ortho.views["xy"].view_box.viewRange()
    _drag(ortho.views["xy"], (6, 5, 5), (6, 15, 15))
    assert window.undo_stack.index() == 0
    assert ortho.views["xy"].view_box.viewRange() != before


def test_table_sorts_centres_and_repairs(window):
    ortho = window.ortho
    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    table, proxy = window.pairs_table, window.pairs_proxy
    assert proxy.rowCount() == 3
    table.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # start x
    assert [proxy.index(r, 1).data() for r in range(3)] == ["50.0", "30.0", "14.0"]
    lengths = [proxy.index(r, 7).data(Qt.ItemDataRole.UserRole) for r in range(3)]
    # Pair 3: d = (1, 6, 4) voxels = (1.0, 3.0, 1.0) µm.
    assert lengths[0] == pytest.approx(np.sqrt(1 + 9 + 1))
    index = proxy.index(0, 0)
    QTest.mouseClick(table.viewport(), LEFT, NOMOD, table.visualRect(index).center())
    assert ortho.selected == 3
    mid = (np.array(NUCLEI[2]) + np.array(GOLGI[2])) / 2
    assert tuple(ortho.cursor) == tuple(np.rint(mid).astype(int))
    (x0, x1), (y0, y1) = ortho.views["xy"].view_box.viewRange()
    assert (x0 + x1) / 2 == pytest.approx(mid[2], abs=0.5)
    assert (y0 + y1) / 2 == pytest.approx(mid[1], abs=0.5)

    # Re-pair: two rows selected, R swaps their ends.
    table.selectRow(0)
    QTest.mouseClick(table.viewport(), LEFT, Qt.KeyboardModifier.ControlModifier,
                     table.visualRect(proxy.index(2, 0)).center())
    assert sorted(window.selected_rows_ids()) == [1, 3]
    window.activateWindow()
    QTest.keyClick(window, Qt.Key.Key_R)
    np.testing.assert_array_equal(window.annotations.get(1).end, GOLGI[2])
    np.testing.assert_array_equal(window.annotations.get(3).end, GOLGI[0])
    window.undo_stack.undo()
    np.testing.assert_array_equal(window.annotations.get(1).end, GOLGI[0])


def test_reopen_project_restores_annotations(window, qtbot, phantom, errors):
    from cellpol_app.annotator import AnnotatorWindow

    window.annotations.add_pair(NUCLEI[0], GOLGI[0])
    window.annotations.add_pair(NUCLEI[1], GOLGI[1])
    root = window.project.root
    other = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(other)
    assert other.open_project(root)
    assert other.image_path == phantom[0] and other.annotations.ids == [1, 2]
    np.testing.assert_array_equal(other.annotations.get(2).end, GOLGI[1])
    assert other.pairs_proxy.rowCount() == 2 and not errors
    # Export and import CellPol CSVs.
    out = root.parent / "exported.csv"
    assert other.export_annotations(out)
    assert len(read_vectors(out)) == 2
    other.annotations.add_pair((0, 0, 0), (0, 0, 1))
    assert other.import_annotations(out, mode="replace") and other.annotations.ids == [1, 2]
    assert len(read_vectors(other.annotations.autosave_path)) == 2


def test_2d_image_has_only_xy(qtbot, tmp_path):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    plane = np.zeros((2, 30, 40), np.uint16)
    plane[0, 10, 10] = plane[1, 20, 30] = 1000
    path = tmp_path / "flat.ome.tif"
    write_ome_tiff(path, plane, voxel_size=(1.0, 0.5, 0.5))
    assert w.load_image(path, background=False)
    assert w.ortho.views["xy"].isVisible()
    assert not w.ortho.views["xz"].isVisible() and not w.ortho.views["yz"].isVisible()
    w.set_annotate(True)
    w.set_snap(True)
    _click(w.ortho.views["xy"], (0, 11, 11))
    _click(w.ortho.views["xy"], (0, 19, 29))
    pair = w.annotations.get(1)
    np.testing.assert_array_equal(pair.start, [0, 10, 10])
    np.testing.assert_array_equal(pair.end, [0, 20, 30])
    assert w.annotations.to_table().ndim == 2


def test_screenshot_with_project(qapp, phantom, tmp_path, capsys):
    from cellpol_app.main import main
    from cellpol_app.project import Project

    image, _ = phantom
    project = Project.create(tmp_path / "p")
    entry = project.add_image(image, voxel_size=VOXEL)
    project.save_annotations(entry, VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float)))
    pred = project.root / "predictions" / "phantom_pred.csv"
    write_vectors(pred, VectorTable(np.array(NUCLEI[:1], float), np.array(GOLGI[:1], float),
                                    score=[0.9]))
    project.add_prediction(entry, pred)
    out = tmp_path / "shot.png"
    assert main(["--project", str(project.root), "--screenshot", str(out),
                 "--size", "900", "600"]) == 0
    img = QImage(str(out)).convertToFormat(QImage.Format.Format_RGB888)
    assert (img.width(), img.height()) == (900, 600)
    bpl = img.bytesPerLine()
    rgb = np.frombuffer(img.constBits(), np.uint8, count=600 * bpl).reshape(600, bpl)
    rgb = rgb[:, :900 * 3].reshape(600, 900, 3).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert ((g > 120) & (g > 2 * r + 30)).sum() > 50  # start channel
    assert ((r > 120) & (r > 2 * g + 30)).sum() > 50  # end channel
    # Predictions (blue) are drawn: bluish pixels the image itself cannot make.
    assert ((b > 150) & (b > r + 60)).sum() > 5
    assert main(["--project", str(tmp_path / "nowhere"), "--screenshot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not a CellPol project" in err and err.count("\n") == 1


def test_status_text_for_3d_points(window, phantom):
    _, data = phantom
    text = window.point_text((6, 30, 30))
    assert "x 30  y 30  z 6 (voxels)" in text
    assert "7.50, 15.00, 6.00 µm" in text  # x*0.25, y*0.5, z*1.0
    assert f"nucleus {data[0, 6, 30, 30]}" in text and f"golgi {data[1, 6, 30, 30]}" in text
    assert "µm" in window.point_text((6, -5, 3)) and "x 3 " not in window.point_text((6, -5, 3))
    seen = []
    window.ortho.hovered.connect(lambda p, name: seen.append(name))
    view = window.ortho.views["xz"]
    vp = view.viewport()
    pos = QPointF(view.view_to_widget((4, 24, 10)))
    # A synchronous move event (QTest.mouseMove goes through the window system).
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, pos, vp.mapToGlobal(pos),
                                           Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                           NOMOD))
    assert seen and seen[-1] == "xz"
    assert "x 10  y 24  z 4" in window.position_label.text()


def test_accept_predictions_above_a_score(window, tmp_path):
    pred = tmp_path / "pred.csv"
    write_vectors(pred, VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float),
                                    score=[0.9, 0.3, 0.6]))
    assert window.load_vectors(pred)
    window.annotations.add_pair((1, 1, 1), (1, 1, 2))
    assert window.accept_predictions(min_score=0.5) == 2
    assert window.annotations.ids == [1, 2, 3]
    np.testing.assert_array_equal(window.annotations.get(3).start, NUCLEI[2])
    assert len(read_vectors(window.annotations.autosave_path)) == 3
    window.undo_stack.undo()  # one step removes them all
    assert window.annotations.ids == [1]
    assert window.accept_predictions(min_score=0.95) == 0 and window.undo_stack.count() == 1
    assert window.accept_predictions() == 3 and len(window.annotations) == 4


def test_layer_panel_channels_and_overlays(window, tmp_path):
    ortho, panel = window.ortho, window.layer_panel
    xy = ortho.views["xy"]
    before = xy.rgb.copy()
    assert panel.boxes["start"].text() == "start: nucleus"
    panel.boxes["end"].setChecked(False)  # hide the end (red) channel everywhere
    assert not xy.rgb[..., 0].any() and not ortho.views["yz"].rgb[..., 0].any()
    np.testing.assert_array_equal(xy.rgb[..., 1], before[..., 1])
    panel.sliders["start"].setValue(50)
    expected = (before[..., 1].astype(np.float32) * 0.5 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(xy.rgb[..., 1], expected)
    panel.boxes["end"].setChecked(True)
    panel.sliders["start"].setValue(100)
    np.testing.assert_array_equal(xy.rgb, before)

    window.set_slice(6)
    window.annotations.add_pair(NUCLEI[1], GOLGI[1])
    assert len(xy.dots.data) == 2
    panel.sliders["pairs"].setValue(30)
    assert xy.dots.opacity() == pytest.approx(0.3)
    assert xy.arrows["pairs"].opacity() == pytest.approx(0.3) and len(xy.arrows["pairs"]) == 1
    panel.boxes["pairs"].setChecked(False)
    assert len(xy.dots.data) == 0 and ortho.visible("xy", "pairs")[0].tolist() == []
    # The vectors checkbox of the panel and the bar stay in step.
    panel.boxes["vectors"].setChecked(False)
    assert not window.vectors_box.isChecked() and not ortho.show_vectors
    window.vectors_box.setChecked(True)
    assert panel.boxes["vectors"].isChecked() and ortho.show_vectors


def test_export_views_png(window, tmp_path, errors):
    out = tmp_path / "views.png"
    assert window.export_views(out)
    img = QImage(str(out))
    assert (img.width(), img.height()) == (window.ortho.width(), window.ortho.height())
    assert not window.export_views(tmp_path / "missing_dir" / "x.png")
    assert len(errors) == 1 and "x.png" in errors[0][2]


def test_interactive_bad_project_shows_dialog_then_quits(qapp, tmp_path, errors):
    from PySide6.QtCore import QTimer

    from cellpol_app.main import main

    QTimer.singleShot(10000, qapp.quit)  # safety net: never hang the test run
    image = tmp_path / "none.tif"  # a missing image too: no demo loading, two dialogs
    assert main([str(image), "--project", str(tmp_path / "nowhere"), "--quit-after", "0.3"]) == 0
    messages = [e[2] for e in errors]
    assert "not a CellPol project" in messages[0] and "nowhere" in messages[0]
    assert "none.tif" in messages[1] and len(messages) == 2
