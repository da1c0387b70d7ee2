"""The Synthetic data dock: mask dictionary, Vox2Vox GAN, synthetic images, pre-training.

Four steps on the open project, one group each, all files under
``<project>/synthetic/``::

    synthetic/
        dictionary.npz      1. the mask dictionary of the annotated objects
        gan/                2. the GAN folder (cellpol_core.synthetic.gan)
        patches/            3. synthetic images with their vector CSVs

4. *Train a model* opens the Train / fine-tune dialog and runs the window's
training job with the synthetic folder: pre-training on it into
``models/<name>_synthetic`` then fine-tuning on the annotations, or training
on the synthetic images alone (:mod:`cellpol_core.synthetic.pretrain`).

Steps 1–3 are the engine's jobs of :mod:`cellpol_core.synthetic.workflow`,
run through the window's jobs (:class:`cellpol_app.host.WindowServices`: one
job at a time, progress in the status bar and in the dock, Cancel), each
with the panel's own progress and result handlers. The preview (a real
slice, the label mask made from its annotations and the generator's image of
that mask) is computed in the worker too: during GAN training after every
:data:`~cellpol_core.synthetic.workflow.PREVIEW_EVERY`-th epoch and the last,
and by *Preview*.

The device field offers ``cuda`` only once the window's background device
detection (:func:`cellpol_app.viewer.compute_device_label`) has found a CUDA GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cellpol_core.defaults import DEVICES
from cellpol_core.synthetic.workflow import (
    dictionary_counts,
    dictionary_job,
    gan_folder_state,
    gan_job,
    generate_job,
    preview_job,
    synthetic_count,
)

__all__ = [
    "SyntheticPanel",
    "install_synthetic_panel",
    "show_synthetic",
    "DeviceCombo",
    "cuda_offered",
    "PreviewTile",
]

SYNTHETIC_DIR = "synthetic"
DICTIONARY_FILE = "dictionary.npz"
GAN_DIR = "gan"
PATCHES_DIR = "patches"
TILE_PX = 128


# ----------------------------------------------------------------------------- widgets

def _rgb_of(color) -> tuple:
    return QColor(color).getRgb()[:3]


def cuda_offered() -> bool:
    """True when the window's device detection found a CUDA GPU.

    Reads :func:`cellpol_app.viewer.compute_device_label`'s cached result
    only: importing torch here would block the GUI thread for seconds.
    Until the detection is done, the answer is False.
    """
    from . import viewer

    return str(viewer.known_device_label() or "").startswith("GPU")


class DeviceCombo(QComboBox):
    """``auto``, ``cpu``, and ``cuda`` only when :func:`cuda_offered`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setToolTip("auto: the GPU when there is one")
        self.sync()

    def sync(self):
        """Add or remove ``cuda`` as the device detection says (keeps the choice)."""
        wanted = [d for d in DEVICES if d != "cuda" or cuda_offered()]
        have = [self.itemText(k) for k in range(self.count())]
        if have == wanted:
            return
        current = self.currentText()
        self.clear()
        self.addItems(wanted)
        self.setCurrentIndex(wanted.index(current) if current in wanted else 0)

    def showPopup(self):
        # The detection may have finished since the dock was last refreshed.
        self.sync()
        super().showPopup()


class _EpochAxis(pg.AxisItem):
    """An axis with whole-number ticks only (epochs)."""

    def tickValues(self, minVal, maxVal, size):
        levels = super().tickValues(minVal, maxVal, size)
        return [(max(1.0, spacing), [v for v in values if float(v).is_integer()])
                for spacing, values in levels]


