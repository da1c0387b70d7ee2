"""``cellpol-gui``: open the desktop app on an image, a project, or the bundled demo."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cellpol_core

DEFAULT_SIZE = (1200, 800)
#: Share of the screen's free area a new window takes (at least DEFAULT_SIZE where it fits).
SCREEN_SHARE = 0.85
#: Room left for the window frame and title bar, pixels (width, height).
FRAME = (16, 40)


def fit_size(available_width: int, available_height: int) -> tuple:
    """The first size of the window on a screen with this much free room (no taskbars).

    At least :data:`DEFAULT_SIZE`, or :data:`SCREEN_SHARE` of the room on a
    large screen, and never more than the room less the window frame: on a
    1366×768 laptop the whole window, status bar included, stays on screen.
    """
    w = min(max(DEFAULT_SIZE[0], int(SCREEN_SHARE * available_width)),
            available_width - FRAME[0])
    h = min(max(DEFAULT_SIZE[1], int(SCREEN_SHARE * available_height)),
            available_height - FRAME[1])
    return max(w, 320), max(h, 240)


def place_window(window, *, size=None, settings=None):
    """Size ``window`` to its screen's free area (or ``size``), centred, or as last closed."""
    screen = window.screen()
    area = screen.availableGeometry() if screen is not None else None
    if size is not None:
        window.resize(*size)
    elif settings is not None and settings.value("windowGeometry") is not None and \
            window.restoreGeometry(settings.value("windowGeometry")):
        return  # Qt keeps a restored window on screen
    elif area is not None:
        window.resize(*fit_size(area.width(), area.height()))
    else:
        window.resize(*DEFAULT_SIZE)
    if area is not None:
        frame = window.frameGeometry()
        frame.moveCenter(area.center())
        window.move(max(frame.left(), area.left()), max(frame.top(), area.top()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cellpol-gui",
        description="CellPol desktop viewer. With no IMAGE, opens the bundled demo image "
                    "and its ground-truth vectors.")
    p.add_argument("image", nargs="?", metavar="IMAGE",
                   help="image file (.tif, .tiff, .lsm, .ome.tif)")
    p.add_argument("--project", metavar="DIR",
                   help="project folder (cellpol_project.json); with no IMAGE, opens its "
                        "first image, with its annotations and latest predictions")
    p.add_argument("--vectors", metavar="CSV", help="vectors CSV to draw over the image")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="render the window, save it as a PNG and exit (for scripts and tests)")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"),
                   help="window size in pixels (default: fit the screen; "
                        f"{DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]} for --screenshot)")
    p.add_argument("--quit-after", type=float, metavar="SECONDS",
                   help="close the window after this many seconds")
    p.add_argument("--selftest", action="store_true",
                   help="check this installation with no display: predict the bundled demo with "
                        "the bundled model, print the figures, exit non-zero on failure "
                        "(options: --selftest --help)")
    p.add_argument("--version", action="version", version=f"CellPol {cellpol_core.__version__}")
    return p


def _ensure_platform(headless: bool):
    # A scripted screenshot still works on a machine with no display at all.
    if (headless and sys.platform.startswith("linux") and "QT_QPA_PLATFORM" not in os.environ
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _get_app():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    app.setApplicationName("CellPol")
    # No display name of its own: the system adds the application name to window titles once.
    app.setOrganizationName("CellPol")
    app.setOrganizationDomain("cellpol.org")
    app.setApplicationVersion(cellpol_core.__version__)
    # Matches the installed cellpol.desktop, so docks and taskbars show its icon.
    app.setDesktopFileName("cellpol")
    from cellpol_core.io.resources import resources_dir
    from PySide6.QtGui import QIcon

    icon = resources_dir() / "icons" / "cellpol.png"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _fail(message: str) -> int:
    print(f"cellpol-gui: error: {message}", file=sys.stderr)
    return 2


def _settle(app, window, *, timeout=10.0):
    """Process events until the window is painted and the device is known."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if window.device_known:
            break
        time.sleep(0.02)
    for _ in range(5):
        app.processEvents()


def main(argv=None) -> int:
    """Run the desktop viewer; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--selftest" in argv:
        # Before anything imports Qt: the self-test runs with no display.
        from cellpol_core.selftest import main as selftest_main

        return selftest_main([a for a in argv if a != "--selftest"])
    args = build_parser().parse_args(argv)
    headless = args.screenshot is not None

    from cellpol_core.errors import InputError
    from cellpol_core.io.resources import demo_image_path, demo_vectors_path

    image_path = Path(args.image) if args.image else None
    vectors_path = Path(args.vectors) if args.vectors else None
    project = None
    if args.project:
        from .project import Project

        try:
            project = Project.load(args.project)
        except InputError as exc:
            if headless:
                return _fail(str(exc))
            project_error = str(exc)
        else:
            if image_path is None and project.images:
                image_path = project.image_path(project.images[0])
    if headless:
        # Scripted use: bad input is one line on stderr, before Qt says anything.
        from cellpol_core.io.image import read_image
        from cellpol_core.io.vectors import read_vectors

        try:
            if image_path is None:
                image_path = demo_image_path()
                if vectors_path is None:
                    try:
                        vectors_path = demo_vectors_path()
                    except InputError:
                        vectors_path = None
            image = read_image(image_path)
            vectors = read_vectors(vectors_path) if vectors_path else None
        except InputError as exc:
            return _fail(str(exc))
        except (OSError, ValueError) as exc:  # a reader bug must still not print a traceback
            return _fail(f"{image_path}: cannot open ({exc})")

    _ensure_platform(headless)
    app = _get_app()
    from .annotator import AnnotatorWindow

    # The channel dialog and the recent-files list are for people: scripted runs
    # (screenshot, --quit-after) skip them and leave the user's settings alone.
    from PySide6.QtCore import QSettings

    interactive = not headless and args.quit_after is None
    window = AnnotatorWindow(ask_channels=interactive,
                             settings=QSettings() if interactive else None)
    window.set_project(project)
    if headless:
        window.set_image(image, path=image_path)
        if vectors is not None:
            window.set_vectors(vectors, path=vectors_path)
    size = args.size or (DEFAULT_SIZE if headless else None)
    place_window(window, size=size, settings=window.settings)
    window.show()

    if headless:
        _settle(app, window)
        out = Path(args.screenshot)
        out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(out))
        window.close()
        window.deleteLater()
        app.processEvents()
        if not ok:
            return _fail(f"{out}: cannot write the screenshot")
        return 0

    # Interactive: errors appear as dialogs over the (possibly empty) window.
    from PySide6.QtCore import Qt, QTimer

    if args.project and project is None:
        window.show_error(project_error)
    opened = window.open_demo() if image_path is None else window.load_image(image_path)
    if opened and vectors_path is not None:
        window.load_vectors(vectors_path)
    if args.quit_after is not None:
        QTimer.singleShot(int(max(args.quit_after, 0) * 1000), window.close)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    return int(app.exec())
