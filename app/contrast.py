"""Brightness and contrast of each channel: limits on a histogram, gamma, colour, visibility.

One :class:`ContrastPanel` drives the slice views and the 3D view together;
:func:`install_contrast_panel` puts it in a dock of the main window and saves
the settings in the project's image entry (``display`` and ``colors``), so an
image reopens as it was left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ChannelDisplay", "ChannelControls", "ContrastPanel", "install_contrast_panel",
           "histogram"]

#: Voxels sampled for a histogram (a regular subsample of bigger volumes).
HISTOGRAM_SAMPLES = 1_000_000
HISTOGRAM_BINS = 160


@dataclass
class ChannelDisplay:
    """How one channel is shown.

    Attributes
    ----------
    limits : (float, float) or None
        Contrast (low, high) in image intensities; None: automatic percentiles.
    gamma : float
        1 = linear; below 1 brightens dim structures.
    visible : bool
    """

    limits: Optional[tuple] = None
    gamma: float = 1.0
    visible: bool = True

    def to_dict(self) -> dict:
        return {"limits": None if self.limits is None else [float(v) for v in self.limits],
                "gamma": float(self.gamma), "visible": bool(self.visible)}

    @classmethod
    def from_dict(cls, d) -> "ChannelDisplay":
        """Parse :meth:`to_dict` output; raises ValueError/TypeError when malformed."""
        if not isinstance(d, dict):
            raise TypeError("not a mapping")
        limits = d.get("limits")
        if limits is not None:
            limits = tuple(float(v) for v in limits)
            if len(limits) != 2 or not all(np.isfinite(limits)) or limits[1] <= limits[0]:
                raise ValueError("limits must be two increasing numbers")
        gamma = float(d.get("gamma", 1.0))
        if not (np.isfinite(gamma) and gamma > 0):
            raise ValueError("gamma must be positive")
        return cls(limits, gamma, bool(d.get("visible", True)))


def histogram(volume, *, bins=HISTOGRAM_BINS, samples=HISTOGRAM_SAMPLES):
    """(centres, counts) of a volume's intensities, from at most ``samples`` voxels."""
    flat = np.asarray(volume).reshape(-1)
    step = max(1, int(np.ceil(flat.size / samples)))
    values = flat[::step].astype(np.float64, copy=False)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts


def _swatch(color: str) -> QIcon:
    pix = QPixmap(QSize(28, 16))
    pix.fill(QColor(color))
    return QIcon(pix)


