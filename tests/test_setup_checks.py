"""Set-up on a fresh machine: scripts/install_system_deps.sh and the GUI-test skip.

The script runs against stub commands (dpkg-query, apt-get, id, dnf) in a private PATH,
so nothing is installed or removed; the skip is checked by running pytest on a tiny
GUI test in a child process without Xvfb or with a display Qt cannot open.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install_system_deps.sh"
TOOLS = ("bash", "sh", "awk", "grep", "sed", "uname", "cat")


def _stub_path(tmp_path, stubs):
    """A PATH of the basic tools plus ``stubs`` (name -> shell script body)."""
    bin_dir = tmp_path / "bin"
    shutil.rmtree(bin_dir, ignore_errors=True)
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).symlink_to(real)
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def _run_script(tmp_path, stubs, *args):
    env = {"PATH": _stub_path(tmp_path, stubs), "HOME": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60)


def _dpkg_stub(installed):
    lines = "\\n".join(f"{p} ii " for p in installed)
    return f'printf "{lines}\\n"'


DEB = ["binutils", "desktop-file-utils", "xvfb", "xauth", "libgl1", "libgl1-mesa-dri", "libegl1",
       "libdbus-1-3", "libfontconfig1", "libglib2.0-0", "libxkbcommon-x11-0", "libxcb-cursor0",
       "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-render-util0",
       "libxcb-shape0"]


def test_script_does_nothing_when_everything_is_installed(tmp_path):
    log = tmp_path / "apt.log"
    stubs = {"dpkg-query": _dpkg_stub(DEB), "apt-get": f'echo "$@" >> {log}', "id": "echo 0"}
    proc = _run_script(tmp_path, stubs)
    assert proc.returncode == 0 and "all system packages are installed" in proc.stdout
    assert not log.exists()
    check = _run_script(tmp_path, stubs, "--check")
    assert check.returncode == 0 and check.stdout == ""


def test_script_installs_only_the_missing_packages_as_root(tmp_path):
    log = tmp_path / "apt.log"
    stubs = {"dpkg-query": _dpkg_stub([p for p in DEB if p not in ("xvfb", "libxcb-cursor0")]),
             "apt-get": f'echo "$@" >> {log}', "id": "echo 0"}
    check = _run_script(tmp_path, stubs, "--check")
    assert check.returncode == 1 and "missing Debian packages: xvfb libxcb-cursor0" in check.stdout
    assert not log.exists()  # --check installs nothing
    proc = _run_script(tmp_path, stubs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y") and calls[1].endswith(" xvfb libxcb-cursor0")


def test_script_without_root_or_sudo_says_what_to_run(tmp_path):
    stubs = {"dpkg-query": _dpkg_stub(DEB[1:]), "apt-get": "exit 99", "id": "echo 1000"}
    proc = _run_script(tmp_path, stubs)
    assert proc.returncode == 1
    assert "cannot install binutils: not root and no usable sudo" in proc.stdout
    assert "apt-get install binutils" in proc.stdout


def test_script_on_other_systems_prints_the_list(tmp_path):
    proc = _run_script(tmp_path, {"dnf": "exit 0", "id": "echo 1000"})
    assert proc.returncode == 1
    assert "sudo dnf install" in proc.stdout and "xorg-x11-server-Xvfb" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith(
        "install_system_deps: not a Debian/Ubuntu system")
    generic = _run_script(tmp_path, {"id": "echo 1000"})
    assert generic.returncode == 1 and "Xvfb, xauth, OpenGL" in generic.stdout


TINY_GUI_TEST = '''
import pytest

pytestmark = pytest.mark.gui


def test_window(qtbot):
    from PySide6.QtWidgets import QLabel

    label = QLabel("hi")
    qtbot.addWidget(label)
'''

TINY_ENGINE_TEST = '''
def test_engine():
    assert 1 + 1 == 2


def test_marked_in_a_plain_module(qtbot):
    qtbot.wait(1)
'''


def _pytest_child(tmp_path, env, *options):
    (tmp_path / "conftest.py").write_bytes((REPO / "tests" / "conftest.py").read_bytes())
    (tmp_path / "test_gui_tiny.py").write_text(TINY_GUI_TEST)
    (tmp_path / "test_engine_tiny.py").write_text(TINY_ENGINE_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gui: needs a display\n"
                                         "    gui_jobs: GUI jobs\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *options, str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def _env_without_display(path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "XAUTHORITY")}
    env["PATH"] = path
    return env


@pytest.mark.slow
def test_gui_tests_skip_without_xvfb(tmp_path):
    (tmp_path / "bin").mkdir()
    proc = _pytest_child(tmp_path, _env_without_display(str(tmp_path / "bin")))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Fatal Python error" not in out
    assert "1 passed, 2 skipped" in out
    reason = ("GUI tests skipped: Xvfb is not installed (run scripts/install_system_deps.sh)")
    assert out.count(reason) == 1, out  # one line, in the summary
    # selecting only GUI tests (make test's `-m gui_jobs` run) is a skip, not a failure
    only_gui = _pytest_child(tmp_path, _env_without_display(str(tmp_path / "bin")), "-m", "gui")
    assert only_gui.returncode == 0, only_gui.stdout + only_gui.stderr
    assert "1 skipped, 2 deselected" in only_gui.stdout


@pytest.mark.slow
def test_gui_tests_skip_when_qt_cannot_open_the_display(tmp_path):
    env = _env_without_display(os.environ.get("PATH", ""))
    env.update(DISPLAY=":4711", QT_QPA_PLATFORM="xcb")  # no X server there: Qt would abort
    proc = _pytest_child(tmp_path, env, "-p", "no:xvfb")  # keep that DISPLAY
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Fatal Python error" not in out and "1 passed, 2 skipped" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("GUI tests skipped: Qt cannot start"))
    assert ":4711" in line and line.endswith("(run scripts/install_system_deps.sh)")
