"""The main window on a laptop screen: docks as side tabs, a usable XY view, every control
reachable at 1366×768, the remembered layout, window size and title, pickers and names."""

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, open_window
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QRect, QSettings, Qt  # noqa: E402

pytestmark = [pytest.mark.gui]

LAPTOP = (1366, 768)
JOB_DOCKS = ("loss_dock", "metrics_dock", "analysis_dock", "synthetic_dock")


@pytest.fixture
def window(qtbot, tmp_path, errors):
    w = open_window(qtbot, tmp_path)
    w.show()
    qtbot.waitExposed(w)
    return w


def _settle(qtbot):
    qtbot.wait(50)


def _inside(window, widget) -> bool:
    """``widget`` is shown and lies entirely inside the window."""
    if not widget.isVisible() or widget.width() < 4 or widget.height() < 4:
        return False
    top_left = widget.mapTo(window, widget.rect().topLeft())
    return window.rect().contains(QRect(top_left, widget.size()))


def _open_all_docks(window):
    for name in JOB_DOCKS:
        getattr(window, name).setVisible(True)


def test_job_docks_are_tabs_beside_the_3d_view(window, qtbot):
    _open_all_docks(window)
    _settle(qtbot)
    tabs = set(window.tabifiedDockWidgets(window.view3d_dock))
    assert tabs == {getattr(window, n) for n in JOB_DOCKS}
    for name in JOB_DOCKS + ("view3d_dock", "contrast_dock"):
        assert window.dockWidgetArea(getattr(window, name)) == Qt.DockWidgetArea.RightDockWidgetArea
    # Training and Evaluation are in the View menu too.
    texts = [a.text() for a in window.menuBar().actions()[2].menu().actions()]
    assert "&Training" in texts and "&Evaluation" in texts and "&Reset layout" in texts


@pytest.mark.parametrize("size", [LAPTOP, (1366, 700), (1920, 1080)])
def test_xy_view_stays_usable_with_every_dock_open(window, qtbot, size):
    window.resize(*size)
    _open_all_docks(window)
    window.show_quick_start()  # a help window open too changes nothing
    _settle(qtbot)
    xy = window.ortho.views["xy"]
    assert window.width() <= size[0] and window.height() <= size[1]  # the window fits
    assert xy.width() >= 300 and xy.height() >= 300
    for name in JOB_DOCKS:  # each tab, brought to front, keeps the XY view usable
        getattr(window, name).raise_()
        _settle(qtbot)
        assert xy.width() >= 300 and xy.height() >= 300, name


def _wait_for_cancel(cancel=None):
    import time

    from cellpol_core.jobs import ProgressEvent

    while not cancel.cancelled:
        yield ProgressEvent("wait", 0, 1, message="waiting")
        time.sleep(0.01)
    cancel.check()


@pytest.mark.parametrize("docks", [False, True])
def test_every_control_reachable_at_1366x768(window, qtbot, docks):
    window.resize(*LAPTOP)
    if docks:
        _open_all_docks(window)
    assert window.start_job("Wait", _wait_for_cancel)  # shows the progress bar and Cancel
    _settle(qtbot)
    assert window.width() <= LAPTOP[0] and window.height() <= LAPTOP[1]
    controls = {"Z slider": window.z_slider, "Annotate": window.annotate_box,
                "Snap": window.snap_box, "status bar": window.statusBar(),
                "device label": window.device_label, "progress": window.job_bar,
                "Cancel": window.job_cancel, "MIP": window.mip_box}
    hidden = [name for name, w in controls.items() if not _inside(window, w)]
    assert not hidden
    assert window.job_bar.width() >= 300  # its text is not cut to a few characters
    window.job_cancel.click()
    wait_job(qtbot, window.jobs)
    assert not window.job_cancel.isVisible()


def test_window_fits_the_screen():
    from cellpol_app.main import DEFAULT_SIZE, FRAME, fit_size

    w, h = fit_size(1366, 728)  # 1366×768 less a 40 px taskbar
    assert w <= 1366 - FRAME[0] and h <= 728 - FRAME[1]
    assert (w, h) == (1200, 688)
    w, h = fit_size(1920, 1040)
    assert DEFAULT_SIZE[0] < w <= 1920 - FRAME[0] and DEFAULT_SIZE[1] < h <= 1040 - FRAME[1]


