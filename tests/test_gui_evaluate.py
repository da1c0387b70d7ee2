"""Evaluate and tune from the window: TPR/FDR vs level curves and the metrics table."""

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, open_window
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")


from cellpol_core.io.vectors import VectorTable  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.gui_jobs]



@pytest.fixture
def window(qtbot, tmp_path, errors):
    return open_window(qtbot, tmp_path)


def test_evaluate_plot_and_table(window, errors):
    assert window.evaluate() is None and len(errors) == 1  # nothing to compare yet
    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    start = np.array(NUCLEI, float)
    end = np.array(GOLGI, float)
    start[1, 2] += 4  # 4 x voxels = 1 µm off, start and end
    end[1, 2] += 4
    start[2, 2] -= 40  # 10 µm off: beyond the loosest end threshold (6 µm)
    end[2, 2] -= 40
    window.set_vectors(VectorTable(start, end))
    result = window.evaluate(border_um=0.0)
    panel = window.metrics_panel
    assert window.metrics_dock.isVisibleTo(window)
    x, tpr = panel.tpr_curve.getData()
    x2, fdr = panel.fdr_curve.getData()
    assert len(x) == len(tpr) == len(x2) == len(fdr) == 14
    assert list(x) == list(range(14))
    # Two matches down to level 12 (τ_end = 0.15·8 = 1.2 µm); at 13 (0.8 µm) only the exact one.
    np.testing.assert_allclose(tpr[:13], 2 / 3)
    np.testing.assert_allclose(fdr[:13], 1 / 3)
    assert tpr[13] == pytest.approx(1 / 3) and fdr[13] == pytest.approx(2 / 3)
    assert result.levels[13].tp == 1
    assert panel.table.rowCount() == 14
    header = [panel.table.horizontalHeaderItem(j).text() for j in range(panel.table.columnCount())]
    assert panel.table.item(13, header.index("found")).text() == "1"
    assert panel.table.item(0, header.index("found %")).text() == "67"
    assert "F1 0.67." in panel.title.text() and "Assumed" in panel.title.text()


def test_tune_needs_annotations(window, errors, tmp_path):
    assert not window.tune(tmp_path / "model")
    assert "annotate" in errors[-1][2]


TINY = dict(steps_per_epoch=1, patch_size=(16, 32, 32), batch_size=1, device="cpu",
            arch="light", seed=0, val_fraction=0.25)


@pytest.mark.slow  # trains a tiny model first (torch import + one epoch), then tunes
def test_tune_job_shows_report(window, qtbot, errors):
    from cellpol_core.detection.model import load_model

    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    assert window.train(epochs=1, name="tiny", **TINY)
    wait_job(qtbot, window.jobs, timeout=60000)
    model_dir = window.project.root / "models" / "tiny"
    assert not errors and (model_dir / "config.json").is_file()
    assert window.tune(model_dir, rounds=1, border_um=0.0, device="cpu")
    assert not window.tune_action.isEnabled()
    wait_job(qtbot, window.jobs, timeout=120000)
    assert not errors
    report = window.tune_report
    assert report is not None and report["n_images"] == 1
    assert report["f1_after"] >= report["f1_before"]
    assert (model_dir / "thresholds.json").is_file()
    assert load_model(model_dir).thresholds.source == "tuned"
    assert window.metrics_panel.table.rowCount() == 14
    assert len(window.metrics_panel.tpr_curve.getData()[0]) == 14
    assert "Tuned on 1 image" in window.metrics_panel.title.text()
    assert window.metrics_dock.windowTitle() == "Tuning report"
    assert window.tune_action.isEnabled()
