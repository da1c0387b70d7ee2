"""Running the engine's long jobs in a worker thread (superqt), never on the GUI thread.

A job is any generator function of :mod:`cellpol_core` that yields
:class:`~cellpol_core.jobs.ProgressEvent` and takes ``cancel=``. The worker
only runs the generator; results, progress and errors reach the GUI thread
through queued Qt signals, so widgets are touched from the GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from cellpol_core.errors import Cancelled, InputError
from cellpol_core.jobs import CancelToken

from . import _pyside_fix

_pyside_fix.apply()

__all__ = ["JobRunner", "error_text"]


class _WrappedRuntimeError(Exception):
    """Carries a job's RuntimeError: superqt drops RuntimeErrors (it takes them
    for deleted Qt objects) without emitting ``errored`` or ``finished``."""

    def __init__(self, original):
        super().__init__(str(original))
        self.original = original


def error_text(exc: BaseException) -> str:
    """One line for an error dialog."""
    if isinstance(exc, _WrappedRuntimeError):
        exc = exc.original
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _drive(factory, args, kwargs, token):
    # Runs in the worker thread: just forwards the job's events and result.
    try:
        result = yield from factory(*args, cancel=token, **kwargs)
    except RuntimeError as exc:  # e.g. torch's out-of-memory errors
        raise _WrappedRuntimeError(exc) from exc
    return result


class JobRunner(QObject):
    """Runs one job at a time.

    Signals
    -------
    progress(object)
        Each :class:`~cellpol_core.jobs.ProgressEvent`.
    succeeded(object)
        The job's return value.
    failed(str)
        A one-line error message.
    cancelled()
        The job stopped at a cancel request.
    finished()
        After any of the three above.
    """

    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._worker = None
        self._token = None
        self.name = ""

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, name: str, factory, *args, **kwargs) -> bool:
        """Run ``factory(*args, cancel=token, **kwargs)`` in a worker thread.

        Returns False (and starts nothing) when a job is already running.
        """
        from superqt.utils import create_worker

        if self.running:
            return False
        self.name = name
        self._token = CancelToken()
        worker = create_worker(_drive, factory, args, kwargs, self._token,
                               _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self.progress.emit)
        worker.returned.connect(self.succeeded.emit)
        worker.errored.connect(self._errored)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return True

    def cancel(self):
        """Ask the job to stop at its next check."""
        if self._token is not None:
            self._token.cancel()

    def _errored(self, exc):
        if isinstance(exc, Cancelled):
            self.cancelled.emit()
        else:
            self.failed.emit(error_text(exc))

    def _finished(self):
        self._worker = None
        self._token = None
        self.finished.emit()
