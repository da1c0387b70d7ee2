"""A plain 2D viewer for two-channel microscopy images and their vectors.

The start channel is shown green and the end channel red (additive), each with
its own percentile contrast. 3D images are browsed slice by slice (slider or
mouse wheel) or as a maximum projection. Vectors are drawn from a green start
dot to a red end dot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSlider,
    QVBoxLayout,
    QWidget,
)

import cellpol_core
from cellpol_core.errors import InputError
from cellpol_core.io.paths import is_image_path

IMAGE_FILTER = "Images (*.tif *.tiff *.lsm *.ome.tif *.ome.tiff);;All files (*)"
CSV_FILTER = "Vector tables (*.csv);;All files (*)"
START_RGB = (60, 230, 60)
END_RGB = (255, 60, 60)

_device_label: Optional[str] = None


def compute_device_label() -> str:
    """``"GPU: <name>"`` when torch sees a CUDA device, else ``"CPU"``.

    A CUDA build of torch with no usable GPU (no card or no driver) falls back
    to ``"CPU (no CUDA GPU found)"``. torch is imported here, not at module
    level: it takes seconds to import.
    """
    global _device_label
    if _device_label is None:
        try:
            import torch

            if torch.cuda.is_available():
                _device_label = f"GPU: {torch.cuda.get_device_name(0)}"
            elif getattr(getattr(torch, "version", None), "cuda", None):
                _device_label = "CPU (no CUDA GPU found)"
            else:
                _device_label = "CPU"
        except Exception:  # a broken torch install must not break the viewer
            _device_label = "CPU"
    return _device_label


def known_device_label() -> Optional[str]:
    """:func:`compute_device_label`'s result once computed (never imports torch), else None."""
    return _device_label


def composite_rgb(planes, limits, *, colors=None, weights=None, gammas=None) -> np.ndarray:
    """Composite 1 or 2 channel planes into an RGB image.

    Parameters
    ----------
    planes : ndarray, shape (C, Y, X)
        C = 1 (shown grey) or C = 2 (start green, end red).
    limits : ndarray, shape (C, 2)
        Display (low, high) per channel.
    colors : sequence of (r, g, b), optional
        0-255 colours of the two channels, blended additively; green and red
        when None. Ignored for one channel.
    weights : sequence of float, optional
        Display weight of each channel (1 = full).
    gammas : sequence of float, optional
        Gamma of each channel: its normalised intensity is raised to this power.

    Returns
    -------
    ndarray, shape (Y, X, 3), uint8
    """
    from cellpol_core.io.image import normalize_percentile

    planes = np.asarray(planes)
    norm = normalize_percentile(planes, limits=np.asarray(limits, dtype=np.float64), clip=True)
    if gammas is not None:
        norm = np.stack([np.power(n, float(g), dtype=np.float32) if g != 1 else n
                         for n, g in zip(norm, gammas)])
    if colors is not None and len(planes) == 2:
        w = [1.0, 1.0] if weights is None else [float(v) for v in weights]
        out = np.zeros(planes.shape[1:] + (3,), dtype=np.float32)
        for k in range(2):
            out += norm[k][..., None].astype(np.float32) * (
                np.asarray(colors[k][:3], np.float32) * w[k])
        np.clip(out, 0, 255, out=out)
        out += 0.5
        return out.astype(np.uint8)
    scaled = np.multiply(norm, 255.0, dtype=np.float32)
    scaled += 0.5
    rgb = np.zeros(planes.shape[1:] + (3,), dtype=np.uint8)
    if len(planes) == 1:
        rgb[...] = scaled[0].astype(np.uint8)[..., None]
    else:
        rgb[..., 1] = scaled[0]  # start: green
        rgb[..., 0] = scaled[1]  # end: red
    return rgb


@dataclass
class LoadedImage:
    """What the viewer shows of an image, prepared off the GUI thread if needed.

    Attributes
    ----------
    image : CellImage
        The image as read.
    channels : tuple of int
        Displayed channels: (start, end), or (c,) for a one-channel image.
    planes : ndarray, shape (k, Z, Y, X)
        The displayed channels; 2D images have Z = 1.
    limits : ndarray, shape (k, 2)
        Contrast limits of the volume.
    mip : ndarray, shape (k, Y, X)
        Maximum projection along Z.
    mip_limits : ndarray, shape (k, 2)
        Contrast limits of the projection.
    """

    image: object
    channels: tuple
    planes: np.ndarray
    limits: np.ndarray
    mip: np.ndarray
    mip_limits: np.ndarray


