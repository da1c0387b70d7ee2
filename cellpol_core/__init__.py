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

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cellpol")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
