"""The Synthetic data dock (mask dictionary, GAN, synthetic images, pre-training) and
cellpol_core.synthetic.pretrain."""

import numpy as np
import pytest
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("superqt")

from cellpol_core.errors import InputError  # noqa: E402
from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.jobs import ProgressEvent, run_job  # noqa: E402
from cellpol_core.synthetic.phantom import generate_phantom  # noqa: E402

VS = (1.0, 1.0, 1.0)
SHAPE = (16, 48, 48)
pytestmark = pytest.mark.gui
# One tiny GAN epoch: a couple of seconds on one CPU thread.
TINY_GAN = dict(epochs=1, patch=(16, 32, 32), steps_per_epoch=1, base_filters=4, batch_size=1,
                device="cpu")


def _project(tmp_path, *, n=1, flat=False, annotate=True):
    """A project of ``n`` phantom images with their ground truth as annotations."""
    from cellpol_app.project import Project

    project = Project.create(tmp_path / "proj")
    for k in range(n):
        p = generate_phantom(shape=SHAPE, voxel_size=VS, seed=k)
        data = np.full_like(p.image, 100) if flat else p.image
        path = tmp_path / f"img{k}.ome.tif"
        write_ome_tiff(path, data, voxel_size=VS, channel_names=list(p.channel_names))
        entry = project.add_image(path, voxel_size=VS)
        if annotate:
            project.save_annotations(entry, p.vectors)
    return project


def _window(qtbot, project=None):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    if project is not None:
        w.set_project(project)
    w.synthetic_panel.refresh()
    return w


def _buttons(panel):
    return {name: getattr(panel, f"{name}_button").isEnabled()
            for name in ("build", "gan", "preview", "generate", "train", "cancel")}


def _fake_train(calls):
    """A stand-in for cellpol_core.train.train: records its arguments, two epochs."""
    def fake(images, vectors, *, outdir, config, cancel=None, **kw):
        from dataclasses import asdict

        epochs = config.epochs
        calls.append(dict(images=[str(p) for p in images], outdir=str(outdir), **asdict(config),
                          **kw))
        for e in range(1, epochs + 1):
            yield ProgressEvent("train", e, epochs, message=f"epoch {e}/{epochs}",
                                data={"epoch": e, "epoch_end": True, "train_loss": 1.0 / e,
                                      "val_loss": 2.0 / e})
        return outdir
    return fake


# ----------------------------------------------------------------------------- core helper

def _synthetic_folder(folder, n=2):
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"synthetic_{i:04d}.ome.tif").write_bytes(b"")
        (folder / f"synthetic_{i:04d}_vectors.csv").write_text("")
    return folder


def test_synthetic_pairs_and_errors(tmp_path):
    from cellpol_core.synthetic.pretrain import pretrain_dir, synthetic_pairs

    folder = _synthetic_folder(tmp_path / "syn")
    images, vectors = synthetic_pairs(folder)
    assert [p.name for p in images] == ["synthetic_0000.ome.tif", "synthetic_0001.ome.tif"]
    assert [p.name for p in vectors] == ["synthetic_0000_vectors.csv",
                                         "synthetic_0001_vectors.csv"]
    with pytest.raises(InputError, match="no synthetic images in this folder"):
        synthetic_pairs(tmp_path / "missing")
    (folder / "synthetic_0001_vectors.csv").unlink()
    with pytest.raises(InputError, match="synthetic_0001.ome.tif: no vector CSV"):
        synthetic_pairs(folder)
    assert pretrain_dir(tmp_path / "models" / "m") == tmp_path / "models" / "m_synthetic"


