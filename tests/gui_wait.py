"""Waiting for a GUI job in tests: once, for the runner's ``finished`` signal.

The runner reports the end of every job once (see ``cellpol_app.jobs``), so
waiting for that signal is enough; polling ``running`` with ``qtbot.waitUntil``
would only add a timer every 10 ms while the worker emits. ``JobRunner.running``
changes only in GUI-thread slots, so checking it and then arming the wait
cannot miss the signal.
"""


def wait_job(qtbot, jobs, *, timeout=60000):
    """Block until ``jobs`` (an app.jobs.JobRunner) has finished its job."""
    if not jobs.running:
        return
    with qtbot.waitSignal(jobs.finished, timeout=timeout):
        pass
