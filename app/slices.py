"""Three linked orthogonal slice views (XY, XZ, YZ) with pair annotation.

Layout: XY top left, YZ (z across, y down) on its right, XZ (x across, z down)
under it, so that each view shares an axis with its neighbour. One 3D cursor
drives the slices: clicking in a view moves the cursor there, which moves the
crosshair and the slices of the two other views. The mouse wheel steps the
slice of the view under the pointer; Ctrl+wheel zooms, dragging pans.

In annotation mode a left click places the start of a pair (a half-placed pair
shown as a ring), the next click its end, in any view and at any slice. With
snap on, each click moves to the brightest voxel of that structure's channel
within :attr:`OrthoViews.snap_radius_um` in 3D. Dragging an endpoint moves it.
Edits are pushed on a ``QUndoStack`` as :mod:`cellpol_app.commands`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QMenu,
    QSlider,
    QWidget,
)

from .arrows import COLOR_BY, ArrowsItem, arrow_colors, legend_size, paint_legend, zoom_scale
from .commands import AddPair, DeletePair, MovePoint  # also applies _pyside_fix
from .viewer import END_RGB, START_RGB, composite_rgb

__all__ = ["AXES", "SliceView", "OrthoViews", "LayerPanel", "fade_levels"]

#: (normal, horizontal, vertical) axes in (z, y, x) of each view.
AXES = {"xy": (0, 2, 1), "xz": (1, 2, 0), "yz": (2, 0, 1)}
SELECT_RGB = (255, 225, 40)
ALPHAS = (1.0, 0.6, 0.38, 0.22)


def fade_levels(a, b, s, *, window=3):
    """Fade level of segments a→b seen from slice ``s`` (0 = crossing it).

    Parameters
    ----------
    a, b : ndarray, shape (N,)
        Coordinates of the two ends along the view's normal axis.
    s : float
        The slice.
    window : int
        Levels above this are hidden.

    Returns
    -------
    index, level : ndarray of int
        Segments shown and their levels (rounded distance in slices).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    inside = (np.minimum(a, b) <= s + 0.5) & (s - 0.5 <= np.maximum(a, b))
    dist = np.where(inside, 0.0, np.minimum(np.abs(a - s), np.abs(b - s)))
    level = np.rint(dist).astype(int)
    keep = np.flatnonzero(level <= window)
    return keep, level[keep]


class _Markers(pg.ScatterPlotItem):
    """Endpoint markers that never take a click: a click on one still places a point."""

    def mouseClickEvent(self, ev):
        ev.ignore()


class _ViewBox(pg.ViewBox):
    """A ViewBox that lets its SliceView handle clicks, endpoint drags and the context menu."""

    def __init__(self, owner):
        super().__init__(invertY=True, enableMenu=False)  # the app's own menu instead
        self._owner = owner

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._owner._left_click(self.mapSceneToView(ev.scenePos()), select_only=shift)
            return
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            self._owner.show_context_menu(ev.scenePos(), ev.screenPos().toPoint())
            return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.MouseButton.LeftButton and self._owner._drag(ev):
            ev.accept()
            return
        super().mouseDragEvent(ev, axis)


