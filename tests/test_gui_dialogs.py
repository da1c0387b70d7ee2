"""The channel dialog: start/end channels, colours and voxel size, used by the window."""

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QDialogButtonBox  # noqa: E402

from cellpol_core.io.image import CellImage, write_ome_tiff  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (6, 24, 32)
VOXEL = (1.0, 0.5, 0.25)


def _image(n_channels=3):
    rng = np.random.default_rng(0)
    data = rng.integers(100, 120, (n_channels,) + SHAPE).astype(np.uint16)
    data[0, 3, 5:9, 5:9] = 3000     # nucleus: top left
    data[1, 3, 15:19, 20:24] = 3000  # golgi: bottom right
    return data


def test_dialog_prefills_and_returns_choice(qtbot):
    from cellpol_app.dialogs import ChannelDialog

    image = CellImage(_image(), voxel_size=VOXEL, channel_names=["nucleus", "golgi", "dapi"])
    dialog = ChannelDialog(image)
    qtbot.addWidget(dialog)
    assert [s.value() for s in dialog.spins] == list(VOXEL)
    assert dialog.known_box.isChecked() and "metadata" in dialog.source_label.text()
    assert dialog.start_combo.itemText(2) == "dapi (C2)"
    choice = dialog.choice()
    assert choice.channels == (0, 1) and choice.voxel_size == VOXEL
    assert choice.colors == ("#3ce63c", "#ff3c3c")  # green start, red end
    dialog.end_combo.setCurrentIndex(0)  # same as start: OK refused
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled() and "different" in dialog.error_label.text()
    dialog.start_combo.setCurrentIndex(2)
    assert ok.isEnabled()
    dialog.start_color.set_color("#0000ff")
    dialog.spins[0].setValue(2.0)
    assert dialog.choice().channels == (2, 0)
    assert dialog.choice().colors == ("#0000ff", "#ff3c3c")
    assert dialog.choice().voxel_size == (2.0, 0.5, 0.25)
    dialog.known_box.setChecked(False)
    assert dialog.choice().voxel_size is None and not dialog.spins[1].isEnabled()


def test_dialog_without_metadata_2d(qtbot):
    from cellpol_app.dialogs import ChannelDialog

    image = CellImage(_image(2)[:, 3], voxel_size=None, channel_names=[])
    dialog = ChannelDialog(image)
    qtbot.addWidget(dialog)
    assert not dialog.known_box.isChecked() and "not in the file" in dialog.source_label.text()
    dialog.known_box.setChecked(True)
    assert not dialog.spins[0].isEnabled() and dialog.spins[2].isEnabled()  # no z in 2D
    dialog.spins[2].setValue(0.3)
    assert dialog.choice().voxel_size == (1.0, 1.0, 0.3)
    assert dialog.choice().channels == (0, 1)


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "three.ome.tif"
    write_ome_tiff(path, _image(), voxel_size=VOXEL, channel_names=["golgi", "nucleus", "x"])
    return path


def _window(qtbot, tmp_path):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False, ask_channels=True)
    qtbot.addWidget(w)
    w.set_project(Project.create(tmp_path / "proj"))
    return w


def test_window_uses_and_stores_dialog_choice(qtbot, tmp_path, image_path):
    from cellpol_app.project import Project

    w = _window(qtbot, tmp_path)
    seen = {}

    def fill():
        d = w.channel_dialog
        seen["prefill"] = (d.start_combo.currentIndex(), d.end_combo.currentIndex())
        d.start_combo.setCurrentIndex(0)  # "golgi" channel holds the nucleus blob here
        d.end_combo.setCurrentIndex(1)
        d.start_color.set_color("#0000ff")
        d.spins[0].setValue(2.0)
        d.accept()

    QTimer.singleShot(0, fill)
    assert w.load_image(image_path, background=False)
    assert seen["prefill"] == (1, 0)  # the names suggested nucleus = C1, golgi = C0
    assert w.loaded.channels == (0, 1) and w.voxel_size == (2.0, 0.5, 0.25)
    entry = w.project.find_image(image_path)
    assert entry.channels == (0, 1) and entry.colors == ("#0000ff", "#ff3c3c")
    assert entry.voxel_size == (2.0, 0.5, 0.25)
    saved = Project.load(w.project.root).find_image(image_path)
    assert saved.colors == ("#0000ff", "#ff3c3c") and saved.voxel_size == (2.0, 0.5, 0.25)
    # The slice view draws the start blob blue, the end blob red.
    w.ortho.set_cursor((3, 12, 16))
    rgb = w.ortho.views["xy"].rgb
    assert rgb[7, 7, 2] > 200 and rgb[7, 7, 1] < 30
    assert tuple(rgb[17, 22]) == (255, 60, 60)
    np.testing.assert_allclose(w.view3d.colors[0], (0.0, 0.0, 1.0))
    np.testing.assert_allclose(w.view3d.voxel_size, (2.0, 0.5, 0.25))

    # Known to the project now: reopening asks nothing and restores the choice.
    w2 = _window(qtbot, tmp_path / "again")
    w2.set_project(Project.load(w.project.root))
    assert w2.load_image(image_path, background=False)
    assert w2.channel_colors == ("#0000ff", "#ff3c3c") and w2.loaded.channels == (0, 1)
    assert w2.voxel_size == (2.0, 0.5, 0.25)
    assert "rgb(0,0,255)" in w2.legend.text()


def test_cancelling_the_dialog_opens_nothing(qtbot, tmp_path, image_path):
    w = _window(qtbot, tmp_path)
    QTimer.singleShot(0, lambda: w.channel_dialog.reject())
    w.load_image(image_path, background=False)
    assert w.loaded is None and w.project.images == []
