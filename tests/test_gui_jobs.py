"""Long jobs in worker threads: predict from the window, progress, cancel, errors."""

import threading
import time

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, open_window
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("superqt")


from cellpol_core.errors import InputError  # noqa: E402
from cellpol_core.jobs import ProgressEvent  # noqa: E402
from cellpol_core.io.vectors import VectorTable, write_vectors  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.gui_jobs]



@pytest.fixture
def window(qtbot, tmp_path, errors):
    return open_window(qtbot, tmp_path)


def _job(steps, *, gate=None, fail=None, cancel=None):
    for k in range(steps):
        if cancel is not None:
            cancel.check()
        if gate is not None:
            gate.wait(5)
        yield ProgressEvent("work", k, steps, message=f"step {k}",
                            data={"thread": threading.get_ident()})
    if fail is not None:
        raise fail
    return steps * 10


def test_runner_result_progress_off_the_gui_thread(qtbot):
    from cellpol_app.jobs import JobRunner

    runner = JobRunner()
    events, results = [], []
    runner.progress.connect(events.append)
    runner.succeeded.connect(results.append)
    with qtbot.waitSignal(runner.finished, timeout=30000):
        assert runner.start("demo", _job, 3)
        assert runner.running
    assert results == [30] and [e.step for e in events] == [0, 1, 2]
    assert all(e.data["thread"] != threading.get_ident() for e in events)
    assert not runner.running


def test_runner_calls_the_jobs_own_handlers(qtbot):
    from cellpol_app.jobs import JobRunner

    runner = JobRunner()
    calls = []
    runner.progress.connect(lambda e: calls.append(("signal", e.step)))
    runner.succeeded.connect(lambda r: calls.append(("succeeded", r)))
    runner.finished.connect(lambda: calls.append(("finished", runner.running)))

    def result(value):
        calls.append(("result", value, runner.running))
        # The runner is free again: a result handler may start the next job.
        assert runner.start("next", _job, 1, on_result=lambda v: calls.append(("next", v)))

    with qtbot.waitSignal(runner.finished, timeout=30000):
        assert runner.start("first", _job, 2, on_result=result,
                            on_progress=lambda e: calls.append(("progress", e.step)),
                            on_error=lambda m: calls.append(("error", m)),
                            on_finished=lambda: calls.append(("on_finished",)))
    # Each event reaches the job's handler before the signal; the result, then the end.
    assert calls == [("progress", 0), ("signal", 0), ("progress", 1), ("signal", 1),
                     ("result", 20, False), ("succeeded", 20), ("on_finished",),
                     ("finished", True)]
    calls.clear()
    with qtbot.waitSignal(runner.finished, timeout=30000):
        pass
    # The second job has its own handlers only: the first job's are gone.
    assert calls == [("signal", 0), ("next", 10), ("succeeded", 10), ("finished", False)]

    errors, ends = [], []
    with qtbot.waitSignal(runner.finished, timeout=30000):
        runner.start("bad", _job, 1, fail=InputError("broken", "y.tif"), on_result=errors.append,
                     on_error=errors.append, on_finished=lambda: ends.append(1))
    assert errors == ["y.tif: broken"] and ends == [1]


def test_runner_reports_the_end_when_a_handler_raises(qtbot):
    from cellpol_app.jobs import JobRunner

    runner = JobRunner()

    def broken(_):
        raise ValueError("handler bug")

    with qtbot.capture_exceptions() as raised:
        with qtbot.waitSignal(runner.finished, timeout=30000):
            assert runner.start("demo", _job, 1, on_result=broken)
    assert not runner.running  # and finished was emitted: the wait returned
    assert [type(e[1]) for e in raised] == [ValueError]


