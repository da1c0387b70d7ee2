"""File → Open Recent: the last opened images, most recent first, kept in ``QSettings``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

__all__ = ["RecentFiles"]


class RecentFiles(QObject):
    """A most-recent-first list of files, shown as a menu.

    Parameters
    ----------
    menu : QMenu
        The "Open Recent" submenu to fill; rebuilt on every change.
    open_file : callable
        Called with the :class:`~pathlib.Path` of the chosen entry.
    settings : QSettings, optional
        Where the list persists (key :attr:`KEY`). None keeps it in memory only
        (scripts and tests must not touch the user's settings).
    max_files : int
        Longest list.

    Signals
    -------
    changed()
        The list changed.
    """

    KEY = "recentFiles"
    changed = Signal()

    def __init__(self, menu: QMenu, open_file: Callable[[Path], object], *, settings=None,
                 max_files: int = 10, parent=None):
        super().__init__(parent)
        self.menu = menu
        self.open_file = open_file
        self.settings = settings
        self.max_files = int(max_files)
        self._memory: list = []
        self._rebuild()

    # ------------------------------------------------------------------ list
    def _stored(self) -> list:
        if self.settings is None:
            return list(self._memory)
        value = self.settings.value(self.KEY, [])
        if isinstance(value, str):  # QSettings returns a lone entry as a string
            value = [value]
        return [str(v) for v in (value or []) if v]

    def _store(self, paths):
        paths = [str(p) for p in paths][: self.max_files]
        if self.settings is None:
            self._memory = paths
        else:
            self.settings.setValue(self.KEY, paths)
            self.settings.sync()
        self._rebuild()
        self.changed.emit()

    def paths(self) -> list:
        """The existing files of the list, most recent first; missing ones are pruned."""
        stored = self._stored()
        alive = [p for p in stored if Path(p).is_file()]
        if alive != stored:
            self._store(alive)
        return [Path(p) for p in alive]

    def add(self, path):
        """Put ``path`` first (once), dropping the oldest beyond :attr:`max_files`."""
        path = str(Path(path).resolve())
        self._store([path] + [p for p in self._stored() if p != path])

    def clear(self):
        self._store([])

    # ------------------------------------------------------------------ menu
    def _rebuild(self):
        self.menu.clear()
        stored = [p for p in self._stored() if Path(p).is_file()]
        for k, p in enumerate(stored, 1):
            # &1…&9 then &0 for the tenth: a keyboard accelerator per entry.
            action = QAction(f"&{k % 10} {Path(p).name}", self.menu)
            action.setToolTip(p)
            action.setStatusTip(p)
            action.setData(p)
            action.triggered.connect(lambda _=False, q=p: self._chosen(q))
            self.menu.addAction(action)
        if stored:
            self.menu.addSeparator()
        clear = QAction("&Clear list", self.menu)
        clear.setStatusTip("Forget the recently opened images")
        clear.setEnabled(bool(stored))
        clear.triggered.connect(self.clear)
        self.menu.addAction(clear)
        self.menu.setEnabled(bool(stored))

    def actions(self) -> list:
        """The menu's file entries (not the separator or "Clear list")."""
        return [a for a in self.menu.actions() if a.data()]

    def _chosen(self, path: str) -> Optional[object]:
        if not Path(path).is_file():
            self.paths()  # prunes it
            return None
        return self.open_file(Path(path))
