"""The app never drops the user's pairs: scratch copies without a project, questions before
discarding, undoable imports, and a full disk during autosave."""

import errno

import numpy as np
import pytest
from gui_phantom import GOLGI, NUCLEI, VOXEL, blobs, open_window

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QMessageBox  # noqa: E402

from cellpol_core.errors import OutputError  # noqa: E402
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vectors  # noqa: E402

pytestmark = pytest.mark.gui


class Questions:
    """Answers the app's modal questions (QMessageBox.exec) by clicking the button named
    ``answer``; records each question's text."""

    def __init__(self):
        self.asked = []
        self.answer = None

    def exec(self, box):
        self.asked.append(box.text())
        names = [b.text() for b in box.buttons()]
        assert self.answer in names, f"no button {self.answer!r} in {names}: {box.text()}"
        box.buttons()[names.index(self.answer)].click()
        return 0


@pytest.fixture
def questions(monkeypatch):
    q = Questions()
    monkeypatch.setattr(QMessageBox, "exec", lambda box: q.exec(box))
    return q


def _image(tmp_path, name, seed=1):
    from cellpol_core.io.image import write_ome_tiff

    rng = np.random.default_rng(seed)
    path = tmp_path / f"{name}.ome.tif"
    write_ome_tiff(path, np.stack([blobs(NUCLEI, rng), blobs(GOLGI, rng)]), voxel_size=VOXEL,
                   channel_names=["nucleus", "golgi"])
    return path


def _bare_window(qtbot):
    from cellpol_app.annotator import AnnotatorWindow

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    return w


def _annotate(w, n=3, *, first=0):
    from cellpol_app.commands import AddPair

    for s, e in list(zip(NUCLEI, GOLGI))[first:first + n]:
        w.undo_stack.push(AddPair(w.annotations, s, e))


def _click(box, text):
    names = [b.text() for b in box.buttons()]
    box.buttons()[names.index(text)].click()


# ----------------------------------------------------------------------------- 13: no project
def test_pairs_without_a_project_are_kept_and_offered_back(qtbot, tmp_path, questions, errors):
    a, b = _image(tmp_path, "a"), _image(tmp_path, "b", seed=2)
    w = _bare_window(qtbot)
    assert w.load_image(a, background=False)
    _annotate(w)
    assert w.load_image(b, background=False)  # nothing asked: the pairs are on disk
    assert len(w.annotations) == 0 and questions.asked == []
    questions.answer = "Restore"
    assert w.load_image(a, background=False)
    assert len(questions.asked) == 1 and "3 pairs" in questions.asked[0]
    assert len(w.annotations) == 3 and "kept (no project)" in w.pairs_title.text()
    np.testing.assert_allclose(w.annotations.to_table().start, NUCLEI)

    # Quitting keeps them too: a new window offers them back.
    w.close()
    assert not w.isVisible() and len(questions.asked) == 1
    w2 = _bare_window(qtbot)
    assert w2.load_image(a, background=False)
    assert len(w2.annotations) == 3 and len(questions.asked) == 2
    # Declining deletes the scratch copy: the next opening starts empty, unasked.
    questions.answer = "Discard them"
    assert w2.load_image(b, background=False) and w2.load_image(a, background=False)
    assert len(w2.annotations) == 0 and len(questions.asked) == 3
    assert w2.load_image(b, background=False) and w2.load_image(a, background=False)
    assert len(w2.annotations) == 0 and len(questions.asked) == 3 and not errors


