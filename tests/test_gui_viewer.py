"""The desktop viewer (cellpol_app.viewer) and its launcher (cellpol_app.main)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QImage, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

import cellpol_core  # noqa: E402
from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import VectorTable, write_vectors  # noqa: E402

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "resources" / "demo" / "demo_3d.ome.tif"
SHAPE = (12, 48, 64)  # Z, Y, X
VOXEL = (1.0, 0.5, 0.25)  # z, y, x µm: x voxels are half as wide as y voxels
# (z, y, x) of one blob per channel and cell; nucleus = start (green), golgi = end (red).
NUCLEI = [(2, 12, 14), (6, 30, 30), (10, 20, 50)]
GOLGI = [(3, 14, 20), (6, 36, 34), (11, 26, 54)]


def _blobs(centres, *, sigma=(1.2, 2.0, 3.0), rng):
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    out = rng.normal(100, 5, SHAPE)
    for cz, cy, cx in centres:
        out += 3000 * np.exp(-(((z - cz) / sigma[0]) ** 2 + ((y - cy) / sigma[1]) ** 2
                               + ((x - cx) / sigma[2]) ** 2) / 2)
    return np.clip(out, 0, 65535).astype(np.uint16)


@pytest.fixture
def phantom(tmp_path):
    rng = np.random.default_rng(1)
    data = np.stack([_blobs(NUCLEI, rng=rng), _blobs(GOLGI, rng=rng)])
    image = tmp_path / "phantom.ome.tif"
    write_ome_tiff(image, data, voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    vectors = tmp_path / "phantom_vectors.csv"
    write_vectors(vectors, VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float)),
                  voxel_size=VOXEL)
    return image, vectors, data


@pytest.fixture
def window(qtbot):
    from cellpol_app.viewer import ViewerWindow

    w = ViewerWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(900, 650)
    w.show()
    qtbot.waitExposed(w)
    return w


def _qimage_to_rgb(img: QImage) -> np.ndarray:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def _green_red_counts(rgb):
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    green = (g > 120) & (g > 2 * r + 30) & (g > 2 * b + 30)
    red = (r > 120) & (r > 2 * g + 30) & (r > 2 * b + 30)
    return int(green.sum()), int(red.sum())


def test_open_image_shows_shape_slices_and_aspect(window, phantom, errors):
    image, _, _ = phantom
    assert window.load_image(image)
    assert not errors
    assert window.n_slices == SHAPE[0] and window.is_3d
    assert window.displayed_rgb.shape == SHAPE[1:] + (3,)
    assert window.displayed_rgb.dtype == np.uint8
    assert window.z_slider.maximum() == SHAPE[0] - 1 and window.z_slider.isVisible()
    assert window.current_slice == SHAPE[0] // 2
    assert window.windowTitle() == "CellPol — phantom.ome.tif"
    assert window.loaded.channels == (0, 1)
    # Screen pixels per x voxel / per y voxel = vx / vy.
    assert window.view_box.state["aspectLocked"] == pytest.approx(VOXEL[2] / VOXEL[1])
    # Voxel centres on integer view coordinates.
    rect = window.image_item.mapRectToParent(window.image_item.boundingRect())
    assert (rect.left(), rect.top(), rect.width(), rect.height()) == (-0.5, -0.5, 64, 48)


def test_z_slider_changes_slice(window, phantom):
    image, _, data = phantom
    window.load_image(image)
    window.z_slider.setValue(2)
    assert window.current_slice == 2
    rgb2 = window.displayed_rgb.copy()
    # The nucleus at z=2 is bright green there, and its golgi (z=3) already reddish.
    z, y, x = NUCLEI[0]
    assert rgb2[y, x, 1] > 200 and rgb2[y, x, 1] > rgb2[y, x, 0]
    np.testing.assert_array_equal(window.image_item.image, rgb2)
    window.z_slider.setValue(10)
    rgb10 = window.displayed_rgb
    assert window.current_slice == 10
    assert rgb10[y, x, 1] < 60  # that nucleus is out of focus at z=10
    zz, yy, xx = NUCLEI[2]
    assert rgb10[yy, xx, 1] > 200
    # Same contrast limits on every slice: brighter raw data, brighter display.
    g = data[0, 10].astype(float).ravel()
    shown = rgb10[..., 1].astype(float).ravel()
    assert np.corrcoef(g, shown)[0, 1] > 0.95
    # The slider and the slice stay in step both ways, and out-of-range values clip.
    window.set_slice(99)
    assert window.current_slice == SHAPE[0] - 1 and window.z_slider.value() == SHAPE[0] - 1


def test_mouse_wheel_steps_slices(window, phantom):
    image, _, _ = phantom
    window.load_image(image)
    window.set_slice(5)
    vp = window.graphics.viewport()
    centre = QPointF(vp.width() / 2, vp.height() / 2)

    def wheel(dy, modifiers=Qt.KeyboardModifier.NoModifier):
        ev = QWheelEvent(centre, vp.mapToGlobal(centre), QPoint(0, 0), QPoint(0, dy),
                         Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(vp, ev)

    before = window.view_box.viewRange()
    wheel(120)
    assert window.current_slice == 6
    wheel(-120)
    wheel(-120)
    assert window.current_slice == 4 and window.z_slider.value() == 4
    assert window.view_box.viewRange() == before  # the wheel did not zoom
    wheel(120, Qt.KeyboardModifier.ControlModifier)  # Ctrl+wheel zooms instead
    assert window.current_slice == 4
    assert window.view_box.viewRange() != before
    window.set_mip(True)
    wheel(120)
    assert window.current_slice == 4


def test_mip_mode_and_vector_fading(window, phantom):
    image, vectors, data = phantom
    window.load_image(image)
    assert window.load_vectors(vectors)
    window.set_slice(6)
    index, level = window.visible_vectors()
    # Vector 0 spans z 2..3 (3 slices away, faint), 1 lies in z 6, 2 spans z 10..11 (hidden).
    assert dict(zip(index.tolist(), level.tolist())) == {0: 3, 1: 0}
    x, y = window._line_items[0].getData()
    np.testing.assert_allclose(x, [NUCLEI[1][2], GOLGI[1][2]])
    np.testing.assert_allclose(y, [NUCLEI[1][1], GOLGI[1][1]])
    assert len(window.dots.data) == 4  # start and end dots of two vectors

    window.mip_box.setChecked(True)
    assert window.mip and not window.z_slider.isEnabled()
    assert window.z_label.text().startswith("MIP")
    rgb = window.displayed_rgb
    for _z, y, x in NUCLEI:  # every nucleus is bright green in the projection
        assert rgb[y, x, 1] > 200
    for _z, y, x in GOLGI:
        assert rgb[y, x, 0] > 200
    index, level = window.visible_vectors()
    assert sorted(index.tolist()) == [0, 1, 2] and not level.any()
    assert len(window.dots.data) == 6
    window.set_mip(False)
    assert window.current_slice == 6 and window.z_slider.isEnabled()
    np.testing.assert_array_equal(window.image_item.image, window.displayed_rgb)


def test_status_bar_shows_voxel_um_and_intensities(window, phantom, qtbot):
    from PySide6.QtTest import QTest

    image, _, data = phantom
    window.load_image(image)
    window.set_slice(6)
    scene_pos = window.view_box.mapViewToScene(QPointF(30, 30))
    view_pos = window.graphics.mapFromScene(scene_pos)
    QTest.mouseMove(window.graphics.viewport(), view_pos)
    qtbot.waitUntil(lambda: "µm" in window.position_label.text(), timeout=2000)
    text = window.position_label.text()
    assert "x 30" in text and "y 30" in text and "z 6" in text
    assert "7.50, 15.00, 6.00 µm" in text  # x*0.25, y*0.5, z*1.0
    assert f"nucleus {data[0, 6, 30, 30]}" in text and f"golgi {data[1, 6, 30, 30]}" in text
    # Outside the image the status describes the image instead.
    assert "µm" in window.position_text(-20, 5) and "x -20" not in window.position_text(-20, 5)


def test_bad_image_shows_dialog_and_window_survives(window, phantom, tmp_path, errors):
    image, _, _ = phantom
    window.load_image(image)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a TIFF file")
    assert not window.load_image(bad)
    assert len(errors) == 1
    parent, title, message = errors[0][:3]
    assert parent is window and "broken.tif" in message
    assert window.isVisible() and window.image_path == image and window.n_slices == SHAPE[0]
    assert not window.load_image(tmp_path / "missing.tif")
    assert len(errors) == 2 and "missing.tif" in errors[1][2]


def test_bad_vectors_csv_shows_dialog(window, phantom, tmp_path, errors):
    image, _, _ = phantom
    window.load_image(image)
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    assert not window.load_vectors(bad)
    assert len(errors) == 1 and "bad.csv" in errors[0][2]
    assert window.vectors is None


def test_2d_single_channel_is_grey_without_slider(window, tmp_path):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 1000, size=(1, 40, 30)).astype(np.uint16)
    plane[0, 10:15, 5:9] = 4000
    path = tmp_path / "grey2d.ome.tif"
    write_ome_tiff(path, plane, voxel_size=(1.0, 0.3, 0.3))
    assert window.load_image(path)
    assert not window.is_3d and window.n_slices == 1
    assert not window.z_slider.isVisible() and not window.mip_box.isVisible()
    rgb = window.displayed_rgb
    assert rgb.shape == (40, 30, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb[12, 6, 0] == 255 and rgb[30, 20, 0] < 200
    text = window.position_text(6, 12)
    assert "x 6  y 12" in text and "1.80, 3.60 µm" in text and "4000" in text
    window.set_mip(True)  # no effect in 2D
    assert not window.mip


def test_drop_image_file_opens_it(window, phantom):
    image, _, _ = phantom
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.image_path == image and window.n_slices == SHAPE[0]
    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(str(image.with_suffix(".txt")))])
    assert window._dropped_paths(other) == []


def test_background_loading(window, phantom, qtbot, tmp_path, errors):
    image, _, _ = phantom
    window.background_load_bytes = 0  # every file is "big"
    assert window.load_image(image)
    qtbot.waitUntil(lambda: window.n_slices == SHAPE[0], timeout=5000)
    assert window.displayed_rgb.shape == SHAPE[1:] + (3,)
    assert window.windowTitle() == "CellPol — phantom.ome.tif"
    bad = tmp_path / "broken.lsm"
    bad.write_bytes(b"garbage")
    window.load_image(bad)
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=5000)
    assert "broken.lsm" in errors[0][2] and window.image_path == image


def test_composite_rgb_by_hand():
    from cellpol_app.viewer import composite_rgb

    grey = composite_rgb(np.array([[[0, 50, 100, 200]]]), [[0, 100]])
    np.testing.assert_array_equal(grey[0, :, 0], [0, 128, 255, 255])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    two = composite_rgb(np.array([[[10, 20]], [[5, 0]]], dtype=np.uint16), [[10, 20], [0, 10]])
    np.testing.assert_array_equal(two[0], [[128, 0, 0], [0, 255, 0]])  # (R=end, G=start, B)


def test_device_label(monkeypatch):
    import sys
    import types

    from cellpol_app import viewer

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        is_available=lambda: True, get_device_name=lambda i: "Fake H100"))
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setattr(viewer, "_device_label", None)
    assert viewer.compute_device_label() == "GPU: Fake H100"
    fake.cuda.is_available = lambda: False
    monkeypatch.setattr(viewer, "_device_label", None)
    assert viewer.compute_device_label() == "CPU"


def test_window_shows_device(qtbot, monkeypatch):
    from cellpol_app import viewer

    monkeypatch.setattr(viewer, "compute_device_label", lambda: "GPU: Test card")
    monkeypatch.setattr(viewer, "_device_label", None)
    w = viewer.ViewerWindow()
    qtbot.addWidget(w)
    qtbot.waitUntil(lambda: w.device_known, timeout=5000)
    assert w.device_label.text() == "Device: GPU: Test card"


def test_interactive_main_bad_path_shows_dialog_then_quits(qapp, tmp_path, errors):
    from PySide6.QtCore import QTimer

    from cellpol_app.main import main

    QTimer.singleShot(10000, qapp.quit)  # safety net: never hang the test run
    assert main([str(tmp_path / "nope.tif"), "--quit-after", "0.3"]) == 0
    assert len(errors) == 1 and "nope.tif" in errors[0][2]


def test_about_shows_version(window, monkeypatch):
    calls = []
    monkeypatch.setattr(QMessageBox, "about", lambda *args: calls.append(args))
    window.show_about()
    assert calls and cellpol_core.__version__ in calls[0][2]


def test_screenshot_of_phantom(qapp, phantom, tmp_path):
    from cellpol_app.main import main

    image, vectors, _ = phantom
    out = tmp_path / "shot.png"
    assert main([str(image), "--vectors", str(vectors), "--screenshot", str(out),
                 "--size", "800", "600"]) == 0
    img = QImage(str(out))
    assert (img.width(), img.height()) == (800, 600)
    green, red = _green_red_counts(_qimage_to_rgb(img))
    assert green > 50 and red > 50


def test_screenshot_bad_path_exits_2(qapp, tmp_path, capsys):
    from cellpol_app.main import main

    out = tmp_path / "shot.png"
    assert main([str(tmp_path / "nope.tif"), "--screenshot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.tif" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(not DEMO.exists(), reason="demo image not generated yet (make demo-data)")
def test_screenshot_of_demo(qapp, tmp_path):
    from cellpol_app.main import main

    out = tmp_path / "demo.png"
    assert main(["--screenshot", str(out)]) == 0
    rgb = _qimage_to_rgb(QImage(str(out)))
    assert rgb.shape == (800, 1200, 3)
    assert rgb.std() > 10  # not blank
    green, red = _green_red_counts(rgb)
    assert green > 200 and red > 200
