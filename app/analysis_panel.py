"""The Analysis dock: polarity statistics, rose plots, a reference direction, report export.

:class:`AnalysisPanel` shows, for the current image's vectors (its annotations
or its predictions, a source combo) and for every other image of the open
project, one row of :func:`cellpol_core.analysis.polarity.summarise` (n, mean angle,
mean angle to the reference, R, circular SD, Rayleigh p, V-test p, 3D R, mean
angle of the vectors to the reference) and a pyqtgraph rose of the selected
row on the xy, yz or xz plane.

Angles follow :mod:`cellpol_core.analysis.polarity`: 0° = right, 90° = up on screen.
The rose and the "mean azimuth" column are absolute (as in the image, like
``mean_azimuth_deg`` of ``cellpol stats``); with a reference the "to ref."
column is the mean relative to it (0° = the reference,
``mean_azimuth_to_reference_deg``), and the reference is drawn as an arrow in
the rose and from the centre of the XY slice view.

The table needs no bootstrap, so it is computed synchronously; the report
(:func:`cellpol_core.analysis.batch.analyse`: CSVs and figures) runs in the
window's JobRunner.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QAction, QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGraphicsPathItem,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cellpol_core.errors import InputError
from cellpol_core.io.paths import image_stem
from cellpol_core.analysis.polarity import PLANES, plane_angle_deg, polarity_data, \
    reference_unit_vector, summarise

__all__ = ["AnalysisPanel", "install_analysis_panel", "rose_counts", "report_job"]

#: (header, summarise key, format) of the statistics table after the name column.
COLUMNS = (
    ("n", "n", "{:d}"),
    ("mean azimuth °", "mean_azimuth_deg", "{:.1f}"),
    ("to ref. °", "mean_azimuth_to_reference_deg", "{:+.1f}"),
    ("R", "resultant_length", "{:.3f}"),
    ("circular SD °", "circular_sd_deg", "{:.1f}"),
    ("Rayleigh p", "rayleigh_p", "{:.3g}"),
    ("V-test p", "vtest_p", "{:.3g}"),
    ("3D R", "resultant_length_3d", "{:.3f}"),
    ("mean angle to ref. °", "mean_angle_to_reference_deg", "{:.1f}"),
)
HEADERS = ("image",) + tuple(c[0] for c in COLUMNS)
#: Shown column titles (two short lines, so that the table fits a side dock) and tooltips.
HEADER_LABELS = {"mean azimuth °": ("mean\ndirection °", "Mean direction in the image "
                                    "(0° = right, 90° = up)"),
                 "to ref. °": ("to\nref. °", "Mean direction relative to the reference"),
                 "R": ("R", "Resultant length: 0 = no common direction, 1 = all alike"),
                 "circular SD °": ("circ.\nSD °", "Circular standard deviation"),
                 "Rayleigh p": ("Rayleigh\np", "Rayleigh test: p of no common direction"),
                 "V-test p": ("V-test\np", "V-test: p of no polarity towards the reference"),
                 "3D R": ("3D\nR", "Resultant length of the 3D unit vectors"),
                 "mean angle to ref. °": ("angle to\nref. °", "Mean 3D angle between the "
                                          "vectors and the reference")}
#: Below this width (pixels) the rose goes under the table instead of beside it.
NARROW_PX = 640
SOURCES = ("annotations", "predictions")
ROSE_BINS = 36
_BAR_RGB = (72, 120, 168)
_MEAN_RGB = (192, 57, 43)
_REF_RGB = (255, 200, 40)


def rose_counts(angles_deg, *, bins=ROSE_BINS) -> np.ndarray:
    """Counts of finite angles in ``bins`` equal sectors starting at 0°."""
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    a = np.mod(a[np.isfinite(a)], 360.0)
    counts, _ = np.histogram(a, bins=bins, range=(0.0, 360.0))
    return counts


def report_job(vector_csvs, *, cancel=None, **options):
    """:func:`~cellpol_core.analysis.batch.analyse` for the window's jobs: returns its summary."""
    from cellpol_core.analysis.batch import analyse

    return (yield from analyse(vector_csvs, cancel=cancel, **options))


