"""CellPol engine: cell polarity vectors from fluorescence microscopy.

The engine never imports Qt, vispy, pyqtgraph or the desktop app, so it runs
headless on workstations and clusters.

Conventions
-----------
* Image arrays are (C, Z, Y, X), or (C, Y, X) in 2D.
* Points are (N, 3) float arrays in (z, y, x) voxels; in 2D, z is 0.
* Voxel sizes are (z, y, x) tuples in µm; a 2D image carries z = 1.0.
* Distances and angles are computed in µm whenever the voxel size is known.
"""

import os as _os
from importlib.metadata import PackageNotFoundError, version as _version

# Huge pages for large tensors make CPU convolutions ~20 % faster; torch reads
# this at its first allocation, so it must be set before any tensor exists.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")



def _source_version() -> str:
    # A source tree that is not installed: read pyproject.toml, the one place
    # the version is written (the frozen app bundles the package metadata).
    import re

    pyproject = _os.path.join(_os.path.dirname(_os.path.dirname(__file__)), "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as f:
            match = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1) if match else "0.0.0+unknown"


try:
    __version__ = _version("cellpol")
except PackageNotFoundError:
    __version__ = _source_version()

__all__ = ["__version__"]