class ChannelControls(QWidget):
    """Controls of one channel: visible, colour, histogram with draggable limits, gamma.

    Signals
    -------
    changed()
        Any setting changed (also while a limit is being dragged).
    committed()
        An edit is complete (a drag released, a value typed, a colour chosen).
    """

    changed = Signal()
    committed = Signal()

    def __init__(self, index: int, parent=None):
        super().__init__(parent)
        self.index = index
        self.color = "#ffffff"
        self.auto_limits = (0.0, 1.0)
        self._custom = False
        self._quiet = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        top = QHBoxLayout()
        self.visible_box = QCheckBox("channel")
        self.visible_box.setChecked(True)
        self.visible_box.setToolTip("Show or hide this channel in every view")
        self.visible_box.toggled.connect(self._edited)
        self.visible_box.setMinimumWidth(30)  # long channel names are cut, not widening
        self.color_button = QToolButton()
        self.color_button.setToolTip("Colour of this channel (click to choose)")
        self.color_button.setIconSize(QSize(28, 16))
        self.color_button.clicked.connect(self.choose_color)
        self.auto_button = QToolButton()
        self.auto_button.setText("Auto")
        self.auto_button.setToolTip("Automatic contrast (0.05–99.95 percentiles)")
        self.auto_button.clicked.connect(self.reset_limits)
        top.addWidget(self.visible_box, 1)
        top.addWidget(self.color_button)
        top.addWidget(self.auto_button)
        layout.addLayout(top)
        self.plot = pg.PlotWidget(background="#181818")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.hideAxis("left")
        self.plot.getAxis("bottom").setStyle(tickLength=-4, tickFont=self.font())
        self.plot.setFixedHeight(78)
        self.plot.setToolTip("Histogram (log counts): drag the edges of the band to set the "
                             "darkest and brightest intensities shown")
        self.curve = pg.PlotCurveItem(fillLevel=0.0)
        self.plot.addItem(self.curve)
        self.region = pg.LinearRegionItem(
            values=(0, 1), swapMode="block", brush=pg.mkBrush(255, 255, 255, 28),
            hoverBrush=pg.mkBrush(255, 255, 255, 50), pen=pg.mkPen(255, 255, 255, 210, width=2),
            hoverPen=pg.mkPen(255, 225, 40, 255, width=3))
        self.region.setZValue(10)
        self.region.sigRegionChanged.connect(self._region_moved)
        self.region.sigRegionChangeFinished.connect(lambda *_: self.committed.emit())
        self.plot.addItem(self.region)
        layout.addWidget(self.plot)
        row = QGridLayout()
        row.setHorizontalSpacing(4)
        self.min_spin, self.max_spin = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, text in ((self.min_spin, "min "), (self.max_spin, "max ")):
            spin.setPrefix(text)
            spin.setDecimals(1)
            spin.setRange(0.0, 65535.0)  # widened to the data in set_channel
            spin.setMinimumWidth(40)
            spin.setKeyboardTracking(False)
            spin.setToolTip(f"Intensity shown as {'black' if text == 'min ' else 'full colour'}")
            spin.valueChanged.connect(self._spin_edited)
        self.gamma_spin = QDoubleSpinBox()
        self.gamma_spin.setPrefix("γ ")
        self.gamma_spin.setRange(0.1, 5.0)
        self.gamma_spin.setSingleStep(0.1)
        self.gamma_spin.setValue(1.0)
        self.gamma_spin.setKeyboardTracking(False)
        self.gamma_spin.setMinimumWidth(40)
        self.gamma_spin.setToolTip("Gamma: below 1 brightens dim structures, above 1 darkens "
                                   "them")
        self.gamma_spin.valueChanged.connect(self._edited)
        row.addWidget(self.min_spin, 0, 0)
        row.addWidget(self.max_spin, 0, 1)
        row.addWidget(self.gamma_spin, 0, 2)
        layout.addLayout(row)

    # ------------------------------------------------------------------ state
    def set_channel(self, name: str, volume, auto_limits, color: Optional[str],
                    display: ChannelDisplay):
        """Show channel ``volume`` (its histogram) with ``display`` settings."""
        self._quiet = True
        try:
            self.visible_box.setText(name)
            x, counts = histogram(volume)
            self.auto_limits = tuple(float(v) for v in auto_limits)
            width = x[1] - x[0] if len(x) > 1 else 1.0
            edges = np.concatenate([x - width / 2, [x[-1] + width / 2]])
            self.curve.setData(edges, np.log10(counts + 1.0), stepMode="center")
            lo, hi = float(edges[0]), float(edges[-1])
            for spin in (self.min_spin, self.max_spin):
                spin.setRange(min(lo, self.auto_limits[0], 0.0),
                              max(hi, self.auto_limits[1]) * 1.5 + 1.0)
            self.plot.setXRange(min(lo, self.auto_limits[0]), max(hi, self.auto_limits[1]),
                                padding=0.02)
            self.color_button.setEnabled(color is not None)
            self.set_color(color or "#c8c8c8", emit=False)
            self._custom = display.limits is not None
            self._set_limits(display.limits or self.auto_limits)
            self.gamma_spin.setValue(display.gamma)
            self.visible_box.setChecked(display.visible)
        finally:
            self._quiet = False

    def display(self) -> ChannelDisplay:
        """The settings shown (limits None while automatic)."""
        return ChannelDisplay(self.limits if self._custom else None, self.gamma_spin.value(),
                              self.visible_box.isChecked())

    @property
    def limits(self) -> tuple:
        lo, hi = self.region.getRegion()
        return float(lo), float(hi)

    def set_limits(self, low: float, high: float):
        """Set the contrast limits (as a drag would) and commit."""
        self._custom = True
        self._set_limits((low, high))
        self.changed.emit()
        self.committed.emit()

    def reset_limits(self):
        """Back to the automatic limits."""
        self._custom = False
        self._set_limits(self.auto_limits)
        self.changed.emit()
        self.committed.emit()

    def _set_limits(self, limits):
        lo, hi = (float(v) for v in limits)
        quiet, self._quiet = self._quiet, True
        self.region.setRegion((lo, hi))
        self.min_spin.setValue(lo)
        self.max_spin.setValue(hi)
        self._quiet = quiet

    def set_color(self, color: str, *, emit=True):
        self.color = QColor(color).name()
        self.color_button.setIcon(_swatch(self.color))
        brush = QColor(self.color)
        brush.setAlpha(150)
        self.curve.setPen(pg.mkPen(self.color, width=1))
        self.curve.setBrush(brush)
        if emit:
            self.changed.emit()
            self.committed.emit()

    def choose_color(self):
        color = QColorDialog.getColor(QColor(self.color), self, "Channel colour")
        if color.isValid():
            self.set_color(color.name())

    # ------------------------------------------------------------------ edits
    def _region_moved(self, *_):
        if self._quiet:
            return
        self._custom = True
        lo, hi = self.limits
        quiet, self._quiet = self._quiet, True
        self.min_spin.setValue(lo)
        self.max_spin.setValue(hi)
        self._quiet = quiet
        self.changed.emit()

    def _spin_edited(self, *_):
        if self._quiet:
            return
        lo, hi = self.min_spin.value(), self.max_spin.value()
        if hi <= lo:
            return
        self._custom = True
        quiet, self._quiet = self._quiet, True
        self.region.setRegion((lo, hi))
        self._quiet = quiet
        self.changed.emit()
        self.committed.emit()

    def _edited(self, *_):
        if not self._quiet:
            self.changed.emit()
            self.committed.emit()


