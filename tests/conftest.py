"""Shared test settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Test tensors are tiny: one thread avoids synchronisation costs, and keeps
    # results identical whatever the machine's core count.
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def errors(monkeypatch):
    """Records the error dialogs the app would show (QMessageBox.critical) instead of showing them."""
    from PySide6.QtWidgets import QMessageBox

    calls = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *args, **kw: calls.append(args))
    return calls
