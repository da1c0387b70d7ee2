"""Build the standalone CellPol app and its archive: ``make bundle``.

1. PyInstaller builds ``dist/CellPol/`` from ``build_spec/cellpol.spec``
   (onedir; ``dist/CellPol/CellPol`` is the program);
2. the archive ``dist/CellPol-<version>-linux-x86_64.tar.gz`` (``...-cuda<X.Y>.tar.gz``
   when the environment's torch is a CUDA build) gets one folder of the same
   name, holding ``CellPol/``, ``install.sh``, ``uninstall.sh``, the
   ``cellpol.desktop.in`` template and the icons;
3. the build time and the sizes go to ``dist/bundle_report.json`` and stdout.

Usage: python build_spec/make_bundle.py [--skip-build] [--dist DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parent
ROOT = SPEC_DIR.parent
INSTALLER_DIR = SPEC_DIR / "installer"
ICONS_DIR = ROOT / "resources" / "icons"
INSTALLER_FILES = ("install.sh", "uninstall.sh", "cellpol.desktop.in")
ICON_FILES = ("cellpol.png", "cellpol.svg")


def project_version(root=ROOT) -> str:
    """The version in ``pyproject.toml`` (the only place it is written)."""
    from cellpol_core import pyproject_version

    version = pyproject_version(Path(root) / "pyproject.toml")
    if not version:
        raise SystemExit(f"{root}/pyproject.toml: no version")
    return version


def platform_tag() -> str:
    """``linux-x86_64`` on the machines the bundle is built for."""
    return f"{sys.platform.rstrip('0123456789')}-{platform.machine().lower()}"


def torch_flavor() -> str:
    """``""`` with a CPU build of torch, ``"-cuda12.8"`` (say) with a CUDA build."""
    import torch

    return f"-cuda{torch.version.cuda}" if torch.version.cuda else ""


def archive_stem(version: str, tag=None, flavor: str = "") -> str:
    """``CellPol-<version>-<platform><flavor>``, e.g. ``CellPol-0.1.0-linux-x86_64``."""
    return f"CellPol-{version}-{tag or platform_tag()}{flavor}"


def dir_size(path) -> int:
    """Bytes in the files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in Path(path).rglob("*") if p.is_file()
               and not p.is_symlink())


def write_archive(app_dir, out, *, stem: str, installer_dir=INSTALLER_DIR,
                  icons_dir=ICONS_DIR, compresslevel: int = 6) -> Path:
    """Write the ``.tar.gz``: ``<stem>/CellPol/...``, the installer scripts and the icons.

    Parameters
    ----------
    app_dir : Path
        The PyInstaller onedir output (holds the ``CellPol`` program).
    out : Path
        The archive to write (written next to it first, then renamed).
    stem : str
        The archive's top folder, e.g. ``CellPol-0.1.0-linux-x86_64``.
    """
    app_dir, out = Path(app_dir), Path(out)
    if not (app_dir / "CellPol").is_file():
        raise SystemExit(f"{app_dir}: no CellPol program; build the bundle first")
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)

    def anonymous(info):  # no build-machine user names in the archive
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
        tar.add(app_dir, arcname=f"{stem}/CellPol", filter=anonymous)
        for name in INSTALLER_FILES:
            tar.add(Path(installer_dir) / name, arcname=f"{stem}/{name}", filter=anonymous)
        for name in ICON_FILES:
            tar.add(Path(icons_dir) / name, arcname=f"{stem}/{name}", filter=anonymous)
    tmp.replace(out)
    return out


def build(dist: Path, work: Path) -> float:
    """Run PyInstaller on the spec; returns the seconds it took."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                    "--distpath", str(dist), "--workpath", str(work),
                    str(SPEC_DIR / "cellpol.spec")], check=True)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", type=Path, default=ROOT / "dist")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    ap.add_argument("--skip-build", action="store_true",
                    help="only write the archive from an existing dist/CellPol")
    args = ap.parse_args(argv)

    version = project_version()
    stem = archive_stem(version, flavor=torch_flavor())
    report = {"version": version}
    previous = args.dist / "bundle_report.json"
    if args.skip_build and previous.is_file():  # keep the time of the build that made dist/
        report["build_seconds"] = json.loads(previous.read_text()).get("build_seconds")
    if not args.skip_build:
        report["build_seconds"] = round(build(args.dist, args.work), 1)
    app_dir = args.dist / "CellPol"
    t = time.perf_counter()
    archive = write_archive(app_dir, args.dist / f"{stem}.tar.gz", stem=stem)
    report["archive_seconds"] = round(time.perf_counter() - t, 1)
    report["bundle_mb"] = round(dir_size(app_dir) / 1e6, 1)
    report["archive"] = archive.name
    report["archive_mb"] = round(archive.stat().st_size / 1e6, 1)
    (args.dist / "bundle_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"bundle:  {app_dir} ({report['bundle_mb']} MB)"
          + (f", built in {report['build_seconds']} s" if report.get("build_seconds") else ""))
    print(f"archive: {archive} ({report['archive_mb']} MB, {report['archive_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