def test_train_with_synthetic_phases(tmp_path, monkeypatch):
    import cellpol_core.detection.train as core_train
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.synthetic.pretrain import train_with_synthetic

    calls = []
    monkeypatch.setattr(core_train, "train", _fake_train(calls))
    syn = _synthetic_folder(tmp_path / "syn")
    out = tmp_path / "models" / "m"
    events = []
    result = run_job(train_with_synthetic(
        ["real.tif"], ["real.csv"], synthetic=syn, outdir=out, synthetic_epochs=3,
        channels=(1, 0), val_images=["v.tif"], val_vectors=["v.csv"],
        config=TrainConfig(epochs=2, arch="light", patch_size=(8, 32, 32), seed=4)),
        events.append)
    assert result == out
    pre, real = calls
    # Pre-training: the synthetic images, the shared options only.
    assert pre["images"] == [str(syn / "synthetic_0000.ome.tif"),
                             str(syn / "synthetic_0001.ome.tif")]
    assert pre["outdir"] == str(tmp_path / "models" / "m_synthetic") and pre["epochs"] == 3
    assert pre["arch"] == "light" and pre["patch_size"] == (8, 32, 32) and pre["seed"] == 4
    assert "channels" not in pre and "val_images" not in pre
    # Fine-tuning starts from the pre-trained model, with every option.
    assert real["images"] == ["real.tif"] and real["init"] == str(tmp_path / "models" /
                                                                   "m_synthetic")
    assert real["epochs"] == 2 and real["channels"] == (1, 0) and real["val_images"] == ["v.tif"]
    assert [e.data["epoch"] for e in events] == [1, 2, 3, 4, 5]  # counted across the phases
    assert [e.data["phase"] for e in events] == ["synthetic"] * 3 + ["real"] * 2
    assert events[0].message == "synthetic: epoch 1/3"
    assert events[3].message == "fine-tuning: epoch 1/2"

    calls.clear()
    run_job(train_with_synthetic(["real.tif"], ["real.csv"], synthetic=syn, outdir=out,
                                 config=TrainConfig(epochs=2), synthetic_only=True,
                                 channels=(1, 0)))
    assert len(calls) == 1 and calls[0]["outdir"] == str(out) and calls[0]["epochs"] == 2
    assert "init" not in calls[0] and "channels" not in calls[0]

    for bad, message in ((dict(init="m0"), "initial model"), (dict(resume=True), "resum"),
                         (dict(synthetic_epochs=0), "at least 1")):
        with pytest.raises(InputError, match=message):
            run_job(train_with_synthetic(["r.tif"], ["r.csv"], synthetic=syn, outdir=out,
                                         **bad))


# ----------------------------------------------------------------------------- panel

def test_buttons_follow_inputs_and_errors_without_annotations(qtbot, tmp_path, errors):
    w = _window(qtbot)
    panel = w.synthetic_panel
    assert not any(_buttons(panel).values())
    assert "No project" in panel.project_label.text()
    assert not panel.build_dictionary() and "needs a project" in errors[-1][2]

    w.set_project(_project(tmp_path, annotate=False))
    panel.refresh()
    assert not any(_buttons(panel).values())
    assert "0 annotated images" in panel.project_label.text()
    assert not panel.build_dictionary()
    assert errors[-1][2] == "No annotated image in the project: annotate some pairs first"
    assert not panel.train_gan() and not panel.generate() and not panel.train_model()
    assert len(errors) == 5 and all("\n" not in e[2] for e in errors)
    assert not (tmp_path / "proj" / "synthetic").exists()


def test_menu_shows_the_dock(qtbot, tmp_path):
    w = _window(qtbot, _project(tmp_path))
    assert w.synthetic_dock.isHidden()
    jobs_menu = [a.menu() for a in w.menuBar().actions() if a.text() == "&Jobs"][0]
    texts = [a.text() for a in jobs_menu.actions()]
    assert texts.index("S&ynthetic training data…") == texts.index("&Train / fine-tune…") + 1
    w.synthetic_action.trigger()
    assert not w.synthetic_dock.isHidden()
    assert _buttons(w.synthetic_panel) == {"build": True, "gan": False, "preview": False,
                                           "generate": False, "train": False, "cancel": False}
    assert "1 annotated image" in w.synthetic_panel.project_label.text()


