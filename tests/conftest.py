"""Shared test settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Test tensors are tiny: one thread avoids synchronisation costs, and keeps
    # results identical whatever the machine's core count.
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _scratch_folder(monkeypatch, tmp_path_factory):
    # The app keeps pairs drawn without a project in the user's data folder: each test
    # gets its own (not created until used), so no test sees another's pairs.
    monkeypatch.setenv("CELLPOL_SCRATCH_DIR", str(tmp_path_factory.getbasetemp() / "scratch"
                                                  / os.urandom(6).hex()))


@pytest.fixture
def errors(monkeypatch):
    """Records the error dialogs the app would show (QMessageBox.critical) instead of showing them."""
    from PySide6.QtWidgets import QMessageBox

    calls = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args, **kw: calls.append(args))
    return calls


# ----------------------------------------------------------------------------- GUI availability
# Without Xvfb (or the X11/OpenGL libraries Qt loads), creating a QApplication aborts the
# whole Python process ("Fatal Python error: Aborted"). So before any GUI test runs, a
# throw-away process tries to start Qt; if it cannot, the GUI tests are skipped with one
# line saying why. scripts/install_system_deps.sh installs what is missing.

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

_GUI_FIXTURES = {"qtbot", "qapp", "make_napari_viewer", "errors"}
_GUI_MODULE_MARK = re.compile(r"^pytestmark\s*=.*\bmark\.gui\b", re.MULTILINE)
_INSTALL_HINT = "run scripts/install_system_deps.sh"
_REASON = pytest.StashKey()  # None: the GUI works; str: why the GUI tests are skipped
_QT_IMPORT = pytest.StashKey()  # the ImportError of Qt's GUI modules, or None
_SKIPPED = pytest.StashKey()


def _qt_import_error():
    try:
        import PySide6.QtGui  # noqa: F401
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pytest-qt imports Qt's GUI modules while configuring and stops the whole run when a
    # library is missing; then it is switched off and its tests are skipped instead.
    error = _qt_import_error()
    config.stash[_QT_IMPORT] = error
    config.stash[_SKIPPED] = 0
    plugin = config.pluginmanager.get_plugin("pytestqt.plugin")
    if error is not None and plugin is not None:
        from pytestqt.qt_compat import qt_api

        qt_api.set_qt_api = lambda api: None
        config.pluginmanager.unregister(plugin)


def gui_skip_reason(config, *, probe=None):
    """Why GUI tests cannot run here (a one-line reason), or None when Qt starts.

    ``probe`` is the command that tries to start Qt (default: this Python creating a
    QApplication); the answer is computed once per session.
    """
    if _REASON in config.stash:
        return config.stash[_REASON]
    reason = None
    if config.stash.get(_QT_IMPORT, None) is not None:
        reason = f"Qt cannot load ({config.stash[_QT_IMPORT]})"
    elif (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
          and not os.environ.get("WAYLAND_DISPLAY") and "QT_QPA_PLATFORM" not in os.environ):
        reason = ("Xvfb is not installed" if shutil.which("Xvfb") is None
                  else "no display (DISPLAY is not set and Xvfb did not start)")
    else:
        code = "from PySide6.QtWidgets import QApplication; QApplication([])"
        try:
            proc = subprocess.run(probe or [sys.executable, "-c", code], capture_output=True,
                                  text=True, timeout=120)
            if proc.returncode != 0:
                lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()
                         and "Fatal Python error" not in ln and not ln.startswith(("Current", "File",
                                                                                    "Thread", "<"))]
                reason = "Qt cannot start" + (f" ({lines[0]})" if lines else "")
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"Qt cannot start ({exc})"
    if reason is not None:
        reason = f"GUI tests skipped: {reason} ({_INSTALL_HINT})"
    config.stash[_REASON] = reason
    return reason


def _is_gui_module(path: Path) -> bool:
    if path.name.startswith("test_gui_"):
        return True
    try:
        return bool(_GUI_MODULE_MARK.search(path.read_text(encoding="utf-8")))
    except OSError:
        return False


class _SkippedGuiModule(pytest.File):
    """Stands for a GUI test module that is not even imported (importing Qt may fail)."""

    def collect(self):
        self.config.stash[_SKIPPED] += 1
        pytest.skip(self.config.stash[_REASON], allow_module_level=True)


def pytest_pycollect_makemodule(module_path, parent):
    if _is_gui_module(Path(module_path)) and gui_skip_reason(parent.config) is not None:
        return _SkippedGuiModule.from_parent(parent, path=Path(module_path))
    return None


def _needs_gui(item) -> bool:
    if item.get_closest_marker("gui") or item.get_closest_marker("gui_jobs"):
        return True
    if _GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if item.config.stash.get(_QT_IMPORT, None) is not None:  # then importing the app fails too
        import inspect

        try:
            source = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            return False
        return "cellpol_app" in source or "PySide6" in source
    return False


def pytest_collection_modifyitems(config, items):
    gui_items = [item for item in items if _needs_gui(item)]
    if gui_items and gui_skip_reason(config) is not None:
        mark = pytest.mark.skip(reason=config.stash[_REASON])
        for item in gui_items:
            item.add_marker(mark)
        config.stash[_SKIPPED] += len(gui_items)


def pytest_terminal_summary(terminalreporter, config):
    if config.stash.get(_SKIPPED, 0) and config.stash.get(_REASON, None):
        terminalreporter.write_line(config.stash[_REASON])


def pytest_sessionfinish(session, exitstatus):
    # `-m gui_jobs` with every GUI module skipped selects no test: that is a skip, not an
    # empty test suite (exit code 5 would fail `make test`).
    config = session.config
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and config.stash.get(_SKIPPED, 0) \
            and config.stash.get(_REASON, None):
        session.exitstatus = pytest.ExitCode.OK