def prepare_image(image) -> LoadedImage:
    """Pick the displayed channels of a CellImage and compute contrast limits."""
    from cellpol_core.io.image import resolve_channels

    if image.n_channels == 1:
        channels = (0,)
    else:
        try:
            channels = tuple(int(c) for c in resolve_channels(image))
        except InputError:
            channels = (0, 1)
    return load_channels(image, channels)


def load_channels(image, channels) -> LoadedImage:
    """Read the displayed ``channels`` of a CellImage, with their MIP and contrast limits."""
    from cellpol_core.io.image import percentile_limits

    planes = np.stack([np.asarray(image.data[c]) for c in channels])
    if not image.is_3d:
        planes = planes[:, None]
    mip = planes.max(axis=1)
    limits = np.asarray(percentile_limits(planes), dtype=np.float64)
    mip_limits = limits if planes.shape[1] == 1 else np.asarray(percentile_limits(mip),
                                                                  dtype=np.float64)
    return LoadedImage(image, tuple(channels), planes, limits, mip, mip_limits)


def load_image_file(path) -> LoadedImage:
    """Read ``path`` and prepare it for display. Raises InputError on bad files."""
    from cellpol_core.io.image import read_image

    return prepare_image(read_image(Path(path)))


class ViewerWindow(QMainWindow):
    """Main window: an XY view of the image with its vectors.

    Parameters
    ----------
    detect_device : bool
        Look up the compute device (imports torch in a worker thread).
    """

    #: Files bigger than this are read in a worker thread.
    background_load_bytes = 256 * 1024 * 1024
    #: Slice-mode vectors are shown up to this many slices away, faded.
    slice_window = 3

    image_loaded = Signal(str)

    def __init__(self, *, detect_device: bool = True, parent=None):
        super().__init__(parent)
        self.loaded: Optional[LoadedImage] = None
        self.vectors = None
        self.image_path: Optional[Path] = None
        self.vectors_path: Optional[Path] = None
        self.displayed_rgb: Optional[np.ndarray] = None
        self._z = 0
        self._mip = False
        self._last_dir = str(Path.home())
        self._workers = []
        self.setWindowTitle("CellPol")
        self.setAcceptDrops(True)
        self._build_view()
        self._build_controls()
        self._build_menus()
        self._build_status()
        self._update_controls()
        if detect_device:
            self._start_device_detection()

    # ------------------------------------------------------------------ building
    def _build_view(self):
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#101010")
        # Drops go to the main window, not to the graphics scene.
        self.graphics.setAcceptDrops(False)
        self.view_box = self.graphics.addViewBox()
        self.view_box.invertY(True)
        self.view_box.setAspectLocked(True, ratio=1.0)
        self.view_box.setMenuEnabled(True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        # One view unit per voxel, voxel centres on integers as in the vector tables.
        self.image_item.setPos(-0.5, -0.5)
        self.view_box.addItem(self.image_item)
        self._line_items = []
        for level in range(self.slice_window + 1):
            alpha = self._alpha_for(level)
            item = pg.PlotCurveItem(
                pen=pg.mkPen(255, 255, 255, int(230 * alpha), width=1.6),
                shadowPen=pg.mkPen(0, 0, 0, int(200 * alpha), width=3.6),
                connect="pairs", antialias=True)
            item.setZValue(10 + (self.slice_window - level))
            self.view_box.addItem(item)
            self._line_items.append(item)
        self.dots = pg.ScatterPlotItem(pxMode=True, antialias=True)
        self.dots.setZValue(20)
        self.view_box.addItem(self.dots)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.viewport().installEventFilter(self)

    def _build_controls(self):
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.setSpacing(4)
        layout.addWidget(self.graphics, 1)
        bar = QHBoxLayout()
        self.z_title = QLabel("Z")
        self.z_slider = QSlider(Qt.Orientation.Horizontal)
        self.z_slider.setMinimum(0)
        self.z_slider.setToolTip("Slice (mouse wheel over the image; Ctrl+wheel zooms)")
        self.z_slider.valueChanged.connect(self.set_slice)
        self.z_label = QLabel("")
        self.z_label.setMinimumWidth(70)
        self.mip_box = QCheckBox("MIP")
        self.mip_box.setToolTip("Maximum intensity projection along Z")
        self.mip_box.toggled.connect(self.set_mip)
        self.vectors_box = QCheckBox("Vectors")
        self.vectors_box.setChecked(True)
        self.vectors_box.toggled.connect(self._update_overlay)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        bar.addWidget(self.z_title)
        bar.addWidget(self.z_slider, 1)
        bar.addWidget(self.z_label)
        bar.addWidget(self.mip_box)
        bar.addSpacing(12)
        bar.addWidget(self.vectors_box)
        bar.addSpacing(12)
        bar.addWidget(self.legend)
        layout.addLayout(bar)
        self.setCentralWidget(central)

    def _build_menus(self):
        file_menu = self.menuBar().addMenu("&File")
        self.open_image_action = QAction("&Open image…", self)
        self.open_image_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_image_action.triggered.connect(self.open_image_dialog)
        file_menu.addAction(self.open_image_action)
        self.open_vectors_action = QAction("Open &vectors CSV…", self)
        self.open_vectors_action.triggered.connect(self.open_vectors_dialog)
        file_menu.addAction(self.open_vectors_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        mip_action = QAction("&Maximum projection", self)
        mip_action.setShortcut("M")
        mip_action.triggered.connect(lambda: self.mip_box.toggle())
        view_menu.addAction(mip_action)
        vec_action = QAction("Show &vectors", self)
        vec_action.setShortcut("V")
        vec_action.triggered.connect(lambda: self.vectors_box.toggle())
        view_menu.addAction(vec_action)
        fit_action = QAction("&Fit to window", self)
        fit_action.setShortcut("F")
        fit_action.triggered.connect(self.fit_view)
        view_menu.addAction(fit_action)

        help_menu = self.menuBar().addMenu("&Help")
        demo_action = QAction("Open &demo", self)
        demo_action.triggered.connect(self.open_demo)
        help_menu.addAction(demo_action)
        about_action = QAction("&About CellPol", self)
        about_action.triggered.connect(self.show_about)
        help_menu.addAction(about_action)

    def _build_status(self):
        self.position_label = QLabel("Open an image: File → Open image, or drop a file here")
        self.statusBar().addWidget(self.position_label, 1)
        self.device_label = QLabel("Device: …")
        self.statusBar().addPermanentWidget(self.device_label)

    # ------------------------------------------------------------------ device
    def _start_device_detection(self):
        if _device_label is not None:
            self._set_device(_device_label)
            return
        from superqt.utils import create_worker

        worker = create_worker(compute_device_label, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._set_device)
        worker.finished.connect(lambda: self._forget_worker(worker))
        self._workers.append(worker)
        worker.start()

    def _set_device(self, label):
        self.device_label.setText(f"Device: {label}")

    @property
    def device_known(self) -> bool:
        return not self.device_label.text().endswith("…")

    def _forget_worker(self, worker):
        if worker in self._workers:
            self._workers.remove(worker)

    # ------------------------------------------------------------------ loading
    def load_image(self, path, *, background: Optional[bool] = None) -> bool:
        """Open an image file; errors go to a dialog and keep the current image.

        Parameters
        ----------
        path : str or Path
        background : bool, optional
            Read in a worker thread. By default only files bigger than
            ``background_load_bytes`` are.

        Returns
        -------
        bool
            False when reading failed (synchronous loads) else True.
        """
        path = Path(path)
        if background is None:
            try:
                background = path.stat().st_size > self.background_load_bytes
            except OSError:
                background = False
        if background:
            return self._load_in_background(path)
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            loaded = load_image_file(path)
        except InputError as exc:
            QApplication.restoreOverrideCursor()
            self.show_error(str(exc))
            return False
        except (OSError, ValueError, MemoryError) as exc:
            QApplication.restoreOverrideCursor()
            self.show_error(f"{path}: cannot open image ({exc})")
            return False
        QApplication.restoreOverrideCursor()
        self.set_loaded(loaded, path=path)
        return True

    def _load_in_background(self, path: Path) -> bool:
        from superqt.utils import create_worker

        self.position_label.setText(f"Reading {path.name}…")
        worker = create_worker(load_image_file, path, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda loaded: self.set_loaded(loaded, path=path))
        worker.errored.connect(lambda exc: self.show_error(
            str(exc) if isinstance(exc, InputError) else f"{path}: cannot open image ({exc})"))
        worker.finished.connect(lambda: self._forget_worker(worker))
        self._workers.append(worker)
        worker.start()
        return True

    def set_image(self, image, *, path=None):
        """Show an in-memory :class:`~cellpol_core.io.image.CellImage`."""
        self.set_loaded(prepare_image(image), path=path if path is not None else image.path)

    def set_loaded(self, loaded: LoadedImage, *, path=None):
        """Show a prepared image; vectors are cleared."""
        self.loaded = loaded
        self.image_path = Path(path) if path is not None else None
        self.set_vectors(None)
        if self.image_path is not None:
            self.remember_dir(self.image_path.parent)
        self.setWindowTitle(f"CellPol — {self.image_path.name}" if self.image_path else "CellPol")
        vs = self.voxel_size
        # Screen pixels per x voxel over per y voxel.
        self.view_box.setAspectLocked(True, ratio=(vs[2] / vs[1]) if vs else 1.0)
        self._z = loaded.planes.shape[1] // 2
        self._mip = False
        self._update_controls()
        self._render()
        self.fit_view()
        self.position_label.setText(self._describe_image())
        self.image_loaded.emit(str(self.image_path or ""))

    def load_vectors(self, path) -> bool:
        """Read a CellPol or VectorAnnotationTool CSV and draw it; errors go to a dialog."""
        from cellpol_core.io.vectors import read_vectors

        path = Path(path)
        try:
            table = read_vectors(path)
        except InputError as exc:
            self.show_error(str(exc))
            return False
        self.set_vectors(table, path=path)
        return True

    def set_vectors(self, table, *, path=None):
        """Draw a :class:`~cellpol_core.io.vectors.VectorTable` (None clears)."""
        self.vectors = table
        self.vectors_path = Path(path) if path is not None else None
        self._update_overlay()
        self.vectors_box.setText("Vectors" if table is None else f"Vectors ({len(table)})")
        self.vectors_box.setToolTip(str(self.vectors_path) if self.vectors_path else "")

    def open_demo(self) -> bool:
        """Open the bundled demo image and its ground-truth vectors.

        Nothing changes when the image cannot be read or its channel dialog is cancelled.
        """
        from cellpol_core.io.resources import demo_image_path, demo_vectors_path

        try:
            image_path = demo_image_path()
        except InputError as exc:
            self.show_error(str(exc))
            return False
        if not self.load_image(image_path, background=False) or self.image_path is None \
                or Path(self.image_path).resolve() != Path(image_path).resolve():
            return False
        try:
            vectors_path = demo_vectors_path()
        except InputError:
            return True  # the image alone is still worth showing
        return self.load_vectors(vectors_path)

    # ------------------------------------------------------------------ dialogs
    def open_image_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.last_dir, IMAGE_FILTER)
        if path:
            self.load_image(path)

    def open_vectors_dialog(self):
        start = str(self.image_path.parent) if self.image_path else self.last_dir
        path, _ = QFileDialog.getOpenFileName(self, "Open vectors CSV", start, CSV_FILTER)
        if path:
            self.load_vectors(path)

    def show_error(self, message: str):
        QMessageBox.critical(self, "CellPol", message)

    def show_message(self, text: str, msecs: int = 6000):
        """A status-bar message for ``msecs`` milliseconds."""
        self.statusBar().showMessage(text, msecs)

    @property
    def last_dir(self) -> str:
        """Where file dialogs start: the folder the user last used."""
        return self._last_dir

    def remember_dir(self, path):
        """Start the next file dialogs in ``path`` (a folder)."""
        self._last_dir = str(path)

    def show_about(self):
        QMessageBox.about(
            self, "About CellPol",
            f"<b>CellPol {cellpol_core.__version__}</b><br>"
            "Cell polarity vectors from 3D/2D fluorescence microscopy.<br><br>"
            "Green: start structure · red: end structure.")

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event):
        if self._dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        self.dragEnterEvent(event)

    def dropEvent(self, event):
        paths = self._dropped_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        images = [p for p in paths if is_image_path(p)]
        csvs = [p for p in paths if p.suffix.lower() == ".csv"]
        if images:
            self.load_image(images[0])
        if csvs and self.loaded is not None:
            self.load_vectors(csvs[0])

    @staticmethod
    def _dropped_paths(mime):
        if not mime.hasUrls():
            return []
        paths = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
        return [p for p in paths if is_image_path(p) or p.suffix.lower() == ".csv"]

    # ------------------------------------------------------------------ state
    @property
    def voxel_size(self):
        if self.loaded is None or self.loaded.image.voxel_size is None:
            return None
        return tuple(float(v) for v in self.loaded.image.voxel_size)

    @property
    def n_slices(self) -> int:
        """Number of Z slices (1 for 2D images, 0 with no image)."""
        return 0 if self.loaded is None else int(self.loaded.planes.shape[1])

    @property
    def is_3d(self) -> bool:
        return self.loaded is not None and self.loaded.image.is_3d

    @property
    def current_slice(self) -> int:
        return self._z

    @property
    def mip(self) -> bool:
        return self._mip

    def set_slice(self, z: int):
        """Show slice ``z`` (clipped to the stack)."""
        if self.loaded is None:
            return
        z = int(np.clip(z, 0, self.n_slices - 1))
        changed = z != self._z
        self._z = z
        if self.z_slider.value() != z:
            self.z_slider.blockSignals(True)
            self.z_slider.setValue(z)
            self.z_slider.blockSignals(False)
        if changed:
            self._update_z_label()
            self._render()

    def set_mip(self, on: bool):
        """Show the maximum projection (True) or single slices (False)."""
        on = bool(on) and self.is_3d
        changed = on != self._mip
        self._mip = on
        if self.mip_box.isChecked() != on:
            self.mip_box.blockSignals(True)
            self.mip_box.setChecked(on)
            self.mip_box.blockSignals(False)
        self.z_slider.setEnabled(not on)
        if changed:
            self._update_z_label()
            self._render()

    def fit_view(self):
        if self.loaded is None:
            return
        ny, nx = self.loaded.planes.shape[2:]
        self.view_box.setRange(QRectF(-0.5, -0.5, nx, ny), padding=0.02)

    # ------------------------------------------------------------------ rendering
    def _update_controls(self):
        three_d = self.is_3d
        for w in (self.z_title, self.z_slider, self.z_label, self.mip_box):
            w.setVisible(three_d)
        if self.loaded is not None:
            self.z_slider.blockSignals(True)
            self.z_slider.setMaximum(max(self.n_slices - 1, 0))
            self.z_slider.setValue(self._z)
            self.z_slider.blockSignals(False)
            self.z_slider.setEnabled(not self._mip)
            self.mip_box.blockSignals(True)
            self.mip_box.setChecked(self._mip)
            self.mip_box.blockSignals(False)
            self.legend.setText(self._legend_html())
        self._update_z_label()

    def _update_z_label(self):
        if self.loaded is None:
            self.z_label.setText("")
        elif self._mip:
            self.z_label.setText(f"MIP of {self.n_slices}")
        else:  # 0-based, as in the table, the status bar and the CSVs
            self.z_label.setText(f"z {self._z} / {self.n_slices - 1}")

    def _legend_html(self) -> str:
        image, channels = self.loaded.image, self.loaded.channels
        names = list(image.channel_names) or [f"C{i}" for i in range(image.n_channels)]

        def name(c):
            label = names[c] if c < len(names) else f"C{c}"
            return label if label == f"C{c}" else f"{label} (C{c})"

        if len(channels) == 1:
            return f"grey: {name(channels[0])}"
        (r1, g1, b1), (r2, g2, b2) = START_RGB, END_RGB
        return (f"<span style='color:rgb({r1},{g1},{b1})'>■</span> start: {name(channels[0])}"
                f" &nbsp; <span style='color:rgb({r2},{g2},{b2})'>■</span> end: "
                f"{name(channels[1])}")

    def _current_planes(self):
        """(k, Y, X) raw data on screen and its contrast limits."""
        if self._mip:
            return self.loaded.mip, self.loaded.mip_limits
        return self.loaded.planes[:, self._z], self.loaded.limits

    def _render(self):
        if self.loaded is None:
            return
        planes, limits = self._current_planes()
        self.displayed_rgb = composite_rgb(planes, limits)
        self.image_item.setImage(self.displayed_rgb, levels=(0, 255), autoLevels=False)
        self._update_overlay()

    @staticmethod
    def _alpha_for(level) -> float:
        return (1.0, 0.6, 0.38, 0.22)[min(int(level), 3)]

    def visible_vectors(self):
        """Indices of the vectors drawn now and their fade level (0 = in this slice)."""
        if self.vectors is None or len(self.vectors) == 0 or self.loaded is None:
            return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
        n = len(self.vectors)
        if self._mip or not self.is_3d:
            return np.arange(n), np.zeros(n, dtype=int)
        zs, ze = self.vectors.start[:, 0], self.vectors.end[:, 0]
        z = float(self._z)
        inside = (np.minimum(zs, ze) <= z) & (z <= np.maximum(zs, ze))
        dist = np.where(inside, 0.0, np.minimum(np.abs(zs - z), np.abs(ze - z)))
        level = np.rint(dist).astype(int)
        keep = np.flatnonzero(level <= self.slice_window)
        return keep, level[keep]

    def _update_overlay(self):
        show = self.vectors_box.isChecked()
        index, level = self.visible_vectors() if show else (np.zeros(0, int), np.zeros(0, int))
        for lv, item in enumerate(self._line_items):
            sel = index[level == lv]
            if len(sel) == 0:
                item.setData([], [])
                continue
            s, e = self.vectors.start[sel], self.vectors.end[sel]
            x = np.empty(2 * len(sel))
            y = np.empty(2 * len(sel))
            x[0::2], x[1::2] = s[:, 2], e[:, 2]
            y[0::2], y[1::2] = s[:, 1], e[:, 1]
            item.setData(x, y)
        if len(index) == 0:
            self.dots.setData([])
            return
        s, e = self.vectors.start[index], self.vectors.end[index]
        spots = []
        for points, rgb in ((s, START_RGB), (e, END_RGB)):
            for (_, py, px), lv in zip(points, level):
                a = self._alpha_for(lv)
                spots.append({"pos": (px, py), "size": 7 if lv == 0 else 5,
                              "brush": pg.mkBrush(*rgb, int(255 * a)),
                              "pen": pg.mkPen(255, 255, 255, int(220 * a), width=1.2)})
        self.dots.setData(spots)

    # ------------------------------------------------------------------ cursor
    def eventFilter(self, obj, event):
        if (event.type() == QEvent.Type.Wheel and obj is self.graphics.viewport()
                and self.is_3d and not self._mip
                and not event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            steps = event.angleDelta().y()
            if steps:
                self.set_slice(self._z + (1 if steps > 0 else -1))
            return True
        return super().eventFilter(obj, event)

    def _on_mouse_moved(self, scene_pos):
        if self.loaded is None:
            return
        view_pos = self.view_box.mapSceneToView(scene_pos)
        self.position_label.setText(self.position_text(view_pos.x(), view_pos.y()))

    def position_text(self, x: float, y: float) -> str:
        """Status text for the cursor at view coordinates (x, y) in voxels."""
        if self.loaded is None:
            return ""
        ny, nx = self.loaded.planes.shape[2:]
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if not (0 <= ix < nx and 0 <= iy < ny):
            return self._describe_image()
        parts = []
        vs = self.voxel_size
        if self.is_3d:
            zt = "MIP" if self._mip else str(self._z)
            parts.append(f"x {ix}  y {iy}  z {zt} (voxels)")
            if vs:
                um = f"{ix * vs[2]:.2f}, {iy * vs[1]:.2f}"
                um += "" if self._mip else f", {self._z * vs[0]:.2f}"
                parts.append(f"{um} µm")
        else:
            parts.append(f"x {ix}  y {iy} (pixels)")
            if vs:
                parts.append(f"{ix * vs[2]:.2f}, {iy * vs[1]:.2f} µm")
        if not vs:
            parts.append("no calibration (µm unknown)")
        planes, _ = self._current_planes()
        names = list(self.loaded.image.channel_names)
        for k, c in enumerate(self.loaded.channels):
            label = names[c] if c < len(names) else f"C{c}"
            value = planes[k, iy, ix]
            text = f"{value:.4g}" if np.issubdtype(planes.dtype, np.floating) else str(int(value))
            parts.append(f"{label} {text}")
        return "   ·   ".join(parts)

    def _describe_image(self) -> str:
        if self.loaded is None:
            return ""
        img = self.loaded.image
        shape = " × ".join(str(s) for s in reversed(img.spatial_shape))
        vs = self.voxel_size
        cal = (f"{vs[2]:.3g} × {vs[1]:.3g}" + (f" × {vs[0]:.3g}" if img.is_3d else "") + " µm"
               if vs else "no calibration")
        hint = "   ·   wheel: slice, Ctrl+wheel: zoom" if img.is_3d else ""
        return f"{shape} px, {img.n_channels} ch, {img.dtype}, voxel {cal}{hint}"

    def closeEvent(self, event):
        for worker in list(self._workers):
            try:
                worker.quit()
            except (AttributeError, RuntimeError):
                pass
        super().closeEvent(event)