@pytest.mark.gui_jobs
def test_flat_images_give_a_one_line_error(qtbot, tmp_path, errors):
    w = _window(qtbot, _project(tmp_path, flat=True))
    panel = w.synthetic_panel
    assert panel.build_dictionary()
    assert not _buttons(panel)["build"] and _buttons(panel)["cancel"]  # busy
    wait_job(qtbot, w.jobs, timeout=30000)
    assert len(errors) == 1
    text = errors[0][2]
    assert text == ("Mask dictionary failed: no object masks could be made from the "
                    "annotations (flat images?)")
    assert not panel.dictionary_path.exists() and _buttons(panel)["build"]
    assert not _buttons(panel)["gan"] and panel.progress.format() == ""


@pytest.mark.gui_jobs
def test_dictionary_gan_preview_generate(qtbot, tmp_path, errors):
    from cellpol_core.synthetic.masks import MaskDictionary

    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    root = tmp_path / "proj" / "synthetic"

    assert panel.build_dictionary()
    wait_job(qtbot, w.jobs, timeout=30000)
    assert not errors
    d = MaskDictionary.load(root / "dictionary.npz")
    assert len(d.start) > 0 and len(d.end) > 0
    assert panel.dictionary_label.text() == (f"<b>{len(d.start)}</b> nucleus · "
                                             f"<b>{len(d.end)}</b> golgi masks")
    assert _buttons(panel) == {"build": True, "gan": True, "preview": False, "generate": False,
                               "train": False, "cancel": False}
    assert w.statusBar().currentMessage().startswith("Mask dictionary: ")

    seen = []
    w.jobs.progress.connect(lambda e: seen.append(e))
    assert panel.train_gan(**TINY_GAN)
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors
    gan = root / "gan"
    assert (gan / "generator.pt").is_file() and (gan / "checkpoint_last.pt").is_file()
    # The GAN's epoch ends went to the dock, not to the window's model-training loss plot.
    assert any(e.stage == "gan" and e.data.get("epoch_end") for e in seen)
    assert w.loss_history["epoch"] == []
    assert panel.gan_history["epoch"] == [1] and len(panel.d_curve.xData) == 1
    for tile in (panel.mask_tile, panel.real_tile, panel.fake_tile):
        assert tile.has_image() and tile.rgb.shape == (32, 32, 3)
    p = panel.last_preview
    assert p["mask"].shape == p["real"].shape == p["fake"].shape == (2, 32, 32)
    assert set(np.unique(p["mask"])) <= {0.0, 1.0} and p["mask"].sum() > 0
    assert 0.0 <= p["fake"].min() and p["fake"].max() <= 1.0
    assert "img0.ome.tif" in panel.preview_label.text() and "SSIM" in panel.preview_label.text()
    assert panel.gan_label.text().startswith("Trained <b>1</b> epoch · patch 32×32×16 voxels")
    assert _buttons(panel)["generate"] and _buttons(panel)["preview"]
    assert not _buttons(panel)["train"] and panel.resume_box.isEnabled()

    # Resuming needs more epochs than done; the patch fields follow the checkbox.
    panel.resume_box.setChecked(True)
    assert not panel.patch_spins["X"].isEnabled()
    assert panel.gan_options()["resume"] is True
    assert not panel.train_gan(**dict(TINY_GAN, epochs=1))
    assert "already has 1 epochs" in errors.pop()[2]
    panel.resume_box.setChecked(False)

    panel.mask_tile.clear()
    assert not panel.mask_tile.has_image()
    assert panel.preview(device="cpu")
    wait_job(qtbot, w.jobs, timeout=30000)
    assert not errors and panel.mask_tile.has_image()

    assert panel.generate(n=2, n_pairs=(2, 3), device="cpu")
    wait_job(qtbot, w.jobs, timeout=30000)
    assert not errors
    names = sorted(f.name for f in (root / "patches").iterdir())
    assert names == ["synthetic_0000.ome.tif", "synthetic_0000_vectors.csv",
                     "synthetic_0001.ome.tif", "synthetic_0001_vectors.csv"]
    assert "<b>2</b> images" in panel.patches_label.text()
    assert _buttons(panel)["train"]
    # A smaller batch replaces the earlier images rather than mixing with them.
    assert panel.generate(n=1, n_pairs=(2, 3), device="cpu")
    wait_job(qtbot, w.jobs, timeout=30000)
    assert sorted(f.name for f in (root / "patches").iterdir()) == [
        "synthetic_0000.ome.tif", "synthetic_0000_vectors.csv"]


