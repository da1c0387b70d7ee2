"""Work around PySide6 6.12.0 dropping a reference to ``True`` on every ``Signal.emit``.

With that release, each emit returns ``True`` without owning a reference, so
the refcount of ``True`` falls by one per emit until CPython < 3.12 aborts
with "bool_dealloc: deallocating True or False" (pyqtgraph emits on every
mouse move). Python 3.12+ makes ``True`` immortal; on older versions we give
``True`` and ``False`` a reference count that cannot reach zero. Other PySide6
versions are left alone.
"""

from __future__ import annotations

import ctypes
import sys

_BAD_VERSIONS = ("6.12.0",)
_applied = False


def apply() -> bool:
    """Apply the workaround when needed; returns True when it was applied."""
    global _applied
    if _applied:
        return True
    import PySide6

    if (PySide6.__version__ not in _BAD_VERSIONS or sys.version_info >= (3, 12)
            or sys.implementation.name != "cpython"):
        return False
    for obj in (True, False):
        # ob_refcnt is the first field of every CPython object.
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    _applied = True
    return True