def _wedge_path(a0_deg, a1_deg, radius, *, steps=6) -> QPainterPath:
    path = QPainterPath(QPointF(0.0, 0.0))
    for t in np.radians(np.linspace(a0_deg, a1_deg, steps)):
        path.lineTo(QPointF(radius * math.cos(t), radius * math.sin(t)))
    path.closeSubpath()
    return path


class AnalysisPanel(QWidget):
    """Statistics table, rose plot, reference direction and report export.

    Parameters
    ----------
    window : AnnotatorWindow, optional
        Where the vectors, the project and the JobRunner come from. Without a
        window, feed rows with :meth:`set_tables`.

    Attributes
    ----------
    rows : list of dict
        Per table row: ``name``, ``table`` (VectorTable or None),
        ``voxel_size``, ``summary`` (the :func:`summarise` dict or None) and
        ``error`` (a message or None).
    rose_bars : list of QGraphicsPathItem
        One wedge per non-empty sector of the shown rose.
    counts : ndarray
        Vectors per sector of the shown rose.
    last_report : AnalysisSummary or None
        The result of the last finished report.
    """

    def __init__(self, window=None, parent=None):
        super().__init__(parent)
        self.window = window
        self.rows = []
        self.rose_bars = []
        self.counts = np.zeros(ROSE_BINS, dtype=int)
        self.last_report = None
        self._report_pending = None

        self.source_combo = QComboBox()
        self.source_combo.addItems(SOURCES)
        self.source_combo.setToolTip("Statistics of the annotated pairs or of the predictions")
        self.plane_combo = QComboBox()
        self.plane_combo.addItems(PLANES)
        self.plane_combo.setToolTip("Plane of the circular statistics and of the rose")
        self.reference_box = QCheckBox("Reference")
        self.reference_box.setToolTip("V-test and mean angle against a reference direction")
        self.reference_spin = QDoubleSpinBox()
        self.reference_spin.setRange(-360.0, 360.0)
        self.reference_spin.setDecimals(1)
        self.reference_spin.setSingleStep(5.0)
        self.reference_spin.setSuffix(" °")
        self.reference_spin.setToolTip("Azimuth: 0° = right, 90° = up on screen")
        self.reference_spin.setEnabled(False)
        self.draw_button = QPushButton("Draw…")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Drag on the XY view from the tail to the head of the "
                                    "reference direction")
        self.draw_button.toggled.connect(self._drawing_toggled)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Recompute the statistics")
        self.export_button = QPushButton("Export report…")
        self.export_button.setToolTip("CSV summaries and rose plots of these images "
                                      "(cellpol stats) into a folder")
        bar = QHBoxLayout()  # two rows: the panel fits a side dock
        for w in (QLabel("Vectors:"), self.source_combo, QLabel("Plane:"), self.plane_combo):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.refresh_button)
        bar2 = QHBoxLayout()
        for w in (self.reference_box, self.reference_spin, self.draw_button):
            bar2.addWidget(w)
        bar2.addStretch(1)
        bar2.addWidget(self.export_button)

        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        for k, header in enumerate(HEADERS):
            label, tip = HEADER_LABELS.get(header, (header, header))
            item = QTableWidgetItem(label)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(k, item)

        self.rose = pg.PlotWidget(background="#101010")
        self.rose.setAspectLocked(True)
        self.rose.hideAxis("left")
        self.rose.hideAxis("bottom")
        self.rose.setMouseEnabled(False, False)
        self.rose.hideButtons()
        self.rose.setMinimumSize(150, 150)  # fits a side dock above Contrast
        self.rose.setRange(xRange=(-1.15, 1.15), yRange=(-1.15, 1.15), padding=0)
        grid_pen = pg.mkPen(120, 120, 120, 150, width=1)
        t = np.linspace(0, 2 * np.pi, 121)
        for r in (0.25, 0.5, 0.75, 1.0):
            self.rose.addItem(pg.PlotCurveItem(r * np.cos(t), r * np.sin(t), pen=grid_pen))
        for a in range(0, 360, 45):
            c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
            self.rose.addItem(pg.PlotCurveItem([0, c], [0, s], pen=grid_pen))
        self.rose_labels = []
        for a in (0, 90, 180, 270):
            label = pg.TextItem(f"{a}°", color=(200, 200, 200), anchor=(0.5, 0.5))
            label.setPos(1.08 * math.cos(math.radians(a)), 1.08 * math.sin(math.radians(a)))
            self.rose.addItem(label)
            self.rose_labels.append(label)
        self.mean_line = pg.PlotCurveItem(pen=pg.mkPen(*_MEAN_RGB, width=3))
        self.mean_line.setZValue(10)
        self.rose.addItem(self.mean_line)
        self.rose_reference = pg.PlotCurveItem(pen=pg.mkPen(*_REF_RGB, width=2,
                                                            style=Qt.PenStyle.DashLine))
        self.rose_reference.setZValue(11)
        self.rose.addItem(self.rose_reference)
        self.rose_title = QLabel()
        self.rose_title.setWordWrap(True)
        rose_box = QWidget()
        rose_layout = QVBoxLayout(rose_box)
        rose_layout.setContentsMargins(0, 0, 0, 0)
        rose_layout.addWidget(self.rose, 1)
        rose_layout.addWidget(self.rose_title)

        self.note = QLabel()
        self.note.setWordWrap(True)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(rose_box)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.split = split
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addLayout(bar2)
        layout.addWidget(split, 1)
        layout.addWidget(self.note)

        # The image-view arrow of the reference (added to the XY view when there is one).
        self.image_arrow_line = pg.PlotCurveItem(pen=pg.mkPen(*_REF_RGB, width=2.5))
        self.image_arrow_head = pg.ArrowItem(pen=pg.mkPen(*_REF_RGB), brush=pg.mkBrush(*_REF_RGB),
                                             headLen=14, tailLen=None)
        for item in (self.image_arrow_line, self.image_arrow_head):
            item.setZValue(30)
            item.setVisible(False)
        self._arrow_view = None
        self._arrow_shown = True  # False while the dock is closed
        self._draw_view = None
        self._draw_start = None

        self.source_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.plane_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.reference_box.toggled.connect(self._reference_toggled)
        self.reference_spin.valueChanged.connect(lambda _: self.refresh())
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button.clicked.connect(self.export_report_dialog)
        self.table.itemSelectionChanged.connect(self._selection_changed)

    # ------------------------------------------------------------------ settings
    @property
    def source(self) -> str:
        return self.source_combo.currentText()

    def set_source(self, source: str):
        """Use ``"annotations"`` or ``"predictions"`` (refreshes)."""
        self.source_combo.setCurrentIndex(SOURCES.index(source))

    @property
    def plane(self) -> str:
        return self.plane_combo.currentText()

    def set_plane(self, plane: str):
        """Plane of the statistics and the rose: ``"xy"``, ``"yz"`` or ``"xz"``."""
        self.plane_combo.setCurrentIndex(PLANES.index(plane))

    @property
    def reference_deg(self):
        """The reference azimuth in degrees, or None."""
        return float(self.reference_spin.value()) if self.reference_box.isChecked() else None

    def set_reference(self, degrees):
        """Set the reference azimuth (0 = right, 90 = up on screen); None clears it."""
        if degrees is None:
            self.reference_box.setChecked(False)
            return
        self.reference_spin.blockSignals(True)
        self.reference_spin.setValue(float(degrees))
        self.reference_spin.blockSignals(False)
        if self.reference_box.isChecked():
            self.refresh()
        else:
            self.reference_box.setChecked(True)

    def _reference_toggled(self, on):
        self.reference_spin.setEnabled(bool(on))
        self.refresh()

    # ------------------------------------------------------------------ data
    def collect_tables(self) -> list:
        """(name, VectorTable or None, voxel size) of the current image and the project's others."""
        w = self.window
        if w is None:
            return [(r["name"], r["table"], r["voxel_size"]) for r in self.rows]
        out = []
        current = None
        if w.loaded is not None:
            table = w.annotations.to_table() if self.source == "annotations" else w.vectors
            current = w.image_path
            out.append((image_stem(current) if current else "current image", table,
                        w.voxel_size or (1.0, 1.0, 1.0)))
        project = w.project
        if project is not None and len(project.images) > 1:
            for entry in project.images:
                path = project.image_path(entry)
                if current is not None and project.find_image(current) is entry:
                    continue  # the first row, with the shown (maybe unsaved) vectors
                out.append((image_stem(path), _project_table(project, entry, self.source),
                            _entry_voxel_size(entry)))
        return out

    def set_tables(self, tables):
        """Show the statistics of ``tables``: (name, VectorTable or None, voxel size) tuples."""
        self.rows = [{"name": str(n), "table": t,
                      "voxel_size": tuple(float(v) for v in (vs or (1.0, 1.0, 1.0))),
                      "summary": None, "error": None} for n, t, vs in tables]
        self._compute()

    def refresh(self):
        """Recompute the table and the rose from the window's current vectors."""
        if self.window is not None:
            self.rows = [{"name": n, "table": t, "voxel_size": tuple(float(v) for v in vs),
                          "summary": None, "error": None} for n, t, vs in self.collect_tables()]
        self._compute()

    def _compute(self):
        ref = reference_unit_vector(reference_deg=self.reference_deg)
        for row in self.rows:
            row["summary"], row["error"] = None, None
            table = row["table"]
            if table is None:
                row["error"] = f"no {self.source}"
                continue
            try:
                data = polarity_data(table, row["voxel_size"], reference=ref)
                # No intervals and no Rao p-value here: no resampling, so this stays cheap.
                row["summary"] = summarise(data, plane=self.plane, n_bootstrap=0,
                                           n_simulations=0)
            except InputError as exc:
                row["error"] = str(exc)
        self._fill_table()
        self._update_reference_arrow()

    def _fill_table(self):
        selected = self.selected_row()
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            name = QTableWidgetItem(row["name"])
            if row["error"]:
                name.setToolTip(row["error"])
            self.table.setItem(i, 0, name)
            s = row["summary"] or {}
            for j, (_, key, fmt) in enumerate(COLUMNS, start=1):
                v = s.get(key)
                if key == "mean_azimuth_to_reference_deg" and v is not None and v > 180.0:
                    v -= 360.0  # relative angles read better signed: -30° rather than 330°
                text = "" if v is None else fmt.format(int(v) if fmt == "{:d}" else float(v))
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, v)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)
        if self.rows:
            self.table.selectRow(min(max(selected, 0), len(self.rows) - 1))
        self.table.blockSignals(False)
        for j in range(1, len(HEADERS)):  # no reference, 2D: those columns say nothing
            empty = all(not (self.table.item(i, j) and self.table.item(i, j).text())
                        for i in range(len(self.rows)))
            self.table.setColumnHidden(j, empty and bool(self.rows))
        self.fit_dock()
        self._fit_table_height()
        relative = self.reference_deg is not None
        self.note.setText(
            "Angles: 0° = right, 90° = up on screen; mean azimuth as in the image"
            + (f", to ref.: relative to the reference ({self.reference_deg:g}°). " if relative
               else ". ")
            + f"Plane {self.plane}; rose of the selected row (absolute angles).")
        self._draw_rose()

    def selected_row(self) -> int:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return rows[0].row() if rows else 0

    def cell_text(self, row: int, header: str) -> str:
        """Text of the statistics table at ``row`` under ``header`` (see :data:`HEADERS`)."""
        item = self.table.item(row, HEADERS.index(header))
        return "" if item is None else item.text()

    def value(self, row: int, key: str):
        """The :func:`summarise` value ``key`` of ``row`` (None when empty)."""
        s = self.rows[row]["summary"]
        return None if s is None else s.get(key)

    def _selection_changed(self):
        self._draw_rose()

    # ------------------------------------------------------------------ rose
    def _draw_rose(self):
        for item in self.rose_bars:
            self.rose.removeItem(item)
        self.rose_bars = []
        self.counts = np.zeros(ROSE_BINS, dtype=int)
        self.mean_line.setData([], [])
        plane = self.plane
        row = self.rows[self.selected_row()] if self.rows else None
        angles = np.zeros(0)
        if row is not None and row["table"] is not None and len(row["table"]):
            if row["table"].ndim == 3 or plane == "xy":
                data = polarity_data(row["table"], row["voxel_size"])  # absolute angles
                angles = data.angles[plane]
        self.counts = rose_counts(angles)
        n = int(self.counts.sum())
        width = 360.0 / ROSE_BINS
        if n:
            frac = self.counts / n
            scale = 1.0 / frac.max()  # the fullest sector reaches the outer circle
            pen = QPen(QColor(230, 230, 230, 200))
            pen.setCosmetic(True)
            brush = QBrush(QColor(*_BAR_RGB, 210))
            for k in np.flatnonzero(self.counts):
                item = QGraphicsPathItem(_wedge_path(k * width, (k + 1) * width,
                                                     frac[k] * scale))
                item.setPen(pen)
                item.setBrush(brush)
                item.setZValue(5)
                self.rose.addItem(item)
                self.rose_bars.append(item)
            a = np.radians(angles[np.isfinite(angles)])
            c, s = np.cos(a).mean(), np.sin(a).mean()
            self.mean_line.setData([0.0, c], [0.0, s])  # length = R
        ref = reference_unit_vector(reference_deg=self.reference_deg)
        ref_angle = math.nan if ref is None else plane_angle_deg(ref, plane)
        if math.isfinite(ref_angle):
            t = math.radians(ref_angle)
            c, s = math.cos(t), math.sin(t)
            head = 0.12
            tip = (1.05 * c, 1.05 * s)
            left = (tip[0] - head * math.cos(t - 0.4), tip[1] - head * math.sin(t - 0.4))
            right = (tip[0] - head * math.cos(t + 0.4), tip[1] - head * math.sin(t + 0.4))
            self.rose_reference.setData([0.0, tip[0], left[0], tip[0], right[0]],
                                        [0.0, tip[1], left[1], tip[1], right[1]])
        else:
            self.rose_reference.setData([], [])
        name = row["name"] if row is not None else "no image"
        self.rose_title.setText(f"{name}: {n} vectors, {plane} plane"
                                + ("" if plane == "xy" else " (vertical axis: +z)"))

    # ------------------------------------------------------------------ image arrow
    def _xy_view(self):
        ortho = getattr(self.window, "ortho", None)
        return None if ortho is None else ortho.views.get("xy")

    def _update_reference_arrow(self):
        """Draw the reference from the image centre on the XY slice view."""
        view = self._xy_view()
        if view is None:
            return
        if self._arrow_view is not view:
            for item in (self.image_arrow_line, self.image_arrow_head):
                view.view_box.addItem(item, ignoreBounds=True)
            self._arrow_view = view
        ref = self.reference_deg
        ortho = self.window.ortho
        if ref is None or ortho.planes is None or not self._arrow_shown:
            self.image_arrow_line.setVisible(False)
            self.image_arrow_head.setVisible(False)
            return
        _, _, ny, nx = ortho.planes.shape
        length = 0.35 * min(ny, nx)
        t = math.radians(ref)
        centre = np.array([0.0, (ny - 1) / 2, (nx - 1) / 2])
        tip = centre + length * np.array([0.0, -math.sin(t), math.cos(t)])  # y points down
        h, v = view.to_view(np.stack([centre, tip]))
        self.image_arrow_line.setData(h, v)
        # ArrowItem angles are in screen degrees (0 points left), after the view's y flip.
        inverted = view.view_box.yInverted()
        self.image_arrow_head.setStyle(angle=180.0 - ref if inverted else 180.0 + ref)
        self.image_arrow_head.setPos(float(h[1]), float(v[1]))
        self.image_arrow_line.setVisible(True)
        self.image_arrow_head.setVisible(True)

    def fit_dock(self):
        """Widen the Analysis dock so that every shown column is on screen.

        The window's minimum sizes keep its XY view usable whatever this asks.
        """
        w = self.window
        dock = getattr(w, "analysis_dock", None)
        if dock is None or dock.isHidden() or dock.isFloating():
            return
        self.table.resizeColumnsToContents()
        need = sum(self.table.columnWidth(k) for k in range(self.table.columnCount())
                   if not self.table.isColumnHidden(k))
        need += 2 * self.table.frameWidth() + 24  # the frame, margins and a scroll bar
        if dock.width() < need:
            w.resizeDocks([dock], [need], Qt.Orientation.Horizontal)

    def set_arrow_shown(self, on: bool):
        """Show the reference arrow on the XY view (only while the Analysis dock is open)."""
        self._arrow_shown = bool(on)
        if not on:
            self.draw_button.setChecked(False)
        self._update_reference_arrow()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        # In a narrow dock the rose goes under the table, which then has the full width.
        narrow = self.width() < NARROW_PX
        self.split.setOrientation(Qt.Orientation.Vertical if narrow
                                  else Qt.Orientation.Horizontal)
        self._fit_table_height()

    def _fit_table_height(self):
        # Under the table, the rose gets the height the rows do not need.
        vertical = self.split.orientation() == Qt.Orientation.Vertical
        rows = max(len(self.rows), 1)
        need = (self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
                + rows * self.table.verticalHeader().defaultSectionSize()
                + self.table.horizontalScrollBar().sizeHint().height())
        self.table.setMaximumHeight(max(need, 80) if vertical else 16777215)

    # ------------------------------------------------------------------ drawing
    def _drawing_toggled(self, on):
        view = self._xy_view()
        if view is None:
            return
        if on:
            self._draw_view = view
            view.viewport().installEventFilter(self)
            view.viewport().setCursor(Qt.CursorShape.CrossCursor)
            self._message("Drag on the XY view from the tail to the head of the reference")
        else:
            view.viewport().removeEventFilter(self)
            view.viewport().unsetCursor()
            self._draw_view = self._draw_start = None

    def reference_from_drag(self, start, end):
        """Set the reference to the direction from ``start`` to ``end`` ((z, y, x) voxels).

        The angle is in µm on the xy plane (0° = right, 90° = up on screen).
        Returns it, or None (nothing set) for a drag shorter than a voxel.
        """
        vs = (self.window.voxel_size if self.window is not None else None) or (1.0, 1.0, 1.0)
        d = np.asarray(end, float) - np.asarray(start, float)
        if np.hypot(d[1], d[2]) < 1.0:
            return None
        angle = math.degrees(math.atan2(-d[1] * vs[1], d[2] * vs[2]))  # y points down
        self.set_reference(round(angle, 1))
        return self.reference_deg

    def eventFilter(self, obj, event):
        from PySide6.QtCore import QEvent

        view = self._draw_view
        if view is None or obj is not view.viewport():
            return super().eventFilter(obj, event)
        kind = event.type()
        if kind not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove,
                        QEvent.Type.MouseButtonRelease):
            return super().eventFilter(obj, event)
        if event.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton) or \
                (kind == QEvent.Type.MouseMove and self._draw_start is None):
            return super().eventFilter(obj, event)
        point = view.scene_to_point(view.mapToScene(event.position().toPoint()))
        if kind == QEvent.Type.MouseButtonPress:
            self._draw_start = point
        elif kind == QEvent.Type.MouseButtonRelease and self._draw_start is not None:
            start, self._draw_start = self._draw_start, None
            if self.reference_from_drag(start, point) is not None:
                self.draw_button.setChecked(False)
        return True  # the drag draws; it neither pans nor annotates

    # ------------------------------------------------------------------ report
    def export_report_dialog(self):
        start = self.window.last_dir if self.window is not None else ""
        folder = QFileDialog.getExistingDirectory(self, "Report folder", start)
        if folder:
            self.export_report(folder)

    def export_report(self, folder, *, n_bootstrap=1000, n_permutations=999) -> bool:
        """Write the vectors of the table's rows and run the analysis into ``folder``.

        The vector CSVs go to ``folder/vectors``; :func:`report_job` then writes
        ``summary_per_image.csv``, ``summary_per_condition.csv`` and the plots
        (see :mod:`cellpol_core.analysis.batch`) in the window's JobRunner.
        :attr:`last_report` holds the summary when it is done.

        Returns
        -------
        bool
            False (with a message) when there is nothing to analyse or another
            job is running.
        """
        from cellpol_core.io.vectors import write_vectors

        if self.window is not None:
            self.refresh()
        rows = [r for r in self.rows if r["table"] is not None and len(r["table"])]
        if not rows:
            self._message("No vectors to analyse")
            return False
        if self.window is None or self.window.job_running:
            self._message("Another job is running: wait for it or cancel it")
            return False
        folder = Path(folder)
        csvs, used = [], set()
        try:
            for r in rows:
                stem = _unique(_safe(r["name"]), used)
                path = folder / "vectors" / f"{stem}_vectors.csv"
                # The µm columns carry each image's voxel size to the analysis.
                write_vectors(path, r["table"], voxel_size=r["voxel_size"])
                csvs.append(path)
        except OSError as exc:
            self._message(f"{folder}: cannot write ({exc.strerror})", error=True)
            return False
        options = dict(outdir=folder, reference_deg=self.reference_deg, plane=self.plane,
                       n_bootstrap=int(n_bootstrap), n_permutations=int(n_permutations))
        self.last_report = None
        self._report_pending = folder
        if not self.window.start_job("Analysis", report_job, csvs, **options,
                                     on_result=self._report_done,
                                     on_finished=self._report_finished):
            self._report_pending = None
            return False
        return True

    def _report_done(self, summary):
        self.last_report = summary
        self._message(f"Report written to {self._report_pending} ({len(summary.files)} files)")

    def _report_finished(self):
        self._report_pending = None

    def _message(self, text, *, error=False):
        w = self.window
        if w is None:
            self.note.setText(text)
        elif error:
            w.show_error(text)
        else:
            w.show_message(text)


