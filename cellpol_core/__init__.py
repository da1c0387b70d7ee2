"""CellPol engine: cell polarity vectors from fluorescence microscopy.

The engine never imports Qt, vispy, pyqtgraph or the desktop app, so it runs
headless on workstations and clusters.

Conventions
-----------
* Image arrays are (C, Z, Y, X), or (C, Y, X) in 2D.
* Points are (N, 3) float arrays in (z, y, x) voxels; in 2D, z is 0.
* Voxel sizes are (z, y, x) tuples in µm; a 2D image carries z = 1.0.
* Distances and angles are computed in µm whenever the voxel size is known.

Layout
------
``io``        files in and out (images, vector CSVs, exports, atomic writes)
``detection`` the network, training, inference, pairing, tuning, evaluation
``synthetic`` phantoms, label masks, the GAN, synthetic pre-training
``analysis``  polarity statistics, batch analysis, plots
``jobs``, ``errors``, ``selftest`` and ``cli`` sit at the top; ``defaults``
holds the defaults shared by all layers (pair distance, devices...).

The method and its conventions are described in ``docs/method.md``.
"""

import os as _os
from importlib.metadata import PackageNotFoundError, version as _version

from . import _compat

_compat.install()


def pyproject_version(path=None):
    """The version written in ``pyproject.toml`` (the one place it is written), or None.

    ``path`` defaults to the source tree's ``pyproject.toml`` beside this package.
    """
    import re

    path = path or _os.path.join(_os.path.dirname(_os.path.dirname(__file__)), "pyproject.toml")
    try:
        with open(path, encoding="utf-8") as f:
            match = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None


try:
    __version__ = _version("cellpol")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = pyproject_version() or "0.0.0+unknown"

__all__ = ["__version__"]
