"""Side docks of the main window that follow the annotations and the open image."""

from __future__ import annotations

from PySide6.QtWidgets import QDockWidget


def install_dock(window, panel, *, title, name, area, view_text):
    """Put ``panel`` in a hidden dock of ``window``, toggled from View.

    The panel's ``refresh()`` runs when the dock is shown and, while it is
    shown, whenever the annotations change or an image is opened.

    Returns
    -------
    dock : QDockWidget
    menus : dict of str to QMenu
        The window's menus by title (without the ``&`` accelerators), for the
        caller's own actions.
    """
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(panel)
    window.addDockWidget(area, dock)
    dock.setVisible(False)
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()
             if a.menu() is not None}
    toggle = dock.toggleViewAction()
    toggle.setText(view_text)
    if "View" in menus:
        menus["View"].addAction(toggle)

    def follow():
        if not dock.isHidden():  # shown, even while the window itself is not yet
            panel.refresh()

    window.annotations.add_listener(follow)
    window.image_loaded.connect(lambda _path: follow())
    dock.visibilityChanged.connect(lambda on: on and panel.refresh())
    return dock, menus


def show_dock(dock):
    """Show a dock installed by :func:`install_dock`, brought to front and refreshed."""
    dock.setVisible(True)
    dock.raise_()
    dock.widget().refresh()


__all__ = ["install_dock", "show_dock"]
