"""The train dialog asks before a new run replaces a model folder (reliability case 1)."""

import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QDialog, QMessageBox  # noqa: E402

pytestmark = [pytest.mark.gui]


@pytest.fixture
def dialog(qtbot, tmp_path):
    from cellpol_app.project import Project
    from cellpol_app.train_dialog import TrainDialog

    project = Project.create(tmp_path / "proj")
    (project.root / "models" / "trained").mkdir(parents=True)
    (project.root / "models" / "trained" / "config.json").write_text("{}")
    staging = project.root / "models" / ".cancelled.staging-0123456789ab"
    staging.mkdir()
    (staging / "checkpoint_last.pt").write_bytes(b"")
    d = TrainDialog(project, [], cuda=False)
    qtbot.addWidget(d)
    return d


def _answer(monkeypatch, button):
    asked = []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_replacing_a_trained_model_asks_and_no_keeps_the_dialog_open(dialog, monkeypatch):
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    dialog.name_edit.setText("trained")
    dialog.accept()
    assert len(asked) == 1 and "trained model" in asked[0]
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert "overwrite" not in dialog.kwargs()


def test_replacing_a_trained_model_after_yes_passes_overwrite(dialog, monkeypatch):
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    dialog.name_edit.setText("trained")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.kwargs()["overwrite"] is True


def test_a_new_folder_is_not_asked_about(dialog, monkeypatch):
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    dialog.name_edit.setText("fresh")
    dialog.accept()
    assert asked == [] and dialog.result() == QDialog.DialogCode.Accepted
    assert "overwrite" not in dialog.kwargs()


def test_a_cancelled_run_can_be_resumed_or_replaced(dialog, monkeypatch):
    asked = _answer(monkeypatch, QMessageBox.StandardButton.No)
    dialog.name_edit.setText("cancelled")
    assert dialog.resume_box.isEnabled()  # its checkpoint is in the staging folder
    dialog.accept()
    assert len(asked) == 1 and "cancelled training" in asked[0]
    dialog.resume_box.setChecked(True)
    dialog.accept()  # resuming replaces nothing: no question
    assert len(asked) == 1 and dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.kwargs()["resume"] is True and "overwrite" not in dialog.kwargs()