def test_pairs_in_no_file_are_not_dropped_without_asking(qtbot, tmp_path, questions, errors):
    import dataclasses

    from cellpol_core.io.image import read_image

    # An image from a script: no file, so no scratch copy either.
    image = dataclasses.replace(read_image(_image(tmp_path, "a")), path=None)
    w = _bare_window(qtbot)
    w.show()
    w.set_image(image)
    _annotate(w)
    assert " · not saved" in w.pairs_title.text()
    questions.answer = "Cancel"
    w.load_image(_image(tmp_path, "b"), background=False)
    assert len(questions.asked) == 1 and "3 pairs" in questions.asked[0]
    assert w.image_path is None and len(w.annotations) == 3  # still the same image

    # Quitting asks too, without blocking whoever closes the window.
    assert not w.close() and w.isVisible()
    box = w.save_watcher.quit_question
    assert box is not None and "3 pairs" in box.text()
    _click(box, "Cancel")
    assert w.isVisible()
    assert not w.close()
    _click(w.save_watcher.quit_question, "Quit and discard them")
    assert not w.isVisible() and not errors


# ----------------------------------------------------------------------------- 14: import
def test_import_asks_replace_or_merge_and_is_one_undo_step(qtbot, tmp_path, questions, errors):
    w = open_window(qtbot, tmp_path)
    _annotate(w, 2)
    saved = w.annotations.autosave_path
    csv = tmp_path / "other.csv"
    # One pair already annotated, one new.
    write_vectors(csv, VectorTable(np.array([NUCLEI[0], (5, 5, 5)], float),
                                   np.array([GOLGI[0], (5, 5, 9)], float)))
    before = w.annotations.to_table().start.tolist()
    steps = w.undo_stack.count()

    questions.answer = "Cancel"
    assert not w.import_annotations(csv)
    assert len(questions.asked) == 1 and "2 pairs already" in questions.asked[0]
    assert w.annotations.to_table().start.tolist() == before and w.undo_stack.count() == steps

    questions.answer = "Merge"
    assert w.import_annotations(csv)
    assert w.annotations.to_table().start.tolist() == before + [[5, 5, 5]]
    assert len(read_vectors(saved)) == 3 and w.undo_stack.count() == steps + 1
    w.undo_stack.undo()
    assert w.annotations.to_table().start.tolist() == before and len(read_vectors(saved)) == 2

    questions.answer = "Replace"
    assert w.import_annotations(csv)
    assert w.annotations.to_table().start.tolist() == [list(NUCLEI[0]), [5, 5, 5]]
    assert len(read_vectors(saved)) == 2 and w.undo_stack.count() == steps + 1
    w.undo_stack.undo()  # the earlier pairs (and edits) are back, and saved
    assert w.annotations.to_table().start.tolist() == before
    np.testing.assert_allclose(read_vectors(saved).start, before)
    w.undo_stack.undo()  # the undo history from before the import still works
    assert len(w.annotations) == 1
    w.undo_stack.redo()
    w.undo_stack.redo()
    assert w.annotations.to_table().start.tolist() == [list(NUCLEI[0]), [5, 5, 5]]
    assert len(questions.asked) == 3 and not errors


def test_import_into_no_pairs_asks_nothing(qtbot, tmp_path, questions, errors):
    w = open_window(qtbot, tmp_path)
    csv = tmp_path / "other.csv"
    write_vectors(csv, VectorTable(np.array(NUCLEI, float), np.array(GOLGI, float)))
    assert w.import_annotations(csv)
    assert len(w.annotations) == 3 and questions.asked == [] and w.undo_stack.count() == 1
    w.undo_stack.undo()
    assert len(w.annotations) == 0 and len(read_vectors(w.annotations.autosave_path)) == 0


# ----------------------------------------------------------------------------- 17: disk full
@pytest.fixture(params=["OutputError", "ENOSPC"])
def full_disk(request, monkeypatch):
    """Makes the annotation CSV's atomic write fail as on a full disk; ``.free()`` ends it."""
    import cellpol_core.io.vectors as vectors

    real = vectors.write_text_atomic

    class Disk:
        full = True
        tries = 0

        def write(self, path, text, **kw):
            if self.full:
                self.tries += 1
                if request.param == "ENOSPC":
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))
                raise OutputError("cannot write the file: the disk is full", path)
            return real(path, text, **kw)

        def free(self):
            self.full = False

    disk = Disk()
    monkeypatch.setattr(vectors, "write_text_atomic", disk.write)
    return disk


