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
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QSlider, QWidget

from .commands import AddPair, DeletePair, MovePoint  # also applies _pyside_fix
from .viewer import END_RGB, START_RGB, composite_rgb

__all__ = ["AXES", "SliceView", "OrthoViews", "LayerPanel", "fade_levels"]

#: (normal, horizontal, vertical) axes in (z, y, x) of each view.
AXES = {"xy": (0, 2, 1), "xz": (1, 2, 0), "yz": (2, 0, 1)}
SELECT_RGB = (255, 225, 40)
VECTOR_RGB = (80, 200, 255)
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


class _ViewBox(pg.ViewBox):
    """A ViewBox that lets its SliceView handle left clicks and endpoint drags."""

    def __init__(self, owner):
        super().__init__(invertY=True, enableMenu=True)
        self._owner = owner

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._owner._left_click(self.mapSceneToView(ev.scenePos()))
            return
        super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.MouseButton.LeftButton and self._owner._drag(ev):
            ev.accept()
            return
        super().mouseDragEvent(ev, axis)


class SliceView(pg.GraphicsLayoutWidget):
    """One slice view; :class:`OrthoViews` owns the state and does the drawing logic.

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
        self.lines = {}
        for layer, rgb, width in (("vectors", VECTOR_RGB, 1.2), ("pairs", (255, 255, 255), 1.6)):
            items = []
            for level, alpha in enumerate(ALPHAS):
                item = pg.PlotCurveItem(pen=pg.mkPen(*rgb, int(235 * alpha), width=width),
                                        shadowPen=pg.mkPen(0, 0, 0, int(190 * alpha),
                                                           width=width + 2),
                                        connect="pairs", antialias=True)
                item.setZValue(10 + len(ALPHAS) - level)
                self.view_box.addItem(item, ignoreBounds=True)
                items.append(item)
            self.lines[layer] = items
        self.selected_line = pg.PlotCurveItem(pen=pg.mkPen(*SELECT_RGB, 255, width=2.4),
                                              connect="pairs", antialias=True)
        self.selected_line.setZValue(19)
        self.view_box.addItem(self.selected_line, ignoreBounds=True)
        self.dots = pg.ScatterPlotItem(pxMode=True, antialias=True)  # pairs
        self.dots.setZValue(20)
        self.view_box.addItem(self.dots, ignoreBounds=True)
        self.vector_dots = pg.ScatterPlotItem(pxMode=True, antialias=True)
        self.vector_dots.setZValue(9)
        self.view_box.addItem(self.vector_dots, ignoreBounds=True)
        self.rgb: Optional[np.ndarray] = None
        self._dragging = None
        self.scene().sigMouseMoved.connect(self._hover)
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
    def _left_click(self, view_pos):
        self.ortho._clicked(self, self.to_point(view_pos.x(), view_pos.y()))

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
        if self.ortho.planes is not None:
            self.ortho.hovered.emit(self.scene_to_point(scene_pos), self.name)

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
    """

    cursor_changed = Signal(object)
    hovered = Signal(object, str)
    selection_changed = Signal(object)

    #: Pick distance for endpoints, in screen pixels.
    pick_pixels = 8.0
    #: Endpoints further than this (in slices) from a view's slice cannot be picked there.
    pick_slices = 1.5
    #: Overlays are drawn up to this many slices away, fading.
    fade_window = 3

    def __init__(self, parent=None):
        super().__init__(parent)
        self.planes: Optional[np.ndarray] = None
        self.limits = None
        self.mip_planes = None
        self.mip_limits = None
        self.voxel_size = (1.0, 1.0, 1.0)
        self.cursor = np.zeros(3, dtype=int)
        self.mip = False
        self.model = None
        self.stack = None
        self.vectors = None
        self.show_pairs = True
        self.show_vectors = True
        #: Vectors scored below this are hidden.
        self.min_score = 0.0
        self.annotate = False
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
                return self.mip_planes, self.mip_limits
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
            if self.colors is not None and len(planes) == 2:
                view.rgb = composite_rgb(planes, limits, colors=self.colors,
                                         weights=self.channel_opacity)
            else:
                view.rgb = composite_rgb(planes, limits)
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

    def set_channel(self, index: int, *, visible=None, opacity=None):
        """Show/hide (``visible``) or weigh (``opacity`` in [0, 1]) channel 0 (start) or 1 (end).

        Hiding keeps the opacity, so showing again restores it.
        """
        state = self._channel_state[index]
        if visible is not None:
            state[0] = bool(visible)
        if opacity is not None:
            state[1] = float(np.clip(opacity, 0.0, 1.0))
        self.channel_opacity = [st[1] if st[0] else 0.0 for st in self._channel_state]
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
                items = list(view.lines[layer])
                items += [view.dots, view.selected_line] if layer == "pairs" \
                    else [view.vector_dots]
                for item in items:
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

    def update_overlays(self):
        """Redraw pairs, vectors, the half-placed pair and the selection in every view."""
        if self.planes is None:
            return
        for name, view in self.views.items():
            layer_spots = {"vectors": [], "pairs": []}
            for layer in ("vectors", "pairs"):
                spots = layer_spots[layer]
                start, end, all_ids = self._layer_points(layer)
                ids, level = self.visible(name, layer)
                pos = {int(i): k for k, i in enumerate(all_ids)}
                rows = np.array([pos[int(i)] for i in ids], dtype=int)
                for lv, item in enumerate(view.lines[layer]):
                    sel = rows[level == lv]
                    if layer == "pairs" and self.selected is not None:
                        sel = sel[all_ids[sel] != self.selected]
                    self._set_segments(view, item, start[sel], end[sel])
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
                        spots.append({
                            "pos": (h[0], v[0]),
                            "size": (5 if small else 8) + (2 if chosen else 0) + (
                                1 if lv_pt == 0 else 0),
                            "brush": pg.mkBrush(*rgb, int(255 * a)),
                            "pen": pg.mkPen(*edge, int((120 if small else 230) * a),
                                            width=2 if chosen else 1.2)})
            sel_pair = None
            if self.selected is not None and self.model is not None and self.show_pairs:
                sel_pair = self.model.get(self.selected)
            if sel_pair is not None:
                self._set_segments(view, view.selected_line, sel_pair.start[None],
                                   sel_pair.end[None])
            else:
                view.selected_line.setData([], [])
            pending = None if self.model is None else self.model.pending_start
            if pending is not None:
                lv = self._point_level(view, pending, name)
                if lv is None or lv <= self.fade_window:
                    h, v = view.to_view(pending)
                    a = ALPHAS[lv or 0]
                    layer_spots["pairs"].append({
                        "pos": (h[0], v[0]), "size": 16, "symbol": "o",
                        "brush": pg.mkBrush(*START_RGB, int(90 * a)),
                        "pen": pg.mkPen(*START_RGB, int(255 * a), width=2.5)})
            view.dots.setData(layer_spots["pairs"])
            view.vector_dots.setData(layer_spots["vectors"])

    def _point_level(self, view, point, name):
        if name == "xy" and (self.mip or not self.is_3d):
            return None
        return int(np.rint(abs(point[view.normal] - view.slice)))

    @staticmethod
    def _set_segments(view, item, start, end):
        if len(start) == 0:
            item.setData([], [])
            return
        hs, vs = view.to_view(start)
        he, ve = view.to_view(end)
        h = np.empty(2 * len(start))
        v = np.empty(2 * len(start))
        h[0::2], h[1::2], v[0::2], v[1::2] = hs, he, vs, ve
        item.setData(h, v)

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

    def _clicked(self, view, point):
        if self.planes is None:
            return
        flat = view.name == "xy" and self.mip
        if flat:  # a click on a projection has no depth: keep the cursor's
            point = point.copy()
            point[0] = self.cursor[0]
        hit = self.pick(view.name, point)
        pending = None if self.model is None else self.model.pending_start
        if not self.annotate or self.model is None:
            self.select(hit[0] if hit else None)
            self.set_cursor(point)
            return
        if pending is None and hit is not None:
            self.select(hit[0])
            return
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

    def _score_changed(self, value):
        self.score_label.setText(f"min score {value / 100:.2f}")
        self.ortho.set_min_score(value / 100)

    def set_channel_names(self, start: str, end: str):
        self.boxes["start"].setText(f"start: {start}")
        self.boxes["end"].setText(f"end: {end}")
