"""The Predict widget: a CellPol model over two image layers, in a napari thread worker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                            QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox,
                            QVBoxLayout, QWidget)

from cellpol_core.defaults import PAIR_DISTANCE_UM, PEAK_TAU
from cellpol_core.errors import InputError
from cellpol_core.jobs import CancelToken, ProgressEvent

from ._convert import table_to_layer_data
from ._jobs import DEVICES, PRECISIONS, make_image, predict_job, run_safely, supports_precision

if TYPE_CHECKING:  # pragma: no cover
    import napari

OTHER_FOLDER = "Model folder…"
# Name of the predicted Vectors layer; its Points layers add the structure names.
PREDICTED = "predicted"
# Colour maps of the CNN outputs shown as image layers.
MAP_COLORMAPS = {"heatmap_start": "magenta", "heatmap_end": "green", "embed_start": "turbo",
                 "embed_end": "turbo"}


def bundled_model_names() -> list:
    """Names of the models bundled in ``resources/models`` (folders holding config.json)."""
    from cellpol_core.detection.model import CONFIG_FILE
    from cellpol_core.io.resources import DEFAULT_MODELS, bundled_models_dir

    root = bundled_models_dir()
    if not root.is_dir():
        return []
    names = [d.name for d in root.iterdir() if (d / CONFIG_FILE).is_file()]
    first = DEFAULT_MODELS[(3, "nucleus", "golgi")]
    return sorted(names, key=lambda n: (n != first, n))  # the default 3D model first


def _spin(lo, hi, value, *, step=0.1, decimals=3, suffix=""):
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    return box


class PredictWidget(QWidget):
    """Predict polarity vectors of the open image with a CellPol model.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari when the widget is opened from the Plugins menu.
    """

    #: Emitted on the GUI thread when a run has ended (done, failed or cancelled).
    run_finished = Signal()

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self._cancel: Optional[CancelToken] = None
        self._pbar = None
        self._config = None
        self._model_error = ""
        self._run_inputs = None
        self.last_result = None

        form = QFormLayout()
        self.model_combo = QComboBox()
        self.model_combo.addItems(bundled_model_names() + [OTHER_FOLDER])
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("a CellPol model folder (holds config.json)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_model)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.model_path)
        folder_row.addWidget(browse)
        self._folder_box = QWidget()
        self._folder_box.setLayout(folder_row)
        folder_row.setContentsMargins(0, 0, 0, 0)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        form.addRow("Model", self.model_combo)
        form.addRow("", self._folder_box)
        form.addRow("", self.model_info)

        self.start_combo = QComboBox()
        self.end_combo = QComboBox()
        form.addRow("Start channel", self.start_combo)
        form.addRow("End channel", self.end_combo)
        # 0 until known: an uncalibrated 3D image needs the user's voxel size.
        self.voxel = [_spin(0.0, 1000.0, 0.0, step=0.05, decimals=4) for _ in range(3)]
        vrow = QHBoxLayout()
        for axis, box in zip("zyx", self.voxel):
            vrow.addWidget(QLabel(axis))
            vrow.addWidget(box)
        form.addRow("Voxel (µm)", vrow)
        for box in self.voxel:
            box.setToolTip("From the image layer's scale. A 2D image may leave 0, 0: "
                           "the model's pixel size is used.")

        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        if not supports_precision():
            self.precision_combo.setEnabled(False)
            self.precision_combo.setToolTip("This CellPol engine has no precision option yet: "
                                            "it uses bf16 on CUDA and fp32 on the CPU.")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        form.addRow("Precision", self.precision_combo)
        form.addRow("Device", self.device_combo)

        self.tile_z = QSpinBox()
        self.tile_z.setRange(8, 1024)
        self.tile_xy = QSpinBox()
        self.tile_xy.setRange(16, 4096)
        trow = QHBoxLayout()
        trow.addWidget(QLabel("z"))
        trow.addWidget(self.tile_z)
        trow.addWidget(QLabel("y, x"))
        trow.addWidget(self.tile_xy)
        form.addRow("Tile (voxels)", trow)

        thr_box = QGroupBox("Thresholds (from the model folder)")
        thr_form = QFormLayout(thr_box)
        self.tau_start = _spin(0.0, 1.0, PEAK_TAU[0], step=0.05)
        self.tau_end = _spin(0.0, 1.0, PEAK_TAU[1], step=0.05)
        self.d_max = _spin(0.1, 1000.0, PAIR_DISTANCE_UM, step=0.5, decimals=2, suffix=" µm")
        self.thr_source = QLabel()
        thr_form.addRow("Start peak τ", self.tau_start)
        thr_form.addRow("End peak τ", self.tau_end)
        thr_form.addRow("Longest pair", self.d_max)
        thr_form.addRow("", self.thr_source)

        self.show_maps = QCheckBox("Show CNN output (heatmaps and embeddings)")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(thr_box)
        layout.addWidget(self.show_maps)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.model_combo.currentTextChanged.connect(self._model_changed)
        self.model_path.editingFinished.connect(self._model_changed)
        self.start_combo.currentTextChanged.connect(self._start_changed)
        self.end_combo.currentTextChanged.connect(self.check_inputs)
        for w in self.voxel:
            w.valueChanged.connect(self.check_inputs)
        self.device_combo.currentTextChanged.connect(self.check_inputs)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        follow_layers(self, self.viewer, self._refresh_layers)
        self._refresh_layers()
        self._model_changed()

    # ----------------------------------------------------------------- inputs

    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]

    def _layer(self, name):
        for layer in self._image_layers():
            if layer.name == name:
                return layer
        return None

    def _refresh_layers(self, *_):
        wanted = self._config.channel_names if self._config is not None else ("nucleus", "golgi")
        fill_channel_combos(self.start_combo, self.end_combo,
                            [layer.name for layer in self._image_layers()], wanted)
        self._start_changed()

    def _start_changed(self, *_):
        layer = self._layer(self.start_combo.currentText())
        if layer is not None:
            vs = _layer_voxel_size(layer)
            if vs is not None:
                for box, v in zip(self.voxel, vs):
                    box.setValue(float(v))
            self.voxel[0].setEnabled(layer.ndim == 3)
        self.check_inputs()

    def _browse_model(self):
        path = QFileDialog.getExistingDirectory(self, "CellPol model folder")
        if path:
            self.model_combo.setCurrentText(OTHER_FOLDER)
            self.model_path.setText(path)
            self._model_changed()

    def model_ref(self) -> str:
        """The chosen model: a bundled name or a folder path ("" when none)."""
        if self.model_combo.currentText() == OTHER_FOLDER:
            return self.model_path.text().strip()
        return self.model_combo.currentText()

    def _model_changed(self, *_):
        """Read the model's config and thresholds (small JSON files) and show them."""
        from cellpol_core.detection.infer import DEFAULT_TILE_2D, DEFAULT_TILE_3D
        from cellpol_core.detection.model import find_model, read_config, read_thresholds

        self._folder_box.setVisible(self.model_combo.currentText() == OTHER_FOLDER)
        self._config, self._model_error = None, ""
        ref = self.model_ref()
        if not ref:
            self._model_error = "choose a model folder"
        else:
            try:
                folder = find_model(ref)
                self._config = read_config(folder)
                thr = read_thresholds(folder)
            except InputError as exc:
                self._model_error = str(exc)
        if self._config is not None:
            cfg = self._config
            self.model_info.setText(f"{cfg.spatial_dims}D, {cfg.structures[0]} → {cfg.structures[1]}, "
                                    f"trained at {', '.join(f'{v:g}' for v in cfg.voxel_size)} µm (z, y, x)")
            self.tau_start.setValue(float(thr.tau[0]))
            self.tau_end.setValue(float(thr.tau[1]))
            self.d_max.setValue(float(thr.d_max_um))
            self.thr_source.setText(f"{thr.source} thresholds of {Path(str(folder)).name}")
            tile = DEFAULT_TILE_3D if cfg.spatial_dims == 3 else (1,) + DEFAULT_TILE_2D
            self.tile_z.setValue(int(tile[0]))
            self.tile_xy.setValue(int(tile[-1]))
            self.tile_z.setEnabled(cfg.spatial_dims == 3)
        else:
            self.model_info.setText("")
            self.thr_source.setText("")
        self.check_inputs()

    def problems(self) -> list:
        """What stops a run, as short sentences (empty when Run may start)."""
        out = []
        if self._model_error:
            out.append(f"Model: {self._model_error}")
        start, end = self._layer(self.start_combo.currentText()), self._layer(self.end_combo.currentText())
        if start is None or end is None:
            out.append("Open an image with two channels as image layers (File ▸ Open, or "
                       "File ▸ Open Sample ▸ CellPol).")
            return out
        if start is end:
            out.append("Start and end channels must be different layers.")
        if start.ndim not in (2, 3):
            out.append(f"'{start.name}' is {start.ndim}D; CellPol predicts 2D or 3D images.")
        shapes = [tuple(layer_array(layer).shape) for layer in (start, end)]
        if shapes[0] != shapes[1]:
            out.append(f"'{start.name}' {shapes[0]} and '{end.name}' {shapes[1]} differ in shape.")
        if self._config is not None and start.ndim != self._config.spatial_dims:
            out.append(f"The model is {self._config.spatial_dims}D but '{start.name}' is {start.ndim}D.")
        yx = [box.value() for box in self.voxel[1:]]
        if start.ndim == 3 and any(box.value() <= 0 for box in self.voxel):
            out.append("Enter the voxel size in µm (the image has none).")
        elif start.ndim == 2 and (min(yx) <= 0 < max(yx)):
            out.append("Enter both pixel sizes in µm, or leave both at 0 for the model's.")
        if self.device_combo.currentText() == "cuda":
            import torch

            if not torch.cuda.is_available():
                out.append("CUDA is not available on this computer; use cpu or auto.")
        return out

    def check_inputs(self, *_) -> bool:
        """Enable Run only when the inputs are complete; say what is missing."""
        if self.worker is not None:
            return False
        problems = self.problems()
        self.run_button.setEnabled(not problems)
        self.status.setText(problems[0] if problems else "Ready.")
        return not problems

    # ----------------------------------------------------------------- running

    def run(self):
        """Start the prediction in a napari thread worker."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        if self.worker is not None or not self.check_inputs():
            return
        start = self._layer(self.start_combo.currentText())
        end = self._layer(self.end_combo.currentText())
        dims = start.ndim
        vs = tuple(box.value() for box in self.voxel)
        if dims == 3:
            voxel_size = vs
        else:  # 0, 0: an uncalibrated 2D image, taken at the model's pixel size
            voxel_size = (1.0, vs[1], vs[2]) if min(vs[1:]) > 0 else None
        try:
            image = make_image(layer_array(start), layer_array(end), voxel_size=voxel_size,
                               names=(start.name, end.name))
        except InputError as exc:
            self.status.setText(str(exc))
            return
        tile = (self.tile_z.value(), self.tile_xy.value(), self.tile_xy.value())[-dims:]
        thresholds = {"tau": (self.tau_start.value(), self.tau_end.value()),
                      "d_max_um": self.d_max.value()}
        self._cancel = CancelToken()
        self._run_inputs = (start, voxel_size)
        job = predict_job(image, self.model_ref(), device=self.device_combo.currentText(),
                          precision=self.precision_combo.currentText(), tile=tile,
                          thresholds=thresholds, show_maps=self.show_maps.isChecked(),
                          cancel=self._cancel)

        def work():
            return (yield from run_safely(job))

        self._pbar = progress(total=0, desc="CellPol: predict")
        self.worker = create_worker(work)
        self.worker.yielded.connect(self._on_event)
        self.worker.returned.connect(self._on_returned)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)
        self.status.setText("Running…")
        self.worker.start()

    def cancel(self):
        """Ask the running job to stop (it stops between tile batches)."""
        if self._cancel is not None:
            self._cancel.cancel()
            self.status.setText("Cancelling…")

    def _on_event(self, event: ProgressEvent):
        if self.worker is None:  # a late event: the run has ended
            return
        text = event.message or event.stage
        if text:
            self.status.setText(text)
        # napari's progress bars process events when they change, so the run's result and
        # end may be handled inside the calls below: nothing is shown after them.
        if event.total:
            self.progress_bar.setRange(0, int(event.total))
            self.progress_bar.setValue(int(event.step))
            if self._pbar is not None:
                if self._pbar.total != event.total:
                    self._pbar.total = int(event.total)
                    self._pbar.n = 0
                self._pbar.update(int(event.step) - int(self._pbar.n))
        if self._pbar is not None and text:
            self._pbar.set_description(f"CellPol: {text}")

    def _on_returned(self, outcome):
        status, payload = outcome
        if status != "ok":
            self.status.setText("Cancelled." if status == "cancelled" else payload)
            if status == "error":
                from napari.utils.notifications import show_error

                show_error(payload)
            return
        self.last_result = payload
        start, voxel_size = self._run_inputs
        self.add_result_layers(payload, start, voxel_size)
        note = "" if payload.precision_used else " (precision: engine default)"
        self.status.setText(f"{len(payload.table)} vectors found{note}.")

    def add_result_layers(self, result, image_layer, voxel_size) -> list:
        """Add the vectors (and CNN maps) over ``image_layer``; returns the new layers."""
        added = []
        scale = np.asarray(image_layer.scale, float)
        translate = np.asarray(image_layer.translate, float)
        if result.maps:
            for key, m in result.maps.items():
                layer = self.viewer.add_image(
                    m, name=f"CNN {key}", scale=scale * np.asarray(result.maps_scale),
                    translate=translate, colormap=MAP_COLORMAPS.get(key, "gray"), blending="additive",
                    visible=key.startswith("heatmap"),
                    contrast_limits=(0.0, 1.0) if key.startswith("heatmap") else None)
                added.append(layer)
        for data, kwargs, kind in table_to_layer_data(result.table, voxel_size=voxel_size,
                                                      name=PREDICTED,
                                                      scale=scale, translate=translate):
            added.append(getattr(self.viewer, f"add_{kind}")(data, **kwargs))
        return added

    def _on_finished(self):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        self._cancel = None
        self.cancel_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        status = self.status.text()
        self.check_inputs()
        self.status.setText(status)
        self.run_finished.emit()


def follow_layers(widget, viewer, slot):
    """Call ``slot`` when layers are added, removed or moved, until ``widget`` is deleted."""
    events = viewer.layers.events
    emitters = (events.inserted, events.removed, events.reordered)
    for ev in emitters:
        ev.connect(slot)

    def disconnect(*_):
        for ev in emitters:
            ev.disconnect(slot)

    widget.destroyed.connect(disconnect)


def fill_channel_combos(start_combo, end_combo, names, wanted):
    """List the image layers in both combos, keeping choices, else picking by structure name.

    A new choice prefers a layer whose name contains the structure (e.g.
    "nucleus"), else the first (start) and second (end) layer; the end never
    repeats the start while another layer is there.
    """
    chosen = []
    for combo, want in ((start_combo, wanted[0]), (end_combo, wanted[1])):
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        free = [n for n in names if n not in chosen] or list(names)
        by_name = [n for n in free if want and str(want).lower() in n.lower()]
        if current in free:
            pick = current
        else:
            pick = by_name[0] if by_name else (free[0] if free else "")
        if pick:
            combo.setCurrentText(pick)
        chosen.append(pick)
        combo.blockSignals(False)


def layer_array(layer):
    """An image layer's full-resolution array (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _layer_voxel_size(layer):
    """(z, y, x) µm of an image layer: CellPol metadata, else a non-unit scale, else None."""
    md = layer.metadata.get("cellpol") if isinstance(layer.metadata, dict) else None
    if isinstance(md, dict) and md.get("voxel_size") is not None:
        return tuple(float(v) for v in md["voxel_size"])
    scale = [float(s) for s in layer.scale]
    if np.allclose(scale, 1.0):
        return None
    return tuple(scale) if len(scale) == 3 else (1.0,) + tuple(scale[-2:])
