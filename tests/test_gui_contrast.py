"""Per-channel contrast (limits on a histogram, gamma, colour, visibility), shared by the
slice views and the 3D view and saved in the project."""

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtWidgets import QApplication  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (6, 32, 40)
VOXEL = (1.0, 0.5, 0.5)


@pytest.fixture
def phantom(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(100, 4000, (2,) + SHAPE).astype(np.uint16)
    path = tmp_path / "cells.ome.tif"
    write_ome_tiff(path, data, voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    return path, data


def _window(qtbot, project, image):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    w.set_project(project)
    assert w.load_image(image, background=False)
    QApplication.processEvents()
    return w


@pytest.fixture
def window(qtbot, phantom, tmp_path):
    from cellpol_app.project import Project

    return _window(qtbot, Project.create(tmp_path / "proj"), phantom[0])


def test_limits_change_the_slices_and_the_3d_clim(window, phantom):
    from cellpol_app.viewer import composite_rgb

    _, data = phantom
    panel, ortho = window.contrast_panel, window.ortho
    assert window.contrast_dock.isVisible()
    start, end = panel.channels
    assert start.visible_box.text() == "start: nucleus" and end.visible_box.text() == "end: golgi"
    np.testing.assert_allclose(start.limits, window.loaded.limits[0])
    assert start.curve.getData()[1].max() > 0  # a histogram is drawn
    before = ortho.views["xy"].rgb.copy()
    start.region.setRegion((500, 1500))  # as a drag of the band's edges does
    z = ortho.cursor[0]
    limits = np.array([(500, 1500), window.loaded.limits[1]])
    expected = composite_rgb(data[:, z], limits)
    np.testing.assert_array_equal(ortho.views["xy"].rgb, expected)
    assert not np.array_equal(before, expected)
    assert tuple(window.view3d.volumes[0].clim) == (500, 1500)
    assert (start.min_spin.value(), start.max_spin.value()) == (500, 1500)
    end.max_spin.setValue(2000)  # typing a value
    assert tuple(window.view3d.volumes[1].clim)[1] == 2000
    assert ortho.limits[1][1] == 2000
    start.reset_limits()
    np.testing.assert_allclose(ortho.limits[0], window.loaded.limits[0])
    np.testing.assert_allclose(window.view3d.volumes[0].clim, window.loaded.limits[0])


def test_gamma_colour_and_visibility(window, phantom):
    from cellpol_app.viewer import composite_rgb

    _, data = phantom
    panel, ortho = window.contrast_panel, window.ortho
    start, end = panel.channels
    z = ortho.cursor[0]
    start.gamma_spin.setValue(0.5)
    expected = composite_rgb(data[:, z], window.loaded.limits, gammas=[0.5, 1.0])
    np.testing.assert_array_equal(ortho.views["xy"].rgb, expected)
    assert window.view3d.volumes[0].gamma == pytest.approx(0.5)
    end.set_color("#0000ff")  # what choosing a colour in the dialog does
    rgb = ortho.views["xy"].rgb
    assert rgb[..., 2].max() > 200  # the end channel is blue now
    assert window.view3d.colors[1] == (0.0, 0.0, 1.0)
    assert window.channel_colors[1] == "#0000ff" and "rgb(0,0,255)" in window.legend.text()
    assert not end.color_button.icon().isNull()
    shown = ortho.views["xy"].rgb.copy()
    end.visible_box.setChecked(False)
    start_only = composite_rgb(data[:, z], window.loaded.limits, gammas=[0.5, 1.0],
                               colors=[(60, 230, 60), (0, 0, 255)], weights=[1, 0])
    np.testing.assert_array_equal(ortho.views["xy"].rgb, start_only)
    assert not window.view3d.volumes[1].visible
    assert not window.layer_panel.boxes["end"].isChecked()  # one setting, two boxes
    window.layer_panel.boxes["end"].setChecked(True)
    assert end.visible_box.isChecked()
    np.testing.assert_array_equal(ortho.views["xy"].rgb, shown)


def test_settings_persist_through_project_save_and_load(qtbot, window, phantom):
    from cellpol_app.contrast import save_contrast
    from cellpol_app.project import Project

    start, end = window.contrast_panel.channels
    start.set_limits(300, 2500)
    end.gamma_spin.setValue(1.7)
    end.set_color("#ff00ff")
    start.visible_box.setChecked(False)
    assert save_contrast(window)  # what the panel's timer does after edits
    root = window.project.root
    saved = json.loads((root / "cellpol_project.json").read_text())["images"][0]
    assert saved["display"][0] == {"limits": [300.0, 2500.0], "gamma": 1.0, "visible": False}
    assert saved["display"][1]["limits"] is None and saved["display"][1]["gamma"] == 1.7
    assert saved["colors"][1] == "#ff00ff"

    other = _window(qtbot, Project.load(root), phantom[0])
    s2, e2 = other.contrast_panel.channels
    assert s2.limits == (300, 2500) and not s2.visible_box.isChecked()
    assert e2.gamma_spin.value() == pytest.approx(1.7) and e2.color == "#ff00ff"
    assert tuple(other.ortho.limits[0]) == (300, 2500)
    assert tuple(other.view3d.volumes[0].clim) == (300, 2500)
    assert not other.view3d.volumes[0].visible and other.ortho.gammas[1] == pytest.approx(1.7)


def test_the_panel_saves_by_itself_after_an_edit(qtbot, window):
    start = window.contrast_panel.channels[0]
    start.set_limits(200, 900)
    manifest = window.project.root / "cellpol_project.json"
    qtbot.waitUntil(lambda: "display" in json.loads(manifest.read_text())["images"][0],
                    timeout=3000)


def test_old_projects_load_and_bad_display_is_one_clear_error(tmp_path, phantom):
    from cellpol_app.project import MANIFEST_NAME, Project
    from cellpol_core.errors import InputError

    root = tmp_path / "old"
    root.mkdir()
    entry = {"path": "../cells.ome.tif", "channels": [0, 1], "colors": ["#3ce63c", "#ff3c3c"],
             "voxel_size": None, "annotations": None, "predictions": []}
    (root / MANIFEST_NAME).write_text(json.dumps(
        {"format": "cellpol-project", "version": 1, "images": [entry], "models": []}))
    project = Project.load(root)
    assert project.images[0].display is None
    project.save()  # an old project stays without a display entry
    assert "display" not in json.loads((root / MANIFEST_NAME).read_text())["images"][0]
    entry["display"] = [{"limits": [5, 1], "gamma": 1}]
    (root / MANIFEST_NAME).write_text(json.dumps(
        {"format": "cellpol-project", "version": 1, "images": [entry], "models": []}))
    with pytest.raises(InputError, match="images\\[0\\]: display"):
        Project.load(root)


def test_histogram_subsamples_big_volumes():
    from cellpol_app.contrast import histogram

    volume = np.arange(4_000_000, dtype=np.float32).reshape(4, 1000, 1000)
    x, counts = histogram(volume, bins=10, samples=100_000)
    assert counts.sum() == 100_000 and len(x) == 10
    assert x[0] < 400_000 and x[-1] > 3_600_000
