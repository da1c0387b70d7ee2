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

__all__ = ["ChannelChoice", "ChannelDialog", "MetricsPanel"]


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
        self.setFixedWidth(70)
        self.clicked.connect(self._pick)
        self.set_color(color)

    def set_color(self, color: str):
        self.color = QColor(color).name()
        self.setText(self.color)
        self.setStyleSheet(f"background-color: {self.color}; color: black")

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
            spin_row.addWidget(spin)
            self.spins.append(spin)
        holder = QWidget()
        holder.setLayout(spin_row)
        form.addRow("Voxel size", holder)
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


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class MetricsPanel(QWidget):
    """TPR and FDR vs level curves (pyqtgraph) over a table of the evaluation rows.

    Shows an :class:`~cellpol_core.detection.evaluate.EvalResult` (or the ``table`` rows of a
    tuning report): one point per threshold level τ_L, L = 0 (loosest) … 13.
    """

    COLUMNS = ("level", "tau_start", "tau_end", "tp", "fp", "fn", "tpr", "fdr",
               "cs_mean", "error_mean")

    def __init__(self, parent=None):
        super().__init__(parent)
        import pyqtgraph as pg
        from PySide6.QtWidgets import QTableWidget, QVBoxLayout

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel("")
        layout.addWidget(self.title)
        self.plot = pg.PlotWidget(background="#101010")
        self.plot.setLabel("bottom", "level L (τ_L shrinks →)")
        self.plot.setLabel("left", "rate")
        self.plot.setYRange(0, 1.05)
        self.plot.addLegend(offset=(-10, 10))
        self.tpr_curve = self.plot.plot([], [], pen=pg.mkPen(80, 220, 120, width=2),
                                        symbol="o", symbolSize=6, name="TPR")
        self.fdr_curve = self.plot.plot([], [], pen=pg.mkPen(255, 110, 80, width=2),
                                        symbol="s", symbolSize=6, name="FDR")
        layout.addWidget(self.plot, 3)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table, 2)
        self.rows: list = []

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
                self.table.setItem(i, j, QTableWidgetItem(_cell(r.get(key))))
        self.table.resizeColumnsToContents()

    def set_result(self, result, *, title=""):
        """Show an :class:`~cellpol_core.detection.evaluate.EvalResult`."""
        self.set_rows(result.rows(), title=title)
