"""Finding the bundled resources (demo image, models, icons).

The ``resources/`` folder of the repository is installed as the Python package
``cellpol_resources``. :func:`resources_dir` finds it, in order of priority:

1. the ``CELLPOL_RESOURCES`` environment variable, when set;
2. a PyInstaller frozen app: ``sys._MEIPASS/resources`` (or
   ``sys._MEIPASS/cellpol_resources``);
3. the installed (or editable-installed) ``cellpol_resources`` package;
4. ``resources/`` next to ``cellpol_core/`` in a source checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError

ENV_VAR = "CELLPOL_RESOURCES"
DEMO_IMAGE = Path("demo") / "demo_3d.ome.tif"
DEMO_VECTORS = Path("demo") / "demo_3d_vectors.csv"


def _frozen_dir():
    base = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not base:
        return None
    for name in ("resources", "cellpol_resources"):
        candidate = Path(base) / name
        if candidate.is_dir():
            return candidate
    # The spec is expected to bundle it as "resources"; report that path even if absent.
    return Path(base) / "resources"


def _package_dir():
    try:
        import importlib.resources as ilr

        root = ilr.files("cellpol_resources")
    except (ImportError, ModuleNotFoundError, TypeError):
        return None
    # A plain folder on disk (normal and editable installs); zip imports are not supported.
    path = Path(str(root))
    if path.is_dir():
        return path
    try:
        import cellpol_resources

        path = Path(cellpol_resources.__file__).resolve().parent
    except (ImportError, AttributeError, TypeError):
        return None
    return path if path.is_dir() else None


def resources_dir() -> Path:
    """The folder holding the bundled resources.

    Returns
    -------
    Path
        The ``resources`` folder (see the module docstring for the lookup order).
        It is returned even when it does not exist, so callers can name it in
        error messages.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    frozen = _frozen_dir()
    if frozen is not None:
        return frozen
    package = _package_dir()
    if package is not None:
        return package
    return Path(__file__).resolve().parents[2] / "resources"


def _bundled_file(relative: Path, what: str) -> Path:
    path = resources_dir() / relative
    if not path.is_file():
        raise InputError(f"{what} not found; run `make demo-data` to create it", path)
    return path


def demo_image_path() -> Path:
    """The bundled demo image, ``resources/demo/demo_3d.ome.tif``.

    Raises
    ------
    InputError
        When the file is missing (it is made by ``make demo-data``).
    """
    return _bundled_file(DEMO_IMAGE, "demo image")


def demo_vectors_path() -> Path:
    """The ground-truth vectors of the demo image, ``resources/demo/demo_3d_vectors.csv``.

    Raises
    ------
    InputError
        When the file is missing (it is made by ``make demo-data``).
    """
    return _bundled_file(DEMO_VECTORS, "demo vectors")


def bundled_models_dir() -> Path:
    """The folder of bundled model weights, ``resources/models`` (may be empty)."""
    return resources_dir() / "models"
