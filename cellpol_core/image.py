"""Image I/O: reading microscopy files into a :class:`CellImage`, writing OME-TIFF.

Axis heuristic
--------------
Files with axes metadata (ImageJ hyperstacks, OME-TIFF, LSM) are read by their
axes. Files without it (plain numpy-written TIFFs) are interpreted as follows,
unless an explicit ``axes`` string is given:

* 2D arrays are (Y, X) with one channel;
* for 3D and 4D arrays, the smallest axis of length <= 4 is the channel axis
  (the first one on ties); the remaining axes keep their order and are read as
  (Z, Y, X) or (Y, X). A 3D array whose smallest axis is > 4 is a one-channel
  (Z, Y, X) stack;
* the 3DCellPol layout (Y, X, Z, C) is recognised: a 4D array whose channel
  axis is last and whose third axis is smaller than the first two is read as
  (Y, X, Z, C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .atomic import atomic_path


@dataclass
class CellImage:
    """A multichannel 2D or 3D microscopy image.

    Attributes
    ----------
    data : array-like
        (C, Z, Y, X) for 3D or (C, Y, X) for 2D, in the file's dtype (uint16
        stays uint16). May be a numpy array, a ``numpy.memmap`` or a zarr array
        when read lazily; index it to load only what you need.
    voxel_size : tuple of 3 floats or None
        (z, y, x) in µm. 2D images carry z = 1.0. None when the file has no
        calibration and none was given.
    channel_names : list of str
        One name per channel (``"C0"``, ``"C1"``, ... when the file has none).
    path : Path or None
        The source file.
    axes : str
        The axes of the source array as read (tifffile letters), for information.
    """

    data: object
    voxel_size: Optional[tuple] = None
    channel_names: list = field(default_factory=list)
    path: Optional[Path] = None
    axes: str = ""

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.data.shape) - 1

    @property
    def is_3d(self) -> bool:
        return self.ndim == 3

    @property
    def spatial_shape(self) -> tuple:
        """(Z, Y, X) or (Y, X)."""
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def dtype(self):
        return self.data.dtype


def write_ome_tiff(path, data, *, voxel_size=None, channel_names: Optional[Sequence[str]] = None,
                   compression="zlib"):
    """Write a (C, Z, Y, X) or (C, Y, X) array as OME-TIFF, atomically.

    Parameters
    ----------
    path : str or Path
        Target file, normally ending in ``.ome.tif``.
    data : ndarray
        (C, Z, Y, X) or (C, Y, X).
    voxel_size : tuple of 3 floats, optional
        (z, y, x) in µm. For 2D data only y and x are written.
    channel_names : sequence of str, optional
        One name per channel.
    compression : str or None
        tifffile compression (default zlib, lossless).
    """
    import tifffile

    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"expected (C, Z, Y, X) or (C, Y, X) data, got shape {data.shape}")
    axes = "CZYX" if data.ndim == 4 else "CYX"
    metadata = {"axes": axes}
    if voxel_size is not None:
        vz, vy, vx = (float(v) for v in voxel_size)
        metadata.update(PhysicalSizeX=vx, PhysicalSizeXUnit="µm",
                        PhysicalSizeY=vy, PhysicalSizeYUnit="µm")
        if data.ndim == 4:
            metadata.update(PhysicalSizeZ=vz, PhysicalSizeZUnit="µm")
    if channel_names is not None:
        if len(channel_names) != data.shape[0]:
            raise ValueError("one channel name per channel is needed")
        metadata["Channel"] = {"Name": [str(n) for n in channel_names]}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, ome=True, metadata=metadata, compression=compression,
                         photometric="minisblack")
