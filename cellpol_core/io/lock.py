"""A lock file that keeps two long jobs from writing one folder at once.

The lock of folder ``DIR`` is the file ``.DIR.lock`` beside it (outside the
folder, so that the folder itself can be swapped while the lock is held). It
is created atomically (``O_CREAT | O_EXCL``) and holds the holder's pid, host
and start time as JSON, so that the refusal can name the holder. A lock whose
pid no longer runs on this host is stale and is taken over.

Examples
--------
>>> with FolderLock("models/m"):  # doctest: +SKIP
...     ...  # train into models/m
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from ..errors import InputError

__all__ = ["FolderLock", "FolderBusy", "lock_path"]


class FolderBusy(InputError):
    """Another live process holds the folder's lock."""


def lock_path(folder) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` in its parent."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill would terminate the process there
        try:
            import psutil
        except ImportError:
            return True  # cannot tell: keep the lock
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _started_after(pid: int, when: float) -> bool:
    """True when process ``pid`` started after ``when`` (the pid was reused); Linux only."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime"))
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return started > when + 2.0  # btime and ticks are coarse


def _describe(info: dict) -> str:
    when = info.get("started")
    stamp = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
             if isinstance(when, (int, float)) else "?")
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"{info.get('what') or 'a job'} started {stamp}")


class FolderLock:
    """Exclusive use of a folder by one job (a context manager).

    Parameters
    ----------
    folder : str or Path
        The folder to lock (it need not exist yet).
    what : str
        What holds it, for the other job's message (``"training"``).

    Raises
    ------
    FolderBusy
        On :meth:`acquire`, when another live process (or another job of this
        process) holds the lock: one line naming the holder.
    """

    def __init__(self, folder, *, what="training"):
        self.folder = Path(folder)
        self.path = lock_path(folder)
        self.what = what
        self.info = None

    def _read(self):
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: judged by its age below

    def _stale(self, info) -> bool:
        if not info:
            # Unreadable: a writer died between create and write, or is writing now.
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > 10.0
            return False
        if info.get("host") != socket.gethostname():
            return False  # cannot see the other host's processes
        pid = int(info.get("pid", -1))
        if pid == os.getpid():
            return False  # another job of this process
        started = info.get("started")
        return not _pid_alive(pid) or (isinstance(started, (int, float))
                                       and _started_after(pid, started))

    def _take_over(self, info) -> bool:
        """Move a stale lock aside; False when it changed meanwhile (someone else won)."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # gone already: try again to create it
        try:
            moved = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {}
        if moved != info and moved:
            # A fresh lock replaced the stale one before our rename: put it back.
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            with contextlib.suppress(OSError):
                os.unlink(aside)
            return False
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return True

    def acquire(self):
        from .atomic import write_error

        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "what": self.what, "token": uuid.uuid4().hex}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, self.path.parent) from None
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = self._read()
                if held is None:
                    continue
                if self._stale(held) and self._take_over(held):
                    continue
                raise FolderBusy(f"in use by another {held.get('what') or 'job'} "
                                 f"({_describe(held or {})}); wait for it to end, or delete "
                                 f"{self.path.name} if no such job runs", self.folder) from None
            except OSError as exc:
                raise write_error(exc, self.path) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(info, fh)
            self.info = info
            return self
        raise FolderBusy(f"cannot lock it: {self.path.name} keeps changing", self.folder)

    def release(self):
        """Remove the lock file if it is still ours."""
        if self.info is None:
            return
        if self._read() == self.info:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self.info = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
