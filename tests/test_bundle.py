"""The frozen app in dist/CellPol (``make test-bundle`` builds it, then runs these).

Skipped, with the reason, when dist/ holds no bundle; ``make test`` leaves them out.
"""

import os
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "dist"
PROGRAM = DIST / "CellPol" / "CellPol"

VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(),
                    re.MULTILINE).group(1)
# The newest archive of this version (a CUDA build's name ends in -cuda<X.Y>).
_ARCHIVES = sorted(DIST.glob(f"CellPol-{VERSION}-linux-x86_64*.tar.gz"),
                   key=lambda p: p.stat().st_mtime)
ARCHIVE = _ARCHIVES[-1] if _ARCHIVES else DIST / f"CellPol-{VERSION}-linux-x86_64.tar.gz"

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(not PROGRAM.is_file(),
                       reason=f"no frozen app at {PROGRAM}; build it with `make bundle`"),
]


def clean_env(**extra):
    """The user's environment minus anything that would point the app at the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CELLPOL_RESOURCES", "PYTHONPATH", "PYTHONHOME", "QT_QPA_PLATFORM",
                        "VIRTUAL_ENV")}
    env.update(extra)
    return env


def run(args, *, env=None, timeout=300, cwd=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env=env if env is not None else clean_env(), timeout=timeout, cwd=cwd)


def check_selftest_output(proc):
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.startswith(f"CellPol {VERSION} self-test\n")
    assert "(frozen app)" in out.splitlines()[1]
    assert re.search(r"^torch:   \d+\.\d+", out, re.M)
    assert re.search(r"^device:  (CPU|GPU)", out, re.M)
    n_pred = int(re.search(r"^vectors: (\d+) predicted", out, re.M).group(1))
    f1 = float(re.search(r"^F1 at level 5: (\d\.\d+)", out, re.M).group(1))
    assert n_pred >= 20 and f1 >= 0.4
    assert out.rstrip().endswith("self-test passed")


@pytest.mark.slow
def test_frozen_selftest_without_display(tmp_path):
    env = clean_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = run([PROGRAM, "--selftest"], env=env, cwd=tmp_path)
    check_selftest_output(proc)
    # The resources come from inside the bundle, not from the source tree.
    model = re.search(r"^model:   (.+)$", proc.stdout, re.M).group(1)
    assert Path(model).is_relative_to(PROGRAM.parent)


def test_frozen_version():
    proc = run([PROGRAM, "--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"CellPol {VERSION}"


def test_frozen_selftest_fails_on_broken_resources(tmp_path):
    (tmp_path / "models" / "demo").mkdir(parents=True)
    (tmp_path / "models" / "demo" / "config.json").write_text("{broken")
    env = clean_env(CELLPOL_RESOURCES=str(tmp_path))
    env.pop("DISPLAY", None)
    proc = run([PROGRAM, "--selftest"], env=env)
    assert proc.returncode == 1
    assert "FAILED:  load the model: InputError:" in proc.stdout and "config.json" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def _display_command():
    if os.environ.get("DISPLAY"):  # pytest-xvfb's Xvfb, or a real display
        return []
    if shutil.which("xvfb-run"):
        return ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]
    pytest.skip("no DISPLAY and no xvfb-run")


@pytest.mark.slow
def test_frozen_screenshot_is_not_blank(tmp_path):
    import matplotlib.image

    out = tmp_path / "shot.png"
    proc = run([*_display_command(), PROGRAM, "--screenshot", out, "--size", 1000, 700],
               timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    rgb = (matplotlib.image.imread(out)[..., :3] * 255).astype(int)
    assert rgb.shape == (700, 1000, 3)
    assert rgb.std() > 20                             # not one flat colour
    assert (rgb.max(axis=-1) > 30).mean() > 0.2       # not mostly black
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert ((g > 120) & (r < 100) & (b < 100)).mean() > 0.002   # nuclei (green channel)
    assert ((r > 150) & (g < 90) & (b < 90)).mean() > 0.0003    # Golgi (red channel)
    # The vispy 3D view (right quarter) draws the light-blue vectors: its shaders work.
    right = rgb[:, 750:]
    cyan = (right[..., 2] > 180) & (right[..., 1] > 150) & (right[..., 0] < 160)
    assert cyan.mean() > 0.001, "3D view shows no vectors"


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"no {ARCHIVE.name}; run `make bundle`")
def test_archive_installs_runs_and_uninstalls(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    top = tmp_path / "unpacked" / ARCHIVE.name.removesuffix(".tar.gz")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    proc = run(["sh", top / "install.sh"], env=env)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(tmp_path / "unpacked")  # the installed app must not need the archive

    dest = home / ".local" / "opt" / "CellPol"
    desktop = home / ".local" / "share" / "applications" / "cellpol.desktop"
    icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "cellpol.png"
    entry = dict(line.split("=", 1) for line in desktop.read_text().splitlines() if "=" in line)
    assert entry["Exec"] == f'"{dest / "CellPol"}" %f'
    assert Path(entry["Icon"]) == icon and icon.stat().st_size > 1000

    # The menu's command line, with --selftest in place of the file.
    command = [a if a != "%f" else "--selftest" for a in shlex.split(entry["Exec"])]
    run_env = clean_env(HOME=str(home))
    run_env.pop("DISPLAY", None)
    check_selftest_output(run(command, env=run_env, cwd=home))

    proc = run(["sh", dest / "uninstall.sh"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert not dest.exists() and not desktop.exists() and not icon.exists()
    # Only the desktop's shared "open with" cache stays (update-desktop-database rewrote it).
    left = [p.relative_to(home).as_posix() for p in (home / ".local").rglob("*") if p.is_file()]
    assert set(left) <= {".local/share/applications/mimeinfo.cache"}, left