def test_layout_is_remembered_and_reset(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = AnnotatorWindow(detect_device=False, settings=settings)
    qtbot.addWidget(w)
    w.resize(*LAPTOP)
    w.show()
    w.analysis_dock.setVisible(True)
    w.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, w.analysis_dock)  # the user moves it
    w.close()
    again = AnnotatorWindow(detect_device=False, settings=settings)
    qtbot.addWidget(again)
    assert again.dockWidgetArea(again.analysis_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert not again.analysis_dock.isHidden()
    again.reset_layout_action.trigger()
    assert again.dockWidgetArea(again.analysis_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert again.analysis_dock.isHidden()
    again.view3d_dock.setVisible(True)
    again.analysis_dock.setVisible(True)  # back in its tab
    assert again.analysis_dock in again.tabifiedDockWidgets(again.view3d_dock)


def test_title_names_the_app_once(window):
    from PySide6.QtWidgets import QApplication

    title = window.windowTitle()
    assert title == "phantom.ome.tif — project proj"
    # What the system shows: the title, then the application's name once.
    name = QApplication.applicationDisplayName()
    shown = title if name == title else f"{title} — {name}"
    assert shown.count("CellPol") == (1 if name == "CellPol" else 0)


def test_views_keep_their_size_when_the_pairs_title_changes(window, qtbot):
    window.resize(*LAPTOP)
    _settle(qtbot)
    before = window.ortho.size()
    window.pairs_title.setText("Pairs: 12345 · autosaved to a_very_long_image_name_indeed.csv "
                               "· annotating, with a long explanation")
    window.set_annotate(True)
    for s, e in zip(NUCLEI, GOLGI):
        window.annotations.add_pair(s, e)
    _settle(qtbot)
    assert window.ortho.size() == before


def test_pickers_start_in_the_users_folder_not_in_the_app(window, monkeypatch, tmp_path):
    from cellpol_core.io.resources import demo_image_path
    from PySide6.QtWidgets import QFileDialog

    user = str(window.last_dir)
    window.set_project(None)
    assert window.open_demo()
    assert window.last_dir == user  # the bundled demo's folder is not remembered
    starts = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start: starts.append(start) or "")
    window.project_actions.new_project_dialog()
    assert starts == [user] and "resources" not in starts[0]
    assert demo_image_path().parent.as_posix() not in starts[0]


def test_cancelling_the_demos_channel_dialog_changes_nothing(qtbot, errors):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False, ask_channels=True)
    qtbot.addWidget(w)
    w.ask_channel_choice = lambda loaded: None  # the user cancels
    assert not w.open_demo()
    assert w.loaded is None and w.vectors is None and w.vectors_box.text() == "Vectors"


def test_new_project_does_not_ask_the_channels_again(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.dialogs import ChannelChoice

    w = AnnotatorWindow(detect_device=False, ask_channels=True)
    qtbot.addWidget(w)
    asked = []

    def ask(loaded):
        asked.append(loaded)
        return ChannelChoice((1, 0), ("#ff00ff", "#00ffff"), (0.5, 0.2, 0.2))

    w.ask_channel_choice = ask
    assert w.open_demo() and len(asked) == 1
    assert w.new_project(tmp_path / "proj")
    assert len(asked) == 1  # not asked again
    entry = w.project.images[0]
    assert tuple(entry.channels) == (1, 0) and tuple(entry.colors) == ("#ff00ff", "#00ffff")
    assert tuple(entry.voxel_size) == (0.5, 0.2, 0.2)


def test_predictions_and_annotations_have_their_own_names(window, qtbot, tmp_path):
    from cellpol_app.project_actions import prediction_name

    window.annotations.add_pair(NUCLEI[0], GOLGI[0])
    assert window.annotations.autosave_path.name == "phantom_annotations.csv"
    written = tmp_path / "x" / "cells_vectors.csv"
    written.parent.mkdir()
    written.write_text("a")
    renamed = prediction_name(written)
    assert renamed.name == "cells_predicted.csv" and renamed.read_text() == "a"
    assert not written.exists()
    other = tmp_path / "x" / "table.csv"
    other.write_text("b")
    assert prediction_name(other) == other  # not an app prediction: kept


def test_an_old_project_keeps_its_file_names(qtbot, tmp_path, errors):
    from cellpol_app.project import Project

    project = Project.create(tmp_path / "old")
    entry = project.add_image(tmp_path / "img.ome.tif")
    entry.annotations = "annotations/img_vectors.csv"  # as older versions named it
    project.save()
    assert Project.load(project.root).images[0].annotations == "annotations/img_vectors.csv"
    assert project.annotations_path(entry).name == "img_vectors.csv"


def test_model_choices_list_the_projects_models(window, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    from cellpol_app.project_actions import OTHER_MODEL

    (window.project.root / "models" / "mine").mkdir(parents=True)
    window.project.add_model("mine", window.project.root / "models" / "mine")
    offered, predicted = [], []
    monkeypatch.setattr(QInputDialog, "getItem", lambda parent, title, label, items, current,
                        editable: (offered.append(list(items)) or items[0], True))
    monkeypatch.setattr(window.project_actions, "predict",
                        lambda model=None: predicted.append(model))
    window.predict_model_action.trigger()
    assert offered == [["mine (project model)", OTHER_MODEL]]
    assert predicted == [str(window.project.root / "models" / "mine")]
    # "Another model folder…" opens the picker in the project's models folder.
    starts = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a: (OTHER_MODEL, True))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start: starts.append(start) or "")
    window.tune_action.trigger()
    assert starts == [str(window.project.root / "models")]


