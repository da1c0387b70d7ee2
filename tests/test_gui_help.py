"""Help for a new user: quick start, shortcut sheet, the README, tips on every control, words
instead of jargon; training feedback; evaluating partial annotations; the Analysis reference."""

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, open_window
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
)

from cellpol_core.io.vectors import VectorTable  # noqa: E402

pytestmark = [pytest.mark.gui]


@pytest.fixture
def window(qtbot, tmp_path, errors):
    w = open_window(qtbot, tmp_path)
    w.resize(1366, 768)
    w.show()
    qtbot.waitExposed(w)
    return w


# ----------------------------------------------------------------------------- help

def test_quick_start_names_the_six_steps(window):
    dialog = window.show_quick_start()
    text = dialog.text()
    steps = ["Open", "Annotate", "Predict", "Correct", "Fine-tune", "Statistics"]
    positions = [text.index(f"{s}.") for s in steps]
    assert positions == sorted(positions)
    assert window.quick_start_action.shortcut().toString() == "F1"


def test_shortcut_sheet_lists_the_windows_keys(window):
    from cellpol_app.help import shortcut_rows

    rows = dict(shortcut_rows(window))
    assert rows["A"] == "Annotation mode" and rows["S"] == "Snap to maximum"
    assert rows["Ctrl+Z"] == "Undo" and rows["Ctrl+E"].startswith("Evaluate")
    assert rows["Ctrl+wheel"] == "Zoom"
    text = window.show_shortcuts().text()
    assert "Annotation mode" in text and "Ctrl+wheel" in text


def test_user_guide_is_the_shipped_readme(window):
    from cellpol_app.help import find_readme, readme_text

    text, base = readme_text()
    assert "## Desktop app" in text
    assert find_readme() is not None and base == find_readme().parent
    shown = window.show_readme().text()
    assert "Desktop app" in shown and "##" not in shown  # rendered, not raw markdown


def test_readme_from_the_package_metadata_when_no_file(monkeypatch):
    import cellpol_app.help as help_module

    monkeypatch.setattr(help_module, "find_readme", lambda: None)
    text, base = help_module.readme_text()
    assert base is None and "Desktop app" in text


def test_bundle_ships_the_readme():
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[1] / "build_spec" / "cellpol.spec").read_text()
    assert '"README.md"' in spec


def test_every_menu_action_says_what_it_does(window):
    from cellpol_app.help import fill_action_tips, menu_actions

    window.recent.add(window.image_path)  # an Open Recent entry too
    assert fill_action_tips(window) == []
    missing = [a.text() for a in menu_actions(window) if not a.statusTip()]
    assert not missing


def _untipped(root):
    out = []
    for kind in (QAbstractButton, QAbstractSpinBox, QComboBox):
        for w in root.findChildren(kind):
            # Qt's own parts (table corner, dock title and tab scroll buttons) aside
            internal = w.objectName().startswith("qt_") or \
                type(w).__name__ in ("QToolButton", "QAbstractButton")
            if not w.toolTip() and not w.statusTip() and not internal:
                out.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}")
    return out


def test_every_control_of_the_docks_and_dialogs_has_a_tooltip(window, qtbot):
    from cellpol_app.dialogs import ChannelDialog

    panels = {"bar": window.centralWidget(), "training": window.loss_dock.widget(),
              "evaluation": window.metrics_dock.widget(), "analysis": window.analysis_dock.widget(),
              "synthetic": window.synthetic_dock.widget(), "status": window.statusBar()}
    missing = {name: _untipped(w) for name, w in panels.items()}
    dialog = window.make_train_dialog()
    qtbot.addWidget(dialog)
    missing["train dialog"] = _untipped(dialog)
    channels = ChannelDialog(window.loaded.image)
    qtbot.addWidget(channels)
    missing["channel dialog"] = _untipped(channels)
    assert {k: v for k, v in missing.items() if v} == {}


def test_numbers_and_words_not_jargon():
    from cellpol_app.dialogs import MetricsPanel, format_number, tune_report_html

    assert format_number(0.7272727272727273) == "0.727"
    assert format_number(7.0) == "7" and format_number(None) == "–"
    panel = MetricsPanel()
    headers = " ".join(panel.header(k) for k in range(panel.table.columnCount()))
    assert "tau" not in headers and "tpr" not in headers.lower().split()
    report = {"level": 5, "f1_before": 0.41, "f1_after": 0.6666666666666666, "n_images": 2,
              "embedding": True,
              "thresholds": {"tau": [0.4, 0.35], "d_min_um": [2.0, 1.5], "d_max_um": 12.5,
                             "embed_weight": 0.0, "delta": 2.0},
              "table": [{"level": 5, "tpr": 0.5, "fdr": 0.7272727272727273}]}
    text = tune_report_html(report)
    for jargon in ("tau", "d_min", "λ", "delta", "0.7272"):
        assert jargon not in text
    assert "false 73 %" in text and "0.41 → 0.67" in text
    panel.deleteLater()


