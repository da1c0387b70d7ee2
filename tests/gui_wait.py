"""Waiting for a GUI job in tests without polling while its worker thread runs.

Polling with ``qtbot.waitUntil`` sets up and tears down a timer every 10 ms
while the worker emits signals; under load that occasionally deadlocked the
test process (main thread in pytest-qt's timer clean-up, worker waiting for
the GIL). Waiting once for the runner's ``finished`` signal avoids the churn.
``JobRunner.running`` changes only in main-thread slots, so checking it and
then arming the wait cannot miss the signal.
"""


def wait_job(qtbot, jobs, *, timeout=60000):
    """Block until ``jobs`` (an app.jobs.JobRunner) has finished its job."""
    if not jobs.running:
        return
    with qtbot.waitSignal(jobs.finished, timeout=timeout):
        pass
