"""Finding the bundled resources folder."""

import os
import sys
from pathlib import Path

import pytest

from cellpol_core.io import resources
from cellpol_core.errors import InputError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)


def test_package_lookup_finds_repo_resources():
    # The editable install maps cellpol_resources onto the repository's resources/.
    import cellpol_resources

    found = resources.resources_dir()
    assert found.is_dir()
    assert found.resolve() == Path(cellpol_resources.__file__).resolve().parent
    assert found.resolve() == (REPO / "resources").resolve()
    assert resources.bundled_models_dir() == found / "models"


def test_env_override(monkeypatch, tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo_3d.ome.tif").write_bytes(b"x")
    (tmp_path / "demo" / "demo_3d_vectors.csv").write_text("a_x,a_y,b_x,b_y\n")
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path))
    assert resources.resources_dir() == tmp_path
    assert resources.demo_image_path() == tmp_path / "demo" / "demo_3d.ome.tif"
    assert resources.demo_vectors_path() == tmp_path / "demo" / "demo_3d_vectors.csv"
    assert resources.bundled_models_dir() == tmp_path / "models"


def test_env_beats_frozen(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path / "mine"))
    assert resources.resources_dir() == tmp_path / "mine"


def test_frozen_app(monkeypatch, tmp_path):
    (tmp_path / "resources" / "demo").mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir() == tmp_path / "resources"
    with pytest.raises(InputError, match="make demo-data"):
        resources.demo_image_path()


def test_frozen_app_package_name(monkeypatch, tmp_path):
    (tmp_path / "cellpol_resources").mkdir()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir() == tmp_path / "cellpol_resources"


def test_meipass_without_frozen_is_ignored(monkeypatch, tmp_path):
    (tmp_path / "resources").mkdir()
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir().resolve() == (REPO / "resources").resolve()


def test_source_checkout_fallback(monkeypatch):
    monkeypatch.setattr(resources, "_package_dir", lambda: None)
    assert resources.resources_dir() == (REPO / "resources").resolve()


def test_missing_demo_files_name_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path))
    with pytest.raises(InputError) as info:
        resources.demo_image_path()
    message = str(info.value)
    assert "demo_3d.ome.tif" in message and "make demo-data" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="demo_3d_vectors.csv.*make demo-data"):
        resources.demo_vectors_path()


# -- the three ways CellPol runs: source checkout (above), installed wheel, frozen app


def test_installed_package_beats_source_checkout(monkeypatch, tmp_path):
    # An installed cellpol_resources (site-packages) is found through the import system.
    site = tmp_path / "site-packages"
    (site / "cellpol_resources" / "models").mkdir(parents=True)
    (site / "cellpol_resources" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "cellpol_resources", raising=False)
    assert resources.resources_dir() == site / "cellpol_resources"
    assert resources.bundled_models_dir() == site / "cellpol_resources" / "models"


def test_frozen_app_beats_installed_package(monkeypatch, tmp_path):
    (tmp_path / "_internal" / "resources").mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    found = resources.resources_dir()
    assert found == tmp_path / "_internal" / "resources"
    assert found.resolve() != (REPO / "resources").resolve()


def test_frozen_app_demo_files(monkeypatch, tmp_path):
    # The layout cellpol.spec writes: sys._MEIPASS/resources/{demo,models,icons}.
    bundle = tmp_path / "_internal" / "resources"
    (bundle / "demo").mkdir(parents=True)
    (bundle / "models" / "demo").mkdir(parents=True)
    (bundle / "demo" / "demo_3d.ome.tif").write_bytes(b"tif")
    (bundle / "demo" / "demo_3d_vectors.csv").write_text("x\n")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_internal"), raising=False)
    assert resources.demo_image_path() == bundle / "demo" / "demo_3d.ome.tif"
    assert resources.demo_vectors_path() == bundle / "demo" / "demo_3d_vectors.csv"
    from cellpol_core.detection.model import find_model

    assert find_model("demo") == bundle / "models" / "demo"


@pytest.mark.slow  # builds a wheel: about 5 s
def test_built_wheel_finds_its_resources(tmp_path):
    # A real wheel, unpacked as pip would into site-packages, run by a fresh Python
    # that sees neither the repository nor the editable install first.
    import shutil
    import subprocess
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("cellpol_core", "app", "resources"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(tmp_path / "wheel"), str(src)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel, = (tmp_path / "wheel").glob("cellpol-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import cellpol_core\n"
        "from cellpol_core.io import resources\n"
        "from cellpol_core.detection.model import find_model\n"
        "print(cellpol_core.__file__)\n"
        "print(resources.resources_dir())\n"
        "print(resources.demo_image_path())\n"
        "print(find_model('demo') / 'weights_best.pt')\n"
        "print(resources.resources_dir() / 'icons' / 'cellpol.png')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != resources.ENV_VAR}
    out = subprocess.run([sys.executable, "-I", "-c", code, str(site)], check=True,
                         capture_output=True, text=True, cwd=tmp_path, env=env).stdout.split("\n")
    assert Path(out[0]).parent == site / "cellpol_core"
    assert Path(out[1]) == site / "cellpol_resources"
    for line in out[2:5]:
        assert Path(line).is_file() and Path(line).is_relative_to(site / "cellpol_resources")
