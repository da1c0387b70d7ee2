"""File → Open Recent: most recent first, at most 10, missing files pruned, persisted."""

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMenu, QMessageBox  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def settings(tmp_path):
    s = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    yield s
    s.sync()


def _image(path, value):
    data = np.full((2, 3, 8, 8), value, dtype=np.uint16)
    data[:, 1, 4, 4] = 1000
    write_ome_tiff(path, data, voxel_size=(1.0, 0.5, 0.5), channel_names=["nucleus", "golgi"])
    return path


def _names(recent):
    return [a.text() for a in recent.actions()]


def test_list_order_limit_prune_and_clear(qtbot, tmp_path, settings):
    from cellpol_app.recent import RecentFiles

    opened = []
    menu = QMenu()
    recent = RecentFiles(menu, opened.append, settings=settings, max_files=10)
    assert recent.paths() == [] and not menu.isEnabled()
    files = []
    for k in range(12):
        f = tmp_path / f"f{k:02d}.tif"
        f.write_bytes(b"x")
        files.append(f)
        recent.add(f)
    assert recent.paths() == files[11:1:-1]  # 10 entries: f00 and f01 dropped
    recent.add(files[3])  # re-opening moves it to the top, once
    expected = [files[3]] + files[11:3:-1] + [files[2]]
    assert recent.paths() == expected
    assert _names(recent)[:3] == ["&1 f03.tif", "&2 f11.tif", "&3 f10.tif"]
    assert _names(recent)[-1] == "&0 f02.tif"
    assert menu.isEnabled() and menu.actions()[-1].text() == "&Clear list"

    # Persisted: a new list over the same settings file reads it back.
    settings.sync()
    again = RecentFiles(QMenu(), opened.append,
                        settings=QSettings(settings.fileName(), QSettings.Format.IniFormat))
    assert again.paths() == expected

    files[11].unlink()
    files[5].unlink()
    assert recent.paths() == [files[3]] + files[10:5:-1] + [files[4], files[2]]
    assert settings.value(RecentFiles.KEY)[1] == str(files[10])
    assert len(recent.actions()) == 8

    recent.actions()[1].trigger()
    assert opened == [files[10]]
    files[10].unlink()
    recent.actions()[1].trigger()  # deleted meanwhile: pruned, not opened
    assert opened == [files[10]] and files[10] not in recent.paths()

    menu.actions()[-1].trigger()  # Clear list
    assert recent.paths() == [] and recent.actions() == [] and not menu.isEnabled()


def test_memory_only_without_settings(qtbot, tmp_path):
    from cellpol_app.recent import RecentFiles

    f = tmp_path / "a.tif"
    f.write_bytes(b"x")
    recent = RecentFiles(QMenu(), lambda p: None)
    recent.add(f)
    assert recent.paths() == [f]
    assert RecentFiles(QMenu(), lambda p: None).paths() == []


def test_window_records_opened_images_and_reopens(qtbot, tmp_path, settings, monkeypatch):
    from cellpol_app.annotator import AnnotatorWindow

    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **kw: errors.append(a))
    a = _image(tmp_path / "a.ome.tif", 10)
    b = _image(tmp_path / "b.ome.tif", 20)
    w = AnnotatorWindow(detect_device=False, settings=settings)
    qtbot.addWidget(w)
    file_menu = w.menuBar().actions()[0].menu()
    assert w.recent_menu.menuAction() in file_menu.actions()
    assert not w.recent_menu.isEnabled()

    assert w.load_image(a, background=False)
    assert w.load_image(b, background=False)
    assert w.recent.paths() == [b, a]
    assert settings.value("recentFiles") == [str(b), str(a)]
    w.recent.actions()[1].trigger()  # "a" again
    assert w.image_path == a and w.recent.paths() == [a, b]
    assert not errors

    assert not w.load_image(tmp_path / "missing.tif", background=False)  # failed: not listed
    assert len(errors) == 1 and w.recent.paths() == [a, b]

    # A second window (next session) shows the same list.
    w2 = AnnotatorWindow(detect_device=False, settings=settings)
    qtbot.addWidget(w2)
    assert [x.text() for x in w2.recent.actions()] == ["&1 a.ome.tif", "&2 b.ome.tif"]
