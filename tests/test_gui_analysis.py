"""The Analysis dock: statistics table, rose plot, reference direction, report export."""

import csv
import math

import numpy as np
import pytest
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")


from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import VectorTable  # noqa: E402

pytestmark = pytest.mark.gui

# Two vectors pointing right (+x) and two pointing up on screen (-y), 2D, 4 px long.
START = [(0, 10, 10), (0, 20, 10), (0, 30, 30), (0, 30, 40)]
END = [(0, 10, 14), (0, 20, 14), (0, 26, 30), (0, 26, 40)]


def _table():
    return VectorTable(np.array(START, float), np.array(END, float), ndim=2)


@pytest.fixture
def window(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow

    rng = np.random.default_rng(0)
    image = tmp_path / "cells.ome.tif"
    write_ome_tiff(image, rng.integers(0, 200, (2, 48, 64)).astype(np.uint16),
                   voxel_size=(1.0, 0.5, 0.5), channel_names=["nucleus", "golgi"])
    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert w.load_image(image, background=False)
    for s, e in zip(START, END):
        w.annotations.add_pair(s, e)
    return w


def test_panel_stats_of_hand_made_vectors(qtbot):
    from cellpol_app.analysis_panel import HEADERS, AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_tables([("four", _table(), (1.0, 1.0, 1.0))])
    assert panel.table.rowCount() == 1
    assert panel.table.columnCount() == len(HEADERS)
    assert panel.cell_text(0, "n") == "4"
    # Mean of 0°, 0°, 90°, 90° is 45°, R = |(1/2, 1/2)| = √2/2.
    assert panel.value(0, "mean_azimuth_deg") == pytest.approx(45.0)
    assert panel.cell_text(0, "mean azimuth °") == "45.0"
    assert panel.value(0, "resultant_length") == pytest.approx(math.sqrt(0.5))
    assert panel.cell_text(0, "R") == "0.707"
    assert panel.cell_text(0, "V-test p") == ""  # no reference yet
    assert panel.cell_text(0, "to ref. °") == ""
    assert panel.cell_text(0, "3D R") == ""  # 2D vectors


def test_reference_updates_vtest(qtbot):
    from scipy.stats import norm

    from cellpol_app.analysis_panel import AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_tables([("four", _table(), (1.0, 1.0, 1.0))])
    panel.set_reference(45.0)
    # u = n R cos(mean - ref) sqrt(2/n) = 4 · √2/2 · 1 · √(1/2) = 2.
    assert panel.value(0, "vtest_p") == pytest.approx(norm.sf(2.0))
    assert panel.cell_text(0, "V-test p") == f"{norm.sf(2.0):.3g}"
    # the mean azimuth stays absolute; the mean to the reference is relative to it
    assert panel.value(0, "mean_azimuth_deg") == pytest.approx(45.0)
    assert panel.cell_text(0, "mean azimuth °") == "45.0"
    assert panel.value(0, "mean_azimuth_to_reference_deg") == pytest.approx(0.0, abs=1e-9)
    assert panel.value(0, "mean_angle_to_reference_deg") == pytest.approx(45.0)
    panel.set_reference(60.0)  # 45° is 15° clockwise of it: shown signed
    assert panel.value(0, "mean_azimuth_to_reference_deg") == pytest.approx(345.0)
    assert panel.cell_text(0, "to ref. °") == "-15.0"
    assert panel.cell_text(0, "mean azimuth °") == "45.0"
    panel.set_reference(225.0)  # opposite: u = -2
    assert panel.value(0, "vtest_p") == pytest.approx(norm.sf(-2.0))
    assert panel.cell_text(0, "V-test p") == f"{norm.sf(-2.0):.3g}"
    panel.set_reference(None)
    assert panel.cell_text(0, "V-test p") == ""
    assert panel.cell_text(0, "to ref. °") == ""


def test_rose_has_bars_in_the_right_sectors(qtbot):
    from cellpol_app.analysis_panel import AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_tables([("four", _table(), (1.0, 1.0, 1.0))])
    assert len(panel.rose_bars) == 2
    assert panel.counts.sum() == 4
    assert panel.counts[0] == 2 and panel.counts[9] == 2  # 0-10° and 90-100°
    # The "up" wedge lies above the centre: 90° is up on screen.
    up = panel.rose_bars[1].path().boundingRect()
    assert up.bottom() > 0.9 and abs(up.center().x()) < 0.2
    x, y = panel.mean_line.getData()
    np.testing.assert_allclose([x[1], y[1]], [0.5, 0.5], atol=1e-12)
    panel.set_reference(90.0)
    x, y = panel.rose_reference.getData()
    assert x[1] == pytest.approx(0.0, abs=1e-12) and y[1] == pytest.approx(1.05)


def test_dock_in_window_follows_annotations_and_draws_arrow(window, qtbot):
    panel = window.analysis_panel
    texts = [a.text() for a in window.menuBar().actions()]
    view_menu = window.menuBar().actions()[texts.index("&View")].menu()
    assert "&Analysis" in [a.text() for a in view_menu.actions()]
    window.analysis_action.trigger()
    assert window.analysis_dock.isVisibleTo(window)
    assert panel.cell_text(0, "n") == "4"
    assert panel.cell_text(0, "image") == "cells"
    window.annotations.add_pair((0, 40, 40), (0, 40, 44))  # a third vector to the right
    assert panel.cell_text(0, "n") == "5"
    panel.set_source("predictions")
    assert panel.cell_text(0, "n") == ""  # none yet
    window.set_vectors(_table())
    panel.refresh()
    assert panel.cell_text(0, "n") == "4"
    assert not panel.image_arrow_line.isVisible()
    panel.set_reference(90.0)
    assert panel.image_arrow_line.isVisible()
    h, v = panel.image_arrow_line.getData()
    # From the image centre (x 31.5, y 23.5), 0.35 · 48 px upward (smaller y).
    np.testing.assert_allclose([h[0], v[0], h[1], v[1]], [31.5, 23.5, 31.5, 23.5 - 16.8])


def test_export_report_writes_summary_and_png(window, qtbot, tmp_path, errors):
    panel = window.analysis_panel
    panel.set_reference(30.0)
    out = tmp_path / "report"
    assert panel.export_report(out, n_bootstrap=50, n_permutations=50)
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not errors
    assert panel.last_report is not None
    with open(out / "summary_per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["cells"]
    assert rows[0]["n"] == "4"
    assert float(rows[0]["mean_azimuth_deg"]) == pytest.approx(45.0)  # absolute
    assert float(rows[0]["mean_azimuth_to_reference_deg"]) == pytest.approx(15.0)
    assert float(rows[0]["reference_azimuth_deg"]) == pytest.approx(30.0)
    assert (out / "summary_per_condition.csv").is_file()
    pngs = list(out.rglob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_export_without_vectors_says_so(qtbot, tmp_path):
    from cellpol_app.analysis_panel import AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_tables([("empty", None, None)])
    assert not panel.export_report(tmp_path / "r")
    assert "No vectors" in panel.note.text()
    assert not (tmp_path / "r").exists()


def test_project_images_get_rows_and_report(window, qtbot, tmp_path, errors):
    from cellpol_app.project import Project

    pairs = window.annotations.to_table()
    window.set_project(Project.create(tmp_path / "proj"))
    window.set_loaded(window.loaded, path=window.image_path)  # joins the project
    window.annotations.replace_all(pairs)
    other = window.project.add_image(tmp_path / "other.ome.tif", voxel_size=(1.0, 0.5, 0.5))
    left = VectorTable(np.array([(0, 5, 9), (0, 9, 9), (0, 13, 9)], float),
                       np.array([(0, 5, 1), (0, 9, 1), (0, 13, 1)], float), ndim=2)
    window.project.save_annotations(other, left)
    jobs_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Jobs")
    assert window.analysis_action in jobs_menu.actions()
    window.analysis_action.trigger()
    panel = window.analysis_panel
    assert [panel.cell_text(i, "image") for i in range(panel.table.rowCount())] == \
        ["cells", "other"]
    assert panel.cell_text(1, "n") == "3"
    assert panel.value(1, "mean_azimuth_deg") == pytest.approx(180.0)
    assert panel.value(1, "resultant_length") == pytest.approx(1.0)
    panel.table.selectRow(1)
    assert panel.counts[18] == 3 and len(panel.rose_bars) == 1  # all in 180-190°
    out = tmp_path / "report"
    assert panel.export_report(out, n_bootstrap=20, n_permutations=20)
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not errors
    with open(out / "summary_per_image.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"cells", "other"}
    assert rows["other"]["n"] == "3" and float(rows["other"]["mean_azimuth_deg"]) == 180.0
    assert (out / "plots" / "other_rose.png").is_file()


def test_side_planes_of_3d_vectors(qtbot):
    from cellpol_app.analysis_panel import AnalysisPanel

    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    # Two vectors along +z, one along +x: xz angles 90°, 90°, 0°.
    start = np.zeros((3, 3))
    end = np.array([(1, 0, 0), (1, 0, 0), (0, 0, 2)], float)
    panel.set_tables([("3d", VectorTable(start, end), (2.0, 1.0, 1.0))])
    panel.set_plane("xz")
    assert panel.cell_text(0, "n") == "3"
    expected = math.degrees(math.atan2(2 / 3, 1 / 3))
    assert panel.value(0, "mean_azimuth_deg") == pytest.approx(expected)
    assert panel.counts[9] == 2 and panel.counts[0] == 1
    assert panel.value(0, "resultant_length_3d") == pytest.approx(math.hypot(2, 1) / 3)
    panel.set_tables([("2d", _table(), None)])  # 2D vectors have no xz plane
    assert panel.cell_text(0, "n") == "" and "no xz plane" in panel.rows[0]["error"]
    assert len(panel.rose_bars) == 0