def test_full_disk_keeps_edits_tells_once_and_retries(qtbot, tmp_path, full_disk, errors,
                                                      questions):
    from cellpol_app import safekeeping

    w = open_window(qtbot, tmp_path)
    watcher = w.save_watcher
    saved = w.annotations.autosave_path
    _annotate(w, 1)  # the edit is kept in memory
    assert len(w.annotations) == 1 and not saved.exists()
    qtbot.waitUntil(lambda: len(errors) == 1)  # told once the edit has ended
    assert "could not be saved" in errors[0][2]
    assert "disk is full" in errors[0][2] and str(saved.name) in errors[0][2]
    assert watcher.label.isVisibleTo(w) and "1 pairs NOT saved" in watcher.label.text()
    assert " · NOT saved" in w.pairs_title.text() and watcher.timer.isActive()
    _annotate(w, 1, first=1)  # every edit tries again; the dialog is not repeated
    qtbot.wait(50)
    assert len(errors) == 1 and full_disk.tries == 2
    assert "2 pairs NOT saved" in watcher.label.text()
    # The timer retries with a growing wait.
    assert watcher.delay_ms == safekeeping.RETRY_FIRST_MS
    assert not watcher.retry() and full_disk.tries == 3
    assert watcher.delay_ms == 2 * safekeeping.RETRY_FIRST_MS and watcher.timer.isActive()
    # Opening another image would drop the unsaved pairs: asked first.
    questions.answer = "Cancel"
    w.load_image(_image(tmp_path, "b", seed=2), background=False)
    assert len(questions.asked) == 1 and "could not be saved" in questions.asked[0]
    assert len(w.annotations) == 2 and w.image_path.name == "phantom.ome.tif"

    full_disk.free()  # the timer's next try succeeds and says so
    qtbot.waitUntil(lambda: not watcher.label.isVisibleTo(w), timeout=20000)
    assert len(read_vectors(saved)) == 2 and w.annotations.save_error is None
    assert "saved again" in w.statusBar().currentMessage()
    assert not watcher.timer.isActive() and " · autosaved" in w.pairs_title.text()
    assert len(errors) == 1


def test_full_disk_next_edit_saves_when_space_is_back(qtbot, tmp_path, full_disk, errors):
    w = open_window(qtbot, tmp_path)
    _annotate(w, 1)
    qtbot.waitUntil(lambda: len(errors) == 1)
    assert w.save_watcher.label.isVisibleTo(w)
    full_disk.free()
    _annotate(w, 1, first=1)  # the next edit writes everything
    assert len(read_vectors(w.annotations.autosave_path)) == 2
    assert not w.save_watcher.label.isVisibleTo(w) and not w.save_watcher.timer.isActive()
    assert "saved again" in w.statusBar().currentMessage()
    # A new failure later is told again (once).
    full_disk.full = True
    _annotate(w, 1, first=2)
    qtbot.waitUntil(lambda: len(errors) == 2)
    assert w.save_watcher.label.isVisibleTo(w)


def test_model_keeps_failed_edit_and_reports_state(tmp_path, full_disk, qapp):
    from cellpol_app.annotations import AnnotationModel

    model = AnnotationModel(autosave_path=tmp_path / "a.csv")
    seen = []
    model.add_save_listener(lambda: seen.append(model.save_error))
    model.add_pair((0, 1, 1), (0, 1, 3))
    assert len(model) == 1 and model.unsaved and len(seen) == 1 and "a.csv" in seen[0]
    model.add_pair((0, 2, 1), (0, 2, 3))
    assert len(seen) == 1  # still failing: no new report
    assert not model.retry_save()
    full_disk.free()
    assert model.retry_save() and seen[-1] is None and not model.unsaved
    assert len(read_vectors(tmp_path / "a.csv")) == 2