# ----------------------------------------------------------------------------- helpers

def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _unique(stem: str, used: set) -> str:
    out, k = stem, 2
    while out.casefold() in used:
        out, k = f"{stem}_{k}", k + 1
    used.add(out.casefold())
    return out


def _entry_voxel_size(entry):
    return tuple(entry.voxel_size) if entry.voxel_size is not None else (1.0, 1.0, 1.0)


def _project_table(project, entry, source):
    """The annotations or the latest prediction of a project image (None when absent/bad)."""
    from cellpol_core.io.vectors import read_vectors

    try:
        if source == "annotations":
            return project.load_annotations(entry)
        if entry.predictions:
            path = project.resolve(entry.predictions[-1])
            if path.is_file():
                return read_vectors(path)
    except (InputError, OSError):
        return None
    return None


def install_analysis_panel(window) -> AnalysisPanel:
    """Add the Analysis dock to an AnnotatorWindow, with its View and Jobs menu actions.

    Sets ``window.analysis_dock``, ``window.analysis_action`` (Jobs → Polarity
    statistics…) and returns the panel. The panel follows the annotations and
    the opened image while the dock is shown.
    """
    from .docks import install_dock

    panel = AnalysisPanel(window)
    dock, menus = install_dock(window, panel, title="Analysis", name="analysis",
                               view_text="&Analysis", scroll=True)  # a side tab
    window.analysis_dock = dock
    # No stale arrow once the dock is closed (a tab behind another still counts as open).
    dock.toggleViewAction().toggled.connect(panel.set_arrow_shown)
    action = QAction("Polarity &statistics…", window)
    action.triggered.connect(lambda: show_analysis(window))
    if "Jobs" in menus:
        menus["Jobs"].addSeparator()
        menus["Jobs"].addAction(action)
    window.analysis_action = action
    return panel


def show_analysis(window):
    """Show the Analysis dock and refresh it."""
    from .docks import show_dock

    show_dock(window.analysis_dock)
    window.analysis_panel.fit_dock()
