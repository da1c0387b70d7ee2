"""Side docks of the main window: where they go, and the layout the window remembers.

The job docks (Training, Evaluation, Analysis, Synthetic data) open as tabs of
one group on the right, next to the 3D view, so they never take height from
the slice views. :func:`arrange_docks` puts every dock in that default place;
the window saves the layout the user makes (``QMainWindow.saveState``) and
View → Reset layout brings the default back.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget

#: Where the side docks go.
SIDE_AREA = Qt.DockWidgetArea.RightDockWidgetArea
#: Docks tabbed with the 3D view, in tab order (window attribute names).
TABBED_DOCKS = ("loss_dock", "metrics_dock", "analysis_dock", "synthetic_dock")
#: Width of the side column at start: this share of the window, at most SIDE_WIDTH pixels.
SIDE_SHARE = 0.35
SIDE_WIDTH = 480


def side_width(window_width: int) -> int:
    """Width of the side dock column for a window this wide."""
    return int(min(SIDE_WIDTH, SIDE_SHARE * window_width))


def scrollable(panel):
    """``panel`` in a scroll area: a short dock scrolls it instead of growing the window."""
    from PySide6.QtWidgets import QFrame, QScrollArea

    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(panel)
    area.setMinimumHeight(120)
    return area


def install_dock(window, panel, *, title, name, view_text, tip="", area=SIDE_AREA,
                 scroll=False):
    """Put ``panel`` in a hidden dock of ``window``, toggled from View.

    The dock joins the side tab group (see :func:`arrange_docks`). The panel's
    ``refresh()`` runs when the dock is shown and, while it is shown, whenever
    the annotations change or an image is opened. With ``scroll`` the panel
    scrolls in a short dock (:func:`scrollable`). ``dock.panel`` is the panel.

    Returns
    -------
    dock : QDockWidget
    menus : dict of str to QMenu
        The window's menus by title (without the ``&`` accelerators), for the
        caller's own actions.
    """
    dock = QDockWidget(title, window)
    dock.setObjectName(name)
    dock.setWidget(scrollable(panel) if scroll else panel)
    dock.panel = panel
    window.addDockWidget(area, dock)
    dock.setVisible(False)
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()
             if a.menu() is not None}
    toggle = dock.toggleViewAction()
    toggle.setText(view_text)
    toggle.setStatusTip(tip or f"Show or hide the {title} panel")
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
    dock.panel.refresh()


def raise_dock(dock):
    """Show ``dock`` and bring its tab to the front."""
    dock.setVisible(True)
    dock.raise_()


def arrange_docks(window):
    """The default layout: the 3D view with the job docks as tabs, Contrast under them.

    Docks the window lacks are skipped; the job docks keep their visibility.
    """
    anchor = getattr(window, "view3d_dock", None)
    tabbed = [getattr(window, n) for n in TABBED_DOCKS if getattr(window, n, None) is not None]
    contrast = getattr(window, "contrast_dock", None)
    docks = [d for d in [anchor, *tabbed, contrast] if d is not None]
    if not docks:
        return
    for dock in docks:
        dock.setFloating(False)
        window.addDockWidget(SIDE_AREA, dock)
    first = anchor or tabbed[0]
    if contrast is not None and contrast is not first:
        window.splitDockWidget(first, contrast, Qt.Orientation.Vertical)
    for dock in tabbed:
        if dock is not first:
            window.tabifyDockWidget(first, dock)
    first.raise_()
    window.resizeDocks([first], [side_width(window.width())], Qt.Orientation.Horizontal)


__all__ = ["install_dock", "scrollable", "show_dock", "raise_dock", "arrange_docks", "side_width",
           "SIDE_AREA", "TABBED_DOCKS"]
