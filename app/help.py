"""Help for people new to the app: quick start, keyboard shortcuts, the README, menu tips.

:func:`install_help` adds to the Help menu a quick start (open → annotate →
predict → correct → fine-tune → statistics), a sheet of the keyboard and mouse
shortcuts (read from the window's actions, so it never drifts from them), and
the user guide (the README shipped with the app, shown in a window). It also
gives every menu action a status-bar tip (:data:`ACTION_TIPS`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QTextBrowser,
    QVBoxLayout,
)

__all__ = ["install_help", "HelpDialog", "find_readme", "readme_text", "shortcut_rows",
           "quick_start_html", "ACTION_TIPS", "menu_actions"]

#: Status-bar tips of the menu actions, by their text without ``&`` and ``…``.
ACTION_TIPS = {
    # File
    "Open image": "Open a TIFF, LSM or OME-TIFF image (or drop it on the window)",
    "Open Recent": "Images opened lately",
    "Open vectors CSV": "Draw a table of vectors (predictions or ground truth) over the image",
    "New project": "Make a project folder: the open image and its pairs join it, "
                   "annotations are saved automatically",
    "Open project": "Open a project folder (cellpol_project.json) and its first image",
    "Import annotations CSV": "Replace the annotations with the pairs of a CSV (CellPol or "
                              "VectorAnnotationTool)",
    "Export annotations CSV": "Save the annotated pairs to a CSV of your choice",
    "Export views as PNG": "Save the slice views as they are on screen",
    "Export 3D view as PNG": "Save the 3D view as it is on screen",
    "Quit": "Close CellPol (annotations are already saved in the project)",
    "Clear list": "Forget the recently opened images",
    # Annotate
    "Undo": "Undo the last change to the pairs",
    "Redo": "Redo the change just undone",
    "Annotation mode": "Clicks place pairs: first the start structure, then the end structure",
    "Snap to maximum": "Clicks go to the brightest voxel nearby, in 3D",
    "Delete pair": "Delete the selected pair",
    "Re-pair two selected pairs": "Swap the end points of the two pairs selected in the table",
    "Cancel half-placed pair": "Forget a start point that has no end point yet",
    "Accept predictions": "Copy the shown predictions into the annotations, to correct them",
    # View
    "Maximum projection": "Show the brightest voxel along Z instead of one slice",
    "Show vectors": "Show or hide the predicted (or loaded) vectors",
    "Fit to window": "Zoom so that the whole image is seen",
    "3D view": "Show or hide the 3D view",
    "Contrast": "Show or hide the contrast panel (per channel limits, gamma, colour)",
    "Training": "Show or hide the training panel (loss curves)",
    "Evaluation": "Show or hide the evaluation panel",
    "Analysis": "Show or hide the polarity statistics panel",
    "Synthetic data": "Show or hide the synthetic training data panel",
    "Reset layout": "Put the panels back where they were at first",
    # Jobs
    "Predict with Otsu (classical)": "Find the structures by thresholding (no model needed)",
    "Predict with the bundled demo model": "Predict this image with the model shipped with "
                                           "CellPol (trained on the demo)",
    "Predict with the bundled model for this image": "Predict this image with the model "
                                                     "shipped with CellPol for its kind of "
                                                     "image (3D or 2D)",
    "Predict with a model folder": "Predict this image with one of the project's models or "
                                   "another model folder",
    "Predict all project images": "Predict every image of the project in one job",
    "Train / fine-tune": "Train a model on the project's annotated images, or fine-tune one",
    "Synthetic training data": "Mask dictionary, GAN, synthetic images and pre-training",
    "Tune thresholds of a model folder": "Choose a model's detection thresholds to best match "
                                         "your annotations",
    "Evaluate predictions against annotations": "Compare the shown predictions with your "
                                                "annotations (found, missed, false)",
    "Polarity statistics": "Mean direction, its strength and tests, per image",
    # Help
    "Quick start": "The workflow in six steps",
    "Keyboard shortcuts": "Every key and mouse gesture",
    "User guide (README)": "The full user guide shipped with CellPol",
    "Open demo": "Open the bundled demo image with its ground-truth vectors",
    "About CellPol": "Version and licence",
}

#: Mouse gestures of the slice views (not actions, so listed here).
MOUSE_ROWS = (
    ("Wheel", "Next / previous slice"),
    ("Ctrl+wheel", "Zoom"),
    ("Drag", "Pan (drag an end point of a pair to move it)"),
    ("Click (annotation mode)", "Place the start, then the end of a pair"),
    ("Right-click", "The views' menu"),
    ("Drag in the 3D view", "Rotate; Shift+drag pans"),
)


def quick_start_html() -> str:
    """The quick start: the workflow in six steps."""
    steps = (
        ("Open", "File → Open image (or drop a file on the window), or Help → Open demo. "
                 "Choose which channel is the start structure (e.g. the nucleus) and which "
                 "the end (e.g. the Golgi), and check the voxel size. File → New project "
                 "keeps everything in one folder, saved automatically."),
        ("Annotate", "Press <b>A</b>, click a start structure, then its end structure: a "
                     "pair. <b>S</b> snaps clicks to the brightest voxel. Scroll to change "
                     "slice, Ctrl+scroll to zoom, <b>Del</b> deletes the selected pair, "
                     "Ctrl+Z undoes."),
        ("Predict", "Jobs → Predict: with Otsu (no model), the bundled demo model, or one of "
                    "your project's models. Predictions appear as arrows (blue) next to your "
                    "annotations (white)."),
        ("Correct", "Annotate → Accept predictions copies them into your annotations; then "
                    "delete the wrong pairs and add the missed ones. Jobs → Evaluate tells "
                    "how many were found, missed or false (inside the annotated region, when "
                    "only part of the image is annotated)."),
        ("Fine-tune", "Jobs → Train / fine-tune trains a model on your corrected images, or "
                      "continues one of the project's models. The Training panel shows the "
                      "loss after each epoch; Cancel keeps a checkpoint to resume from."),
        ("Statistics", "Jobs → Polarity statistics: the mean direction per image, how "
                       "strongly the cells agree (R) and the tests. For a reference "
                       "direction press Draw… and drag on the XY view; Export report writes "
                       "the tables and plots."),
    )
    items = "".join(f"<li><b>{name}.</b> {text}</li>" for name, text in steps)
    return (f"<h3>Quick start</h3><ol>{items}</ol>"
            "<p>Every menu entry says what it does in the status bar; every control has a "
            "tooltip. Help → Keyboard shortcuts lists the keys, Help → User guide the rest."
            "</p>")


def menu_actions(window) -> list:
    """Every action of the window's menus and their submenus (no separators)."""
    out = []

    def walk(menu):
        for action in menu.actions():
            if action.isSeparator():
                continue
            out.append(action)
            if action.menu() is not None:
                walk(action.menu())

    for action in window.menuBar().actions():
        if action.menu() is not None:
            walk(action.menu())
    return out


