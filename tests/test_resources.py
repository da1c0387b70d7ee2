"""Finding the bundled resources folder."""

import sys
from pathlib import Path

import pytest

from cellpol_core import resources
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