class PreviewTile(QWidget):
    """A titled image of a (2, Y, X) slice in [0, 1], in the channel colours."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.image = QLabel()
        self.image.setFixedSize(TILE_PX, TILE_PX)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setStyleSheet("background: #101010; color: #808080;")
        self.image.setText("–")
        layout.addWidget(self.title)
        layout.addWidget(self.image)
        self.rgb = None

    def set_slice(self, planes, *, colors, aspect=1.0):
        """Show ``planes`` (2, Y, X), values 0–1; ``aspect``: x voxel / y voxel size."""
        from .viewer import composite_rgb

        planes = np.asarray(planes, np.float32)
        rgb = composite_rgb(planes, np.array([[0.0, 1.0]] * len(planes)),
                            colors=[_rgb_of(c) for c in colors])
        self.rgb = np.ascontiguousarray(rgb)
        h, w = self.rgb.shape[:2]
        qimage = QImage(self.rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        pixmap = QPixmap.fromImage(qimage)
        # Voxels are drawn as seen: scale x by the voxel aspect, then fit the tile.
        width = max(1, int(round(w * float(aspect))))
        pixmap = pixmap.scaled(width, h, Qt.AspectRatioMode.IgnoreAspectRatio)
        self.image.setPixmap(pixmap.scaled(TILE_PX, TILE_PX, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation))

    def clear(self):
        self.rgb = None
        self.image.clear()
        self.image.setText("–")

    def has_image(self) -> bool:
        pixmap = self.image.pixmap()
        return pixmap is not None and not pixmap.isNull()


def _note(text: str) -> QLabel:
    """A wrapped explanatory line, in a colour between the text's and the window's."""
    from PySide6.QtGui import QPalette

    label = QLabel(text)
    label.setWordWrap(True)
    pal = label.palette()
    fg, bg = pal.color(QPalette.ColorRole.WindowText), pal.color(QPalette.ColorRole.Window)
    mixed = QColor(*(int(0.6 * a + 0.4 * b) for a, b in zip(fg.getRgb()[:3], bg.getRgb()[:3])))
    pal.setColor(QPalette.ColorRole.WindowText, mixed)
    label.setPalette(pal)
    return label


def _spin(low, high, value, *, prefix="", tip=""):
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    if prefix:
        spin.setPrefix(prefix)
    if tip:
        spin.setToolTip(tip)
    return spin


class SyntheticPanel(QWidget):
    """The Synthetic data dock's contents (see the module docstring).

    Parameters
    ----------
    window : cellpol_app.host.WindowServices
        Gives the project, its annotated images (``training_data``), the
        jobs, messages and the training job.
    """

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window = window
        self._running = None  # the name of the panel's running job
        self._pretrained = None  # (project, model name, folder) while pre-training runs
        self._annotated = ([], [])
        self.last_preview = None
        self.gan_history = {"epoch": [], "d_loss": [], "l1": []}

        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(8, 8, 8, 8)
        column.setSpacing(8)
        self.project_label = QLabel()
        self.project_label.setWordWrap(True)
        column.addWidget(self.project_label)
        column.addWidget(self._build_dictionary_group())
        column.addWidget(self._build_gan_group())
        column.addWidget(self._build_generate_group())
        column.addWidget(self._build_train_group())
        column.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Never narrower than the contents: nothing is cut off at the right.
        scroll.setMinimumWidth(body.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width())

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running step (a GAN keeps its last checkpoint)")
        self.cancel_button.clicked.connect(self.cancel)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(8, 4, 8, 8)
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(scroll, 1)
        layout.addLayout(bottom)

        # Any job (the window's too) locks the buttons; its end may bring new files.
        window.job_busy_changed.connect(lambda busy: self._sync_busy() if busy else self.refresh())
        self.refresh()

    # ------------------------------------------------------------------ building
    def _build_dictionary_group(self):
        box = QGroupBox("1 · Mask dictionary")
        layout = QVBoxLayout(box)
        layout.addWidget(_note("Object masks cut from the annotated images: a local Otsu "
                               "threshold around every annotated centroid."))
        row = QHBoxLayout()
        self.build_button = QPushButton("Build dictionary")
        self.build_button.clicked.connect(self.build_dictionary)
        self.dictionary_label = QLabel()
        self.dictionary_label.setWordWrap(True)
        row.addWidget(self.build_button)
        row.addWidget(self.dictionary_label, 1)
        layout.addLayout(row)
        return box

    def _build_gan_group(self):
        box = QGroupBox("2 · GAN (Vox2Vox)")
        layout = QVBoxLayout(box)
        layout.addWidget(_note("Learns to paint realistic images from label masks."))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.gan_epochs = _spin(1, 100000, 200, tip="Total epochs (the paper used 200); a "
                                                    "resumed run continues up to it")
        form.addRow("Epochs:", self.gan_epochs)
        patch = QWidget()
        prow = QHBoxLayout(patch)
        prow.setContentsMargins(0, 0, 0, 0)
        self.patch_spins = {}
        for axis, value in (("X", 128), ("Y", 128), ("Z", 64)):
            spin = _spin(8, 1024, value, prefix=f"{axis} ",
                         tip="Patch size in voxels, rounded up to a multiple of 16 and shrunk "
                             "to the images")
            prow.addWidget(spin)
            self.patch_spins[axis] = spin
        form.addRow("Patch (voxels):", patch)
        self.gan_device = DeviceCombo()
        form.addRow("Device:", self.gan_device)
        self.resume_box = QCheckBox("Resume from the last checkpoint")
        self.resume_box.setToolTip("Continue the GAN's training where it stopped")
        self.resume_box.toggled.connect(self._resume_toggled)
        form.addRow("", self.resume_box)
        layout.addLayout(form)

        row = QHBoxLayout()
        self.gan_button = QPushButton("Train GAN")
        self.gan_button.clicked.connect(self._train_gan_clicked)
        self.preview_button = QPushButton("Preview")
        self.preview_button.setToolTip("Generate the image of a real patch's label mask")
        self.preview_button.clicked.connect(lambda: self.preview())
        row.addWidget(self.gan_button)
        row.addWidget(self.preview_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.gan_label = QLabel()
        self.gan_label.setWordWrap(True)
        layout.addWidget(self.gan_label)

        self.gan_plot = pg.PlotWidget(background="#101010",
                                      axisItems={"bottom": _EpochAxis("bottom")})
        self.gan_plot.setMinimumHeight(120)
        self.gan_plot.setMaximumHeight(150)
        self.gan_plot.setLabel("bottom", "epoch")
        self.gan_plot.addLegend(offset=(-10, 5))
        self.d_curve = self.gan_plot.plot([], [], pen=pg.mkPen(80, 200, 255, width=2),
                                          symbol="o", symbolSize=4, name="D loss")
        self.l1_curve = self.gan_plot.plot([], [], pen=pg.mkPen(255, 170, 40, width=2),
                                           symbol="o", symbolSize=4, name="L1")
        layout.addWidget(self.gan_plot)

        tiles = QGridLayout()
        tiles.setHorizontalSpacing(6)
        self.mask_tile = PreviewTile("Label mask")
        self.real_tile = PreviewTile("Real")
        self.fake_tile = PreviewTile("Generated")
        for k, tile in enumerate((self.mask_tile, self.real_tile, self.fake_tile)):
            tiles.addWidget(tile, 0, k)
        tiles.setColumnStretch(3, 1)
        layout.addLayout(tiles)
        self.preview_label = _note("No preview yet: train the GAN or press Preview.")
        layout.addWidget(self.preview_label)
        return box

    def _build_generate_group(self):
        box = QGroupBox("3 · Synthetic images")
        layout = QVBoxLayout(box)
        layout.addWidget(_note("Random layouts of dictionary masks, painted by the GAN; each "
                               "image comes with its exact vectors."))
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.n_spin = _spin(1, 100000, 50, tip="Number of images (one training patch each)")
        form.addRow("Images:", self.n_spin)
        pairs = QWidget()
        prow = QHBoxLayout(pairs)
        prow.setContentsMargins(0, 0, 0, 0)
        self.pairs_min = _spin(1, 1000, 11, tip="Fewest pairs per image")
        self.pairs_max = _spin(1, 1000, 18, tip="Most pairs per image (fewer where the patch "
                                                "is too crowded)")
        self.pairs_min.valueChanged.connect(lambda v: self.pairs_max.setValue(
            max(v, self.pairs_max.value())))
        self.pairs_max.valueChanged.connect(lambda v: self.pairs_min.setValue(
            min(v, self.pairs_min.value())))
        prow.addWidget(self.pairs_min)
        prow.addWidget(QLabel("to"))
        prow.addWidget(self.pairs_max)
        form.addRow("Pairs per image:", pairs)
        self.seed_spin = _spin(0, 2 ** 31 - 1, 0, tip="Same seed, same images")
        form.addRow("Seed:", self.seed_spin)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.generate_button = QPushButton("Generate")
        self.generate_button.clicked.connect(self._generate_clicked)
        self.patches_label = QLabel()
        self.patches_label.setWordWrap(True)
        row.addWidget(self.generate_button)
        row.addWidget(self.patches_label, 1)
        layout.addLayout(row)
        return box

    def _build_train_group(self):
        box = QGroupBox("4 · Train a model")
        layout = QVBoxLayout(box)
        self.pretrain_radio = QRadioButton("Pre-train on synthetic images, then fine-tune on "
                                           "the annotations")
        self.synthetic_only_radio = QRadioButton("Synthetic images only")
        self.pretrain_radio.setToolTip("Learn from the synthetic images first, then from your "
                                       "annotated images (usually best)")
        self.synthetic_only_radio.setToolTip("Train on the synthetic images alone (no "
                                             "annotated image needed)")
        group = QButtonGroup(self)
        group.addButton(self.pretrain_radio)
        group.addButton(self.synthetic_only_radio)
        self.pretrain_radio.setChecked(True)
        layout.addWidget(self.pretrain_radio)
        layout.addWidget(self.synthetic_only_radio)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.synthetic_epochs = _spin(1, 10000, 20, tip="Epochs on the synthetic images; the "
                                                        "dialog's epochs are the fine-tuning's")
        form.addRow("Pre-training epochs:", self.synthetic_epochs)
        self.pretrain_radio.toggled.connect(self.synthetic_epochs.setEnabled)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train model…")
        self.train_button.setToolTip("Opens the Train / fine-tune dialog; the model goes to the "
                                     "project's models/")
        self.train_button.clicked.connect(self.train_model_dialog)
        row.addWidget(self.train_button)
        row.addStretch(1)
        layout.addLayout(row)
        return box

    # ------------------------------------------------------------------ paths and state
    @property
    def project(self):
        return self.window.project

    @property
    def folder(self):
        """``<project>/synthetic``, or None without a project."""
        return None if self.project is None else self.project.root / SYNTHETIC_DIR

    @property
    def dictionary_path(self):
        return None if self.folder is None else self.folder / DICTIONARY_FILE

    @property
    def gan_dir(self):
        return None if self.folder is None else self.folder / GAN_DIR

    @property
    def patches_dir(self):
        return None if self.folder is None else self.folder / PATCHES_DIR

    @property
    def busy(self) -> bool:
        return self.window.job_running

    def ndim(self) -> int:
        loaded = getattr(self.window, "loaded", None)
        return loaded.image.ndim if loaded is not None else 3

    def gan_state(self) -> dict:
        """The GAN folder's :func:`~cellpol_core.synthetic.workflow.gan_folder_state`."""
        return gan_folder_state(self.gan_dir)

    def refresh(self):
        """Re-read the project's synthetic folder; set the labels and the buttons."""
        project = self.project
        self._annotated = self.window.training_data() if project is not None else ([], [])
        n_images = len(self._annotated[0])
        if project is None:
            self.project_label.setText("<b>No project.</b> Synthetic data lives in a project "
                                       "folder: File → New project, then annotate some pairs.")
        else:
            self.project_label.setText(
                f"Project <b>{project.root.name}</b> · {n_images} annotated image"
                f"{'' if n_images == 1 else 's'} · files in <i>{SYNTHETIC_DIR}/</i>")
        counts = dictionary_counts(self.dictionary_path) if project is not None else None
        if counts is None:
            self.dictionary_label.setText("No dictionary yet.")
        else:
            s, e, names = counts
            self.dictionary_label.setText(f"<b>{s}</b> {names[0]} · <b>{e}</b> {names[1]} masks")
        state = self.gan_state()
        self._show_gan_state(state)
        n_patches = synthetic_count(self.patches_dir) if project is not None else 0
        self.patches_label.setText(
            f"<b>{n_patches}</b> image{'' if n_patches == 1 else 's'} in "
            f"<i>{SYNTHETIC_DIR}/{PATCHES_DIR}/</i>" if n_patches else "No synthetic images yet.")
        self.patch_spins["Z"].setVisible(self.ndim() == 3)
        self.gan_device.sync()
        self._sync_patch_fields(state)
        self._state = {"images": n_images, "dictionary": counts is not None,
                       "trained": state["trained"], "checkpoint": state["checkpoint"],
                       "patches": n_patches}
        self._set_tips()
        self._sync_busy()

    def _show_gan_state(self, state):
        if state["trained"]:
            cfg = state["config"]
            patch = "×".join(str(p) for p in reversed(cfg["patch_size_zyx"]))
            text = f"Trained <b>{state['epochs']}</b> epoch{'' if state['epochs'] == 1 else 's'}"
            text += f" · patch {patch} voxels"
            if state["log"]:
                text += f" · L1 {state['log'][-1]['l1']:.4f}"
            self.gan_label.setText(text)
        else:
            self.gan_label.setText("No GAN trained yet.")
        self.resume_box.setText(f"Resume from the last checkpoint (epoch {state['epochs']})"
                                if state["checkpoint"] else "Resume from the last checkpoint")
        if not state["checkpoint"]:
            self.resume_box.setChecked(False)
        if self._running is None:  # during training the live curve is shown
            log = state["log"]
            self.gan_history = {"epoch": [r["epoch"] for r in log],
                                "d_loss": [r["d_loss"] for r in log],
                                "l1": [r["l1"] for r in log]}
            self._plot_history()

    def _sync_patch_fields(self, state):
        # The fields start at the trained GAN's patch (once per GAN), ready to resume it.
        cfg = state["config"]
        if cfg is None:
            return
        key = (str(self.gan_dir), tuple(cfg["patch_size_zyx"]))
        if key == getattr(self, "_patch_synced", None):
            return
        self._patch_synced = key
        for axis, value in zip("ZYX"[-len(key[1]):], key[1]):
            self.patch_spins[axis].setValue(int(value))

    def _plot_history(self):
        h = self.gan_history
        self.d_curve.setData(h["epoch"], h["d_loss"])
        self.l1_curve.setData(h["epoch"], h["l1"])

    def _sync_busy(self, *_):
        """Enable each button only when its inputs exist and no job runs."""
        st = getattr(self, "_state", None)
        if st is None:
            return
        idle = not self.busy
        has = st["images"] > 0
        self.build_button.setEnabled(idle and has)
        self.gan_button.setEnabled(idle and has and st["dictionary"])
        self.resume_box.setEnabled(idle and st["checkpoint"])
        self.preview_button.setEnabled(idle and has and st["trained"])
        self.generate_button.setEnabled(idle and st["trained"])
        self.train_button.setEnabled(idle and has and st["patches"] > 0)
        self.cancel_button.setEnabled(self._running is not None)
        for spin in self.patch_spins.values():
            spin.setEnabled(not self.resume_box.isChecked())

    def _set_tips(self):
        # Disabled buttons say what they wait for.
        st, has = self._state, self._state["images"] > 0
        tips = {self.build_button: "" if has else "Annotate some pairs in the project first",
                self.gan_button: "" if st["dictionary"] else "Build the mask dictionary first",
                self.preview_button: "Generate the image of a real patch's label mask"
                if st["trained"] else "Train the GAN first",
                self.generate_button: "" if st["trained"] else "Train the GAN first",
                self.train_button: "Opens the Train / fine-tune dialog" if st["patches"]
                else "Generate synthetic images first"}
        for button, tip in tips.items():
            button.setToolTip(tip)

    def _resume_toggled(self, on):
        for spin in self.patch_spins.values():
            spin.setEnabled(not on)

    # ------------------------------------------------------------------ running jobs
    def _channels(self, image):
        entry = self.project.find_image(image) if self.project is not None else None
        return tuple(entry.channels) if entry is not None else None

    def _need_annotations(self) -> bool:
        if self.project is None:
            self.window.show_error("Synthetic data needs a project: File → New project")
            return False
        self._annotated = self.window.training_data()
        if not self._annotated[0]:
            self.window.show_error("No annotated image in the project: annotate some pairs "
                                   "first")
            return False
        return True

    def _start(self, name, factory, *args, on_result, on_progress=None, **kwargs) -> bool:
        """Run one of the panel's jobs with its result (and progress) handler."""
        host = self.window
        if host.job_running:
            host.show_error(f"{host.job_name or 'A job'} is running: wait for it or cancel it")
            return False

        def progress(event):
            self._show_progress(name, event)
            if on_progress is not None:
                on_progress(event)

        if not host.start_job(name, factory, *args, on_result=on_result, on_progress=progress,
                              on_finished=self._job_ended, **kwargs):
            return False
        self._running = name
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"{name}…")
        self._sync_busy()
        return True

    def _show_progress(self, name, event):
        if event.total:
            self.progress.setRange(0, int(event.total))
            self.progress.setValue(int(event.step))
        self.progress.setFormat(f"{name}: {event.message}" if event.message else name)

    def _job_ended(self):
        self._running = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.refresh()

    def cancel(self):
        """Stop the panel's running job at its next check."""
        if self._running is not None:
            self.window.cancel_job()

    def _message(self, text):
        self.window.show_message(text)

    # ------------------------------------------------------------------ 1. dictionary
    def build_dictionary(self) -> bool:
        """Build ``synthetic/dictionary.npz`` from the annotated project images."""
        if not self._need_annotations():
            return False
        images, tables = self._annotated
        return self._start("Mask dictionary", dictionary_job, images, tables,
                           path=self.dictionary_path, channels=self._channels(images[0]),
                           on_result=self._dictionary_done)

    def _dictionary_done(self, counts):
        names = counts["structures"]
        self._message(f"Mask dictionary: {counts['start']} {names[0]} and {counts['end']} "
                      f"{names[1]} masks")

    # ------------------------------------------------------------------ 2. GAN
    def gan_options(self) -> dict:
        """The GAN fields as :func:`cellpol_core.synthetic.gan.train_gan` options."""
        s = self.patch_spins
        yx = (s["Y"].value(), s["X"].value())
        out = {"epochs": self.gan_epochs.value(),
               "patch": (s["Z"].value(),) + yx if self.ndim() == 3 else yx,
               "device": self.gan_device.currentText()}
        if self.resume_box.isEnabled() and self.resume_box.isChecked():
            out["resume"] = True
        return out

    def _preview_index(self, images) -> int:
        # The open image when it is annotated: its slice is the one the user knows.
        here = getattr(self.window, "image_path", None)
        if here is not None:
            for k, p in enumerate(images):
                if Path(p).absolute() == Path(here).absolute():
                    return k
        return 0

    def train_gan(self, **overrides) -> bool:
        """Train the GAN into ``synthetic/gan`` with the fields' options.

        ``overrides`` replace or add :func:`cellpol_core.synthetic.gan.train_gan`
        options (``epochs``, ``patch``, ``steps_per_epoch``, ``base_filters``...),
        or set :func:`~cellpol_core.synthetic.workflow.gan_job`'s ``preview_every``.
        """
        if not self._need_annotations():
            return False
        if dictionary_counts(self.dictionary_path) is None:
            self.window.show_error("Build the mask dictionary first (step 1)")
            return False
        options = dict(self.gan_options(), **overrides)
        if options.get("resume"):
            done = self.gan_state()["epochs"]
            if options["epochs"] <= done:
                self.window.show_error(f"The GAN already has {done} epochs: raise Epochs above "
                                       f"{done} to continue it")
                return False
        images, tables = self._annotated
        return self._start("GAN training", gan_job, images, tables, outdir=self.gan_dir,
                           channels=self._channels(images[0]),
                           preview_index=self._preview_index(images), **options,
                           on_result=self._gan_done, on_progress=self._gan_progress)

    def _gan_progress(self, event):
        if "gan_preview" in event.data:  # computed in the worker after an epoch
            self.show_preview(event.data["gan_preview"])
        elif event.data.get("epoch_end"):
            h = self.gan_history
            h["epoch"].append(int(event.data["epoch"]))
            h["d_loss"].append(float(event.data["d_loss"]))
            h["l1"].append(float(event.data["l1"]))
            self._plot_history()
            self.gan_label.setText(f"Training: epoch <b>{h['epoch'][-1]}</b> done · "
                                   f"L1 {h['l1'][-1]:.4f}")
        elif event.stage == "gan" and "patch_size" in event.data:
            # First event of a run: a resumed run keeps its logged epochs.
            keep = int(event.data.get("epoch", 0))
            self.gan_history = {k: v[:keep] for k, v in self.gan_history.items()}
            self._plot_history()

    def _train_gan_clicked(self):
        state = self.gan_state()
        if state["trained"] and not self.gan_options().get("resume"):
            answer = QMessageBox.question(
                self, "Train GAN", f"Replace the trained GAN ({state['epochs']} epochs)?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.train_gan()

    def _gan_done(self, result):
        if result.get("preview") is not None:
            self.show_preview(result["preview"])
        self._message(f"GAN saved in {self.project.relative(result['gan_dir'])}")

    def preview(self, *, device=None) -> bool:
        """Compute a preview of the trained GAN in the worker (see
        :func:`~cellpol_core.synthetic.workflow.gan_preview`)."""
        if not self._need_annotations():
            return False
        if not self.gan_state()["trained"]:
            self.window.show_error("Train the GAN first (step 2)")
            return False
        images, tables = self._annotated
        k = self._preview_index(images)
        return self._start("GAN preview", preview_job, self.gan_dir, images[k], tables[k],
                           channels=self._channels(images[k]),
                           device=device or self.gan_device.currentText(),
                           on_result=self.show_preview)

    def show_preview(self, preview: dict):
        """Show a :func:`~cellpol_core.synthetic.workflow.gan_preview` result (``epoch``:
        optional) in the three tiles."""
        self.last_preview = preview
        colors = getattr(self.window, "channel_colors", ("#3ce63c", "#ff3c3c"))
        vs = preview["voxel_size"]
        aspect = float(vs[2]) / float(vs[1])
        self.mask_tile.set_slice(preview["mask"], colors=colors, aspect=aspect)
        self.real_tile.set_slice(preview["real"], colors=colors, aspect=aspect)
        self.fake_tile.set_slice(preview["fake"], colors=colors, aspect=aspect)
        parts = [Path(preview["image"]).name]
        if preview.get("epoch") is not None:
            parts.append(f"epoch {preview['epoch']}")
        if preview["z"] is not None:
            parts.append(f"patch slice z {preview['z']}")
        if preview["ssim"] is not None:
            parts.append(f"SSIM {preview['ssim']:.3f} (patch)")
        self.preview_label.setText(" · ".join(parts))

    # ------------------------------------------------------------------ 3. generate
    def generate_options(self) -> dict:
        return {"n": self.n_spin.value(),
                "n_pairs": (self.pairs_min.value(), self.pairs_max.value()),
                "seed": self.seed_spin.value(), "device": self.gan_device.currentText()}

    def generate(self, **overrides) -> bool:
        """Write synthetic images into ``synthetic/patches`` (replacing earlier ones)."""
        if self.project is None:
            self.window.show_error("Synthetic data needs a project: File → New project")
            return False
        if not self.gan_state()["trained"]:
            self.window.show_error("Train the GAN first (step 2)")
            return False
        options = dict(self.generate_options(), **overrides)
        return self._start("Synthetic images", generate_job, self.gan_dir,
                           outdir=self.patches_dir, **options, on_result=self._generated)

    def _generate_clicked(self):
        n = synthetic_count(self.patches_dir)
        if n:
            answer = QMessageBox.question(
                self, "Generate", f"Replace the {n} synthetic images in "
                                  f"{SYNTHETIC_DIR}/{PATCHES_DIR}/?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.generate()

    def _generated(self, paths):
        self._message(f"{len(paths)} synthetic images written to {SYNTHETIC_DIR}/{PATCHES_DIR}/")

    # ------------------------------------------------------------------ 4. train
    def synthetic_only(self) -> bool:
        return self.synthetic_only_radio.isChecked()

    def make_train_dialog(self):
        """The window's Train / fine-tune dialog, set up for synthetic data (None: no project)."""
        dialog = self.window.make_train_dialog()
        if dialog is None:
            return None
        dialog.setWindowTitle("Train with synthetic data")
        # The pre-trained model is the starting point; resuming concerns one run.
        dialog.init_combo.setCurrentIndex(0)
        dialog.init_combo.setEnabled(False)
        dialog.init_combo.setToolTip("The synthetic pre-training gives the starting model")
        dialog.resume_box.setChecked(False)
        dialog.resume_box.setVisible(False)
        if self.synthetic_only():
            dialog.val_fraction_radio.setChecked(True)
            dialog.val_images_radio.setEnabled(False)
            dialog.val_images_radio.setToolTip("Synthetic-only training validates on a "
                                               "fraction of each synthetic image")
        return dialog

    def train_model_dialog(self):
        dialog = self.make_train_dialog()
        if dialog is not None and dialog.exec():
            self.train_model(**dialog.kwargs())

    def train_model(self, **options) -> bool:
        """Run the window's training job with the synthetic images.

        ``options`` are the Train dialog's (``epochs``, ``name``, ...). With
        *Pre-train* chosen, the model is pre-trained on ``synthetic/patches``
        into ``models/<name>_synthetic``, then fine-tuned on the annotations
        into ``models/<name>``; with *Synthetic images only*, trained on them
        into ``models/<name>``. The pre-trained model joins the project's
        models as ``<name>_synthetic`` as soon as the fine-tuning starts (the
        window adds ``<name>`` at the end).
        """
        import time

        from cellpol_core.synthetic.pretrain import pretrain_dir

        if synthetic_count(self.patches_dir) == 0:
            self.window.show_error("Generate synthetic images first (step 3)")
            return False
        options.pop("resume", None)
        options.pop("init", None)
        # Named here (as the window would) to know the pre-trained model's folder.
        options["name"] = options.get("name") or time.strftime("model_%Y%m%d_%H%M%S")
        if self.synthetic_only():
            options.pop("val_images", None)
            options["synthetic_only"] = True
        else:
            options["synthetic_epochs"] = self.synthetic_epochs.value()
        started = self.window.train(synthetic=str(self.patches_dir), **options,
                                    on_progress=self._watch_pretraining,
                                    on_finished=self._stop_watching)
        if started and not self.synthetic_only():
            folder = pretrain_dir(self.project.root / "models" / options["name"])
            self._pretrained = (self.project, folder.name, folder)
        self._sync_busy()
        return started

    def _watch_pretraining(self, event):
        # The first fine-tuning event: the pre-training has returned its model.
        if self._pretrained is None or event.data.get("phase") != "real":
            return
        (project, name, folder), self._pretrained = self._pretrained, None
        project.add_model(name, folder)

    def _stop_watching(self):
        self._pretrained = None


def install_synthetic_panel(window) -> SyntheticPanel:
    """Add the Synthetic data dock to an AnnotatorWindow, with its menu actions.

    Sets ``window.synthetic_dock`` and ``window.synthetic_action`` (Jobs →
    Synthetic training data…, after Train / fine-tune…) and returns the panel.
    """
    from .docks import install_dock

    panel = SyntheticPanel(window)
    dock, menus = install_dock(window, panel, title="Synthetic data", name="synthetic",
                               view_text="S&ynthetic data")  # a tab beside the 3D view
    window.synthetic_dock = dock
    action = QAction("S&ynthetic training data…", window)
    action.setToolTip("Mask dictionary, GAN, synthetic images and pre-training")
    action.triggered.connect(lambda: show_synthetic(window))
    if "Jobs" in menus:
        jobs_menu = menus["Jobs"]
        actions = jobs_menu.actions()
        train = getattr(window, "train_action", None)
        after = actions.index(train) + 1 if train in actions else len(actions)
        if after < len(actions):
            jobs_menu.insertAction(actions[after], action)
        else:
            jobs_menu.addAction(action)
    window.synthetic_action = action
    return panel


def show_synthetic(window):
    """Show the Synthetic data dock, up to date."""
    from .docks import show_dock

    show_dock(window.synthetic_dock)
