"""Annotation model: an ordered list of start→end pairs with stable ids (no Qt).

Edits go through the undoable commands of :mod:`cellpol_app.commands`; this
module holds the state, tells listeners about changes and, when an autosave
path is set, rewrites the CellPol CSV atomically after every change, so a
crash loses at most the edit being made.

A failed autosave (a full disk, a folder gone read-only) keeps the edit in
memory: :attr:`AnnotationModel.save_error` says why, the save listeners hear
when it fails and when a later save (the next edit, or :meth:`retry_save`)
succeeds again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from cellpol_core.errors import OutputError
from cellpol_core.io.atomic import write_error
from cellpol_core.io.vectors import DEFAULT_STRUCTURES, VectorTable, write_vectors

__all__ = ["Pair", "AnnotationModel", "pairs_of", "snap_to_maximum"]


@dataclass
class Pair:
    """One annotated cell: start and end centroids in (z, y, x) voxels."""

    id: int
    start: np.ndarray
    end: np.ndarray

    def point(self, which: str) -> np.ndarray:
        return self.start if which == "start" else self.end


def _point(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.shape == (2,):
        p = np.array([0.0, p[0], p[1]])
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise ValueError(f"a point must be 3 finite (z, y, x) numbers, got {p}")
    return p


class AnnotationModel:
    """The pairs of one image.

    Parameters
    ----------
    names : (str, str)
        Start and end structure names (CSV column prefixes).
    ndim : int
        2 or 3; 2D tables are written without ``_z`` columns.
    voxel_size : (z, y, x) floats, optional
        Adds µm columns to the saved CSV.
    autosave_path : path, optional
        CSV rewritten (atomically) after every change.
    """

    def __init__(self, *, names=DEFAULT_STRUCTURES, ndim=3, voxel_size=None,
                 autosave_path=None):
        self.names = tuple(names)
        self.ndim = int(ndim)
        self.voxel_size = None if voxel_size is None else tuple(float(v) for v in voxel_size)
        self.autosave_path = None if autosave_path is None else Path(autosave_path)
        self._pairs: list = []
        self._next_id = 1
        self._listeners: list = []
        self._save_listeners: list = []
        #: Why the last autosave failed (one line), None when the file holds every edit.
        self.save_error: Optional[str] = None
        #: Start point of a pair whose end is not placed yet (not an edit: not saved).
        self.pending_start: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ reading
    def __len__(self):
        return len(self._pairs)

    def __iter__(self):
        return iter(list(self._pairs))

    @property
    def ids(self) -> list:
        return [p.id for p in self._pairs]

    def get(self, pair_id: int) -> Pair:
        for p in self._pairs:
            if p.id == pair_id:
                return p
        raise KeyError(pair_id)

    def index_of(self, pair_id: int) -> int:
        return self.ids.index(pair_id)

    def to_table(self) -> VectorTable:
        """The pairs as a :class:`VectorTable` (with an ``id`` column)."""
        if not self._pairs:
            return VectorTable.empty(names=self.names, ndim=self.ndim)
        start = np.array([p.start for p in self._pairs])
        end = np.array([p.end for p in self._pairs])
        ids = np.array([p.id for p in self._pairs], dtype=np.float64)
        return VectorTable(start, end, names=self.names, ndim=self.ndim, extra={"id": ids})

    # ------------------------------------------------------------------ listeners
    def add_listener(self, callback: Callable[[], None]):
        """Call ``callback()`` after every change."""
        self._listeners.append(callback)

    def add_save_listener(self, callback: Callable[[], None]):
        """Call ``callback()`` when an autosave fails after succeeding, or succeeds again
        (:attr:`save_error` tells which)."""
        self._save_listeners.append(callback)

    def _changed(self, *, edit=True):
        if edit and self.autosave_path is not None:
            self._autosave()
        for cb in list(self._listeners):
            cb()

    def _autosave(self) -> bool:
        try:
            self.save(self.autosave_path)
        except (OSError, OutputError) as exc:
            self._set_save_error(str(write_error(exc, self.autosave_path)))
            return False
        self._set_save_error(None)
        return True

    def _set_save_error(self, error):
        changed = (error is None) != (self.save_error is None)
        self.save_error = error
        if changed:
            for cb in list(self._save_listeners):
                cb()

    def retry_save(self) -> bool:
        """Write the autosave file again after a failure; True when it holds every edit."""
        if self.autosave_path is None:
            return self.save_error is None
        saved = self._autosave()
        self._changed(edit=False)  # views showing the saved state
        return saved

    @property
    def unsaved(self) -> bool:
        """True when some pairs (or edits) exist only in memory: no autosave file, or its
        last write failed."""
        return self.save_error is not None or (self.autosave_path is None and len(self) > 0)

    # ------------------------------------------------------------------ edits
    # Called by the commands; each one is a complete, saved edit.
    def add_pair(self, start, end, *, pair_id=None, index=None) -> int:
        """Append (or insert at ``index``) a pair; returns its id."""
        pair_id = self._next_id if pair_id is None else int(pair_id)
        if pair_id in self.ids:
            raise ValueError(f"pair id {pair_id} already used")
        self._next_id = max(self._next_id, pair_id + 1)
        pair = Pair(pair_id, _point(start), _point(end))
        self._pairs.insert(len(self._pairs) if index is None else int(index), pair)
        self._changed()
        return pair_id

    def add_pairs(self, starts, ends, *, ids=None) -> list:
        """Append many pairs as one change (one autosave); returns their ids."""
        starts = np.asarray(starts, float).reshape(-1, 3)
        ends = np.asarray(ends, float).reshape(-1, 3)
        if ids is None:
            ids = list(range(self._next_id, self._next_id + len(starts)))
        ids = [int(i) for i in ids]
        if len(ids) != len(starts) or len(starts) != len(ends) or \
                len(set(ids)) != len(ids) or set(ids) & set(self.ids):
            raise ValueError("ids must be new, unique and one per pair")
        for pid, a, b in zip(ids, starts, ends):
            self._pairs.append(Pair(pid, _point(a), _point(b)))
        if ids:
            self._next_id = max(self._next_id, max(ids) + 1)
        self._changed()
        return ids

    def remove_pairs(self, ids):
        """Remove many pairs as one change."""
        drop = {int(i) for i in ids}
        missing = drop - set(self.ids)
        if missing:
            raise KeyError(sorted(missing)[0])
        self._pairs = [p for p in self._pairs if p.id not in drop]
        self._changed()

    def remove_pair(self, pair_id: int) -> tuple:
        """Remove a pair; returns (pair, index it had) for undo."""
        index = self.index_of(pair_id)
        pair = self._pairs.pop(index)
        self._changed()
        return pair, index

    def set_point(self, pair_id: int, which: str, position):
        """Move the ``"start"`` or ``"end"`` of a pair."""
        if which not in ("start", "end"):
            raise ValueError("which must be 'start' or 'end'")
        setattr(self.get(pair_id), which, _point(position))
        self._changed()

    def swap_ends(self, a: int, b: int):
        """Re-pair: exchange the end points of pairs ``a`` and ``b``."""
        pa, pb = self.get(a), self.get(b)
        pa.end, pb.end = pb.end, pa.end
        self._changed()

    def set_pending(self, start):
        """Show (or clear, with None) a half-placed pair."""
        self.pending_start = None if start is None else _point(start)
        self._changed(edit=False)

    def replace_all(self, table: Optional[VectorTable]):
        """Load pairs from a table (ids from its ``id`` column when it has one).

        Not undoable; used when opening an image. Does not autosave, and
        forgets an earlier failed autosave (the pairs now come from a file).
        """
        self.pending_start = None
        self._pairs = pairs_of(table)
        self._next_id = max((p.id for p in self._pairs), default=0) + 1
        if table is not None and len(table):
            self.names = tuple(table.names)
        self.save_error = None
        self._changed(edit=False)

    def set_pairs(self, pairs, *, names=None):
        """Make ``pairs`` (a list of :class:`Pair`) the annotations, as one saved edit
        (the undoable import uses it; ids are kept)."""
        ids = [p.id for p in pairs]
        if len(set(ids)) != len(ids):
            raise ValueError("pair ids must be unique")
        self._pairs = [Pair(p.id, _point(p.start), _point(p.end)) for p in pairs]
        self._next_id = max([self._next_id - 1, *ids]) + 1
        if names is not None:
            self.names = tuple(names)
        self._changed()

    # ------------------------------------------------------------------ saving
    def save(self, path):
        """Write the pairs as a CellPol CSV, atomically."""
        write_vectors(path, self.to_table(), voxel_size=self.voxel_size)


def pairs_of(table: Optional[VectorTable]) -> list:
    """The rows of ``table`` as :class:`Pair` objects, with ids from its ``id`` column when
    that holds unique numbers (else 1, 2, ...)."""
    if table is None or not len(table):
        return []
    ids = table.extra.get("id")
    usable = (ids is not None and np.issubdtype(np.asarray(ids).dtype, np.number)
              and np.all(np.isfinite(ids))
              and len(set(np.asarray(ids, int).tolist())) == len(table))
    return [Pair(int(ids[i]) if usable else i + 1, _point(table.start[i]), _point(table.end[i]))
            for i in range(len(table))]


def snap_to_maximum(volume, point, *, radius) -> np.ndarray:
    """The brightest voxel of ``volume`` within an ellipsoid around ``point``.

    Parameters
    ----------
    volume : ndarray, shape (Z, Y, X)
        One channel.
    point : (z, y, x)
        Where the user clicked, in voxels.
    radius : (rz, ry, rx) floats
        Half-axes of the search ellipsoid in voxels (e.g. 1.5 µm / voxel size).

    Returns
    -------
    ndarray, shape (3,)
        (z, y, x) of the maximum (the nearest one to ``point`` on ties), as floats.
    """
    vol = np.asarray(volume)
    p = np.asarray(point, dtype=np.float64)
    r = np.maximum(np.asarray(radius, dtype=np.float64), 1e-6)
    centre = np.clip(np.rint(p).astype(int), 0, np.array(vol.shape) - 1)
    lo = np.maximum(centre - np.floor(r).astype(int), 0)
    hi = np.minimum(centre + np.floor(r).astype(int) + 1, vol.shape)
    box = vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
    d2 = sum(((g - c) / rr) ** 2 for g, c, rr in zip(grids, centre, r))
    box = np.where(d2 <= 1.0 + 1e-9, box, -np.inf)
    best = box.max()
    cand = np.argwhere(box == best)
    # Nearest to the click among equal maxima keeps flat regions stable.
    dist = (((cand + lo - p) / r) ** 2).sum(axis=1)
    return (cand[int(np.argmin(dist))] + lo).astype(np.float64)
