"""Keeping the user's annotations: scratch copies, failed saves, questions before discarding.

- Pairs drawn on an image outside a project are autosaved to a scratch CSV in
  the user's data folder (one per image, named after its path); opening that
  image again without a project offers them back.
- :class:`SaveWatcher` follows the annotation model's autosave: when a write
  fails (a full disk), the edit stays in memory, the status bar says so and a
  dialog tells it once; the save is retried on a timer with backoff and at the
  next edit, and the status bar says when it has worked again.
- :func:`ask_choice` asks the questions (discard unsaved pairs? replace or
  merge an import?); tests replace it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

from PySide6.QtCore import QObject, QStandardPaths, QTimer
from PySide6.QtWidgets import QLabel, QMessageBox

from cellpol_core.errors import InputError
from cellpol_core.io.paths import image_stem

__all__ = ["ask_choice", "ask_later", "confirm_discard", "unsaved_text", "scratch_folder", "scratch_path", "scratch_annotations",
           "SaveWatcher", "SCRATCH_ENV"]

#: Environment variable naming another scratch folder (tests, portable installs).
SCRATCH_ENV = "CELLPOL_SCRATCH_DIR"
#: First and longest wait between retries of a failed autosave, ms.
RETRY_FIRST_MS = 2000
RETRY_MAX_MS = 60000


def ask_choice(parent, title: str, text: str, choices: Sequence[str], *, default: int = 0,
               escape: Optional[int] = None) -> Optional[str]:
    """Ask a question with one button per choice; returns the chosen text.

    ``escape`` is the index Esc (or closing the box) picks; without one, Esc
    returns None.
    """
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton,
                      parent)
    buttons = [box.addButton(c, QMessageBox.ButtonRole.ActionRole) for c in choices]
    box.setDefaultButton(buttons[default])
    if escape is not None:
        box.setEscapeButton(buttons[escape])
    box.exec()
    clicked = box.clickedButton()
    box.deleteLater()
    return choices[buttons.index(clicked)] if clicked in buttons else None


def ask_later(parent, title: str, text: str, choices: Sequence[str], on_answer, *,
              default: int = 0, escape: Optional[int] = None) -> QMessageBox:
    """Like :func:`ask_choice`, without blocking: the box opens (window-modal) and
    ``on_answer(choice)`` runs when a button is clicked (``choice`` None for Esc
    without an ``escape`` button). Returns the box (its buttons' texts are ``choices``).

    For questions asked while closing the window: a blocked ``closeEvent``
    would also block whoever closes the window from code.
    """
    box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton,
                      parent)
    buttons = [box.addButton(c, QMessageBox.ButtonRole.ActionRole) for c in choices]
    box.setDefaultButton(buttons[default])
    if escape is not None:
        box.setEscapeButton(buttons[escape])

    def finished(_code):
        clicked = box.clickedButton()
        box.deleteLater()
        on_answer(choices[buttons.index(clicked)] if clicked in buttons else None)

    box.finished.connect(finished)
    box.open()
    return box


def confirm_discard(window, doing: str) -> bool:
    """True when the window's pairs may be replaced (all on disk, or the user agrees).

    ``doing`` names what would discard them ("Open the image"). A failed
    autosave is retried first.
    """
    model = window.annotations
    if model.save_error is not None:
        model.retry_save()
    if not model.unsaved:
        return True
    choices = [f"{doing} and discard them", "Cancel"]
    return ask_choice(window, "Unsaved annotations", unsaved_text(model), choices,
                      default=1, escape=1) == choices[0]


def unsaved_text(model) -> str:
    """Why the pairs of ``model`` would be lost, and how to keep them."""
    why = (f"could not be saved ({model.save_error})" if model.save_error is not None
           else "are not saved in any file (the image has no file and no project)")
    return (f"{len(model)} pairs {why}.\n\nTo keep them, choose Cancel, then File → "
            f"Export annotations CSV… (or free some disk space).")


def scratch_folder() -> Path:
    """Where pairs drawn without a project are kept (``$CELLPOL_SCRATCH_DIR``, else the
    user's application data folder)."""
    env = os.environ.get(SCRATCH_ENV)
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".cellpol") / "scratch"


def scratch_path(image_path) -> Path:
    """The scratch CSV of the image at ``image_path`` (its stem and a hash of its full path)."""
    full = str(Path(image_path).absolute())
    digest = hashlib.sha1(full.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return scratch_folder() / f"{image_stem(full)}-{digest}_annotations.csv"


def scratch_annotations(window, image_path):
    """(table or None, autosave path or None) for an image opened without a project.

    When the image has a scratch copy with pairs, the user is asked whether to
    restore them; declining deletes the copy. An unreadable copy is reported
    and left alone (the pairs then stay in memory only).
    """
    from cellpol_core.io.vectors import read_vectors

    path = scratch_path(image_path)
    if not path.is_file():
        return None, path
    try:
        table = read_vectors(path)
    except InputError as exc:
        window.show_error(f"Pairs kept without a project cannot be read back: {exc}")
        return None, None
    if not len(table):
        return None, path
    answer = ask_choice(
        window, "Restore annotations",
        f"{Path(image_path).name} has {len(table)} pairs annotated earlier without a "
        f"project (kept in {path}).\n\nRestore them?", ["Restore", "Discard them"],
        default=0, escape=0)
    if answer == "Discard them":
        try:
            path.unlink()
        except OSError as exc:
            window.show_error(f"{path}: cannot remove ({exc.strerror})")
            return None, None
        return None, path
    return table, path


class SaveWatcher(QObject):
    """Shows and retries failed autosaves of ``model`` in ``window`` (see the module docstring).

    Attributes
    ----------
    label : QLabel
        The status bar's warning, visible while some edits are not on disk.
    timer : QTimer
        The next retry.
    delay_ms : int
        The wait before the next retry (doubles up to :data:`RETRY_MAX_MS`).
    """

    def __init__(self, window, model):
        super().__init__(window)
        self.window = window
        self.model = model
        self.delay_ms = RETRY_FIRST_MS
        self.label = QLabel()
        self.label.setStyleSheet("color: #ff5050; font-weight: bold")
        self.label.setVisible(False)
        window.statusBar().addPermanentWidget(self.label)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.retry)
        #: The open "quit and lose unsaved pairs?" question, if any.
        self.quit_question = None
        self._discard_confirmed = False
        model.add_save_listener(self._state_changed)
        model.add_listener(self._sync)

    def _state_changed(self):
        error = self.model.save_error
        if error is not None:  # the first failure of a run of them: say it once
            self.delay_ms = RETRY_FIRST_MS
            self._show_failing()
            # After the edit has ended (a modal dialog inside it would run a nested loop).
            QTimer.singleShot(0, self, lambda: self.window.show_error(
                f"The annotations could not be saved: {error}\n\nYour edits are kept in "
                f"memory, and saving is retried (every edit tries again). Free some space "
                f"or fix the folder; the status bar says when they are saved."))
        else:
            self.timer.stop()
            self.label.setVisible(False)
            self.window.show_message(f"Annotations saved again to {self.model.autosave_path}",
                                     10000)

    def _show_failing(self):
        self.timer.start(self.delay_ms)
        self._update_label()
        self.label.setVisible(True)

    def _update_label(self):
        self.label.setText(f"⚠ {len(self.model)} pairs NOT saved (next try in "
                           f"{self.delay_ms // 1000} s, or at the next edit)")
        self.label.setToolTip(self.model.save_error or "")

    def _sync(self):
        if self.model.save_error is not None:
            self._update_label()
        elif self.label.isVisible():  # another image's pairs, read from a file, replaced them
            self.timer.stop()
            self.label.setVisible(False)

    def confirm_quit(self) -> bool:
        """True when the window may close: every pair is in a file, or the user agreed to
        lose them. Otherwise asks without blocking (:attr:`quit_question`); choosing to
        discard closes the window again."""
        if self.model.save_error is not None:
            self.model.retry_save()
        if self._discard_confirmed or not self.model.unsaved:
            return True
        if self.quit_question is not None:
            self.quit_question.raise_()
            return False
        choices = ("Quit and discard them", "Cancel")

        def answer(choice):
            self.quit_question = None
            if choice == choices[0]:
                self._discard_confirmed = True
                self.window.close()

        self.quit_question = ask_later(self.window, "Unsaved annotations",
                                       unsaved_text(self.model), choices, answer,
                                       default=1, escape=1)
        return False

    def retry(self) -> bool:
        """Try the save again now; True when every edit is on disk."""
        if self.model.save_error is None:
            return True
        if self.model.retry_save():
            return True
        self.delay_ms = min(2 * self.delay_ms, RETRY_MAX_MS)
        self._show_failing()
        return False