class SliceView(pg.GraphicsLayoutWidget):
    """One slice view; :class:`OrthoViews` owns the state and does the drawing logic.

    Over the image it draws (also into grabs and exported PNGs) its name and
    slice (``"XY · z 24 / 47"``), a µm scale bar, and in the XY view the legend
    of the arrow colours and a hint while annotating.

    Parameters
    ----------
    name : str
        ``"xy"``, ``"xz"`` or ``"yz"``.
    """

    def __init__(self, name: str, ortho: "OrthoViews"):
        super().__init__()
        self.name = name
        self.normal, self.h_axis, self.v_axis = AXES[name]
        self.ortho = ortho
        self.setBackground("#101010")
        self.setAcceptDrops(False)  # drops go to the main window
        # Overlays are painted over the whole viewport: repaint it whole.
        self.setViewportUpdateMode(self.ViewportUpdateMode.FullViewportUpdate)
        self.view_box = _ViewBox(self)
        self.addItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setPos(-0.5, -0.5)  # voxel centres on integers
        self.view_box.addItem(self.image_item)
        pen = pg.mkPen(255, 255, 120, 110, width=1, style=Qt.PenStyle.DashLine)
        self.h_line = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        self.v_line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        for line in (self.h_line, self.v_line):
            line.setZValue(5)
            self.view_box.addItem(line, ignoreBounds=True)
        #: Arrows of each layer ("vectors" under "pairs").
        self.arrows = {layer: ArrowsItem() for layer in ("vectors", "pairs")}
        for z, item in enumerate(self.arrows.values()):
            item.setZValue(10 + 2 * z)
            self.view_box.addItem(item, ignoreBounds=True)
        self.dots = _Markers(pxMode=True, antialias=True)  # pairs
        self.dots.setZValue(20)
        self.vector_dots = _Markers(pxMode=True, antialias=True)
        self.vector_dots.setZValue(9)
        for item in (self.dots, self.vector_dots):
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.view_box.addItem(item, ignoreBounds=True)
        self.rgb: Optional[np.ndarray] = None
        self.menu: Optional[QMenu] = None
        self._dragging = None
        self._hover_pos = None  # scene position of the mouse while over the view
        self._zoom = None
        self.scene().sigMouseMoved.connect(self._hover)
        self.view_box.sigRangeChanged.connect(self._range_changed)
        self.viewport().installEventFilter(self)

    # ------------------------------------------------------------------ coordinates
    @property
    def slice(self) -> int:
        return int(self.ortho.cursor[self.normal])

    def to_point(self, h: float, v: float, *, slice_=None) -> np.ndarray:
        """3D (z, y, x) point of view position (h, v) on this view's slice."""
        p = np.zeros(3)
        p[self.normal] = self.slice if slice_ is None else slice_
        p[self.h_axis], p[self.v_axis] = h, v
        return p

    def to_view(self, points) -> tuple:
        """(h, v) view coordinates of (N, 3) points."""
        points = np.asarray(points, float).reshape(-1, 3)
        return points[:, self.h_axis], points[:, self.v_axis]

    def scene_to_point(self, scene_pos) -> np.ndarray:
        pos = self.view_box.mapSceneToView(scene_pos)
        return self.to_point(pos.x(), pos.y())

    def view_to_widget(self, point):
        """Widget (viewport) position of a 3D point, for tests and tools."""
        h, v = self.to_view(point)
        scene = self.view_box.mapViewToScene(pg.Point(float(h[0]), float(v[0])))
        return self.mapFromScene(scene)

    def pixel_distance(self, point, points) -> np.ndarray:
        """Screen distance in pixels from ``point`` to (N, 3) ``points`` in this view."""
        pw, ph = self.view_box.viewPixelSize()
        h0, v0 = self.to_view(point)
        h, v = self.to_view(points)
        return np.hypot((h - h0[0]) / max(pw, 1e-12), (v - v0[0]) / max(ph, 1e-12))

    # ------------------------------------------------------------------ mouse
    def _left_click(self, view_pos, *, select_only=False):
        self.ortho._clicked(self, self.to_point(view_pos.x(), view_pos.y()),
                            select_only=select_only)

    def _drag(self, ev) -> bool:
        if ev.isStart():
            self._dragging = self.ortho._drag_begin(self, self.scene_to_point(
                ev.buttonDownScenePos()))
        if self._dragging is None:
            return False
        self.ortho._drag_move(self, self._dragging, self.scene_to_point(ev.scenePos()))
        if ev.isFinish():
            self._dragging = None
        return True

    def _hover(self, scene_pos):
        self._hover_pos = pg.Point(scene_pos)
        self.refresh_hover()

    def refresh_hover(self):
        """Say again what is under the mouse (after the slice or the zoom changed)."""
        if self.ortho.planes is not None and self._hover_pos is not None:
            self.ortho.hovered.emit(self.scene_to_point(self._hover_pos), self.name)

    def leaveEvent(self, event):
        self._hover_pos = None
        super().leaveEvent(event)

    def _range_changed(self, *args):
        # Zoom: markers are resized; pan or zoom: the point under the mouse changed.
        zoom = self.pixels_per_voxel()
        if self._zoom is None or abs(zoom - self._zoom) > 1e-3 * max(zoom, 1e-9):
            self._zoom = zoom
            self.ortho.update_overlays((self.name,))
        self.refresh_hover()

    def pixels_per_voxel(self) -> float:
        """Screen pixels per voxel along the horizontal axis (the zoom)."""
        pw, _ = self.view_box.viewPixelSize()
        return 1.0 / max(pw, 1e-12)

    # ------------------------------------------------------------------ overlays
    def slice_label(self, *, short=False) -> str:
        """``"XY · z 24 / 47"``: the view and its (0-based) slice of the highest index.

        ``short``: ``"XY z24"``, for narrow views.
        """
        ortho = self.ortho
        title = self.name.upper()
        if ortho.planes is None:
            return title
        if self.name == "xy" and not ortho.is_3d:
            return title
        axis = "zyx"[self.normal]
        if self.name == "xy" and ortho.mip:
            return f"{title} MIP" if short else \
                f"{title} · max projection of {ortho.shape[0]} slices"
        if short:
            return f"{title} {axis}{self.slice}"
        return f"{title} · {axis} {self.slice} / {ortho.shape[self.normal] - 1}"

    def scale_bar(self):
        """(length in µm, or voxels when uncalibrated; length in pixels; text) of the bar."""
        um_per_voxel = self.ortho.voxel_size[self.h_axis] if self.ortho.calibrated else 1.0
        unit = "µm" if self.ortho.calibrated else "px"
        um_per_px = um_per_voxel / self.pixels_per_voxel()
        target = 0.22 * max(self.viewport().width(), 1) * um_per_px
        exponent = np.floor(np.log10(max(target, 1e-9)))
        length = max(m * 10 ** exponent for m in (1, 2, 5) if m * 10 ** exponent <= target)
        text = f"{length:g} {unit}"
        return float(length), float(length / um_per_px), text

    def legend_entries(self) -> tuple:
        """Sources of the arrows drawn in this view (for the legend)."""
        out = []
        for layer, source in (("pairs", "annotation"), ("vectors", "prediction")):
            if len(self.arrows[layer]):
                out.append(source)
        return tuple(out)

    def hint(self) -> str:
        """What a click does now (XY view, annotation mode), else ``""``."""
        ortho = self.ortho
        if self.name != "xy" or not ortho.annotate or ortho.model is None:
            return ""
        if ortho.model.pending_start is not None:
            return "Click the end of the pair · Esc cancels"
        return "Annotating: click the start of a pair · Shift+click selects"

    def drawForeground(self, painter, rect):
        super().drawForeground(painter, rect)
        if self.ortho.planes is None:
            return
        painter.save()
        # Draw in viewport pixels.
        painter.setTransform(self.viewportTransform().inverted()[0], True)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        width, height = self.viewport().width(), self.viewport().height()
        font = QFont(painter.font())
        font.setPointSizeF(9.0)
        font.setBold(True)
        painter.setFont(font)
        metrics = QFontMetrics(font)
        label = self.slice_label()
        if metrics.horizontalAdvance(label) + 20 > width:
            label = self.slice_label(short=True)
        box = QRectF(4, 4, metrics.horizontalAdvance(label) + 12, metrics.height() + 4)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 160))
        painter.drawRoundedRect(box, 3, 3)
        painter.setPen(QColor(240, 240, 240))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, label)
        # Scale bar, bottom right.
        _, bar_px, text = self.scale_bar()
        font.setBold(False)
        painter.setFont(font)
        tw = metrics.horizontalAdvance(text)
        right, bottom = width - 10, height - 10
        back = QRectF(right - max(bar_px, tw) - 8, bottom - metrics.height() - 14,
                      max(bar_px, tw) + 14, metrics.height() + 20)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 140))
        painter.drawRoundedRect(back, 3, 3)
        painter.setBrush(QColor(255, 255, 255))
        painter.drawRect(QRectF(right - bar_px, bottom - 4, bar_px, 4))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(QRectF(right - max(bar_px, tw), bottom - metrics.height() - 8,
                                max(bar_px, tw), metrics.height()),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, text)
        if self.name == "xy":
            entries = self.legend_entries()
            mode = self.ortho.color_by
            if entries:
                size = legend_size(mode, entries)
                paint_legend(painter, QRectF(width - size.width() - 6, 6, size.width(),
                                             size.height()), mode, entries)
            hint = self.hint()
            if hint:
                hw = metrics.horizontalAdvance(hint) + 14
                hbox = QRectF(6, height - metrics.height() - 12, hw, metrics.height() + 6)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor(20, 20, 20, 200))
                painter.drawRoundedRect(hbox, 3, 3)
                painter.setPen(QColor(255, 225, 40))
                painter.drawText(hbox, Qt.AlignmentFlag.AlignCenter, hint)
        painter.restore()

    # ------------------------------------------------------------------ context menu
    def context_menu(self, point) -> QMenu:
        """The right-click menu at 3D ``point``: the app's actions, not pyqtgraph's."""
        ortho = self.ortho
        menu = QMenu(self)
        menu.addAction("Reset view (F)", ortho.fit)
        menu.addAction("Centre views here", lambda: ortho.centre_on(point))
        menu.addSeparator()
        mode = menu.addAction("Annotation mode (A)")
        mode.setCheckable(True)
        mode.setChecked(ortho.annotate)
        mode.triggered.connect(lambda on: ortho.annotate_requested.emit(bool(on)))
        hit = ortho.pick(self.name, point)
        select = menu.addAction("Select pair under cursor",
                                lambda: ortho.select(hit[0]) if hit else None)
        delete = menu.addAction("Delete pair under cursor",
                                lambda: ortho.delete_pair(hit[0]) if hit else None)
        for action in (select, delete):
            action.setEnabled(hit is not None and ortho.stack is not None)
        pending = ortho.model is not None and ortho.model.pending_start is not None
        cancel = menu.addAction("Cancel half-placed pair (Esc)", ortho.cancel_pending)
        cancel.setEnabled(pending)
        menu.addSeparator()
        menu.addAction("Export views as PNG…", lambda: ortho.export_requested.emit())
        return menu

    def show_context_menu(self, scene_pos, screen_pos):
        if self.ortho.planes is None:
            return
        if self.menu is not None:
            self.menu.deleteLater()
        self.menu = self.context_menu(self.scene_to_point(scene_pos))
        self.menu.popup(screen_pos)

    def eventFilter(self, obj, event):
        if (event.type() == QEvent.Type.Wheel and obj is self.viewport()
                and not event.modifiers() & Qt.KeyboardModifier.ControlModifier):
            steps = event.angleDelta().y()
            if steps and self.ortho.planes is not None:
                self.ortho.step_slice(self.name, 1 if steps > 0 else -1)
            return True
        return super().eventFilter(obj, event)


