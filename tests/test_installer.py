"""The standalone-app packaging without a PyInstaller build: the spec, the archive, install.sh.

The installer is tested on an archive made by ``make_bundle.write_archive`` from a
fake ``CellPol/`` folder whose program is a shell script; tests/test_bundle.py
does the same with the real frozen app.
"""

import ast
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "build_spec" / "cellpol.spec"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux installer")


def _load_make_bundle():
    spec = importlib.util.spec_from_file_location("make_bundle", REPO / "build_spec" / "make_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_bundle = _load_make_bundle()


# -- the PyInstaller spec


class _Recorder:
    """Stands in for PyInstaller's Analysis/PYZ/EXE/COLLECT and records their arguments."""

    calls = {}

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.binaries = [("torch/lib/libtorch_cpu.so", "/x", "BINARY"),
                         ("torch/lib/libtorchbind_test.so", "/x", "BINARY"),
                         ("torch/bin/test_api", "/x", "BINARY"),
                         ("torch/bin/torch_shm_manager", "/x", "BINARY")]
        self.datas = list(kwargs.get("datas", [])) + [("torch/test/Dict_test", "/x", "DATA")]
        self.pure = self.scripts = []
        _Recorder.calls[self._name] = self


def _recorder(name):
    return type(name, (_Recorder,), {"_name": name})


def _exec_spec(namespace):
    exec(compile(SPEC.read_text(), str(SPEC), "exec"), namespace)


@pytest.fixture
def spec_run(monkeypatch, tmp_path):
    """Execute cellpol.spec with PyInstaller's build classes and hooks replaced by recorders."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = lambda pkg: [(f"/site/{pkg}/glsl/a.glsl", f"{pkg}/glsl")]
    hooks.copy_metadata = lambda dist: [(f"/site/{dist}-1.dist-info", f"{dist}-1.dist-info")]
    for name in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    _Recorder.calls = {}
    namespace = {"SPECPATH": str(SPEC.parent), "workpath": str(tmp_path / "work"),
                 "__file__": str(SPEC)}
    for name in ("Analysis", "PYZ", "EXE", "COLLECT"):
        namespace[name] = _recorder(name)
    _exec_spec(namespace)
    return _Recorder.calls, namespace


def test_spec_is_python_and_onedir():
    tree = ast.parse(SPEC.read_text())
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT"} <= called  # COLLECT: a onedir build
    assert "SPECPATH" in {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def test_spec_bundles_resources_and_vispy(spec_run):
    calls, _ = spec_run
    analysis = calls["Analysis"]
    datas = analysis.kwargs["datas"]
    dests = {(Path(src).relative_to(REPO).as_posix() if src.startswith(str(REPO)) else src, dest)
             for src, dest in datas}
    for rel in ("demo/demo_3d.ome.tif", "demo/demo_3d_vectors.csv",
                "models/nucleus-golgi-3d/config.json", "models/nucleus-golgi-3d/weights_best.pt",
                "models/nucleus-golgi-3d/thresholds.json", "icons/cellpol.png", "icons/cellpol.svg"):
        assert (f"resources/{rel}", str(Path("resources") / Path(rel).parent)) in dests, rel
    assert not [s for s, _ in datas if s.endswith((".py", ".pyc"))]
    assert ("/site/vispy/glsl/a.glsl", "vispy/glsl") in dests
    assert any("cellpol" in dest and "dist-info" in dest for _, dest in datas)  # the version
    hidden = analysis.kwargs["hiddenimports"]
    assert "vispy.app.backends._pyside6" in hidden and "OpenGL" in hidden
    assert {"tkinter", "IPython", "pytest"} <= set(analysis.kwargs["excludes"])
    entry, = analysis.args[0]
    assert Path(entry) == REPO / "build_spec" / "cellpol_entry.py"
    assert calls["EXE"].kwargs["name"] == calls["COLLECT"].kwargs["name"] == "CellPol"
    assert calls["EXE"].kwargs["exclude_binaries"] is True


def test_spec_finds_the_app_package(spec_run, tmp_path):
    # cellpol_app is the folder app/: the spec puts a plain-path alias on the search path.
    calls, _ = spec_run
    alias = Path(calls["Analysis"].kwargs["pathex"][0]) / "cellpol_app"
    assert alias.resolve() == (REPO / "app").resolve()
    assert (alias / "main.py").is_file()
    assert alias.is_relative_to(tmp_path / "work")


def test_spec_refuses_a_stale_install(spec_run, monkeypatch):
    # pyproject.toml edited after `pip install -e .`: the bundled metadata would lie.
    import importlib.metadata

    _, namespace = spec_run
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.1")
    with pytest.raises(SystemExit, match="installed cellpol is 0.0.1, pyproject.toml says"):
        _exec_spec(dict(namespace))


def test_spec_drops_torch_tests(spec_run):
    calls, namespace = spec_run
    analysis = calls["Analysis"]
    assert [b[0] for b in analysis.binaries] == ["torch/lib/libtorch_cpu.so",
                                                 "torch/bin/torch_shm_manager"]
    assert not [d for d in analysis.datas if d[0].startswith("torch/test")]
    assert namespace["wanted"]("resources/models/nucleus-golgi-3d/weights_best.pt")


# -- the archive


def fake_app(folder: Path, *, marker="fake CellPol") -> Path:
    """A CellPol/ folder whose program is a shell script echoing its arguments."""
    app = folder / "CellPol"
    (app / "_internal").mkdir(parents=True)
    (app / "_internal" / "data.txt").write_text("payload\n")
    program = app / "CellPol"
    program.write_text(f'#!/bin/sh\necho "{marker} $*"\n')
    program.chmod(0o755)
    return app


def test_version_and_archive_name():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert make_bundle.project_version() == version
    assert make_bundle.archive_stem(version, "linux-x86_64") == f"CellPol-{version}-linux-x86_64"
    assert (make_bundle.archive_stem(version, "linux-x86_64", "-cuda12.8")
            == f"CellPol-{version}-linux-x86_64-cuda12.8")
    import torch

    assert make_bundle.torch_flavor() == (f"-cuda{torch.version.cuda}" if torch.version.cuda else "")
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        assert make_bundle.platform_tag() == "linux-x86_64"


def test_archive_layout(tmp_path):
    app = fake_app(tmp_path)
    out = make_bundle.write_archive(app, tmp_path / "dist" / "CellPol-9.9-linux-x86_64.tar.gz",
                                    stem="CellPol-9.9-linux-x86_64")
    assert out.is_file() and not list(out.parent.glob("*.part"))
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    top = "CellPol-9.9-linux-x86_64"
    for name in ("CellPol/CellPol", "CellPol/_internal/data.txt", "install.sh", "uninstall.sh",
                 "cellpol.desktop.in", "cellpol.png", "cellpol.svg"):
        assert f"{top}/{name}" in members, name
    assert {name.split("/")[0] for name in members} == {top}
    for name in ("CellPol/CellPol", "install.sh", "uninstall.sh"):
        assert members[f"{top}/{name}"].mode & stat.S_IXUSR, name
    assert {(m.uid, m.uname) for m in members.values()} == {(0, "")}


def test_archive_needs_a_built_app(tmp_path):
    with pytest.raises(SystemExit, match="build the bundle first"):
        make_bundle.write_archive(tmp_path, tmp_path / "x.tar.gz", stem="x")


# -- install.sh / uninstall.sh


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    top, = into.iterdir()
    return top


def run_script(script: Path, home: Path, **extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=60)


def desktop_entry(path: Path) -> dict:
    lines = path.read_text().splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line and not line.startswith("#"))


@pytest.fixture
def unpacked(tmp_path):
    app = fake_app(tmp_path / "build")
    archive = make_bundle.write_archive(app, tmp_path / "CellPol-0-linux-x86_64.tar.gz",
                                        stem="CellPol-0-linux-x86_64")
    return unpack(archive, tmp_path / "unpacked")


def test_install_run_uninstall(unpacked, tmp_path):
    home = tmp_path / "home dir"  # a space, as in many home folders
    home.mkdir()
    proc = run_script(unpacked / "install.sh", home)
    assert proc.returncode == 0, proc.stderr
    dest = home / ".local" / "opt" / "CellPol"
    program = dest / "CellPol"
    desktop = home / ".local" / "share" / "applications" / "cellpol.desktop"
    icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "cellpol.png"
    svg = home / ".local" / "share" / "icons" / "hicolor" / "scalable" / "apps" / "cellpol.svg"
    assert os.access(program, os.X_OK)
    assert (dest / "_internal" / "data.txt").read_text() == "payload\n"
    assert os.access(dest / "uninstall.sh", os.X_OK)
    assert icon.read_bytes() == (REPO / "resources" / "icons" / "cellpol.png").read_bytes()
    assert svg.is_file()
    entry = desktop_entry(desktop)
    assert entry["Type"] == "Application" and entry["Name"] == "CellPol"
    assert entry["Exec"] == f'"{program}" %f'
    assert entry["TryExec"] == str(program)
    assert entry["Icon"] == str(icon)
    assert entry["Categories"] == "Science;Biology;" and entry["MimeType"] == "image/tiff;"
    assert entry["Terminal"] == "false"
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    # The installed program runs; the menu entry's command line points at it.
    out = subprocess.run([str(program), "--selftest"], capture_output=True, text=True)
    assert out.stdout == "fake CellPol --selftest\n"
    assert not list((home / ".local" / "opt").glob(".CellPol.installing.*"))

    # Installing again replaces the app and leaves one entry (idempotent).
    (dest / "_internal" / "stale.txt").write_text("old")
    again = run_script(unpacked / "install.sh", home)
    assert again.returncode == 0, again.stderr
    assert not (dest / "_internal" / "stale.txt").exists()
    assert desktop_entry(desktop) == entry
    assert sorted(p.name for p in desktop.parent.iterdir()
                  if p.suffix == ".desktop") == ["cellpol.desktop"]

    # The installed uninstall.sh removes everything install.sh wrote.
    gone = run_script(dest / "uninstall.sh", home)
    assert gone.returncode == 0, gone.stderr
    for path in (dest, desktop, icon, svg, home / ".local" / "opt"):
        assert not path.exists(), path
    # Only the desktop's shared "open with" cache stays (update-desktop-database rewrote it).
    left = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()]
    assert set(left) <= {".local/share/applications/mimeinfo.cache"}, left
    assert run_script(unpacked / "uninstall.sh", home).returncode == 0  # nothing left: still fine


def test_install_honours_xdg_data_home_and_prefix(unpacked, tmp_path):
    home, data, prefix = tmp_path / "home", tmp_path / "xdg", tmp_path / "apps"
    home.mkdir()
    extra = {"XDG_DATA_HOME": str(data), "CELLPOL_PREFIX": str(prefix)}
    assert run_script(unpacked / "install.sh", home, **extra).returncode == 0
    desktop = data / "applications" / "cellpol.desktop"
    assert desktop_entry(desktop)["Exec"] == f'"{prefix / "CellPol" / "CellPol"}" %f'
    assert (data / "icons" / "hicolor" / "256x256" / "apps" / "cellpol.png").is_file()
    assert not (home / ".local").exists()
    assert run_script(prefix / "CellPol" / "uninstall.sh", home, **extra).returncode == 0
    assert not desktop.exists() and not (prefix / "CellPol").exists()


def test_install_needs_the_unpacked_app(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(REPO / "build_spec" / "installer" / "install.sh", loose)
    proc = run_script(loose / "install.sh", tmp_path)
    assert proc.returncode == 1
    assert "CellPol/CellPol not found" in proc.stderr
    assert not (tmp_path / ".local").exists()


def test_install_refuses_a_path_the_menu_entry_cannot_hold(unpacked, tmp_path):
    proc = run_script(unpacked / "install.sh", tmp_path, CELLPOL_PREFIX=str(tmp_path / "a$b"))
    assert proc.returncode == 1 and "cannot install into" in proc.stderr
    assert not (tmp_path / "a$b").exists()


def test_uninstall_leaves_a_foreign_folder_alone(tmp_path):
    foreign = tmp_path / ".local" / "opt" / "CellPol"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    proc = run_script(REPO / "build_spec" / "installer" / "uninstall.sh", tmp_path)
    assert proc.returncode == 0
    assert "left alone" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "mine"