def test_runner_cancel_and_errors(qtbot):
    from cellpol_app.jobs import JobRunner

    runner = JobRunner()
    gate = threading.Event()
    cancelled, failed, results = [], [], []
    runner.cancelled.connect(lambda: cancelled.append(1))
    runner.failed.connect(failed.append)
    runner.succeeded.connect(results.append)
    with qtbot.waitSignal(runner.finished, timeout=30000):
        assert runner.start("slow", _job, 1000, gate=gate)
        assert not runner.start("second", _job, 1)  # one at a time
        runner.cancel()
        gate.set()
    assert cancelled == [1] and not failed and not results

    with qtbot.waitSignal(runner.finished, timeout=30000):
        runner.start("bad", _job, 1, fail=InputError("no voxel size", "x.tif"))
    assert failed == ["x.tif: no voxel size"]
    with qtbot.waitSignal(runner.finished, timeout=30000):
        runner.start("bug", _job, 1, fail=RuntimeError("boom\nmore"))
    assert failed[-1] == "RuntimeError: boom"


def test_runner_reports_the_end_of_a_job_whatever_it_raises(qtbot, monkeypatch):
    import cellpol_app.jobs as jobs

    # A RuntimeError reaching the worker unwrapped: superqt's worker took it for a deleted
    # Qt object and never said the job had ended (a job that hangs forever).
    def unwrapped(factory, args, kwargs, token):
        return (yield from factory(*args, cancel=token, **kwargs))

    monkeypatch.setattr(jobs, "_drive", unwrapped, raising=False)
    runner = jobs.JobRunner()
    failed = []
    with qtbot.waitSignal(runner.finished, timeout=30000):
        assert runner.start("bug", _job, 1, fail=RuntimeError("torch out of memory"),
                            on_error=failed.append)
    assert failed == ["RuntimeError: torch out of memory"] and not runner.running


@pytest.mark.filterwarnings("ignore:from the job")
def test_jobs_leave_the_process_warning_state_alone(qtbot):
    import warnings

    from cellpol_app.jobs import JobRunner

    runner = JobRunner()
    inside, gate = threading.Event(), threading.Event()

    def warning_job(*, cancel):
        inside.set()
        gate.wait(10)
        warnings.warn("from the job", UserWarning, stacklevel=1)
        yield ProgressEvent("work", 0, 1)
        return 1

    before = (warnings.showwarning, list(warnings.filters))
    with warnings.catch_warnings():  # the GUI thread's own block ends while the job runs
        warnings.simplefilter("ignore")
        assert runner.start("warn", warning_job)
        assert inside.wait(10)
    with qtbot.waitSignal(runner.finished, timeout=30000):
        gate.set()
    # The worker must not put back, process-wide, the state it found when it started.
    assert (warnings.showwarning, warnings.filters) == before


def test_job_end_inside_a_progress_handler(qtbot):
    from PySide6.QtWidgets import QApplication

    from cellpol_app.jobs import JobRunner

    runner = JobRunner()
    calls = []
    runner.progress.connect(lambda e: calls.append(("signal", e.step)))
    runner.finished.connect(lambda: calls.append(("finished",)))
    done = threading.Event()

    def progress(event):
        calls.append(("progress", event.step))
        if event.step == 0:
            # A handler that processes events (a progress bar repainting itself, a dialog):
            # the rest of the job, and its end, are delivered inside it.
            done.wait(10)
            time.sleep(0.2)
            QApplication.processEvents()

    def job(*, cancel):
        yield ProgressEvent("work", 0, 2)
        yield ProgressEvent("work", 1, 2)
        done.set()
        return 5

    with qtbot.waitSignal(runner.finished, timeout=30000):
        assert runner.start("nested", job, on_progress=progress,
                            on_result=lambda r: calls.append(("result", r)))
    qtbot.wait(50)
    # Nothing of the job is reported after its end, and it ends once.
    assert calls[-1] == ("finished",) and calls.count(("finished",)) == 1
    assert ("result", 5) in calls and not runner.running