# ----------------------------------------------------------------------------- training

def _fake_training(images, tables, *, outdir, cancel=None, **kwargs):
    import time

    from cellpol_core.jobs import ProgressEvent

    yield ProgressEvent("train", 0, 4, message="training on cpu")
    while not cancel.cancelled:
        time.sleep(0.01)
        yield ProgressEvent("train", 1, 4, message="epoch 1/2 step 1/2",
                            data={"epoch": 1, "eta_s": 36.0})
    cancel.check()


def test_training_panel_waits_then_says_cancelled(window, qtbot, monkeypatch):
    import cellpol_core.detection.train as core_train

    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    monkeypatch.setattr(core_train, "train", _fake_training)
    assert window.train(epochs=2, name="m")
    qtbot.waitUntil(lambda: "ETA 0:36" in window.training_status.text(), timeout=10000)
    assert window.loss_waiting.isVisible() and not window.loss_plot.isVisible()
    assert "first epoch" in window.loss_waiting.text()
    assert window.loss_dock.windowTitle() == "Training"  # a short tab title
    window.cancel_job()
    wait_job(qtbot, window.jobs)
    text = window.training_status.text()
    assert "cancelled after 0 epochs" in text and "ETA" not in text


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_inside_the_annotated_region_says_what_it_assumed(window):
    # Two annotated cells; the prediction finds them and one far unannotated cell.
    for s, e in zip(NUCLEI[:2], GOLGI[:2]):
        window.annotations.add_pair(s, e)
    window.set_vectors(VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float)))
    whole = window.evaluate(border_um=0.0, region="image")
    assert (whole.levels[5].tp, whole.levels[5].fp) == (2, 1)
    assert "annotations are complete" in window.metrics_panel.title.text()
    inside = window.evaluate(border_um=0.0, region="annotated", margin_um=1.0)
    assert (inside.levels[5].tp, inside.levels[5].fp, inside.pred_outside) == (2, 0, 1)
    title = window.metrics_panel.title.text()
    assert "Assumed" in title and "bounding box" in title and "1 predicted" in title
    # The dock's own controls choose the same.
    panel = window.metrics_panel
    panel.set_region_mode("image")
    panel.evaluate_button.click()
    assert window.evaluation.region is None
    panel.set_region_mode("annotated")
    panel.evaluate_button.click()
    assert window.evaluation.region is not None


# ----------------------------------------------------------------------------- analysis

def test_reference_arrow_goes_with_the_dock_and_can_be_drawn(window, qtbot):
    from cellpol_app.analysis_panel import show_analysis

    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    show_analysis(window)
    panel = window.analysis_panel
    panel.set_reference(30.0)
    assert panel.image_arrow_line.isVisible()
    window.analysis_dock.close()
    assert not panel.image_arrow_line.isVisible()  # no stale arrow once closed
    show_analysis(window)
    assert panel.image_arrow_line.isVisible()
    # Drag on the XY view, right and up by the same µm: 45°.
    view = window.ortho.views["xy"]
    assert window.voxel_size == (1.0, 0.5, 0.25)  # 8 y voxels = 16 x voxels = 4 µm
    z = window.ortho.cursor[0]
    start = np.array([z, 30.0, 20.0])
    end = start + np.array([0.0, -8.0, 16.0])
    panel.draw_button.setChecked(True)
    a, b = view.view_to_widget(start), view.view_to_widget(end)
    pairs_before = len(window.annotations)
    QTest.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     a)
    for t in np.linspace(0, 1, 6)[1:]:
        QTest.mouseMove(view.viewport(), QPoint(int(a.x() + t * (b.x() - a.x())),
                                                int(a.y() + t * (b.y() - a.y()))))
    QTest.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier, b)
    assert panel.reference_deg == pytest.approx(45.0, abs=3.0)
    assert not panel.draw_button.isChecked() and len(window.annotations) == pairs_before
    # Exact from points.
    assert panel.reference_from_drag([0, 10, 10], [0, 10, 30]) == 0.0
    assert panel.reference_from_drag([0, 10, 10], [0, 0, 10]) == 90.0
    assert panel.reference_from_drag([0, 10, 10], [0, 10, 10.2]) is None


def test_analysis_columns_fit_a_side_dock(window, qtbot):
    from cellpol_app.analysis_panel import show_analysis

    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    show_analysis(window)
    panel = window.analysis_panel
    panel.set_reference(0.0)
    qtbot.wait(50)
    table = panel.table
    assert panel.split.orientation() == Qt.Orientation.Vertical  # rose under the table
    shown = [k for k in range(table.columnCount()) if not table.isColumnHidden(k)]
    width = sum(table.columnWidth(k) for k in shown)
    assert width <= table.viewport().width() + 2 or \
        window.analysis_dock.width() >= width  # every column on screen
    labels = [table.horizontalHeaderItem(k).text() for k in shown]
    assert "V-test\np" in labels and "angle to\nref. °" in labels