class ContrastPanel(QWidget):
    """Per-channel contrast controls of the open image (one or two channels).

    Signals
    -------
    channel_changed(int)
        Channel ``index``'s settings changed (apply them to the views).
    committed()
        An edit is complete (save it).
    """

    channel_changed = Signal(int)
    committed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.empty = QLabel("Open an image to adjust its contrast")
        layout.addWidget(self.empty)
        self.channels = [ChannelControls(k) for k in range(2)]
        for ctl in self.channels:
            ctl.changed.connect(lambda k=ctl.index: self.channel_changed.emit(k))
            ctl.committed.connect(self.committed.emit)
            ctl.setVisible(False)
            layout.addWidget(ctl)
        layout.addStretch(1)
        self.n_channels = 0
        self.setMinimumWidth(160)  # a narrow dock must not widen the window

    def minimumSizeHint(self):
        return QSize(160, super().minimumSizeHint().height())

    def set_image(self, planes, limits, names, colors, displays=None):
        """Show the (k, Z, Y, X) ``planes`` with automatic ``limits`` and saved ``displays``.

        Emits :attr:`channel_changed` for each channel, so the views take the settings.
        """
        self.n_channels = len(planes)
        self.empty.setVisible(False)
        for k, ctl in enumerate(self.channels):
            ctl.setVisible(k < self.n_channels)
            if k >= self.n_channels:
                continue
            display = displays[k] if displays is not None and k < len(displays) \
                else ChannelDisplay()
            color = colors[k] if self.n_channels == 2 and colors is not None else None
            ctl.set_channel(names[k], planes[k], limits[k], color, display)
        for k in range(self.n_channels):
            self.channel_changed.emit(k)

    def displays(self) -> list:
        return [ctl.display() for ctl in self.channels[:self.n_channels]]

    def colors(self) -> tuple:
        return tuple(ctl.color for ctl in self.channels[:2])


