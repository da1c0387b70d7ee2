"""Label masks for synthetic training data: the mask dictionary and the layout sampler.

Mask dictionary
---------------
Training needs only centroid annotations, so object masks are made from them
(docs/method.md §4): around each annotated centroid a box is cut (16×16×9 µm x×y×z
around start structures, 8×8×5 µm around end structures by default), the box
is thresholded with its own Otsu threshold, and the connected component at the
centroid is kept (the component nearest to the centroid, in µm, when the
centroid voxel itself is background). Each kept mask is stored cropped to its
bounding box, with the annotated centroid's offset within it. A dictionary is
saved as a compressed ``.npz`` holding only arrays and a JSON string (no pickle).

Layout sampler
--------------
:func:`sample_layout` draws centroid pairs in an empty patch (pair length at
most ``max_pair_um``, every two centroids at least ``min_sep_um`` apart, by
rejection sampling with a bounded number of tries), and pastes a random
dictionary mask at each centroid after a random rotation about z by a multiple
of 90° and random flips in y and x. The ground-truth centroid of a pasted
object is its **placement centroid**: the point where the source object's
annotated centroid lands. Masks are pasted at whole-voxel offsets, so each
sampled centroid is first snapped to the position the pasted mask can realise,
and the distance rules are checked on the snapped points: the returned vectors
satisfy them exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from ..defaults import PAIR_DISTANCE_UM
from ..io.atomic import atomic_path
from ..errors import InputError
from ..io.vectors import VectorTable

__all__ = [
    "DEFAULT_BOX_UM",
    "ObjectMask",
    "MaskDictionary",
    "SyntheticLayout",
    "extract_object_mask",
    "image_object_masks",
    "annotation_masks",
    "build_mask_dictionary",
    "load_annotated",
    "sample_layout",
]

#: Box sizes (z, y, x) µm around start and end centroids (docs/method.md §4).
DEFAULT_BOX_UM = ((9.0, 16.0, 16.0), (5.0, 8.0, 8.0))
DICTIONARY_SCHEMA = 1


@dataclass
class ObjectMask:
    """One object's binary mask and where its centroid lies in it.

    Attributes
    ----------
    mask : ndarray of bool
        (Z, Y, X) or (Y, X), cropped to the object's bounding box.
    offset : ndarray of float, shape (ndim,)
        The annotated centroid in the mask's voxel coordinates ((z, y, x) or
        (y, x)); it may lie outside the object for odd shapes.
    """

    mask: np.ndarray
    offset: np.ndarray

    def transformed(self, k: int = 0, flip_y: bool = False, flip_x: bool = False) -> "ObjectMask":
        """Rotate by ``k`` quarter turns about z (as ``np.rot90`` on (y, x)), then flip."""
        mask = self.mask
        off = np.asarray(self.offset, float).copy()
        for _ in range(k % 4):
            nx = mask.shape[-1]
            # np.rot90 maps (y, x) -> (nx - 1 - x, y) for one quarter turn.
            y, x = off[-2], off[-1]
            off[-2], off[-1] = nx - 1 - x, y
            mask = np.rot90(mask, 1, axes=(-2, -1))
        if flip_y:
            off[-2] = mask.shape[-2] - 1 - off[-2]
            mask = mask[..., ::-1, :]
        if flip_x:
            off[-1] = mask.shape[-1] - 1 - off[-1]
            mask = mask[..., ::-1]
        return ObjectMask(np.ascontiguousarray(mask), off)


@dataclass
class MaskDictionary:
    """Single-object masks of the start and end structures, at one voxel size.

    Attributes
    ----------
    start, end : list of ObjectMask
        Masks of the start and end structures.
    voxel_size : tuple of 3 floats
        (z, y, x) µm of the masks (2D: z = 1.0).
    ndim : int
        2 or 3.
    structures : (str, str)
        Start and end structure names.
    box_um : ((z, y, x), (z, y, x))
        Boxes the masks were cut from, for information.
    """

    start: list
    end: list
    voxel_size: tuple
    ndim: int = 3
    structures: tuple = ("nucleus", "golgi")
    box_um: tuple = DEFAULT_BOX_UM

    def __len__(self) -> int:
        return min(len(self.start), len(self.end))

    def save(self, path):
        """Write a compressed ``.npz`` (arrays plus a JSON metadata string), atomically."""
        arrays = {}
        for prefix, objs in (("s", self.start), ("e", self.end)):
            for i, o in enumerate(objs):
                arrays[f"{prefix}{i}"] = np.asarray(o.mask, dtype=bool)
        meta = {
            "schema_version": DICTIONARY_SCHEMA,
            "voxel_size_zyx_um": [float(v) for v in self.voxel_size],
            "ndim": int(self.ndim),
            "structures": list(self.structures),
            "box_um": [[float(v) for v in b] for b in self.box_um],
            "start_offsets": [[float(v) for v in o.offset] for o in self.start],
            "end_offsets": [[float(v) for v in o.offset] for o in self.end],
        }
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path) -> "MaskDictionary":
        """Read a dictionary written by :meth:`save` (never unpickles)."""
        path = Path(path)
        if not path.exists():
            raise InputError("mask dictionary not found", path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if int(meta.get("schema_version", 0)) > DICTIONARY_SCHEMA:
                    raise InputError("mask dictionary is from a newer CellPol", path)
                start = [ObjectMask(z[f"s{i}"].astype(bool), np.asarray(off, float))
                         for i, off in enumerate(meta["start_offsets"])]
                end = [ObjectMask(z[f"e{i}"].astype(bool), np.asarray(off, float))
                       for i, off in enumerate(meta["end_offsets"])]
        except InputError:
            raise
        except Exception as exc:  # zipfile, KeyError, JSON and value errors alike
            raise InputError(f"broken mask dictionary ({type(exc).__name__}: {exc})",
                             path) from None
        return cls(start, end, tuple(float(v) for v in meta["voxel_size_zyx_um"]),
                   ndim=int(meta["ndim"]), structures=tuple(meta["structures"]),
                   box_um=tuple(tuple(b) for b in meta["box_um"]))


# ----------------------------------------------------------------------------- extraction

def _box_half(box_um, voxel_size, ndim) -> np.ndarray:
    box = np.asarray(box_um, float)[-ndim:]
    vs = np.asarray(voxel_size, float)[-ndim:]
    return np.maximum(1, np.round(box / vs / 2.0)).astype(int)


def extract_object_mask(channel, centroid, *, half_size, spacing=None) -> tuple:
    """Otsu-threshold a box around ``centroid`` and keep the component there.

    Parameters
    ----------
    channel : ndarray
        One channel, (Z, Y, X) or (Y, X).
    centroid : sequence of float
        The centroid in ``channel``'s voxel coordinates (same length as its ndim).
    half_size : sequence of int
        Half box size per axis in voxels (the box is ``2 * half + 1`` wide,
        clipped to the image).
    spacing : sequence of float, optional
        Voxel size per axis, to find the nearest component in µm.

    Returns
    -------
    (ObjectMask, ndarray of int) or None
        The cropped mask with the centroid's offset in it, and the mask's
        origin in ``channel``; None when the box is flat or empty.
    """
    from skimage.filters import threshold_otsu

    channel = np.asarray(channel)
    ndim = channel.ndim
    p = np.asarray(centroid, float)[-ndim:]
    shape = np.asarray(channel.shape)
    c = np.clip(np.round(p).astype(int), 0, shape - 1)
    half = np.asarray(half_size, int)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half + 1, shape)
    region = channel[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float64)
    if region.size < 2 or region.max() <= region.min():
        return None
    # Flattened: a small 3D box ending in 3 or 4 would look like RGB to Otsu.
    fg = region > threshold_otsu(region.ravel())
    labels, n = ndimage.label(fg)
    if n == 0:
        return None
    lab = int(labels[tuple(c - lo)])
    if lab == 0:
        coords = np.argwhere(labels > 0)
        sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)[-ndim:]
        d = np.sum(((coords - (p - lo)) * sp) ** 2, axis=1)
        lab = int(labels[tuple(coords[int(np.argmin(d))])])
    comp = labels == lab
    idx = np.argwhere(comp)
    b_lo, b_hi = idx.min(axis=0), idx.max(axis=0) + 1
    mask = comp[tuple(slice(a, b) for a, b in zip(b_lo, b_hi))]
    origin = lo + b_lo
    return ObjectMask(np.ascontiguousarray(mask), p - origin), origin


def image_object_masks(data, vectors: VectorTable, *, voxel_size, box_um=DEFAULT_BOX_UM) -> tuple:
    """Object masks of one annotated image, and the image's own label mask.

    Parameters
    ----------
    data : ndarray
        (2, Z, Y, X) or (2, Y, X): start and end channels.
    vectors : VectorTable
        Annotations in ``data``'s voxels.
    voxel_size : tuple of 3 floats
        (z, y, x) µm.
    box_um : ((z, y, x), (z, y, x))
        Box sizes around start and end centroids in µm (2D uses y, x).

    Returns
    -------
    (list of ObjectMask, list of ObjectMask, ndarray of uint8)
        Start masks, end masks, and a (2, ...) 0/1 mask with every object
        pasted at its true position.
    """
    data = np.asarray(data)
    ndim = data.ndim - 1
    label = np.zeros(data.shape, dtype=np.uint8)
    out = ([], [])
    for ch, points in enumerate((vectors.start, vectors.end)):
        half = _box_half(box_um[ch], voxel_size, ndim)
        channel = np.asarray(data[ch])
        for pt in points:
            res = extract_object_mask(channel, pt[-ndim:], half_size=half,
                                      spacing=np.asarray(voxel_size, float)[-ndim:])
            if res is None:
                continue
            obj, origin = res
            out[ch].append(obj)
            sl = tuple(slice(int(o), int(o) + s) for o, s in zip(origin, obj.mask.shape))
            label[ch][sl] |= obj.mask.astype(np.uint8)
    return out[0], out[1], label


def annotation_masks(data, vectors: VectorTable, *, voxel_size,
                     box_um=DEFAULT_BOX_UM) -> np.ndarray:
    """The (2, ...) uint8 0/1 label mask of an annotated image (local Otsu masks
    at the annotated centroids); see :func:`image_object_masks`."""
    return image_object_masks(data, vectors, voxel_size=voxel_size, box_um=box_um)[2]


def load_annotated(images, vectors, *, channels=None, structures=None, axes=None,
                   voxel_size=None) -> list:
    """Read images (paths or CellImage) and vector tables (paths or VectorTable).

    Returns
    -------
    list of (CellImage, VectorTable, (int, int))
        Each image, its vectors and its start and end channels.
    """
    from ..detection.train import load_annotated_images

    if not images:
        raise InputError("no annotated images given")
    out = load_annotated_images(list(images), list(vectors), channels=channels,
                                structures=structures, axes=axes, voxel_size=voxel_size)
    if len({im.ndim for im, _, _ in out}) > 1:
        raise InputError("the images mix 2D and 3D")
    return out


def build_mask_dictionary(images, vectors, *, channels=None, structures=None,
                          box_um=DEFAULT_BOX_UM, axes=None, voxel_size=None) -> MaskDictionary:
    """Build a mask dictionary from annotated images.

    Parameters
    ----------
    images : sequence of path or CellImage
        Annotated images.
    vectors : sequence of path or VectorTable
        One vector table per image (voxel coordinates).
    channels : (int, int), optional
        Start and end channels (default: by name, else 0 and 1).
    structures : (str, str), optional
        Structure names (default: the vector tables').
    box_um : ((z, y, x), (z, y, x))
        Boxes around start and end centroids in µm; 2D images use (y, x).
    axes : str, optional
        Axes override for reading images.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm override for every image.

    Returns
    -------
    MaskDictionary
        At the first image's voxel size (the images should share it).
    """
    pairs = load_annotated(images, vectors, channels=channels, structures=structures, axes=axes,
                           voxel_size=voxel_size)
    starts, ends = [], []
    first = pairs[0][0]
    ndim = first.ndim
    vs = tuple(first.voxel_size or (1.0, 1.0, 1.0))
    for image, table, (cs, ce) in pairs:
        data = np.stack([np.asarray(image.data[cs]), np.asarray(image.data[ce])])
        s, e, _ = image_object_masks(data, table, voxel_size=image.voxel_size or (1.0, 1.0, 1.0),
                                     box_um=box_um)
        starts += s
        ends += e
    names = tuple(structures or pairs[0][1].names)
    return MaskDictionary(starts, ends, vs, ndim=ndim, structures=names,
                          box_um=tuple(tuple(float(v) for v in b) for b in box_um))


# ----------------------------------------------------------------------------- layout sampler

@dataclass
class SyntheticLayout:
    """A sampled label layout and its exact ground truth.

    Attributes
    ----------
    labels : ndarray of int32
        (2, Z, Y, X) or (2, Y, X) instance labels: label k (1-based) is pair k
        in both channels, 0 is background.
    vectors : VectorTable
        The placement centroids, pair k in row k - 1.
    voxel_size : tuple of 3 floats
    info : dict
        ``requested`` and ``placed`` pair counts.
    """

    labels: np.ndarray
    vectors: VectorTable
    voxel_size: tuple
    info: dict = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """(2, ...) uint8 0/1 per channel: the generator's input."""
        return (self.labels > 0).astype(np.uint8)


def _paste(labels, obj: ObjectMask, origin, value):
    """Write ``value`` where ``obj`` is set and ``labels`` is still 0, clipped to the array."""
    shape = labels.shape
    src, dst = [], []
    for o, s, n in zip(origin, obj.mask.shape, shape):
        lo, hi = max(int(o), 0), min(int(o) + s, n)
        if hi <= lo:
            return
        dst.append(slice(lo, hi))
        src.append(slice(lo - int(o), hi - int(o)))
    view = labels[tuple(dst)]
    m = obj.mask[tuple(src)] & (view == 0)
    view[m] = value


def _random_transform(obj: ObjectMask, rng, square_xy: bool) -> ObjectMask:
    # Odd quarter turns would stretch objects when y and x voxels differ.
    k = int(rng.integers(0, 4)) if square_xy else 2 * int(rng.integers(0, 2))
    return obj.transformed(k, bool(rng.integers(0, 2)), bool(rng.integers(0, 2)))


def sample_layout(dictionary: MaskDictionary, *, shape, voxel_size=None, n_pairs=(11, 18),
                  max_pair_um=PAIR_DISTANCE_UM, min_sep_um=6.0, mean_direction: Optional[float] = None,
                  concentration=0.0, elevation_sd_deg=10.0, max_tries=500,
                  seed=0) -> SyntheticLayout:
    """Draw random centroid pairs and paste dictionary masks at them.

    Parameters
    ----------
    dictionary : MaskDictionary
        Source masks (used at their own voxel size).
    shape : tuple of int
        Patch (Z, Y, X) or (Y, X).
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm; default the dictionary's.
    n_pairs : int or (int, int)
        Pairs per patch, or an inclusive range drawn uniformly.
    max_pair_um : float
        Longest start-end distance.
    min_sep_um : float
        Shortest distance between any two centroids (starts and ends alike,
        including the two of one pair).
    mean_direction : float, optional
        Mean azimuth in degrees (0 = +x, 90 = up on screen, i.e. -y); None:
        uniform.
    concentration : float
        Von Mises kappa around ``mean_direction`` (0 = uniform).
    elevation_sd_deg : float
        3D only: SD of the normal elevation of the pair direction out of the
        xy plane.
    max_tries : int
        Placement attempts per pair before giving up on the remaining pairs.
    seed : int
        Same seed, same layout.

    Returns
    -------
    SyntheticLayout
        Fewer pairs than requested only when the patch is too crowded
        (``info["placed"] < info["requested"]``).
    """
    ndim = len(shape)
    if ndim != dictionary.ndim:
        raise InputError(f"the dictionary is {dictionary.ndim}D but the shape is {ndim}D")
    if not dictionary.start or not dictionary.end:
        raise InputError("the mask dictionary has no start or no end masks")
    if not 0 < min_sep_um <= max_pair_um:
        raise InputError(f"need 0 < min_sep_um <= max_pair_um, got {min_sep_um}, {max_pair_um}")
    vs3 = np.asarray(voxel_size if voxel_size is not None else dictionary.voxel_size, float)
    vs = vs3[-ndim:]
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    if isinstance(n_pairs, (int, np.integer)):
        n = int(n_pairs)
    else:
        lo, hi = (int(v) for v in n_pairs)
        n = int(rng.integers(lo, hi + 1))
    square_xy = math.isclose(vs[-1], vs[-2], rel_tol=1e-3)
    upper = np.asarray(shape, float) - 1.0
    labels = np.zeros((2,) + shape, dtype=np.int32)
    starts, ends, placed_um = [], [], np.zeros((0, ndim))
    for k in range(n):
        for _ in range(max_tries):
            s_obj = _random_transform(dictionary.start[int(rng.integers(len(dictionary.start)))],
                                      rng, square_xy)
            e_obj = _random_transform(dictionary.end[int(rng.integers(len(dictionary.end)))],
                                      rng, square_xy)
            if mean_direction is None or concentration <= 0:
                az = rng.uniform(0.0, 2.0 * math.pi)
            else:
                az = rng.vonmises(math.radians(mean_direction), concentration)
            length = rng.uniform(min_sep_um, max_pair_um)
            el = math.radians(rng.normal(0.0, elevation_sd_deg)) if ndim == 3 else 0.0
            # Azimuth convention of the vector CSVs: 0 = +x, 90 = -y.
            d_um = np.array([length * math.sin(el), -length * math.cos(el) * math.sin(az),
                             length * math.cos(el) * math.cos(az)])[-ndim:]
            p_s = rng.uniform(0.0, 1.0, ndim) * upper
            p_e = p_s + d_um / vs
            # Snap to positions whole-voxel pasting realises exactly.
            o_s = np.round(p_s - s_obj.offset).astype(int)
            o_e = np.round(p_e - e_obj.offset).astype(int)
            p_s, p_e = o_s + s_obj.offset, o_e + e_obj.offset
            if np.any(p_s < -0.5) or np.any(p_s > upper + 0.5) or np.any(p_e < -0.5) \
                    or np.any(p_e > upper + 0.5):
                continue
            a_um, b_um = p_s * vs, p_e * vs
            d = float(np.linalg.norm(a_um - b_um))
            if d > max_pair_um or d < min_sep_um:
                continue
            if len(placed_um) and (
                    np.min(np.linalg.norm(placed_um - a_um, axis=1)) < min_sep_um
                    or np.min(np.linalg.norm(placed_um - b_um, axis=1)) < min_sep_um):
                continue
            _paste(labels[0], s_obj, o_s, k + 1)
            _paste(labels[1], e_obj, o_e, k + 1)
            starts.append(p_s)
            ends.append(p_e)
            placed_um = np.vstack([placed_um, a_um, b_um])
            break
        else:
            break
    names = tuple(dictionary.structures)
    if starts:
        table = VectorTable(np.array(starts), np.array(ends), names=names, ndim=ndim)
    else:
        table = VectorTable.empty(names=names, ndim=ndim)
    vs_out = tuple(float(v) for v in vs3)
    return SyntheticLayout(labels, table, vs_out, info={"requested": n, "placed": len(starts)})
