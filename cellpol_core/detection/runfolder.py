"""A training run writes its folder whole, or not at all.

A run never writes into the model folder ``DIR`` itself. It trains in a
staging folder beside it, ``.DIR.staging-<run id>``, which holds the run's
config, weights, log and resumable checkpoint; when the last epoch is done
the staging folder replaces ``DIR`` in one rename (an atomic exchange on
Linux). An interrupted run (Ctrl-C, cancel, ``kill -9``) leaves ``DIR`` as
it was, and its staging folder is what ``resume`` continues. Resuming a
finished folder (to train more epochs) first links its files into a new
staging folder, so that it too is replaced whole.

While a run prepares, trains and swaps, it holds the lock of ``DIR``
(:class:`cellpol_core.io.lock.FolderLock`); a second run into the same
folder is refused with one line naming the holder. On start, the run
removes the temporary files (``.NAME.*.tmp.SUFFIX``) that dead writers left
behind for the files a training writes, and the leftovers of a swap that
was cut short.

A new run into a folder that holds a model, or that has an interrupted run
waiting to be resumed, needs ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Optional, Sequence

from ..errors import InputError
from ..io.atomic import write_error
from ..io.lock import FolderLock

__all__ = ["RunFolder", "new_run_id", "pending_run", "holds_model", "check_new_run",
           "clean_temporaries", "staging_dirs"]

STAGING = ".staging-"
REPLACED = ".replaced-"


def new_run_id() -> str:
    """A fresh id tying a folder's config and checkpoint to one run."""
    return uuid.uuid4().hex[:12]


