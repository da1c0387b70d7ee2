"""The Train / fine-tune dialog (Jobs → Train…).

It gathers the options of :meth:`AnnotatorWindow.train`: a
:class:`~cellpol_core.detection.config.TrainConfig` (epochs, patch size,
device, validation fraction) and the model name, a model to fine-tune,
validation images and resume; it never runs anything itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cellpol_core.defaults import DEVICES, PRECISIONS
from cellpol_core.detection.config import FINETUNE_DEFAULTS, TrainConfig

__all__ = ["TrainDialog", "cuda_available"]


def cuda_available() -> bool:
    """True when torch sees a CUDA device (False when torch cannot be imported)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install must not break the dialog
        return False


class TrainDialog(QDialog):
    """Options of a training run on the project's annotated images.

    Parameters
    ----------
    project : cellpol_app.project.Project
        Its models are offered for fine-tuning, its annotated images for validation.
    images : sequence of Path
        The annotated images (candidates for validation).
    cuda : bool, optional
        Whether CUDA can be chosen; asks torch when None.
    ndim : int
        3, or 2 for 2D images (the patch size then has no Z).
    use_shown : (str, int, callable), optional
        For an open image with predictions but no annotations: its name, the
        number of shown vectors, and a callable that accepts them as its
        annotations and returns the project's annotated images afterwards. The
        dialog then offers to start from them.
    """

    def __init__(self, project, images=(), *, cuda=None, ndim=3, use_shown=None, parent=None):
        super().__init__(parent)
        self.ndim = int(ndim)
        self.setWindowTitle("Train / fine-tune")
        self.project = project
        self.images = [Path(p) for p in images]
        self._use_shown = use_shown
        form = QFormLayout()

        # What the model learns from: the project's annotated images, said first.
        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        form.addRow(self.data_label)
        self.use_shown_button = QPushButton()
        self.use_shown_button.setToolTip("Copy the vectors shown on the open image into its "
                                         "annotations (undo with Ctrl+Z), to train on them")
        self.use_shown_button.clicked.connect(self._accept_shown)
        form.addRow(self.use_shown_button)

        self.name_edit = QLineEdit(time.strftime("model_%Y%m%d_%H%M%S"))
        self.name_edit.setToolTip("Model folder name, under the project's models/")
        self.name_edit.textChanged.connect(self._update_resume)
        # Typing a project model's name offers resuming it.
        self.name_edit.setCompleter(QCompleter([m.name for m in project.models], self))
        form.addRow("Model name:", self.name_edit)

        self.init_combo = QComboBox()
        self.init_combo.addItem("none (train from scratch)", None)
        for m in project.models:
            self.init_combo.addItem(f"{m.name} (fine-tune)", str(project.resolve(m.path)))
        self.init_combo.setToolTip("Start from a project model: fine-tuning")
        form.addRow("Initial model:", self.init_combo)

        self.resume_box = QCheckBox("Resume from the folder's last checkpoint")
        self.resume_box.setToolTip("Continue a cancelled training of this model name")
        # A resumed run continues its own network: no initial model then.
        self.resume_box.toggled.connect(lambda on: self.init_combo.setEnabled(not on))
        form.addRow("", self.resume_box)

        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10000)
        self.epochs_spin.setValue(20)
        self.epochs_spin.setToolTip("Passes over the training patches; more learns more but "
                                    "takes longer")
        form.addRow("Epochs:", self.epochs_spin)

        budget = QWidget()
        brow = QHBoxLayout(budget)
        brow.setContentsMargins(0, 0, 0, 0)
        self.minutes_box = QCheckBox("Train for")
        self.minutes_box.setToolTip("Stop after this much time instead of a number of epochs; "
                                    "the learning rate schedule is fitted to it")
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.5, 24 * 60)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setValue(FINETUNE_DEFAULTS["minutes"])
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setToolTip("Wall time of the run, minutes")
        brow.addWidget(self.minutes_box)
        brow.addWidget(self.minutes_spin)
        form.addRow("Time budget:", budget)
        self.minutes_box.toggled.connect(self._update_budget)
        # Fine-tuning is meant to take minutes: choosing a model turns the budget on.
        self.init_combo.currentIndexChanged.connect(
            lambda _: self.minutes_box.setChecked(self.init_combo.currentData() is not None))
        self._update_budget()

        patch = QWidget()
        row = QHBoxLayout(patch)
        row.setContentsMargins(0, 0, 0, 0)
        self.patch_spins = {}
        for axis, value in (("X", 64), ("Y", 64), ("Z", 16)):
            spin = QSpinBox()
            spin.setRange(1, 1024)
            spin.setValue(value)
            spin.setPrefix(f"{axis} ")
            spin.setToolTip(f"Training patch size along {axis}, voxels")
            row.addWidget(spin)
            self.patch_spins[axis] = spin
        self.patch_default = QCheckBox("default")
        self.patch_default.setToolTip("The preset's patch size, shrunk to the images")
        self.patch_spins["Z"].setVisible(self.ndim == 3)
        self.patch_default.toggled.connect(
            lambda on: [s.setEnabled(not on) for s in self.patch_spins.values()])
        self.patch_default.setChecked(True)
        row.addWidget(self.patch_default)
        form.addRow("Patch size:", patch)

        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        has_cuda = cuda_available() if cuda is None else bool(cuda)
        if not has_cuda:
            item = self.device_combo.model().item(DEVICES.index("cuda"))
            item.setEnabled(False)
            item.setToolTip("No CUDA device found")
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
        form.addRow("Device:", self.device_combo)
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.precision_combo.setToolTip("auto: bf16 on CUDA and on CPUs with AMX or AVX-512 BF16 "
                                        "(faster training), else fp32")
        form.addRow("Precision:", self.precision_combo)

        self.val_fraction_radio = QRadioButton("Hold out a fraction of each image (along x):")
        self.val_images_radio = QRadioButton("Validate on chosen project images:")
        group = QButtonGroup(self)
        group.addButton(self.val_fraction_radio)
        group.addButton(self.val_images_radio)
        self.val_fraction_spin = QDoubleSpinBox()
        self.val_fraction_spin.setRange(0.05, 0.5)
        self.val_fraction_spin.setSingleStep(0.05)
        self.val_fraction_spin.setValue(0.1)
        self.val_fraction_spin.setToolTip("Share of each image (a strip along x) kept aside to "
                                          "check the model on data it did not learn from")
        self.val_fraction_radio.setToolTip("Check the model on a strip of each image")
        self.val_images_radio.setToolTip("Check the model on whole images kept out of training")
        self.val_list = QListWidget()
        self.val_list.setMaximumHeight(90)
        self._fill_val_list()
        # Validating on images needs one left for training.
        self.val_images_radio.setEnabled(len(self.images) >= 2)
        self.val_fraction_radio.setChecked(True)
        self.val_fraction_radio.toggled.connect(self._update_validation)
        val = QVBoxLayout()
        fraction_row = QHBoxLayout()
        fraction_row.addWidget(self.val_fraction_radio)
        fraction_row.addWidget(self.val_fraction_spin)
        val.addLayout(fraction_row)
        val.addWidget(self.val_images_radio)
        val.addWidget(self.val_list)
        form.addRow("Validation:", val)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Train")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setToolTip(
            "Start training (progress in the Training panel; Cancel keeps a checkpoint)")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip(
            "Close without training")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self._update_validation()
        self._update_resume()
        self._update_data()

    def pair_counts(self) -> list:
        """(image name, pairs) of the annotated images."""
        from cellpol_core.errors import InputError

        out = []
        for path in self.images:
            entry = self.project.find_image(path)
            try:
                table = self.project.load_annotations(entry) if entry is not None else None
            except (InputError, OSError):
                table = None
            out.append((path.name, 0 if table is None else len(table)))
        return out

    def _update_data(self):
        counts = self.pair_counts()
        pairs = sum(n for _, n in counts)
        if counts:
            names = ", ".join(f"{name} ({n})" for name, n in counts[:4])
            more = f" and {len(counts) - 4} more" if len(counts) > 4 else ""
            self.data_label.setText(f"Learns from {len(counts)} annotated image"
                                    f"{'s' if len(counts) != 1 else ''}, {pairs} pairs: "
                                    f"{names}{more}.")
        else:
            self.data_label.setText("<b>No annotated image yet.</b> Annotate pairs (press A), "
                                    "or start from the shown vectors.")
        offer = self._use_shown is not None and self._use_shown[1] > 0
        if offer:
            self.use_shown_button.setText(f"Use the {self._use_shown[1]} shown vectors of "
                                          f"{self._use_shown[0]} as its annotations")
        self.use_shown_button.setVisible(offer)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(counts))

    def _fill_val_list(self):
        """One unchecked item per training image, to pick validation images from."""
        self.val_list.clear()
        for path in self.images:
            item = QListWidgetItem(path.name)
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.val_list.addItem(item)

    def _accept_shown(self):
        images = self._use_shown[2]()
        self._use_shown = None
        self.images = [Path(p) for p in images]
        self._fill_val_list()
        self.val_images_radio.setEnabled(len(self.images) >= 2)
        self._update_data()

    #: Whether the user agreed to replace the model (or interrupted run) of the folder.
    overwrite = False

    def accept(self):
        """Ask before a new run replaces a model or an interrupted run; then close."""
        if self.resume() or self.confirm_replace():
            super().accept()

    def confirm_replace(self) -> bool:
        """True when the model folder is free, or the user agrees to replace what it holds."""
        from PySide6.QtWidgets import QMessageBox

        from cellpol_core.detection.runfolder import holds_model, pending_run

        folder = self._model_dir()
        trained = holds_model(folder)
        if not trained and pending_run(folder, "checkpoint_last.pt") is None:
            self.overwrite = False
            return True
        what = "a trained model" if trained else "a cancelled training that can be resumed"
        answer = QMessageBox.question(
            self, "Replace model", f"The model folder {folder.name} holds {what}. Replace it? "
            "(It stays as it is until the new training ends.)")
        self.overwrite = answer == QMessageBox.StandardButton.Yes
        return self.overwrite

    def _model_dir(self) -> Path:
        return self.project.root / "models" / self.model_name()

    def _update_resume(self):
        from cellpol_core.detection.runfolder import pending_run

        can = ((self._model_dir() / "checkpoint_last.pt").is_file()
               or pending_run(self._model_dir(), "checkpoint_last.pt") is not None)
        self.resume_box.setEnabled(can)
        if not can:
            self.resume_box.setChecked(False)
        self.resume_box.setToolTip("" if can else "No checkpoint_last.pt in this model folder")

    def _update_validation(self):
        by_fraction = self.val_fraction_radio.isChecked()
        self.val_fraction_spin.setEnabled(by_fraction)
        self.val_list.setEnabled(not by_fraction)

    def model_name(self) -> str:
        return self.name_edit.text().strip() or time.strftime("model_%Y%m%d_%H%M%S")

    def validation_images(self) -> list:
        """The checked validation images (Paths)."""
        out = []
        for k in range(self.val_list.count()):
            item = self.val_list.item(k)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(Path(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def _update_budget(self):
        on = self.minutes_box.isChecked()
        self.minutes_spin.setEnabled(on)
        self.epochs_spin.setEnabled(not on)

    def resume(self) -> bool:
        """Whether resuming is chosen (and possible)."""
        return self.resume_box.isEnabled() and self.resume_box.isChecked()

    def config(self) -> TrainConfig:
        """The chosen hyperparameters (the rest keep TrainConfig's defaults)."""
        changes = {"epochs": self.epochs_spin.value(), "device": self.device_combo.currentText(),
                   "precision": self.precision_combo.currentText(),
                   "val_fraction": round(self.val_fraction_spin.value(), 4)}
        if not self.patch_default.isChecked():
            s = self.patch_spins
            yx = (s["Y"].value(), s["X"].value())
            changes["patch_size"] = (s["Z"].value(),) + yx if self.ndim == 3 else yx
        if self.minutes_box.isChecked():
            changes["minutes"] = round(self.minutes_spin.value(), 2)
        if self.init_combo.currentData() is not None and not self.resume():
            changes = {**{k: v for k, v in FINETUNE_DEFAULTS.items() if k != "minutes"},
                       **changes}
        return TrainConfig(**changes)

    def kwargs(self) -> dict:
        """Keyword arguments for :meth:`AnnotatorWindow.train`.

        ``config`` (:meth:`config`), ``name``, ``init`` (None when resuming),
        ``val_images`` when validation images are chosen, ``resume`` when set,
        ``overwrite`` when the user agreed to replace the folder's model.
        """
        resume = self.resume()
        out = {"config": self.config(), "name": self.model_name(),
               "init": None if resume else self.init_combo.currentData()}
        if self.val_images_radio.isChecked() and self.validation_images():
            out["val_images"] = self.validation_images()
        if resume:
            out["resume"] = True
        elif self.overwrite:
            out["overwrite"] = True
        return out