def install_contrast_panel(window) -> ContrastPanel:
    """Add the Contrast dock to an AnnotatorWindow and wire it to its views and project.

    Sets ``window.contrast_dock`` and returns the panel. The window calls
    :func:`show_image_contrast` once an image is shown.
    """
    from PySide6.QtWidgets import QDockWidget

    panel = ContrastPanel()
    dock = QDockWidget("Contrast", window)
    dock.setObjectName("contrast")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    if getattr(window, "view3d_dock", None) is not None:
        window.splitDockWidget(window.view3d_dock, dock, Qt.Orientation.Vertical)
    window.contrast_dock = dock
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()
             if a.menu() is not None}
    toggle = dock.toggleViewAction()
    toggle.setText("&Contrast")
    if "View" in menus:
        menus["View"].addAction(toggle)
    save_timer = QTimer(panel)
    save_timer.setSingleShot(True)
    save_timer.setInterval(400)  # one manifest write per burst of edits
    save_timer.timeout.connect(lambda: save_contrast(window))
    panel.committed.connect(save_timer.start)
    panel.channel_changed.connect(lambda k: apply_contrast(window, k))
    # The layer panel's start/end boxes and the contrast panel's are one setting.
    layers = getattr(window, "layer_panel", None)
    if layers is not None:
        for key, ctl in zip(("start", "end"), panel.channels):
            layers.boxes[key].toggled.connect(ctl.visible_box.setChecked)
            ctl.visible_box.toggled.connect(layers.boxes[key].setChecked)
    window.destroyed.connect(save_timer.stop)
    panel.save_timer = save_timer
    return panel


def show_image_contrast(window, loaded, entry=None):
    """Show ``loaded``'s channels in the window's contrast panel with ``entry``'s saved settings."""
    panel = window.contrast_panel
    panel.save_timer.stop()
    names = list(loaded.image.channel_names)
    labels = [names[c] if c < len(names) else f"C{c}" for c in loaded.channels]
    if len(labels) == 2:
        labels = [f"start: {labels[0]}", f"end: {labels[1]}"]
    displays = None
    if entry is not None and getattr(entry, "display", None):
        displays = [ChannelDisplay.from_dict(d) for d in entry.display]
    panel.set_image(loaded.planes, loaded.limits, labels, window.channel_colors, displays)


def apply_contrast(window, index: int):
    """Apply contrast panel channel ``index`` to the slice views, the 3D view and the legend."""
    panel = window.contrast_panel
    ctl = panel.channels[index]
    display = ctl.display()
    limits = display.limits if display.limits is not None else ctl.auto_limits
    ortho = window.ortho
    if display.limits is None:
        ortho.reset_limits(index)
    else:
        ortho.set_channel(index, limits=limits)
    ortho.set_channel(index, gamma=display.gamma, visible=display.visible)
    view3d = getattr(window, "view3d", None)
    if view3d is not None:
        view3d.set_channel(index, clim=limits, gamma=display.gamma, visible=display.visible)
    if panel.n_channels == 2:
        colors = list(window.channel_colors)
        if QColor(colors[index]).name() != ctl.color:
            colors[index] = ctl.color
            window.channel_colors = tuple(colors)
            ortho.set_channel(index, color=ctl.color)
            if view3d is not None:
                view3d.set_channel(index, color=ctl.color)
            if window.loaded is not None:
                window.legend.setText(window._legend_html())


def save_contrast(window) -> bool:
    """Write the contrast settings and colours into the project's entry of the open image."""
    project, entry = window.project, getattr(window, "project_entry", None)
    if project is None or entry is None or window.loaded is None:
        return False
    panel = window.contrast_panel
    entry.display = [d.to_dict() for d in panel.displays()]
    if panel.n_channels == 2:
        entry.colors = tuple(panel.colors())
    try:
        project.save()
    except OSError as exc:
        window.show_message(f"Contrast not saved: {project.manifest_path}: {exc.strerror}")
        return False
    return True