@pytest.mark.gui_jobs
def test_live_preview_during_gan_training(qtbot, tmp_path, errors):
    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    assert panel.build_dictionary()
    wait_job(qtbot, w.jobs, timeout=30000)
    assert panel.train_gan(**dict(TINY_GAN, epochs=2), preview_every=1)
    seen = []  # connected after the panel: each entry is what the dock shows then

    def record(event):
        if "gan_preview" in event.data:
            seen.append(("preview", event.data["epoch"], panel.last_preview is
                         event.data["gan_preview"], panel.preview_label.text(),
                         panel.fake_tile.has_image(), panel.busy))
        elif event.data.get("epoch_end"):
            seen.append(("epoch", event.data["epoch"], panel.gan_label.text()))
        elif event.stage == "preview":
            seen.append(("final preview",))

    w.jobs.progress.connect(record)
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors
    assert [s[:2] for s in seen] == [("epoch", 1), ("preview", 1), ("epoch", 2), ("preview", 2)]
    # The GAN line follows the run instead of saying that no GAN is trained.
    assert seen[2][2].startswith("Training: epoch <b>2</b> done · L1 ")
    for _, epoch, shown, label, tile, busy in (s for s in seen if s[0] == "preview"):
        # Shown on arrival, while the job still runs.
        assert shown and tile and busy
        assert label.startswith(f"img0.ome.tif · epoch {epoch} · patch slice z ")
        assert "SSIM" in label
    # The last live preview is the final one: not computed again after training.
    assert panel.last_preview["epoch"] == 2 and panel.last_preview["fake"].shape == (2, 32, 32)
    assert "epoch 2" in panel.preview_label.text()


def test_device_combo_offers_cuda_only_when_found(qtbot, tmp_path, monkeypatch):
    import torch

    from cellpol_app import viewer

    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    items = lambda: [panel.gan_device.itemText(k) for k in range(panel.gan_device.count())]  # noqa: E731
    # No CUDA: the background detection's result says so, and cuda is not offered.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(viewer, "_device_label", None)
    assert items() == ["auto", "cpu"]  # not detected yet: not offered either
    assert viewer.compute_device_label().startswith("CPU")
    panel.refresh()
    assert items() == ["auto", "cpu"]
    panel.gan_device.setCurrentText("cpu")
    # A GPU found: offered at the next refresh (or when the list opens); the choice stays.
    monkeypatch.setattr(viewer, "_device_label", "GPU: Fake card")
    panel.refresh()
    assert items() == ["auto", "cpu", "cuda"] and panel.gan_device.currentText() == "cpu"
    panel.gan_device.setCurrentText("cuda")
    assert panel.gan_options()["device"] == "cuda"
    monkeypatch.setattr(viewer, "_device_label", "CPU (no CUDA GPU found)")
    panel.gan_device.showPopup()
    panel.gan_device.hidePopup()
    assert items() == ["auto", "cpu"] and panel.gan_device.currentText() == "auto"