def test_2d_images_show_no_z(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.dialogs import ChannelDialog
    from cellpol_core.io.image import read_image, write_ome_tiff

    rng = np.random.default_rng(0)
    path = tmp_path / "flat.ome.tif"
    write_ome_tiff(path, rng.integers(0, 1000, (2, 40, 50)).astype(np.uint16),
                   voxel_size=(1.0, 0.5, 0.5), channel_names=["a", "b"])
    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert w.load_image(path, background=False) and not w.is_3d
    headers = [w.pairs_model.HEADERS[c] for c in range(len(w.pairs_model.HEADERS))
               if not w.pairs_table.isColumnHidden(c)]
    assert "start z" not in headers and "end z" not in headers and "start x" in headers
    dialog = ChannelDialog(read_image(path))
    qtbot.addWidget(dialog)
    assert [s.isVisibleTo(dialog) for s in dialog.spins] == [False, True, True]


def test_colours_are_words_not_hex_codes(qtbot):
    from cellpol_app.dialogs import ChannelDialog, color_name
    from cellpol_core.io.image import CellImage

    image = CellImage(np.zeros((2, 3, 8, 8), np.uint16), voxel_size=(1, 1, 1))
    dialog = ChannelDialog(image, colors=("#00ff00", "#ff00ff"))
    qtbot.addWidget(dialog)
    assert (dialog.start_color.text(), dialog.end_color.text()) == ("green", "magenta")
    assert "#" not in dialog.start_color.text() + dialog.start_color.toolTip()
    assert color_name("#ff3c3c") == "red" and color_name("#3cff3c") == "green"


def test_the_3d_view_cannot_float_into_a_black_window(window):
    from PySide6.QtWidgets import QDockWidget

    # A floating QOpenGLWidget gets a new GL context the vispy scene does not survive.
    assert not window.view3d_dock.features() & QDockWidget.DockWidgetFeature.DockWidgetFloatable
    window.reset_layout()
    assert not window.view3d_dock.isFloating()


def test_new_project_keeps_the_shown_vectors(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert w.open_demo() and w.vectors is not None
    n, path = len(w.vectors), w.vectors_path
    assert w.new_project(tmp_path / "proj")
    assert w.vectors is not None and len(w.vectors) == n and w.vectors_path == path
    assert w.vectors_box.text() == f"Vectors ({n})"


def test_train_dialog_says_what_it_learns_from_and_offers_the_shown_vectors(qtbot, tmp_path,
                                                                             errors):
    from PySide6.QtWidgets import QDialogButtonBox

    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert w.open_demo() and w.new_project(tmp_path / "proj")
    n = len(w.vectors)
    dialog = w.make_train_dialog()
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert "No annotated image" in dialog.data_label.text() and not ok.isEnabled()
    assert dialog.use_shown_button.isVisibleTo(dialog)
    assert f"Use the {n} shown vectors" in dialog.use_shown_button.text()
    dialog.use_shown_button.click()
    assert len(w.annotations) == n  # one undo step, autosaved
    assert f"1 annotated image, {n} pairs" in dialog.data_label.text() and ok.isEnabled()
    assert not dialog.use_shown_button.isVisibleTo(dialog)
    assert w.training_data()[0] == [w.image_path]
    w.undo_stack.undo()
    assert len(w.annotations) == 0
