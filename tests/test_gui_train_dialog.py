"""Jobs → Train…: the train / fine-tune dialog, its arguments, ETA during training."""

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, VOXEL, blobs
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("superqt")

from PySide6.QtCore import Qt  # noqa: E402

from cellpol_core.detection.config import FINETUNE_DEFAULTS, TrainConfig  # noqa: E402
from cellpol_core.io.image import write_ome_tiff  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.gui_jobs]



def _write(path, seed):
    rng = np.random.default_rng(seed)
    write_ome_tiff(path, np.stack([blobs(NUCLEI, rng), blobs(GOLGI, rng)]),
                   voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
    return path


@pytest.fixture
def window(qtbot, tmp_path, errors):
    """A project with two annotated images; the second one is open."""
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.set_project(Project.create(tmp_path / "proj"))
    for k, name in enumerate(("a.ome.tif", "b.ome.tif")):
        assert w.load_image(_write(tmp_path / name, k), background=False)
        for s, e in zip(NUCLEI, GOLGI):
            w.annotations.add_pair(s, e)
    return w


def test_dialog_defaults_and_cuda_disabled(window, qtbot):
    from cellpol_app.train_dialog import TrainDialog

    dialog = TrainDialog(window.project, window.training_data()[0], cuda=False)
    qtbot.addWidget(dialog)
    cuda = dialog.device_combo.model().item(2)
    assert dialog.device_combo.itemText(2) == "cuda" and not cuda.isEnabled()
    kw = dialog.kwargs()
    assert kw["init"] is None and "resume" not in kw and "val_images" not in kw
    assert kw["config"] == TrainConfig(epochs=20, device="auto", val_fraction=0.1)
    assert kw["config"].patch_size is None
    assert not dialog.resume_box.isEnabled()  # no checkpoint in a new folder
    assert TrainDialog(window.project, [], cuda=True).device_combo.model().item(2).isEnabled()


def test_dialog_builds_fine_tune_resume_and_validation_args(window, qtbot, tmp_path):
    from cellpol_app.train_dialog import TrainDialog

    project = window.project
    old = project.root / "models" / "old"
    old.mkdir(parents=True)
    (old / "checkpoint_last.pt").write_bytes(b"x")
    project.add_model("old", old)
    images = window.training_data()[0]
    assert [p.name for p in images] == ["a.ome.tif", "b.ome.tif"]

    dialog = TrainDialog(project, images, cuda=False)
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("tuned")
    assert not dialog.resume_box.isEnabled()
    dialog.epochs_spin.setValue(3)
    dialog.init_combo.setCurrentIndex(1)
    dialog.device_combo.setCurrentText("cpu")
    dialog.precision_combo.setCurrentText("fp32")
    dialog.patch_default.setChecked(False)
    dialog.patch_spins["X"].setValue(32)
    dialog.patch_spins["Y"].setValue(24)
    dialog.patch_spins["Z"].setValue(8)
    dialog.val_images_radio.setChecked(True)
    dialog.val_list.item(0).setCheckState(Qt.CheckState.Checked)
    # Fine-tuning: a 5-minute budget and the fine-tuning defaults.
    tuned = {k: v for k, v in FINETUNE_DEFAULTS.items() if k != "minutes"}
    assert dialog.minutes_box.isChecked() and not dialog.epochs_spin.isEnabled()
    assert dialog.kwargs() == {
        "config": TrainConfig(epochs=3, device="cpu", precision="fp32", patch_size=(8, 24, 32),
                              val_fraction=0.1, minutes=5.0, **tuned),
        "name": "tuned", "init": str(old), "val_images": [images[0]]}
    dialog.minutes_spin.setValue(1.5)
    assert dialog.kwargs()["config"].minutes == 1.5
    dialog.minutes_box.setChecked(False)
    assert dialog.kwargs()["config"].minutes is None and dialog.epochs_spin.isEnabled()
    dialog.init_combo.setCurrentIndex(0)  # from scratch: epochs, TrainConfig's defaults
    assert dialog.kwargs()["config"] == TrainConfig(
        epochs=3, device="cpu", precision="fp32", patch_size=(8, 24, 32), val_fraction=0.1)
    dialog.init_combo.setCurrentIndex(1)

    dialog.name_edit.setText("old")  # an existing folder with a checkpoint
    assert dialog.resume_box.isEnabled()
    dialog.resume_box.setChecked(True)
    kw = dialog.kwargs()
    assert kw["resume"] is True and kw["name"] == "old" and kw["init"] is None
    assert not dialog.init_combo.isEnabled()

    flat = TrainDialog(project, images, cuda=False, ndim=2)
    qtbot.addWidget(flat)
    flat.patch_default.setChecked(False)
    assert flat.kwargs()["config"].patch_size == (64, 64)


def test_window_train_dialog_passes_its_kwargs(window, qtbot, monkeypatch):
    from cellpol_app.train_dialog import TrainDialog

    calls = []
    monkeypatch.setattr(TrainDialog, "exec", lambda self: 1)
    monkeypatch.setattr(type(window), "train", lambda self, **kw: calls.append(kw) or True)
    assert window.train_action.text() == "&Train / fine-tune…"
    window.train_action.trigger()
    assert len(calls) == 1 and calls[0]["config"].epochs == 20
    assert calls[0]["config"].val_fraction == 0.1


def test_validation_images_are_left_out_of_training(window, qtbot, monkeypatch):
    import cellpol_core.detection.train as core_train

    seen = {}

    def fake_train(images, vectors, **kw):
        seen.update(images=list(images), vectors=list(vectors), **kw)
        yield from ()
        return kw["outdir"]

    monkeypatch.setattr(core_train, "train", fake_train)
    images, tables = window.training_data()
    assert not window.train(epochs=1, name="x", val_images=images)  # none left to train
    assert window.train(epochs=1, name="x", val_images=[images[0]])
    wait_job(qtbot, window.jobs, timeout=30000)
    assert seen["images"] == [images[1]] and seen["vectors"] == [tables[1]]
    assert seen["val_images"] == [images[0]] and seen["val_vectors"] == [tables[0]]
    assert seen["config"] == TrainConfig(epochs=1)  # the window's keywords become a config


@pytest.mark.slow  # torch import + two tiny epochs on shared CPU cores
def test_eta_shown_during_training(window, qtbot, errors):
    titles, formats = [], []
    window.jobs.progress.connect(lambda e: titles.append(window.training_status.text()))
    window.jobs.progress.connect(lambda e: formats.append(window.job_bar.format()))
    assert window.train(epochs=2, name="eta", steps_per_epoch=1, patch_size=(8, 32, 32),
                        batch_size=1, device="cpu", arch="light", seed=0, val_fraction=0.25)
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not errors
    assert any("ETA 0:" in t and t.startswith("Epoch") for t in titles)
    assert window.loss_dock.windowTitle() == "Training"  # a short tab title
    assert window.training_status.text().startswith("eta: finished (2 epochs)")
    assert any("ETA" in f for f in formats)
    assert [m.name for m in window.project.models] == ["eta"]


@pytest.mark.slow  # torch import + one tiny epoch on shared CPU cores
def test_cancel_then_resume_from_the_dialog(window, qtbot, errors, monkeypatch):
    from cellpol_app.train_dialog import TrainDialog

    tiny = dict(steps_per_epoch=1, patch_size=(8, 32, 32), batch_size=1, device="cpu",
                arch="light", seed=0, val_fraction=0.25)
    assert window.train(epochs=1, name="again", **tiny)
    window.jobs.cancel()
    wait_job(qtbot, window.jobs, timeout=30000)
    assert window.statusBar().currentMessage() == "Train: cancelled"
    assert not errors and window.train_action.isEnabled() and window.project.models == []

    dialog = window.make_train_dialog()
    qtbot.addWidget(dialog)
    assert isinstance(dialog, TrainDialog)
    dialog.name_edit.setText("again")  # its checkpoint_last.pt was saved on cancel
    dialog.resume_box.setChecked(True)
    dialog.epochs_spin.setValue(1)
    kw = dialog.kwargs()
    assert kw["resume"] is True
    kw.update({k: v for k, v in tiny.items() if k != "val_fraction"})
    assert window.train(**kw)
    wait_job(qtbot, window.jobs, timeout=60000)
    assert not errors and [m.name for m in window.project.models] == ["again"]
    x, _ = window.train_curve.getData()
    assert list(x) == [1]