@pytest.mark.gui_jobs
def test_cancel_gan_training_keeps_a_checkpoint(qtbot, tmp_path, errors):
    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    assert panel.build_dictionary()
    wait_job(qtbot, w.jobs, timeout=30000)
    assert panel.train_gan(**dict(TINY_GAN, epochs=50))
    assert panel.cancel_button.isEnabled()
    w.jobs.progress.connect(lambda e: e.stage == "gan" and panel.cancel())
    wait_job(qtbot, w.jobs, timeout=60000)
    assert not errors and w.statusBar().currentMessage() == "GAN training: cancelled"
    assert (tmp_path / "proj" / "synthetic" / "gan" / "checkpoint_last.pt").is_file()
    assert not panel.cancel_button.isEnabled() and panel.resume_box.isEnabled()


@pytest.mark.gui_jobs
def test_train_model_pretrains_then_fine_tunes(qtbot, tmp_path, errors, monkeypatch):
    import cellpol_core.detection.train as core_train

    calls = []
    monkeypatch.setattr(core_train, "train", _fake_train(calls))
    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    _synthetic_folder(panel.patches_dir)
    panel.refresh()
    assert _buttons(panel)["train"]

    dialog = panel.make_train_dialog()
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Train with synthetic data"
    assert not dialog.init_combo.isEnabled() and dialog.resume_box.isHidden()
    kwargs = dict(dialog.kwargs(), name="syn", epochs=2)
    panel.synthetic_epochs.setValue(1)
    assert panel.train_model(**kwargs)
    wait_job(qtbot, w.jobs, timeout=30000)
    assert not errors
    models = tmp_path / "proj" / "models"
    pre, real = calls
    assert pre["outdir"] == str(models / "syn_synthetic") and pre["epochs"] == 1
    assert pre["images"][0].endswith("synthetic_0000.ome.tif")
    assert real["init"] == str(models / "syn_synthetic") and real["epochs"] == 2
    assert real["images"] == [str(tmp_path / "img0.ome.tif")]
    # The pre-trained model is listed too (before the fine-tuned one), saved in the manifest.
    assert [(m.name, m.path) for m in w.project.models] == [
        ("syn_synthetic", "models/syn_synthetic"), ("syn", "models/syn")]
    from cellpol_app.project import Project

    assert [m.name for m in Project.load(tmp_path / "proj").models] == ["syn_synthetic", "syn"]
    assert w.loss_history["epoch"] == [1, 2, 3]  # one curve over both phases

    calls.clear()
    panel.synthetic_only_radio.setChecked(True)
    assert not panel.synthetic_epochs.isEnabled()
    only = panel.make_train_dialog()
    qtbot.addWidget(only)
    assert not only.val_images_radio.isEnabled()
    assert panel.train_model(**dict(only.kwargs(), name="only", epochs=1))
    wait_job(qtbot, w.jobs, timeout=30000)
    assert not errors and len(calls) == 1 and calls[0]["outdir"] == str(models / "only")
    assert [m.name for m in w.project.models] == ["syn_synthetic", "syn", "only"]


@pytest.mark.gui_jobs
def test_pretrained_model_listed_when_fine_tuning_fails(qtbot, tmp_path, errors, monkeypatch):
    import cellpol_core.detection.train as core_train

    calls = []
    fake = _fake_train(calls)

    def train(images, vectors, *, outdir, **kw):
        if kw.get("init"):  # the fine-tuning: like train, fails after its first event
            yield ProgressEvent("load", 0, 1, message="reading images")
            raise InputError("fine-tuning broke")
        return (yield from fake(images, vectors, outdir=outdir, **kw))

    monkeypatch.setattr(core_train, "train", train)
    w = _window(qtbot, _project(tmp_path))
    panel = w.synthetic_panel
    _synthetic_folder(panel.patches_dir)
    panel.refresh()
    panel.synthetic_epochs.setValue(1)
    assert panel.train_model(epochs=1, name="m")
    wait_job(qtbot, w.jobs, timeout=30000)
    assert errors[-1][2] == "Train failed: fine-tuning broke"
    # The pre-training had finished before the failure: its model is listed, the final one not.
    assert [m.name for m in w.project.models] == ["m_synthetic"]
    assert panel._pretrained is None