class OrthoViews(QWidget):
    """XY, XZ and YZ views of a (k, Z, Y, X) volume with a shared 3D cursor.

    Signals
    -------
    cursor_changed(object)
        The new (z, y, x) cursor (ints).
    hovered(object, str)
        The 3D point under the mouse and the view name.
    selection_changed(object)
        The selected pair id, or None.
    annotate_requested(bool)
        The context menu's "Annotation mode" was toggled.
    export_requested()
        The context menu's "Export views as PNG…" was chosen.
    color_by_changed(str)
        Arrows are now coloured by ``"source"``, ``"score"`` or ``"angle"``.
    """

    cursor_changed = Signal(object)
    hovered = Signal(object, str)
    selection_changed = Signal(object)
    annotate_requested = Signal(bool)
    export_requested = Signal()
    color_by_changed = Signal(str)

    #: Pick distance for endpoints, in screen pixels.
    pick_pixels = 8.0
    #: Endpoints further than this (in slices) from a view's slice cannot be picked there.
    pick_slices = 1.5
    #: Overlays are drawn up to this many slices away, fading.
    fade_window = 3
    #: Screen size of the ring of a half-placed pair at the base zoom.
    pending_size = 14

    def __init__(self, parent=None):
        super().__init__(parent)
        self.planes: Optional[np.ndarray] = None
        self.limits = None
        self.mip_planes = None
        self.mip_limits = None
        self.voxel_size = (1.0, 1.0, 1.0)
        #: Whether the voxel size is known (else the scale bar counts pixels).
        self.calibrated = False
        #: Gamma of each channel's contrast (1 = linear).
        self.gammas = [1.0, 1.0]
        self._custom_limits = [False, False]  # set by the user: also used for the MIP
        #: Colour arrows by "source", "score" or "angle".
        self.color_by = "source"
        self.cursor = np.zeros(3, dtype=int)
        self.mip = False
        self.model = None
        self.stack = None
        self.vectors = None
        self.show_pairs = True
        self.show_vectors = True
        #: Vectors scored below this are hidden.
        self.min_score = 0.0
        self._annotate = False
        self.snap = False
        self.snap_radius_um = 1.5
        #: (r, g, b) 0-255 colours of the start and end channels; None: green and red.
        self.colors = None
        #: Display weight of the start and end channels (0 hides one).
        self.channel_opacity = [1.0, 1.0]
        self._channel_state = [[True, 1.0], [True, 1.0]]  # (visible, opacity) per channel
        self.layer_opacity = {"pairs": 1.0, "vectors": 1.0}
        self.selected: Optional[int] = None
        self._drag_origin = None
        self._drag_count = 0
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self.views = {name: SliceView(name, self) for name in ("xy", "yz", "xz")}
        layout.addWidget(self.views["xy"], 0, 0)
        layout.addWidget(self.views["yz"], 0, 1)
        layout.addWidget(self.views["xz"], 1, 0)
        self._layout = layout

    # ------------------------------------------------------------------ data
    @property
    def annotate(self) -> bool:
        """Annotation mode: clicks place pairs."""
        return self._annotate

    @annotate.setter
    def annotate(self, on):
        self._annotate = bool(on)
        self.views["xy"].viewport().update()  # its hint

    @property
    def is_3d(self) -> bool:
        return self.planes is not None and self.planes.shape[1] > 1

    @property
    def shape(self) -> tuple:
        return tuple(self.planes.shape[1:]) if self.planes is not None else (0, 0, 0)

    def set_volume(self, planes, limits, *, voxel_size=None, mip=None, mip_limits=None):
        """Show a (k, Z, Y, X) volume (k = 1 grey or 2 start/end) and centre the cursor."""
        self.planes = np.asarray(planes)
        self.limits = np.asarray(limits, float)
        self.mip_planes = mip
        self.mip_limits = mip_limits
        self.voxel_size = tuple(float(v) for v in voxel_size) if voxel_size else (1.0, 1.0, 1.0)
        self.calibrated = voxel_size is not None
        self.gammas = [1.0, 1.0]
        self._custom_limits = [False, False]
        self.auto_limits = self.limits.copy()
        self.cursor = np.array(self.shape) // 2
        self.selected = None
        vz, vy, vx = sizes = self.voxel_size
        for view in self.views.values():
            # Screen pixels per horizontal voxel over per vertical voxel.
            view.view_box.setAspectLocked(True, ratio=sizes[view.h_axis] / sizes[view.v_axis])
        for name in ("xz", "yz"):
            self.views[name].setVisible(self.is_3d)
        # Split the space in proportion to the extents in µm (Z at least 18 %).
        nz, ny, nx = self.shape
        ex, ey, ez = nx * vx, ny * vy, max(nz * vz, 0.18 * max(nx * vx, ny * vy))
        if self.is_3d:
            self._layout.setColumnStretch(0, int(1000 * ex / (ex + ez)))
            self._layout.setColumnStretch(1, int(1000 * ez / (ex + ez)))
            self._layout.setRowStretch(0, int(1000 * ey / (ey + ez)))
            self._layout.setRowStretch(1, int(1000 * ez / (ey + ez)))
        else:
            for i in (0, 1):
                self._layout.setColumnStretch(i, 1 - i)
                self._layout.setRowStretch(i, 1 - i)
        self._render(("xy", "xz", "yz"))
        self._update_crosshair()
        self.fit()
        self.cursor_changed.emit(tuple(int(c) for c in self.cursor))

    def set_model(self, model, stack):
        """Annotate into ``model`` (an AnnotationModel) with undo ``stack``."""
        self.model = model
        self.stack = stack
        model.add_listener(self._model_changed)
        self.update_overlays()

    def set_vectors(self, table):
        """Read-only vectors (predictions or a reference) drawn in blue; None clears."""
        self.vectors = table
        self.update_overlays()

    def set_colors(self, colors):
        """Colours of the start and end channels (``#rrggbb`` or 0-255 RGB); None: default."""
        from PySide6.QtGui import QColor

        if colors is not None:
            colors = [QColor(c).getRgb()[:3] if isinstance(c, str) else tuple(c)[:3]
                      for c in colors]
            if [tuple(c) for c in colors] == [START_RGB, END_RGB]:
                colors = None
        self.colors = colors
        self._render(("xy", "xz", "yz"))

    def set_mip(self, on: bool):
        """Maximum projection along Z in the XY view."""
        on = bool(on) and self.mip_planes is not None and self.is_3d
        if on != self.mip:
            self.mip = on
            self._render(("xy",))

    # ------------------------------------------------------------------ cursor
    def set_cursor(self, point):
        """Move the 3D cursor (clipped to the volume); re-slices the views that change."""
        if self.planes is None:
            return
        new = np.clip(np.rint(np.asarray(point, float)).astype(int), 0, np.array(self.shape) - 1)
        changed = [name for name, view in self.views.items()
                   if new[view.normal] != self.cursor[view.normal]]
        moved = not np.array_equal(new, self.cursor)
        self.cursor = new
        self._render(changed)
        self._update_crosshair()
        if moved:
            for name in changed:
                self.views[name].refresh_hover()  # a new slice under a still mouse
            self.cursor_changed.emit(tuple(int(c) for c in new))

    def step_slice(self, name: str, step: int):
        """Move the slice of view ``name`` by ``step``."""
        p = self.cursor.copy()
        p[self.views[name].normal] += int(step)
        self.set_cursor(p)

    def centre_on(self, point):
        """Set the cursor to ``point`` and pan every view to centre it (zoom kept)."""
        self.set_cursor(point)
        p = np.asarray(point, float)
        for view in self.views.values():
            (x0, x1), (y0, y1) = view.view_box.viewRange()
            h, v = p[view.h_axis], p[view.v_axis]
            view.view_box.translateBy(x=h - (x0 + x1) / 2, y=v - (y0 + y1) / 2)

    def fit(self):
        """Show whole slices in every view."""
        if self.planes is None:
            return
        for view in self.views.values():
            nh, nv = self.shape[view.h_axis], self.shape[view.v_axis]
            view.view_box.setRange(QRectF(-0.5, -0.5, nh, nv), padding=0.02)

    # ------------------------------------------------------------------ rendering
    def plane(self, name: str):
        """(k, rows, cols) raw data shown by view ``name`` and its contrast limits."""
        view = self.views[name]
        if name == "xy":
            if self.mip:
                limits = np.array([self.limits[k] if self._custom_limits[k] else lim
                                   for k, lim in enumerate(np.asarray(self.mip_limits, float))])
                return self.mip_planes, limits
            return self.planes[:, self.cursor[0]], self.limits
        if name == "xz":
            return self.planes[:, :, self.cursor[1], :], self.limits
        return np.swapaxes(self.planes[:, :, :, view.slice], 1, 2), self.limits

    def _render(self, names):
        if self.planes is None:
            return
        for name in names:
            view = self.views[name]
            if name != "xy" and not self.is_3d:
                continue
            planes, limits = self.plane(name)
            gammas = None if all(g == 1.0 for g in self.gammas) else self.gammas
            if self.colors is not None and len(planes) == 2:
                view.rgb = composite_rgb(planes, limits, colors=self.colors,
                                         weights=self.channel_opacity, gammas=gammas)
            else:
                view.rgb = composite_rgb(planes, limits, gammas=gammas)
            if self.colors is None and self.channel_opacity != [1.0, 1.0]:
                view.rgb = self._weigh_channels(view.rgb, len(planes))
            view.image_item.setImage(view.rgb, levels=(0, 255), autoLevels=False)
        self.update_overlays()

    def _weigh_channels(self, rgb, n_channels):
        out = rgb.astype(np.float32)
        if n_channels == 1:
            out *= self.channel_opacity[0]
        else:
            out[..., 1] *= self.channel_opacity[0]  # start: green
            out[..., 0] *= self.channel_opacity[1]  # end: red
        return (out + 0.5).astype(np.uint8)

    def set_channel(self, index: int, *, visible=None, opacity=None, limits=None, gamma=None,
                    color=None):
        """Change how channel 0 (start) or 1 (end) is shown.

        Parameters
        ----------
        visible : bool, optional
            Hiding keeps the opacity, so showing again restores it.
        opacity : float, optional
            Display weight in [0, 1].
        limits : (low, high), optional
            Contrast limits in image intensities (also used for the projection).
        gamma : float, optional
            Contrast gamma (1 = linear).
        color : str or (r, g, b), optional
            ``#rrggbb`` or 0-255 colour of the channel.
        """
        state = self._channel_state[index]
        if visible is not None:
            state[0] = bool(visible)
        if opacity is not None:
            state[1] = float(np.clip(opacity, 0.0, 1.0))
        if limits is not None and self.limits is not None and index < len(self.limits):
            lo, hi = (float(v) for v in limits)
            self.limits = self.limits.copy()
            self.limits[index] = (lo, max(hi, lo + 1e-6))
            self._custom_limits[index] = True
        if gamma is not None:
            self.gammas[index] = float(gamma)
        self.channel_opacity = [st[1] if st[0] else 0.0 for st in self._channel_state]
        if color is not None:
            colors = list(self.colors) if self.colors is not None else [START_RGB, END_RGB]
            colors[index] = color
            self.set_colors(colors)  # renders
            return
        self._render(("xy", "xz", "yz"))

    def reset_limits(self, index: int):
        """Automatic contrast limits for channel ``index`` (those the volume came with)."""
        if self.limits is None or index >= len(self.limits):
            return
        self.limits = self.limits.copy()
        self.limits[index] = self.auto_limits[index]
        self._custom_limits[index] = False
        self._render(("xy", "xz", "yz"))

    def set_layer(self, layer: str, *, visible=None, opacity=None):
        """Show/hide or fade the ``"pairs"`` or ``"vectors"`` overlay."""
        if visible is not None:
            if layer == "pairs":
                self.show_pairs = bool(visible)
            else:
                self.show_vectors = bool(visible)
        if opacity is not None:
            self.layer_opacity[layer] = float(np.clip(opacity, 0.0, 1.0))
            for view in self.views.values():
                dots = view.dots if layer == "pairs" else view.vector_dots
                for item in (view.arrows[layer], dots):
                    item.setOpacity(self.layer_opacity[layer])
        self.update_overlays()

    def _update_crosshair(self):
        for view in self.views.values():
            view.v_line.setPos(float(self.cursor[view.h_axis]))
            view.h_line.setPos(float(self.cursor[view.v_axis]))

    def _model_changed(self):
        if self.selected is not None and self.model is not None and \
                self.selected not in self.model.ids:
            self.select(None)
        self.update_overlays()

    def visible(self, name: str, layer: str):
        """What view ``name`` draws of ``layer`` (``"pairs"`` or ``"vectors"``).

        Returns
        -------
        ids : ndarray
            Pair ids (pairs) or row indices (vectors) of the segments drawn.
        level : ndarray
            Their fade levels (0 = crossing the slice).
        """
        start, end, ids = self._layer_points(layer)
        if len(start) == 0:
            return np.zeros(0, int), np.zeros(0, int)
        view = self.views[name]
        if name == "xy" and (self.mip or not self.is_3d):
            return ids, np.zeros(len(ids), int)
        index, level = fade_levels(start[:, view.normal], end[:, view.normal], view.slice,
                                   window=self.fade_window)
        return ids[index], level

    def _layer_points(self, layer):
        if layer == "pairs":
            if self.model is None or not self.show_pairs or len(self.model) == 0:
                return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, int)
            pairs = list(self.model)
            return (np.array([p.start for p in pairs]), np.array([p.end for p in pairs]),
                    np.array([p.id for p in pairs]))
        if self.vectors is None or not self.show_vectors or len(self.vectors) == 0:
            return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, int)
        if self.vectors.score is not None and self.min_score > 0:
            keep = np.flatnonzero(self.vectors.score >= self.min_score)
            return self.vectors.start[keep], self.vectors.end[keep], keep
        return self.vectors.start, self.vectors.end, np.arange(len(self.vectors))

    def set_min_score(self, value: float):
        """Hide vectors whose score is below ``value``."""
        self.min_score = float(value)
        self.update_overlays()

    def set_color_by(self, mode: str):
        """Colour arrows by ``"source"`` (annotation/prediction), ``"score"`` or ``"angle"``."""
        if mode not in COLOR_BY:
            raise ValueError(f"colour mode must be one of {COLOR_BY}, got {mode!r}")
        if mode != self.color_by:
            self.color_by = mode
            self.update_overlays()
            self.color_by_changed.emit(mode)

    def arrow_rgba(self, layer: str, rows) -> np.ndarray:
        """0-255 RGBA colours (before fading) of rows ``rows`` of ``layer``."""
        start, end, _ = self._layer_points(layer)
        rows = np.asarray(rows, int)
        n = len(rows)
        if layer == "pairs":
            sources, scores = ["annotation"] * n, np.ones(n)
        else:
            sources = ["prediction"] * n
            score = self.vectors.score if self.vectors is not None else None
            scores = np.ones(n) if score is None else np.asarray(score, float)[
                self._vector_rows(rows)]
        rgba = arrow_colors(self.color_by, start[rows], end[rows], sources, scores,
                            voxel_size=self.voxel_size if self.calibrated else None)
        return (rgba * 255 + 0.5).astype(int)

    def _vector_rows(self, rows):
        # Rows of _layer_points("vectors") -> rows of the vector table.
        _, _, ids = self._layer_points("vectors")
        return ids[rows]

    def update_overlays(self, names=None):
        """Redraw pairs, vectors, the half-placed pair and the selection (in views ``names``)."""
        if self.planes is None:
            return
        for name in (names or tuple(self.views)):
            self._draw_overlays(name)

    def _draw_overlays(self, name):
        view = self.views[name]
        scale = zoom_scale(view.pixels_per_voxel())
        layer_spots = {"vectors": [], "pairs": []}
        for layer in ("vectors", "pairs"):
            spots = layer_spots[layer]
            start, end, all_ids = self._layer_points(layer)
            ids, level = self.visible(name, layer)
            pos = {int(i): k for k, i in enumerate(all_ids)}
            rows = np.array([pos[int(i)] for i in ids], dtype=int)
            order = np.argsort(-level, kind="stable")  # faint (far) arrows first
            rows, level = rows[order], level[order]
            rgba = self.arrow_rgba(layer, rows) if len(rows) else np.zeros((0, 4), int)
            rgba[:, 3] = (rgba[:, 3] * np.asarray(ALPHAS)[level]).astype(int)
            widths = np.ones(len(rows))
            if layer == "pairs" and self.selected is not None and len(rows):
                chosen = all_ids[rows] == self.selected
                rgba[chosen] = (*SELECT_RGB, 255)
                widths[chosen] = 1.6
                # The selection on top.
                top = np.argsort(chosen, kind="stable")
                rows, level, rgba, widths = rows[top], level[top], rgba[top], widths[top]
            if len(rows):
                hs, vs = view.to_view(start[rows])
                he, ve = view.to_view(end[rows])
                view.arrows[layer].set_arrows(np.c_[hs, vs], np.c_[he, ve], rgba, widths)
            else:
                view.arrows[layer].set_arrows(np.zeros((0, 2)), np.zeros((0, 2)),
                                              np.zeros((0, 4)))
            small = layer == "vectors"
            for points, rgb in ((start, START_RGB), (end, END_RGB)):
                for r, lv in zip(rows, level):
                    lv_pt = self._point_level(view, points[r], name)
                    lv_pt = lv if lv_pt is None else lv_pt
                    if lv_pt > self.fade_window:
                        continue
                    a = ALPHAS[lv_pt]
                    chosen = layer == "pairs" and all_ids[r] == self.selected
                    h, v = view.to_view(points[r])
                    edge = SELECT_RGB if chosen else (255, 255, 255)
                    size = (5 if small else 7) + (2 if chosen else 0) + (1 if lv_pt == 0 else 0)
                    spots.append({
                        "pos": (h[0], v[0]), "size": size * scale,
                        "brush": pg.mkBrush(*rgb, int(255 * a)),
                        "pen": pg.mkPen(*edge, int((120 if small else 230) * a),
                                        width=2 if chosen else 1.2)})
        pending = None if self.model is None else self.model.pending_start
        if pending is not None:
            lv = self._point_level(view, pending, name)
            if lv is None or lv <= self.fade_window:
                h, v = view.to_view(pending)
                a = ALPHAS[lv or 0]
                layer_spots["pairs"].append({
                    "pos": (h[0], v[0]), "size": self.pending_size * scale, "symbol": "o",
                    "brush": pg.mkBrush(*START_RGB, int(90 * a)),
                    "pen": pg.mkPen(*START_RGB, int(255 * a), width=2.5)})
        view.dots.setData(layer_spots["pairs"])
        view.vector_dots.setData(layer_spots["vectors"])
        view.viewport().update()

    def _point_level(self, view, point, name):
        if name == "xy" and (self.mip or not self.is_3d):
            return None
        return int(np.rint(abs(point[view.normal] - view.slice)))

    # ------------------------------------------------------------------ annotation
    def select(self, pair_id):
        """Select a pair (None clears)."""
        pair_id = None if pair_id is None else int(pair_id)
        if pair_id != self.selected:
            self.selected = pair_id
            self.update_overlays()
            self.selection_changed.emit(pair_id)

    def pick(self, name: str, point, *, pixels=None):
        """The (pair id, ``"start"``/``"end"``) nearest ``point`` in view ``name``, or None."""
        if self.model is None or len(self.model) == 0 or not self.show_pairs:
            return None
        view = self.views[name]
        flat = name == "xy" and (self.mip or not self.is_3d)
        best, best_d = None, self.pick_pixels if pixels is None else pixels
        for pair in self.model:
            for which in ("start", "end"):
                p = pair.point(which)
                if not flat and abs(p[view.normal] - view.slice) > self.pick_slices:
                    continue
                d = float(view.pixel_distance(point, p[None])[0])
                if d <= best_d:
                    best, best_d = (pair.id, which), d
        return best

    def snap_point(self, point, which: str) -> np.ndarray:
        """``point`` moved to the local maximum of the start or end channel (if snapping)."""
        from .annotations import snap_to_maximum

        if not self.snap or self.planes is None:
            return np.asarray(point, float)
        channel = 0 if which == "start" or len(self.planes) == 1 else 1
        radius = [self.snap_radius_um / v for v in self.voxel_size]
        if not self.is_3d:
            radius[0] = 0.5
        return snap_to_maximum(self.planes[channel], point, radius=radius)

    def _clip(self, point):
        return np.clip(np.asarray(point, float), 0, np.array(self.shape) - 1)

    def _clicked(self, view, point, *, select_only=False):
        if self.planes is None:
            return
        flat = view.name == "xy" and self.mip
        if flat:  # a click on a projection has no depth: keep the cursor's
            point = point.copy()
            point[0] = self.cursor[0]
        pending = None if self.model is None else self.model.pending_start
        if not self.annotate or self.model is None or (select_only and pending is None):
            hit = self.pick(view.name, point)
            self.select(hit[0] if hit else None)
            if not self.annotate:
                self.set_cursor(point)
            return
        # Annotating, a click always places a point, even on a marker: the end of a
        # pair is often a few pixels from its start. Shift+click selects instead.
        point = self._clip(point)
        if pending is None:
            self.model.set_pending(self.snap_point(point, "start"))
            self.select(None)
        else:
            end = self.snap_point(point, "end")
            command = AddPair(self.model, pending, end)
            self.model.pending_start = None  # the command's change redraws without it
            self.stack.push(command)
            self.select(command.pair_id)

    def cancel_pending(self):
        if self.model is not None and self.model.pending_start is not None:
            self.model.set_pending(None)

    def delete_pair(self, pair_id) -> bool:
        """Delete pair ``pair_id`` (one undo step)."""
        if self.model is None or self.stack is None or pair_id not in self.model.ids:
            return False
        self.stack.push(DeletePair(self.model, int(pair_id)))
        return True

    def delete_selected(self) -> bool:
        if self.selected is None or self.model is None:
            return False
        self.stack.push(DeletePair(self.model, self.selected))
        return True

    def _drag_begin(self, view, point):
        if not self.annotate or self.model is None or self.stack is None:
            return None
        hit = self.pick(view.name, point)
        if hit is None:
            return None
        self.select(hit[0])
        self._drag_origin = self.model.get(hit[0]).point(hit[1])[view.normal]
        self._drag_count += 1
        return hit

    def _drag_move(self, view, hit, point):
        # The endpoint stays at its depth; only the in-plane coordinates follow the mouse.
        point = self._clip(point)
        point[view.normal] = self._drag_origin
        self.stack.push(MovePoint(self.model, hit[0], hit[1], point,
                                  drag=("drag", self._drag_count)))


