"""What the docks and dialogs may use of the main window: the :class:`WindowServices` interface.

The Analysis and Synthetic data docks, Predict all and the dialogs live in
their own modules and talk to :class:`~cellpol_app.annotator.AnnotatorWindow`
through this interface only, never through its private members. A test (or
another window) can stand in for the window by providing the same members.

Services
--------
``start_job(name, factory, *args, on_result=None, on_progress=None, on_error=None,
on_finished=None, **kwargs) -> bool``
    Run a generator job in the window's worker (one job at a time; False when
    one is running). The handlers run on the GUI thread; the result goes to
    ``on_result``. The window shows progress, Cancel, failures and
    cancellation itself.
``job_running`` (bool), ``job_name`` (str), ``cancel_job()``
    The running job.
``job_busy_changed``
    Signal(bool): True when a job starts, False when it has ended.
``show_error(message)``, ``show_message(text, msecs=6000)``
    An error dialog; a status-bar message.
``last_dir`` (str), ``remember_dir(path)``
    Where file dialogs start; the folder the user last used.
``project``
    The open :class:`~cellpol_app.project.Project`, or None.
``training_data() -> (image paths, annotation CSVs)``
    The project's annotated images.
``make_train_dialog()``, ``train(*, on_progress=None, on_finished=None, **options) -> bool``
    The Train / fine-tune dialog; the training job (its events also go to
    ``on_progress``).

State the docks read
--------------------
``loaded``, ``image_path``, ``voxel_size``, ``annotations`` (its
``add_listener``), ``vectors``, ``channel_colors``, ``ortho`` (the slice
views), ``image_loaded`` (Signal(object)), ``menuBar()`` and
``addDockWidget()``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, runtime_checkable

__all__ = ["WindowServices"]


@runtime_checkable
class WindowServices(Protocol):
    """The window as the docks and dialogs see it (see the module docstring)."""

    project: Any

    @property
    def job_running(self) -> bool: ...

    @property
    def job_name(self) -> str: ...

    @property
    def job_busy_changed(self) -> Any: ...

    @property
    def last_dir(self) -> str: ...

    def start_job(self, name: str, factory: Callable, *args,
                  on_result: Optional[Callable] = None, on_progress: Optional[Callable] = None,
                  on_error: Optional[Callable] = None, on_finished: Optional[Callable] = None,
                  **kwargs) -> bool: ...

    def cancel_job(self) -> None: ...

    def show_error(self, message: str) -> None: ...

    def show_message(self, text: str, msecs: int = 6000) -> None: ...

    def remember_dir(self, path) -> None: ...

    def training_data(self) -> tuple: ...

    def make_train_dialog(self): ...

    def train(self, *, on_progress: Optional[Callable] = None,
              on_finished: Optional[Callable] = None, **options) -> bool: ...