def test_napari_widget_run_ends_inside_a_progress_bar_update(qtbot, monkeypatch, tmp_path):
    # napari's progress bars process events when they change: the run's result and end
    # can be delivered inside the widget's progress handler, which then must not show
    # its older message over the result.
    pytest.importorskip("napari")
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar
    from test_napari_predict import CROP, _add_demo, _widget

    from cellpol_core.io.image import read_image
    from cellpol_core.io.resources import demo_image_path

    image = read_image(demo_image_path())
    crop = (np.ascontiguousarray(image.data[CROP]), tuple(image.voxel_size))
    import napari

    viewer = napari.Viewer(show=False)
    try:
        _add_demo(viewer, crop)
        widget = _widget(viewer)
        widget.device_combo.setCurrentText("cpu")
        set_value = QtLabeledProgressBar.setValue

        def slow_set_value(bar, value):
            worker = widget.worker  # wait until the run has ended in its thread
            deadline = time.time() + 60
            while worker is not None and worker.is_running and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
            set_value(bar, value)

        monkeypatch.setattr(QtLabeledProgressBar, "setValue", slow_set_value)
        with qtbot.waitSignal(widget.run_finished, timeout=120000):
            widget.run()
        assert "vectors found" in widget.status.text(), widget.status.text()
    finally:
        viewer.close()


def test_window_jobs_keep_their_own_results(window, qtbot, errors):
    from cellpol_app.host import WindowServices

    assert isinstance(window, WindowServices)
    results, ended = [], []
    window.job_busy_changed.connect(ended.append)
    # Named like the window's prediction job: the result still goes to its own handler only.
    assert window.start_job("Predict", _job, 2, on_result=results.append)
    assert window.job_running and window.job_name == "Predict"
    assert not window.start_job("Predict all", _job, 1)  # one job at a time
    assert not window.predict_otsu_action.isEnabled() and window.job_bar.isVisibleTo(window)
    wait_job(qtbot, window.jobs, timeout=30000)
    assert results == [20] and ended == [True, False] and not errors
    assert window.vectors is None and window.project_entry.predictions == []
    assert window.predict_otsu_action.isEnabled() and not window.job_bar.isVisibleTo(window)


def test_predict_otsu_from_the_window(window, qtbot, errors):
    assert window.predict()
    assert window.job_bar.isVisibleTo(window) and not window.predict_otsu_action.isEnabled()
    wait_job(qtbot, window.jobs, timeout=30000)
    assert window.vectors is not None
    assert not errors and window.predict_otsu_action.isEnabled()
    assert not window.job_bar.isVisibleTo(window)
    table = window.vectors
    assert len(table) == 3
    order = np.argsort(table.start[:, 2])
    np.testing.assert_allclose(table.start[order], NUCLEI, atol=0.5)
    # The last golgi sits on the last slice: its centroid is pulled inside (10.4).
    np.testing.assert_allclose(table.end[order], GOLGI, atol=0.7)
    out = window.project.root / "predictions" / "phantom_predicted.csv"
    assert window.vectors_path == out and out.is_file()
    assert window.project_entry.predictions == ["predictions/phantom_predicted.csv"]
    assert window.ortho.vectors is table


def test_predict_with_missing_model_shows_error(window, qtbot, errors, tmp_path):
    assert window.predict(model=tmp_path / "no_model")
    wait_job(qtbot, window.jobs, timeout=30000)
    assert len(errors) == 1
    assert "Predict failed" in errors[0][2] and "no_model" in errors[0][2]
    assert window.vectors is None


def test_score_slider_filters_vectors(window, tmp_path):
    pred = tmp_path / "pred.csv"
    write_vectors(pred, VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float),
                                    score=[0.9, 0.3, 0.6]))
    window.load_vectors(pred)
    window.set_mip(True)  # every vector crosses the projection
    panel = window.layer_panel
    assert window.ortho.visible("xy", "vectors")[0].tolist() == [0, 1, 2]
    panel.score_slider.setValue(50)
    assert panel.score_label.text() == "min score 0.50"
    assert window.ortho.visible("xy", "vectors")[0].tolist() == [0, 2]
    assert len(window.ortho.views["xy"].vector_dots.data) == 4
    panel.score_slider.setValue(95)
    assert window.ortho.visible("xy", "vectors")[0].tolist() == []


