"""Undoable annotation edits (``QUndoCommand``) over an :class:`AnnotationModel`.

Push them on a ``QUndoStack``: ``stack.push(AddPair(model, start, end))``.
Every redo and undo is one model change, so it is autosaved.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QUndoCommand

from . import _pyside_fix

_pyside_fix.apply()

__all__ = ["AddPair", "AddPairs", "MovePoint", "DeletePair", "SwapEnds", "ReplacePairs",
           "accept_predictions"]

_MOVE_ID = 1001


class AddPair(QUndoCommand):
    """Add a pair from ``start`` to ``end`` (z, y, x voxels)."""

    def __init__(self, model, start, end):
        super().__init__("Add pair")
        self.model = model
        self.start = np.asarray(start, float)
        self.end = np.asarray(end, float)
        self.pair_id = None

    def redo(self):
        # The same id on redo keeps table selections and later commands valid.
        self.pair_id = self.model.add_pair(self.start, self.end, pair_id=self.pair_id)

    def undo(self):
        self.model.remove_pair(self.pair_id)


class DeletePair(QUndoCommand):
    """Delete a pair; undo puts it back at the same row."""

    def __init__(self, model, pair_id):
        super().__init__("Delete pair")
        self.model = model
        self.pair_id = int(pair_id)
        self._pair = None
        self._index = None

    def redo(self):
        self._pair, self._index = self.model.remove_pair(self.pair_id)

    def undo(self):
        self.model.add_pair(self._pair.start, self._pair.end, pair_id=self.pair_id,
                            index=self._index)


class MovePoint(QUndoCommand):
    """Move the start or end of a pair.

    Successive moves of the same endpoint with the same ``drag`` token (one
    mouse drag) collapse into one undo step.
    """

    def __init__(self, model, pair_id, which, position, *, drag=None):
        super().__init__(f"Move {which}")
        self.model = model
        self.pair_id = int(pair_id)
        self.which = which
        self.old = model.get(pair_id).point(which).copy()
        self.new = np.asarray(position, float)
        self.drag = drag

    def id(self):
        return _MOVE_ID

    def mergeWith(self, other):
        if not (self.drag is not None and other.drag == self.drag
                and other.pair_id == self.pair_id
                and other.which == self.which):
            return False
        self.new = other.new
        return True

    def redo(self):
        self.model.set_point(self.pair_id, self.which, self.new)

    def undo(self):
        self.model.set_point(self.pair_id, self.which, self.old)


class SwapEnds(QUndoCommand):
    """Re-pair: exchange the ends of two pairs (its own inverse)."""

    def __init__(self, model, a, b):
        super().__init__("Re-pair")
        self.model = model
        self.a, self.b = int(a), int(b)

    def redo(self):
        self.model.swap_ends(self.a, self.b)

    def undo(self):
        self.model.swap_ends(self.a, self.b)


class AddPairs(QUndoCommand):
    """Add many pairs in one undo step (e.g. accepted predictions)."""

    def __init__(self, model, starts, ends, *, text="Add pairs"):
        super().__init__(text)
        self.model = model
        self.starts = np.asarray(starts, float).reshape(-1, 3)
        self.ends = np.asarray(ends, float).reshape(-1, 3)
        self.ids = None

    def redo(self):
        self.ids = self.model.add_pairs(self.starts, self.ends, ids=self.ids)

    def undo(self):
        self.model.remove_pairs(self.ids)


class ReplacePairs(QUndoCommand):
    """Replace every pair with ``pairs`` (a list of :class:`~cellpol_app.annotations.Pair`,
    e.g. an imported table's) in one undo step; undo brings the old pairs back."""

    def __init__(self, model, pairs, *, names=None, text="Replace pairs"):
        super().__init__(text)
        self.model = model
        self.new = list(pairs)
        self.new_names = model.names if names is None else tuple(names)
        self.old = list(model)
        self.old_names = model.names

    def redo(self):
        self.model.set_pairs(self.new, names=self.new_names)

    def undo(self):
        self.model.set_pairs(self.old, names=self.old_names)


def accept_predictions(model, table, *, min_score=None):
    """An :class:`AddPairs` command for the vectors of ``table`` to correct by hand.

    Parameters
    ----------
    model : AnnotationModel
    table : VectorTable
        Predictions.
    min_score : float, optional
        Keep vectors with ``score >= min_score`` (tables without scores keep all).

    Returns
    -------
    AddPairs or None
        None when no vector qualifies.
    """
    keep = np.ones(len(table), dtype=bool)
    if min_score is not None and table.score is not None:
        keep = table.score >= float(min_score)
    if not keep.any():
        return None
    return AddPairs(model, table.start[keep], table.end[keep],
                    text=f"Accept {int(keep.sum())} predictions")
