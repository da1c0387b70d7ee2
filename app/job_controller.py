"""The main window's jobs: start and cancel them, show their progress, lock the job actions.

:class:`JobController` owns the window's :class:`~cellpol_app.jobs.JobRunner`
(one job at a time), the status bar's progress bar and Cancel button, and the
actions that would start another job (disabled while one runs). It reports
every job's failure in an error dialog (``"<name> failed: <message>"``) and
its cancellation in the status bar; each job's result goes to the handlers
its caller gave to :meth:`JobController.start`. Closing the window while a
job runs asks first (:meth:`JobController.confirm_close`).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressBar, QPushButton

from .jobs import JobRunner

__all__ = ["JobController", "progress_text"]

#: Longest progress-bar text, in characters.
BAR_TEXT = 60
#: Smallest and largest width of the status bar's progress bar, pixels.
BAR_WIDTH = (320, 440)


def eta_text(seconds) -> str:
    """``ETA m:ss``."""
    return f"ETA {int(seconds) // 60}:{int(seconds) % 60:02d}"


def progress_text(name: str, event) -> str:
    """The progress bar's text for ``event`` of job ``name``, with its ETA when known."""
    text = f"{name}: {event.message}" if event.message else name
    eta = event.data.get("eta_s")
    if eta is not None:
        text += f" · {eta_text(eta)}"
    return text if len(text) <= BAR_TEXT else text[:BAR_TEXT - 1] + "…"


class JobController(QObject):
    """Runs the window's jobs (see the module docstring).

    Parameters
    ----------
    window : QMainWindow
        Gives the status bar and ``show_error``.

    Attributes
    ----------
    runner : JobRunner
    bar : QProgressBar
    cancel_button : QPushButton
    actions : list of QAction
        Disabled while a job runs (:meth:`lock_while_running` adds to it).

    Signals
    -------
    busy_changed(bool)
        True when a job starts, False when it has ended.
    """

    busy_changed = Signal(bool)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = JobRunner(self)
        self.actions = []
        self.bar = QProgressBar()
        # Wide enough for "Train: epoch 12/20 · ETA 1:05" on one line; the full text is
        # in the tooltip.
        self.bar.setMinimumWidth(BAR_WIDTH[0])
        self.bar.setMaximumWidth(BAR_WIDTH[1])
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job at its next step")
        self.cancel_button.clicked.connect(self.cancel)
        for w in (self.bar, self.cancel_button):
            w.setVisible(False)
            window.statusBar().addPermanentWidget(w)
        runner = self.runner
        runner.progress.connect(self._progress)
        runner.failed.connect(lambda message: window.show_error(f"{runner.name} failed: {message}"))
        runner.cancelled.connect(
            lambda: window.statusBar().showMessage(f"{runner.name}: cancelled", 4000))
        runner.finished.connect(self._ended)
        #: The open "a job is running" question of :meth:`confirm_close`, if any.
        self.close_question = None
        self._close_when_done = False

    @property
    def running(self) -> bool:
        return self.runner.running

    @property
    def name(self) -> str:
        """The running (or last) job's name."""
        return self.runner.name

    def lock_while_running(self, *actions):
        """Disable ``actions`` while a job runs."""
        self.actions.extend(actions)
        for action in actions:
            action.setEnabled(not self.running)

    def start(self, name, factory, *args, **kwargs) -> bool:
        """Start a job; the arguments are :meth:`JobRunner.start`'s.

        Returns False (and starts nothing) when a job is already running.
        """
        if not self.runner.start(name, factory, *args, **kwargs):
            return False
        for action in self.actions:
            action.setEnabled(False)
        self.bar.setRange(0, 0)
        self.bar.setFormat(f"{name}…")
        self.bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.busy_changed.emit(True)
        return True

    def cancel(self):
        """Ask the running job to stop at its next check."""
        self.runner.cancel()

    def confirm_close(self) -> bool:
        """True when the window may close now.

        With a job running, asks (without blocking) whether to keep it running
        (the window stays) or to cancel it; then the window closes once the job
        has stopped, so it ends as a cancel does (a training writes its
        checkpoint, from which it can resume).
        """
        from .safekeeping import ask_later

        if not self.running:
            return True
        if self.close_question is not None:
            self.close_question.raise_()
            return False
        choices = ("Keep running", "Cancel the job and close")

        def answer(choice):
            self.close_question = None
            if choice != choices[1]:
                return
            if not self.running:  # it ended while the question was open
                self.window.close()
                return
            self._close_when_done = True
            self.cancel()
            self.window.statusBar().showMessage(
                f"{self.name}: cancelling… the window closes when it has stopped")

        self.close_question = ask_later(
            self.window, "A job is running",
            f"{self.name} is still running.\n\nKeep it running, or cancel it and close the "
            f"window once it has stopped (a cancelled training keeps a checkpoint to resume "
            f"from)?", choices, answer, default=0, escape=0)
        return False

    def _progress(self, event):
        if event.total:
            self.bar.setRange(0, int(event.total))
            self.bar.setValue(int(event.step))
        text = progress_text(self.runner.name, event)
        self.bar.setFormat(text)
        self.bar.setToolTip(text)

    def _ended(self):
        if self.runner.running:  # a result handler started the next job
            return
        for action in self.actions:
            action.setEnabled(True)
        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self.busy_changed.emit(False)
        if self._close_when_done:
            self._close_when_done = False
            self.window.close()