def _annotate(window):
    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)


TINY = dict(steps_per_epoch=1, patch_size=(16, 32, 32), batch_size=1, device="cpu",
            arch="light", seed=0, val_fraction=0.25)


@pytest.mark.slow  # about 6 s on 2 shared CPU cores (torch import + one epoch)
def test_train_one_epoch_adds_model_and_loss_curve(window, qtbot, errors):
    from cellpol_app.project import Project

    assert not window.train(epochs=1, name="tiny", **TINY)  # nothing annotated yet
    assert "annotate" in errors[-1][2]
    errors.clear()
    _annotate(window)
    assert window.train(epochs=1, name="tiny", **TINY)
    assert window.loss_dock.isVisibleTo(window) and not window.train_action.isEnabled()
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not errors
    model_dir = window.project.root / "models" / "tiny"
    assert (model_dir / "config.json").is_file()
    assert [(m.name, m.path) for m in Project.load(window.project.root).models] == \
        [("tiny", "models/tiny")]
    x, y = window.train_curve.getData()
    assert list(x) == [1] and np.isfinite(y).all() and y[0] > 0
    assert window.train_action.isEnabled()


def _checkpoints(window, name) -> list:
    # In the model folder, or in the staging folder of its unfinished run beside it.
    return [p for p in (window.project.root / "models").rglob("checkpoint_last.pt")
            if name in p.parent.name]


def test_train_cancel(window, qtbot, errors):
    _annotate(window)
    cancelled = []
    window.jobs.cancelled.connect(lambda: cancelled.append(1))
    assert window.train(epochs=50, name="stopped", **TINY)
    window.jobs.cancel()  # the job checks before its first step
    wait_job(qtbot, window.jobs, timeout=30000)
    assert cancelled == [1] and not errors
    assert window.project.models == []  # nothing registered
    x, _ = window.train_curve.getData()
    assert x is None or len(x) == 0
    # The checkpoint saved on cancel lets a later run resume.
    assert _checkpoints(window, "stopped")
    assert not window.job_bar.isVisibleTo(window) and window.train_action.isEnabled()


def _slow_job(*, cancel, steps=100000):
    for k in range(steps):
        cancel.check()
        time.sleep(0.005)
        yield ProgressEvent("work", k, steps)
    return steps


def _click(box, text):
    names = [b.text() for b in box.buttons()]
    box.buttons()[names.index(text)].click()


def test_closing_during_a_job_asks_first(window, qtbot, errors):
    window.show()
    cancelled = []
    window.jobs.cancelled.connect(lambda: cancelled.append(1))
    assert window.start_job("Long", _slow_job)
    assert not window.close()  # asked (without blocking): the window stays
    assert window.isVisible() and window.job_running
    box = window.job_controller.close_question
    assert box is not None and "Long is still running" in box.text()
    assert not window.close() and window.job_controller.close_question is box  # asked once
    _click(box, "Keep running")
    assert window.isVisible() and window.job_running and not cancelled
    assert not window.close()
    _click(window.job_controller.close_question, "Cancel the job and close")
    assert window.isVisible() or not window.job_running  # it closes once the job has stopped
    wait_job(qtbot, window.jobs, timeout=30000)
    assert cancelled == [1] and not window.isVisible() and not errors


def test_closing_during_training_keeps_its_checkpoint(window, qtbot, errors):
    _annotate(window)
    window.show()
    assert window.train(epochs=50, name="closed", **TINY)
    assert not window.close()
    _click(window.job_controller.close_question, "Cancel the job and close")
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not window.isVisible() and not errors
    # The cancelled training wrote its checkpoint: a later run can resume.
    assert _checkpoints(window, "closed")


@pytest.mark.gui
def test_predict_with_bundled_demo_model(qtbot, tmp_path):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_core.io.resources import demo_image_path

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert w.load_image(demo_image_path())
    w.predict_demo_action.trigger()
    wait_job(qtbot, w.jobs, timeout=60000)
    assert w.vectors is not None and len(w.vectors) > 10
