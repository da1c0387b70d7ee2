"""Atomic file writes: write a temporary file beside the target, then rename.

Write failures (a read-only folder, a full disk, torch's own "enforce fail"
when its zip writer runs out of space) become :class:`~cellpol_core.errors.OutputError`:
one line naming the target. :func:`check_writable` lets a long job find out
before it starts that its output cannot be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import OutputError

# mkstemp creates files with mode 0600; written files should follow the
# umask like any other. Read once at import (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: Free space below which an output disk counts as full before a job starts.
MIN_FREE_BYTES = 1 << 20

# torch.save reports a failed write (e.g. a full disk) as a RuntimeError from its zip writer
_TORCH_WRITE_SIGNS = ("enforce fail", "file write failed", "PytorchStreamWriter")


def _reason(exc) -> str:
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "permission denied (read-only folder?)"
        return exc.strerror or str(exc) or type(exc).__name__
    return "the write failed (is the disk full?)"


def write_error(exc, path):
    """The :class:`OutputError` for a failed write of ``path``, or None when ``exc``
    is not a write failure (so the caller re-raises it unchanged)."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, OSError):
        return OutputError(f"cannot write the file: {_reason(exc)}", path)
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_SIGNS):
        return OutputError(f"cannot write the file: {_reason(exc)}", path)
    return None


@contextlib.contextmanager
def atomic_path(path, *, suffix=None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix(es) so that writers choosing a
    format by extension (tifffile, for instance) behave the same. On error the
    temporary file is removed and the target is left untouched; a failed write
    (``OSError``, or torch's write ``RuntimeError``) is raised as
    :class:`~cellpol_core.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}",
                                   dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(exc, path) from exc
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # an OSError about some other file (an input read by the writer) is not ours to name
        other = isinstance(exc, OSError) and exc.filename not in (None, tmp, str(path))
        err = None if other else write_error(exc, path)
        if err is None or err is exc:
            raise
        raise err from exc


def write_text_atomic(path, text: str, *, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def check_writable(path, *, folder=False, min_free=MIN_FREE_BYTES):
    """Check, before a long job starts, that ``path`` can be written.

    Creates nothing: a temporary file is made and removed in the nearest
    existing folder on the way to ``path``.

    Parameters
    ----------
    path : str or Path
        The output file, or the output folder when ``folder`` is true.
    folder : bool
        ``path`` is a folder the job writes into (it may not exist yet).
    min_free : int
        Bytes that must be free on that disk.

    Raises
    ------
    OutputError
        ``path`` is a file where a folder is expected (or the reverse), a
        folder on the way is a file, the folder is not writable, or the disk
        is full.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder; give a folder for the output", path)
    if not folder and path.is_dir():
        raise OutputError("is a folder; give a file name for the output", path)
    probe = path if folder else path.parent
    probe = probe if str(probe) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create it: {probe} is a file, not a folder", path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cellpol-write-check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write in {probe}: {_reason(exc)}", path) from None
    free = shutil.disk_usage(probe).free
    if free < min_free:
        raise OutputError(f"the disk holding {probe} is full ({free} bytes free)", path)