def _siblings(outdir, tag) -> list:
    outdir = Path(outdir)
    parent = outdir.parent
    if not parent.is_dir():
        return []
    found = [p for p in parent.glob(f".{outdir.name}{tag}*") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def staging_dirs(outdir) -> list:
    """The staging folders of ``outdir``'s runs, oldest first."""
    return _siblings(outdir, STAGING)


def pending_run(outdir, checkpoint_file) -> Optional[Path]:
    """The staging folder of an interrupted run that can be resumed (newest), or None."""
    found = [p for p in staging_dirs(outdir) if (p / checkpoint_file).is_file()]
    return found[-1] if found else None


def holds_model(outdir, marker_file="config.json") -> bool:
    """Whether ``outdir`` holds a model (its ``marker_file``)."""
    return (Path(outdir) / marker_file).is_file()


def check_new_run(outdir, *, overwrite, checkpoint_file, marker_file="config.json",
                  option="--overwrite"):
    """Raise when a new run may not start in ``outdir`` (before any work is done).

    Raises
    ------
    InputError
        ``outdir`` is a file, is a folder with other things than a model, or
        (without ``overwrite``) holds a model or an interrupted run.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError("exists and is not a folder; give a model folder", outdir)
    if outdir.is_dir() and not holds_model(outdir, marker_file):
        if any(not p.name.startswith(".") for p in outdir.iterdir()):
            raise InputError("is a folder with other files, not a model folder; give a new or "
                             "empty folder", outdir)
    if overwrite:
        return
    if holds_model(outdir, marker_file):
        raise InputError(f"holds a trained model; pass {option} to replace it (or --resume "
                         "to continue its run)", outdir)
    if pending_run(outdir, checkpoint_file) is not None:
        raise InputError(f"has an interrupted training run; pass --resume to continue it or "
                         f"{option} to start over", outdir)


def clean_temporaries(folder, names: Sequence[str]) -> list:
    """Remove the temporaries that atomic writes of ``names`` left in ``folder``.

    Only files named like :func:`cellpol_core.io.atomic.atomic_path`'s
    temporaries of those files are removed; call it while holding the
    folder's lock, when no writer of them can be alive. Returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for name in names:
        stem, dot, suffix = name.partition(".")
        pattern = f".{stem}.*.tmp{dot}{suffix}"
        for p in folder.glob(pattern):
            if p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _fsync_dir(folder: Path):
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_or_copy(src, dst):
    # Atomic writes replace files and never change them in place, so a hard
    # link is as good as a copy.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class RunFolder:
    """Where one training run writes: lock, staging folder, swap.

    Parameters
    ----------
    outdir : path
        The model folder the run produces.
    resume : bool
        Continue the interrupted run of ``outdir`` (its staging folder), or
        the finished run in ``outdir`` itself.
    overwrite : bool
        Let a new run replace a model (or an interrupted run) in ``outdir``.
    checkpoint_file : str
        Name of the resumable checkpoint.
    own_files : sequence of str
        Names of the files a run writes (their stale temporaries are removed).
    marker_file : str
        The file that makes a folder a model folder.

    Attributes
    ----------
    workdir : Path
        The staging folder the run writes into (after :meth:`open`).
    run_id : str or None
        The new run's id; None when resuming (the folder's config has it).
    removed : list of Path
        Stale temporaries removed on open.
    """

    def __init__(self, outdir, *, resume=False, overwrite=False,
                 checkpoint_file="checkpoint_last.pt", own_files=(),
                 marker_file="config.json", what="training", option="--overwrite"):
        self.outdir = Path(outdir)
        self.resume = bool(resume)
        self.overwrite = bool(overwrite)
        self.checkpoint_file = checkpoint_file
        self.own_files = tuple(own_files)
        self.marker_file = marker_file
        self.option = option
        self.lock = FolderLock(self.outdir, what=what)
        self.workdir: Optional[Path] = None
        self.run_id: Optional[str] = None
        self.removed: list = []

    def _staging(self, run_id) -> Path:
        return self.outdir.parent / f".{self.outdir.name}{STAGING}{run_id}"

    def _recover(self):
        # A swap cut short between its two renames (no atomic exchange here):
        # the old model waits under its "replaced" name.
        replaced = _siblings(self.outdir, REPLACED)
        if replaced and not self.outdir.exists():
            os.rename(replaced.pop(), self.outdir)
        for p in replaced:
            shutil.rmtree(p, ignore_errors=True)

    def open(self) -> "RunFolder":
        """Lock ``outdir`` and choose the staging folder.

        Raises
        ------
        FolderBusy
            Another run holds the folder.
        InputError
            Nothing to resume; or a new run would replace a model or an
            interrupted run without ``overwrite``; or ``outdir`` is not a
            model folder.
        """
        self.lock.acquire()
        try:
            self._recover()
            self.removed += clean_temporaries(self.outdir, self.own_files)
            if self.resume:
                self.workdir = self._resume_dir()
            else:
                check_new_run(self.outdir, overwrite=self.overwrite,
                              checkpoint_file=self.checkpoint_file,
                              marker_file=self.marker_file, option=self.option)
                for p in staging_dirs(self.outdir):  # abandoned runs, now replaced
                    shutil.rmtree(p, ignore_errors=True)
                self.run_id = new_run_id()
                self.workdir = self._staging(self.run_id)
                self.workdir.mkdir(parents=True)
            self.removed += clean_temporaries(self.workdir, self.own_files)
        except OSError as exc:
            self.lock.release()
            raise write_error(exc, self.outdir) from None
        except BaseException:
            self.lock.release()
            raise
        return self

    def _resume_dir(self) -> Path:
        pending = pending_run(self.outdir, self.checkpoint_file)
        if pending is not None:
            return pending
        if not (self.outdir / self.checkpoint_file).is_file():
            raise InputError(f"nothing to resume: no {self.checkpoint_file}", self.outdir)
        staging = self._staging(new_run_id())
        shutil.copytree(self.outdir, staging, copy_function=_link_or_copy)
        return staging

    def commit(self):
        """Put the finished run in place of ``outdir`` (whole, or not at all)."""
        staging, outdir = self.workdir, self.outdir
        try:
            if not outdir.exists():
                os.rename(staging, outdir)
            elif _exchange(staging, outdir):
                shutil.rmtree(staging, ignore_errors=True)  # now the old model
            else:
                old = outdir.parent / f".{outdir.name}{REPLACED}{uuid.uuid4().hex[:12]}"
                os.rename(outdir, old)
                os.rename(staging, outdir)
                shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            raise write_error(exc, outdir) from None
        _fsync_dir(outdir.parent)
        self.workdir = outdir

    def close(self):
        """Release the lock (an uncommitted staging folder stays, for resuming)."""
        self.lock.release()