class LayerPanel(QWidget):
    """Visibility and opacity of the start/end channels and the pairs/vectors overlays.

    Parameters
    ----------
    ortho : OrthoViews
        The views it controls.
    """

    LAYERS = (("start", "channel", 0), ("end", "channel", 1),
              ("pairs", "layer", "pairs"), ("vectors", "layer", "vectors"))

    def __init__(self, ortho: OrthoViews, parent=None):
        super().__init__(parent)
        self.ortho = ortho
        self.boxes = {}
        self.sliders = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(1)
        for row, (key, kind, target) in enumerate(self.LAYERS):
            box = QCheckBox(key)
            box.setChecked(True)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, 100)
            slider.setValue(100)
            slider.setToolTip(f"Opacity of {key}")
            setter = ortho.set_channel if kind == "channel" else ortho.set_layer
            box.toggled.connect(lambda on, s=setter, t=target: s(t, visible=on))
            slider.valueChanged.connect(lambda v, s=setter, t=target: s(t, opacity=v / 100))
            grid.addWidget(box, row, 0)
            grid.addWidget(slider, row, 1)
            self.boxes[key], self.sliders[key] = box, slider
        self.score_label = QLabel("min score 0.00")
        self.score_slider = QSlider(Qt.Orientation.Horizontal)
        self.score_slider.setRange(0, 100)
        self.score_slider.setToolTip("Hide vectors scored below this")
        self.score_slider.valueChanged.connect(self._score_changed)
        grid.addWidget(self.score_label, len(self.LAYERS), 0)
        grid.addWidget(self.score_slider, len(self.LAYERS), 1)
        self.color_combo = QComboBox()
        self.color_combo.addItems(["by source", "by score", "by angle"])
        self.color_combo.setToolTip("Colour of the arrows: source (white annotations, blue "
                                    "predictions), score, or direction in XY")
        self.color_combo.currentIndexChanged.connect(lambda i: ortho.set_color_by(COLOR_BY[i]))
        ortho.color_by_changed.connect(
            lambda mode: self.color_combo.setCurrentIndex(COLOR_BY.index(mode)))
        grid.addWidget(QLabel("arrows"), len(self.LAYERS) + 1, 0)
        grid.addWidget(self.color_combo, len(self.LAYERS) + 1, 1)

    def _score_changed(self, value):
        self.score_label.setText(f"min score {value / 100:.2f}")
        self.ortho.set_min_score(value / 100)

    def set_channel_names(self, start: str, end: str):
        self.boxes["start"].setText(f"start: {start}")
        self.boxes["end"].setText(f"end: {end}")
