"""Running the engine's long jobs in a worker thread (superqt), never on the GUI thread.

A job is any generator function of :mod:`cellpol_core` that yields
:class:`~cellpol_core.jobs.ProgressEvent` and takes ``cancel=``. The worker
only runs the generator; results, progress and errors reach the GUI thread
through queued Qt signals, so widgets are touched from the GUI thread only.

Whoever starts a job gives its own handlers to :meth:`JobRunner.start`
(``on_result``, ``on_progress``, ``on_error``, ``on_finished``): each job's
result goes to the code that asked for it, whatever the job is called. The
runner's signals report every job, for views that follow all of them (the
status bar's progress bar, the docks' buttons).

The end of a job is always reported, once, and nothing of the job after it.
superqt's worker is run by ``_JobWorker``, which differs from superqt's own
``run`` in the three ways that made jobs hang or misbehave under load:

- a ``RuntimeError`` (torch's out-of-memory, a bug) ends the job as an error;
  superqt takes it for a deleted Qt object and never emits ``finished``, so the
  job would hang forever;
- the job runs without ``warnings.catch_warnings()``: from the worker thread,
  that context manager saves and later restores the process-wide warning state
  while the GUI thread (pytest's capture, libraries) enters and leaves its own
  blocks, so an old state (filters, a hook into a finished worker) came back at
  random;
- a handler that processes events (a progress bar repainting, a dialog) may
  receive the rest of the job and its end inside it: late events are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, Signal

from cellpol_core.errors import Cancelled, InputError
from cellpol_core.jobs import CancelToken

from . import _pyside_fix

_pyside_fix.apply()

__all__ = ["JobRunner", "JobHandlers", "error_text"]


def error_text(exc: BaseException) -> str:
    """One line for an error dialog."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _drive(factory, args, kwargs, token):
    # Runs in the worker thread: just forwards the job's events and result.
    return (yield from factory(*args, cancel=token, **kwargs))


def _job_worker_class():
    from superqt.utils import GeneratorWorker

    class _JobWorker(GeneratorWorker):
        """superqt's generator worker whose end is always reported (see the module
        docstring): any exception is ``errored``, ``finished`` comes last whatever
        happened, and the process-wide warning state is left alone."""

        def run(self):
            self.started.emit()
            self._running = True
            try:
                result = self.work()  # returns a RuntimeError the generator raised
                if isinstance(result, BaseException):
                    raise result
                if not self.abort_requested:
                    self.returned.emit(result)
            except Exception as exc:
                self.errored.emit(exc)
            finally:
                self._running = False
                self.finished.emit()
                self._finished.emit(self)  # superqt's bookkeeping of started workers

    return _JobWorker


def _call(handler, *args):
    if handler is not None:
        handler(*args)


@dataclass
class JobHandlers:
    """The caller's handlers of one job; each runs on the GUI thread.

    Attributes
    ----------
    on_result : callable(result), optional
        The job's return value, when it succeeded.
    on_progress : callable(ProgressEvent), optional
        Each event, before the runner's ``progress`` signal.
    on_error : callable(str), optional
        The one-line error message, when it failed (the runner's ``failed``
        signal follows).
    on_finished : callable(), optional
        Last, after success, failure or cancellation.
    """

    on_result: Optional[Callable[[Any], None]] = None
    on_progress: Optional[Callable[[Any], None]] = None
    on_error: Optional[Callable[[str], None]] = None
    on_finished: Optional[Callable[[], None]] = None


class JobRunner(QObject):
    """Runs one job at a time.

    When a job ends, :attr:`running` is already False, so a result handler
    may start the next job. The end of a job is always reported, even when
    a handler raises.

    Signals
    -------
    progress(object)
        Each :class:`~cellpol_core.jobs.ProgressEvent`, after the job's ``on_progress``.
    succeeded(object)
        The job's return value, after its ``on_result``.
    failed(str)
        A one-line error message, after the job's ``on_error``.
    cancelled()
        The job stopped at a cancel request.
    finished()
        After any of the three above and the job's ``on_finished``.
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
        self._handlers = JobHandlers()
        self._outcome = None
        self.name = ""

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, name: str, factory, *args, on_result=None, on_progress=None, on_error=None,
              on_finished=None, **kwargs) -> bool:
        """Run ``factory(*args, cancel=token, **kwargs)`` in a worker thread.

        Parameters
        ----------
        name : str
            Shown in the progress bar and in messages ("Predict", "Train"...).
        factory : generator function
            The job.
        *args, **kwargs
            The job's arguments.
        on_result, on_progress, on_error, on_finished : callable, optional
            This job's handlers (see :class:`JobHandlers`).

        Returns
        -------
        bool
            False (and nothing started) when a job is already running.
        """
        from superqt.utils import create_worker

        if self.running:
            return False
        self.name = name
        self._token = CancelToken()
        self._handlers = JobHandlers(on_result, on_progress, on_error, on_finished)
        self._outcome = None
        worker = create_worker(_drive, factory, args, kwargs, self._token,
                               _start_thread=False, _ignore_errors=True,
                               _worker_class=_job_worker_class())
        worker.yielded.connect(self._yielded)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return True

    def cancel(self):
        """Ask the job to stop at its next check."""
        if self._token is not None:
            self._token.cancel()

    def _current(self) -> bool:
        # The signal comes from the running job's worker, and that job has not ended: a
        # late event (delivered after the end, inside a handler that processed events) or
        # one of an earlier job is dropped.
        return self._worker is not None and self.sender() is self._worker.signals

    def _yielded(self, event):
        if not self._current():
            return
        _call(self._handlers.on_progress, event)
        if self._current():
            self.progress.emit(event)

    def _returned(self, result):
        if self._current():
            self._outcome = ("result", result)

    def _errored(self, exc):
        if self._current():
            self._outcome = ("cancelled", None) if isinstance(exc, Cancelled) else \
                ("error", error_text(exc))

    def _finished(self):
        if not self._current():
            return
        # The worker's signals arrive in order: its result or error came first.
        handlers, outcome = self._handlers, self._outcome
        self._worker = self._token = self._outcome = None
        self._handlers = JobHandlers()
        kind, value = outcome or ("cancelled", None)
        try:
            if kind == "result":
                _call(handlers.on_result, value)
                self.succeeded.emit(value)
            elif kind == "error":
                _call(handlers.on_error, value)
                self.failed.emit(value)
            else:
                self.cancelled.emit()
            _call(handlers.on_finished)
        finally:
            self.finished.emit()
