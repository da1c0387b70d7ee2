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


#: Bundled names that stand for another bundled folder while they have no folder
#: of their own: ``demo``, the name of the first bundled model, is the default
#: 3D model.
MODEL_ALIASES = {"demo": "nucleus-golgi-3d"}

#: The bundled model ``predict`` uses when given neither a model nor a method:
#: (spatial dimensions, start structure, end structure) -> name.
DEFAULT_MODELS = {
    (3, "nucleus", "golgi"): "nucleus-golgi-3d",
    (2, "nucleus", "golgi"): "nucleus-golgi-2d",
    (2, "cytoplasm", "nucleus"): "cytoplasm-nucleus-2d",
}

_MODEL_CONFIG = "config.json"


def bundled_model_dir(name: str):
    """The folder of a bundled model name (following :data:`MODEL_ALIASES`), or None."""
    root = bundled_models_dir()
    for candidate in (name, MODEL_ALIASES.get(name)):
        if candidate and (root / candidate / _MODEL_CONFIG).is_file():
            return root / candidate
    return None


def bundled_model_names() -> list:
    """Names of the bundled models, aliases included, sorted."""
    root = bundled_models_dir()
    names = {d.name for d in root.glob("*") if (d / _MODEL_CONFIG).is_file()}
    names |= {alias for alias, target in MODEL_ALIASES.items() if target in names}
    return sorted(names)


def default_model_name(ndim: int, structures=("nucleus", "golgi")) -> str:
    """The bundled model for images of ``ndim`` spatial dimensions and these structures.

    Parameters
    ----------
    ndim : {2, 3}
        Spatial dimensions of the image.
    structures : (str, str)
        Start and end structure names (case does not matter).

    Returns
    -------
    str
        A bundled model name (see :data:`DEFAULT_MODELS`).

    Raises
    ------
    InputError
        When no bundled model covers that case, or it is not installed.
    """
    start, end = (str(s).casefold() for s in structures)
    name = DEFAULT_MODELS.get((int(ndim), start, end))
    arrow = f"{ndim}D {start}→{end}"
    if name is None:
        raise InputError(f"no bundled model for {arrow} images; choose one with --model "
                         f"MODEL_DIR or use --method otsu")
    if bundled_model_dir(name) is None:
        raise InputError(f"the bundled model for {arrow} images ({name}) is not installed; "
                         f"choose one with --model MODEL_DIR or use --method otsu",
                         bundled_models_dir())
    return name
