"""The whole cycle in the window: open → annotate 5 pairs by clicks → train → predict →
accept → fine-tune."""

import json

import numpy as np
import pytest
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("superqt")
torch = pytest.importorskip("torch")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.synthetic.phantom import generate_phantom  # noqa: E402
from cellpol_core.io.vectors import read_vectors  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.gui_jobs, pytest.mark.slow]  # about 10 s

TINY = dict(steps_per_epoch=1, patch_size=(16, 32, 32), batch_size=1, device="cpu",
            arch="light", seed=0, val_fraction=0.25)


def _inside(points, shape, margin=0.5):
    return np.all((points >= margin) & (points <= np.array(shape) - 1 - margin), axis=1)


def _click_xy(window, point):
    """Go to the point's slice, then left-click its (x, y) in the XY view."""
    window.set_slice(int(np.rint(point[0])))
    view = window.ortho.views["xy"]
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.view_to_widget(point))


def _batches_tracked(model_dir):
    state = torch.load(model_dir / "weights_last.pt", map_location="cpu", weights_only=False)
    return {int(v) for k, v in state.items() if k.endswith("num_batches_tracked")}


def test_open_annotate_train_predict_accept_finetune(qtbot, tmp_path, monkeypatch):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **kw: errors.append(a))
    ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=1, density=0.6)
    image = tmp_path / "phantom.ome.tif"
    write_ome_tiff(image, ph.image, voxel_size=ph.voxel_size,
                   channel_names=list(ph.channel_names))
    shape = ph.image.shape[1:]
    keep = _inside(ph.vectors.start, shape) & _inside(ph.vectors.end, shape)
    starts, ends = ph.vectors.start[keep][:5], ph.vectors.end[keep][:5]
    assert len(starts) == 5

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.resize(1100, 750)
    w.show()
    qtbot.waitExposed(w)
    w.set_project(Project.create(tmp_path / "proj"))

    # Open.
    assert w.load_image(image, background=False)
    QApplication.processEvents()
    assert w.ortho.shape == shape and w.project_entry is not None

    # Annotate 5 pairs with real clicks in the XY view.
    w.set_annotate(True)
    for s, e in zip(starts, ends):
        _click_xy(w, s)
        assert w.annotations.pending_start is not None
        _click_xy(w, e)
    assert len(w.annotations) == 5 and w.annotations.pending_start is None
    got = w.annotations.to_table()
    # z is the clicked slice (rounded), y and x within a fraction of a screen voxel.
    np.testing.assert_allclose(got.start[:, 0], np.rint(starts[:, 0]))
    np.testing.assert_allclose(got.end[:, 0], np.rint(ends[:, 0]))
    np.testing.assert_allclose(got.start[:, 1:], starts[:, 1:], atol=0.25)
    np.testing.assert_allclose(got.end[:, 1:], ends[:, 1:], atol=0.25)
    saved = read_vectors(w.annotations.autosave_path)
    assert len(saved) == 5
    w.set_annotate(False)

    # Train one epoch.
    assert w.train(epochs=1, name="first", **TINY)
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors
    first = w.project.root / "models" / "first"
    assert {"config.json", "weights_last.pt", "thresholds.json"} <= \
        {p.name for p in first.iterdir()}
    assert [m.name for m in w.project.models] == ["first"]
    assert _batches_tracked(first) == {1}  # one training step
    assert len(w.train_curve.getData()[0]) == 1

    # Predict with it.
    assert w.predict(model=first)
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors and w.vectors is not None and len(w.vectors) > 0
    assert w.vectors.score is not None
    assert w.project_entry.predictions == ["predictions/phantom_predicted.csv"]
    assert w.ortho.vectors is w.vectors
    n_pred = len(w.vectors)

    # Accept those above a score (the 4th best), in one undo step.
    threshold = float(np.sort(w.vectors.score)[-4])
    expected = int((w.vectors.score >= threshold).sum())
    assert 4 <= expected < n_pred
    assert w.accept_predictions(min_score=threshold) == expected
    assert len(w.annotations) == 5 + expected
    assert len(read_vectors(w.annotations.autosave_path)) == 5 + expected
    w.undo_stack.undo()
    assert len(w.annotations) == 5
    w.undo_stack.redo()
    assert len(w.annotations) == 5 + expected

    # Fine-tune from the first model: its weights carry on (BatchNorm has seen 2 batches).
    assert w.train(epochs=1, name="tuned", init=first, **TINY)
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors
    tuned = w.project.root / "models" / "tuned"
    assert (tuned / "weights_last.pt").is_file()
    assert _batches_tracked(tuned) == {2}
    config_first = json.loads((first / "config.json").read_text())
    config_tuned = json.loads((tuned / "config.json").read_text())
    assert config_tuned["network"] == config_first["network"]
    assert [m.name for m in Project.load(w.project.root).models] == ["first", "tuned"]
