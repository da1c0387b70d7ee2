"""Dialogs and panels of the desktop app.

The channel dialog shown when an image is opened, and the metrics panel of the
evaluate and tune jobs (TPR and FDR vs level curves over the metrics table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from .project import DEFAULT_COLORS

__all__ = ["ChannelChoice", "ChannelDialog", "MetricsPanel", "color_name", "evaluation_summary",
           "tune_report_html", "format_number"]

#: Colour names offered for a channel colour (the nearest is shown instead of a hex code).
COLOR_NAMES = {
    "green": (0, 200, 0), "red": (230, 30, 30), "blue": (40, 80, 255), "cyan": (0, 220, 230),
    "magenta": (230, 0, 230), "yellow": (240, 230, 0), "orange": (255, 140, 0),
    "white": (255, 255, 255), "grey": (128, 128, 128), "purple": (128, 40, 200),
    "pink": (255, 140, 190), "black": (0, 0, 0),
}


def color_name(color) -> str:
    """A word for ``color`` (a QColor or ``#rrggbb``): the nearest of :data:`COLOR_NAMES`."""
    rgb = np.asarray(QColor(color).getRgb()[:3], dtype=float)
    names = list(COLOR_NAMES)
    d = [np.sum((rgb - np.asarray(COLOR_NAMES[n], float)) ** 2) for n in names]
    return names[int(np.argmin(d))]


def format_number(value, digits=3) -> str:
    """A number as people read it: ``0.727`` rather than ``0.7272727272727273``, ``7`` for 7.0.

    None, NaN and infinities are "–".
    """
    if value is None or isinstance(value, str):
        return "–" if value is None else value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    v = float(value)
    if not np.isfinite(v):
        return "–"
    if v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    if abs(v) >= 1e6 or abs(v) < 10.0 ** -digits:
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


@dataclass
class ChannelChoice:
    """What the channel dialog decided.

    Attributes
    ----------
    channels : (int, int)
        0-based (start, end) channels.
    colors : (str, str)
        ``#rrggbb`` colours of the start and end channels.
    voxel_size : (float, float, float) or None
        (z, y, x) µm; None when unknown.
    """

    channels: tuple
    colors: tuple = DEFAULT_COLORS
    voxel_size: Optional[tuple] = None


class _ColorButton(QPushButton):
    """A button showing a colour; clicking opens a colour picker."""

    def __init__(self, color: str, parent=None):
        super().__init__(parent)
        self.setMinimumWidth(90)
        self.clicked.connect(self._pick)
        self.set_color(color)

    def set_color(self, color: str):
        from PySide6.QtGui import QIcon, QPixmap

        self.color = QColor(color).name()
        swatch = QPixmap(14, 14)
        swatch.fill(QColor(self.color))
        self.setIcon(QIcon(swatch))
        self.setText(color_name(self.color))  # a word, not a hex code
        self.setToolTip(f"Colour of this channel: {color_name(self.color)} (click to choose)")

    def _pick(self):
        chosen = QColorDialog.getColor(QColor(self.color), self, "Channel colour")
        if chosen.isValid():
            self.set_color(chosen.name())


class ChannelDialog(QDialog):
    """Choose the start and end channels, their colours and the voxel size.

    Parameters
    ----------
    image : CellImage
        The image being opened (channel names, dimensionality, metadata voxel size).
    channels : (int, int), optional
        Pre-selected (start, end); (0, 1) by default.
    colors : (str, str)
        Pre-selected colours (green start, red end by default).
    voxel_size : (z, y, x), optional
        Pre-filled voxel size; the image's metadata when None.
    """

    def __init__(self, image, *, channels=None, colors=DEFAULT_COLORS, voxel_size=None,
                 parent=None):
        super().__init__(parent)
        self.setWindowTitle("Channels and voxel size")
        self.is_3d = bool(image.is_3d)
        names = list(image.channel_names)
        names += [f"C{i}" for i in range(len(names), image.n_channels)]
        labels = [n if n == f"C{i}" else f"{n} (C{i})" for i, n in enumerate(names)]
        channels = tuple(channels) if channels is not None else (0, min(1, image.n_channels - 1))
        form = QFormLayout(self)
        name = getattr(image, "path", None)
        if name is not None:
            form.addRow(QLabel(f"<b>{name.name}</b>"))
        self.start_combo, self.end_combo = QComboBox(), QComboBox()
        self.start_color, self.end_color = (_ColorButton(colors[0]), _ColorButton(colors[1]))
        for combo, color, index, title in ((self.start_combo, self.start_color, channels[0],
                                            "Start structure"),
                                           (self.end_combo, self.end_color, channels[1],
                                            "End structure")):
            combo.addItems(labels)
            combo.setCurrentIndex(int(index))
            combo.setToolTip(f"The channel showing the {title.lower()} (e.g. "
                             + ("the nucleus)" if title.startswith("Start") else "the Golgi)"))
            combo.currentIndexChanged.connect(self._validate)
            row = QHBoxLayout()
            row.addWidget(combo, 1)
            row.addWidget(color)
            holder = QWidget()
            holder.setLayout(row)
            row.setContentsMargins(0, 0, 0, 0)
            form.addRow(title, holder)

        meta = voxel_size if voxel_size is not None else image.voxel_size
        self.known_box = QCheckBox("Voxel size known")
        self.known_box.setChecked(meta is not None)
        self.known_box.setToolTip("Unchecked: distances stay in voxels (no µm)")
        form.addRow(self.known_box)
        self.spins = []
        spin_row = QHBoxLayout()
        spin_row.setContentsMargins(0, 0, 0, 0)
        for axis, value in zip("zyx", meta if meta is not None else (1.0, 1.0, 1.0)):
            spin = QDoubleSpinBox()
            spin.setDecimals(4)
            spin.setRange(0.0001, 1000.0)
            spin.setSingleStep(0.01)
            spin.setValue(float(value))
            spin.setPrefix(f"{axis} ")
            spin.setSuffix(" µm")
            spin.setToolTip(f"Size of a voxel along {axis}, micrometres")
            spin.setVisible(self.is_3d or axis != "z")  # 2D images have no z step
            spin_row.addWidget(spin)
            self.spins.append(spin)
        holder = QWidget()
        holder.setLayout(spin_row)
        form.addRow("Voxel size" if self.is_3d else "Pixel size", holder)
        self.source_label = QLabel("from the file's metadata" if image.voxel_size is not None
                                   and voxel_size is None else
                                   "not in the file: enter it" if image.voxel_size is None
                                   else "")
        self.source_label.setStyleSheet("color: gray")
        form.addRow("", self.source_label)
        self.known_box.toggled.connect(self._validate)
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #d04040")
        form.addRow(self.error_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setToolTip(
            "Show the image with these channels")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip(
            "Keep the image shown now")
        form.addRow(self.buttons)
        self._validate()

    def _validate(self):
        for k, spin in enumerate(self.spins):
            # 2D images have no z step.
            spin.setEnabled(self.known_box.isChecked() and (self.is_3d or k > 0))
        same = self.start_combo.currentIndex() == self.end_combo.currentIndex() \
            and self.start_combo.count() > 1
        self.error_label.setText("Start and end must be different channels" if same else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not same)

    def choice(self) -> ChannelChoice:
        """The current selection."""
        vs = None
        if self.known_box.isChecked():
            vs = tuple(float(s.value()) for s in self.spins)
            if not self.is_3d:
                vs = (1.0,) + vs[1:]
        return ChannelChoice((self.start_combo.currentIndex(), self.end_combo.currentIndex()),
                             (self.start_color.color, self.end_color.color), vs)


#: (key of an evaluation row, header, tooltip) of the metrics table.
METRIC_COLUMNS = (
    ("level", "level", "0 = loosest match, 13 = strictest"),
    ("tau_start", "start within", "Largest distance between an annotated and a predicted start "
                                  "point that still matches (µm, or pixels)"),
    ("tau_end", "end within", "Largest distance between the end points that still matches"),
    ("tp", "found", "True positives: annotated pairs the prediction found"),
    ("fp", "false", "False positives: predicted pairs with no annotated pair"),
    ("fn", "missed", "False negatives: annotated pairs not found"),
    ("tpr", "found %", "Recall (TPR): found / annotated"),
    ("fdr", "false %", "False discovery rate (FDR): false / predicted"),
    ("cs_mean", "direction agreement", "Mean cosine between annotated and predicted vectors "
                                       "(1 = same direction)"),
    ("error_mean", "vector error", "Mean length of the difference of the vectors (µm)"),
)
#: Margin around the annotations' bounding box when evaluating inside it, µm.
REGION_MARGIN_UM = 10.0
REGION_MODES = (
    ("annotated", "Annotated region"),
    ("image", "Whole image"),
)


def _cell(key, value) -> str:
    if value is not None and key in ("tpr", "fdr"):
        return f"{100 * float(value):.0f}"
    if value is not None and key in ("tau_start", "tau_end", "error_mean"):
        return f"{float(value):.1f}"
    return format_number(value)


def evaluation_summary(result, *, border_um, margin_um=None) -> str:
    """What an evaluation counted and what it assumed, in words (HTML)."""
    unit = "µm" if result.unit == "um" else "px"
    f1 = result.f1(5)
    lv = result.levels[5]
    parts = [f"{result.g} annotated, {result.p} predicted pairs compared. At level 5 "
             f"(start within {format_number(lv.tau_start, 1)} {unit}, end within "
             f"{format_number(lv.tau_end, 1)} {unit}): found {lv.tp}, missed {lv.fn}, "
             f"false {lv.fp}; F1 {'–' if f1 is None else f'{f1:.2f}'}."]
    if result.region is not None:
        margin = "" if margin_um is None else f" plus {format_number(margin_um)} {unit}"
        parts.append(f"<br><i>Assumed:</i> every cell inside the annotations' bounding box"
                     f"{margin} is annotated; outside it nothing is ({result.pred_outside} "
                     f"predicted and {result.gt_outside} annotated pairs left out).")
    else:
        parts.append("<br><i>Assumed:</i> the annotations are complete: every predicted pair "
                     "that matches none counts as false.")
    excluded = result.gt_excluded + result.pred_excluded
    if border_um > 0:
        parts.append(f" Pairs with an end within {format_number(border_um)} {unit} of the "
                     f"image edge are left out ({excluded}).")
    return "".join(parts)


def tune_report_html(report) -> str:
    """A tuning report (:func:`cellpol_core.detection.tune.tune`) in words."""
    t = report["thresholds"]
    lv = report["level"]
    row = next((r for r in report["table"] if r["level"] == lv), {})

    def pair(values, unit=""):
        return f"{format_number(values[0], 2)} / {format_number(values[1], 2)}{unit}"

    if not report.get("embedding", True):
        pairing = "by distance only"
    elif t.get("embed_weight") is None:
        pairing = (f"by the learned cell identity, greedily (margin "
                   f"{format_number(t['delta'], 2)})")
    elif not t.get("embed_weight"):
        pairing = "by distance only (cell identity not used)"
    else:
        pairing = (f"by distance and cell identity (identity weight "
                   f"{format_number(t['embed_weight'], 2)}, margin "
                   f"{format_number(t['delta'], 2)})")
    rates = ""
    if row:
        rates = (f" (found {_cell('tpr', row.get('tpr'))} %, false "
                 f"{_cell('fdr', row.get('fdr'))} %)")
    lines = [
        f"<b>Tuned on {report['n_images']} image(s)</b>, for the best F1 at level {lv}: "
        f"F1 {report['f1_before']:.2f} → {report['f1_after']:.2f}{rates}",
        f"Detection threshold (start / end): {pair(t['tau'])}",
        f"Smallest distance between two detections (start / end): "
        f"{pair(t['d_min_um'], ' µm')}",
        f"Longest pair: {format_number(t['d_max_um'], 2)} µm",
        f"Pairing: {pairing}",
    ]
    return "<br>".join(lines)


class MetricsPanel(QWidget):
    """TPR and FDR vs level curves (pyqtgraph) over a table of the evaluation rows.

    Shows an :class:`~cellpol_core.detection.evaluate.EvalResult` (or the ``table`` rows of a
    tuning report): one point per threshold level τ_L, L = 0 (loosest) … 13. Above
    them, what to evaluate against: inside the annotated region (partial
    annotations) or the whole image, and an Evaluate button (``evaluate_requested``).
    """

    COLUMNS = tuple(c[0] for c in METRIC_COLUMNS)

    def __init__(self, parent=None):
        super().__init__(parent)
        import pyqtgraph as pg
        from PySide6.QtWidgets import QTableWidget, QVBoxLayout

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.region_row = QWidget()
        row = QHBoxLayout(self.region_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.region_combo = QComboBox()
        for key, text in REGION_MODES:
            self.region_combo.addItem(text, key)
        self.region_combo.setToolTip(
            "Inside the annotated region: only pairs inside the box around your annotations "
            "(plus the margin) count, for images annotated in part. Whole image: every "
            "prediction without an annotated pair counts as false.")
        self.margin_spin = QDoubleSpinBox()
        self.margin_spin.setRange(0.0, 500.0)
        self.margin_spin.setDecimals(1)
        self.margin_spin.setValue(REGION_MARGIN_UM)
        self.margin_spin.setSuffix(" µm")
        self.margin_spin.setPrefix("+ ")
        self.margin_spin.setToolTip("Margin added around the annotations' bounding box")
        self.region_combo.currentIndexChanged.connect(
            lambda _: self.margin_spin.setEnabled(self.region_mode() == "annotated"))
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Compare the shown predictions with the annotations "
                                        "(Ctrl+E)")
        row.addWidget(self.region_combo, 1)
        row.addWidget(self.margin_spin)
        row.addWidget(self.evaluate_button)
        layout.addWidget(self.region_row)
        self.title = QLabel("")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.plot = pg.PlotWidget(background="#101010")
        self.plot.setLabel("bottom", "level (stricter →)")
        self.plot.setLabel("left", "fraction")
        self.plot.setYRange(0, 1.05)
        self.plot.addLegend(offset=(-10, 10))
        self.tpr_curve = self.plot.plot([], [], pen=pg.mkPen(80, 220, 120, width=2),
                                        symbol="o", symbolSize=6, name="found")
        self.fdr_curve = self.plot.plot([], [], pen=pg.mkPen(255, 110, 80, width=2),
                                        symbol="s", symbolSize=6, name="false")
        self.plot.setMinimumHeight(90)
        layout.addWidget(self.plot, 3)
        self.table = QTableWidget(0, len(METRIC_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in METRIC_COLUMNS])
        for k, (_, _, tip) in enumerate(METRIC_COLUMNS):
            self.table.horizontalHeaderItem(k).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table, 2)
        self.rows: list = []

    def region_mode(self) -> str:
        """``"annotated"`` or ``"image"``."""
        return self.region_combo.currentData()

    def set_region_mode(self, mode: str):
        self.region_combo.setCurrentIndex([k for k, _ in REGION_MODES].index(mode))

    def set_tuning(self, on: bool):
        """A tuning report has no region to choose."""
        self.region_row.setVisible(not on)

    def header(self, column: int) -> str:
        return self.table.horizontalHeaderItem(column).text()

    def set_rows(self, rows, *, title=""):
        """Show evaluation rows (dicts with the ``CSV_COLUMNS`` keys of ``evaluate``)."""
        from PySide6.QtWidgets import QTableWidgetItem

        self.rows = [dict(r) for r in rows]
        self.title.setText(title)
        levels = [int(r["level"]) for r in self.rows]

        def series(key):
            return [np.nan if r.get(key) is None else float(r[key]) for r in self.rows]

        # NaN (no TP+FN or no prediction) leaves a gap rather than a fake 0.
        self.tpr_curve.setData(levels, series("tpr"), connect="finite")
        self.fdr_curve.setData(levels, series("fdr"), connect="finite")
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            for j, key in enumerate(self.COLUMNS):
                self.table.setItem(i, j, QTableWidgetItem(_cell(key, r.get(key))))
        self.table.resizeColumnsToContents()

    def set_result(self, result, *, title=""):
        """Show an :class:`~cellpol_core.detection.evaluate.EvalResult`."""
        self.set_tuning(False)
        self.set_rows(result.rows(), title=title)