def _plain(text: str) -> str:
    return text.replace("&", "").replace("…", "").strip()


def shortcut_rows(window) -> list:
    """(keys, what it does) for every menu action with a shortcut, then the mouse gestures."""
    rows, seen = [], set()
    for action in menu_actions(window) + list(window.actions()):
        keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                         for k in action.shortcuts() if not k.isEmpty())
        name = _plain(action.text())
        if keys and (keys, name) not in seen:
            seen.add((keys, name))
            rows.append((keys, name))
    return rows + list(MOUSE_ROWS)


def _shortcuts_html(window) -> str:
    cells = "".join(f"<tr><td style='padding:2px 14px 2px 0'><b>{k}</b></td><td>{v}</td></tr>"
                    for k, v in shortcut_rows(window))
    return f"<h3>Keyboard and mouse</h3><table>{cells}</table>"


def find_readme() -> Optional[Path]:
    """The README shipped with the app: in a bundle, next to the resources, or in the source.

    None when there is no file (an installed wheel); :func:`readme_text` then
    reads the copy in the package metadata.
    """
    from cellpol_core.io.resources import resources_dir

    candidates = []
    base = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and base:
        candidates.append(Path(base) / "README.md")
    candidates.append(resources_dir() / "README.md")
    import cellpol_core

    candidates.append(Path(cellpol_core.__file__).resolve().parents[1] / "README.md")
    return next((p for p in candidates if p.is_file()), None)


