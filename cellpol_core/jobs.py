"""Progress events and cancellation shared by every long job.

A long job is a generator function that yields :class:`ProgressEvent` objects
and returns its result (``StopIteration.value``). The CLI drives it with a
progress bar; the GUI drives the same generator in a worker thread. A job
checks its :class:`CancelToken` between steps and raises :class:`Cancelled`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Optional

from .errors import Cancelled


@dataclass
class ProgressEvent:
    """One progress report of a long job.

    Attributes
    ----------
    stage : str
        Short machine-readable stage name, e.g. ``"read"``, ``"predict"``.
    step : int
        Steps done so far in this stage.
    total : int or None
        Number of steps in this stage, when known.
    message : str
        Human-readable text.
    data : dict
        Stage-specific values (losses, file names, device, ...).
    """

    stage: str
    step: int = 0
    total: Optional[int] = None
    message: str = ""
    data: dict = field(default_factory=dict)


class CancelToken:
    """Thread-safe cancellation flag checked by jobs between steps."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self):
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self):
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


JobGenerator = Generator[ProgressEvent, None, Any]


def run_job(job: JobGenerator, callback: Optional[Callable[[ProgressEvent], None]] = None):
    """Run a job generator to completion and return its result.

    Parameters
    ----------
    job : generator
        A generator yielding :class:`ProgressEvent` and returning a result.
    callback : callable, optional
        Called with each event.
    """
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