def readme_text() -> tuple:
    """(markdown text, folder its images are relative to or None); ("", None) when absent."""
    path = find_readme()
    if path is not None:
        try:
            return path.read_text(encoding="utf-8"), path.parent
        except OSError:
            pass
    try:  # an installed package carries the README as its long description
        import importlib.metadata as metadata

        meta = metadata.metadata("cellpol")
        return (meta.get_payload() or meta.get("Description") or ""), None
    except Exception:  # no metadata at all: the dialog says so
        return "", None


class HelpDialog(QDialog):
    """A resizable, non-modal window showing HTML or Markdown help text."""

    def __init__(self, title, *, html=None, markdown=None, base=None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        if base is not None:
            self.browser.setSearchPaths([str(base)])
        if markdown is not None:
            self.browser.setMarkdown(markdown)
        else:
            self.browser.setHtml(html or "")
        layout.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
        self.resize(*_fit(parent, 640, 440))

    def text(self) -> str:
        return self.browser.toPlainText()


def _fit(parent, width, height):
    # Never larger than the window (or screen) it opens over.
    screen = parent.screen().availableGeometry() if parent is not None else None
    if screen is None:
        return width, height
    return min(width, int(screen.width() * 0.9)), min(height, int(screen.height() * 0.85))


def _show(window, attr, dialog):
    old = getattr(window, attr, None)
    if old is not None:
        old.close()
        old.deleteLater()
    setattr(window, attr, dialog)
    dialog.show()
    dialog.raise_()
    return dialog


def show_quick_start(window) -> HelpDialog:
    return _show(window, "help_dialog",
                 HelpDialog("CellPol quick start", html=quick_start_html(), parent=window))


def show_shortcuts(window) -> HelpDialog:
    return _show(window, "help_dialog",
                 HelpDialog("Keyboard shortcuts", html=_shortcuts_html(window), parent=window))


def show_readme(window) -> HelpDialog:
    text, base = readme_text()
    if not text:
        text = ("The user guide (README.md) is not part of this installation. It is the "
                "README of the CellPol source.")
    dialog = HelpDialog("CellPol user guide", markdown=text, base=base, parent=window)
    dialog.resize(*_fit(window, 900, 700))
    return _show(window, "help_dialog", dialog)


def fill_action_tips(window) -> list:
    """Give the menu actions their :data:`ACTION_TIPS`; returns the texts that have none."""
    missing = []
    for action in menu_actions(window):
        if action.statusTip():
            continue
        tip = ACTION_TIPS.get(_plain(action.text()))
        if tip is None and action.data():  # Open Recent entries: the file's path
            tip = str(action.data())
        if tip is None:
            missing.append(_plain(action.text()))
            continue
        action.setStatusTip(tip)
    return missing


def install_help(window):
    """Add the help entries to the window's Help menu and the tips to its menu actions.

    Sets ``window.quick_start_action``, ``window.shortcuts_action`` and
    ``window.readme_action``; ``window.show_quick_start()`` and friends open
    the dialogs (``window.help_dialog`` is the one shown).
    """
    menus = {_plain(a.text()): a.menu() for a in window.menuBar().actions()
             if a.menu() is not None}
    menu = menus["Help"]
    first = menu.actions()[0] if menu.actions() else None
    specs = (("quick_start_action", "&Quick start", "F1", lambda: show_quick_start(window)),
             ("shortcuts_action", "&Keyboard shortcuts", "Ctrl+/",
              lambda: show_shortcuts(window)),
             ("readme_action", "User &guide (README)", None, lambda: show_readme(window)))
    for attr, text, key, slot in specs:
        action = QAction(text, window)
        if key:
            action.setShortcut(key)
        action.triggered.connect(slot)
        menu.insertAction(first, action)
        setattr(window, attr, action)
    if first is not None:
        menu.insertSeparator(first)
    window.show_quick_start = lambda: show_quick_start(window)
    window.show_shortcuts = lambda: show_shortcuts(window)
    window.show_readme = lambda: show_readme(window)
    window.help_dialog = None
    fill_action_tips(window)
