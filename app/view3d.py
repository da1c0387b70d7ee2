"""A vispy 3D view of the two channels, the annotated pairs and the predicted vectors.

The start and end channels are two ``Volume`` visuals blended additively
(green and red by default), each with its own contrast limits, gamma and
visibility, rendered as a maximum projection (MIP) or translucent. The scene
is in µm: each volume is scaled by its voxel size, so anisotropic stacks keep
their true proportions. Big volumes are max-pooled to at most
:attr:`View3D.max_texture` voxels per axis for the GPU texture (small spots
survive max pooling; a strided subsample would drop them).

Pairs and vectors are drawn as a marker on each start centroid and an arrow to
the end centroid, coloured by source (annotation or prediction), by score, or
by angle in the XY plane.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QVBoxLayout,
    QWidget,
)

from . import _pyside_fix
from .arrows import COLOR_BY, SOURCE_RGB, LegendWidget, arrow_colors

_pyside_fix.apply()

__all__ = ["View3D", "downsample_max", "SOURCE_RGBA", "hex_to_rgb"]

#: Marker/arrow colours by source (as in the slice views).
SOURCE_RGBA = {k: tuple(c / 255.0 for c in rgb) + (1.0,) for k, rgb in SOURCE_RGB.items()}
METHODS = ("mip", "translucent")


def hex_to_rgb(color) -> tuple:
    """``"#rrggbb"`` (or an RGB tuple of 0-255 ints) as floats in [0, 1]."""
    if isinstance(color, str):
        c = color.lstrip("#")
        if len(c) != 6:
            raise ValueError(f"not a #rrggbb colour: {color!r}")
        return tuple(int(c[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    return tuple(float(v) / 255.0 for v in color[:3])


def downsample_max(volume, *, max_size=256):
    """Max-pool a (Z, Y, X) volume so no axis exceeds ``max_size``.

    Returns
    -------
    out : ndarray, float32
        The pooled volume.
    factors : tuple of int
        Pooling factor per axis (z, y, x); 1 where the axis already fits.
    """
    volume = np.asarray(volume)
    factors = tuple(max(1, math.ceil(n / max_size)) for n in volume.shape)
    if factors == (1, 1, 1):
        return volume.astype(np.float32, copy=False), factors
    pad = [(0, (-n) % f) for n, f in zip(volume.shape, factors)]
    if any(p[1] for p in pad):
        volume = np.pad(volume, pad, mode="edge")
    nz, ny, nx = (n // f for n, f in zip(volume.shape, factors))
    fz, fy, fx = factors
    pooled = volume.reshape(nz, fz, ny, fy, nx, fx).max(axis=(1, 3, 5))
    return pooled.astype(np.float32, copy=False), factors


def _colormap(rgb):
    from vispy.color import Colormap

    r, g, b = rgb
    return Colormap([(0.0, 0.0, 0.0, 0.0), (r, g, b, 1.0)])


class View3D(QWidget):
    """3D view: additive channel volumes, pair/vector markers and arrows, controls.

    The channels' contrast, gamma, colour and visibility are set from outside
    (:meth:`set_channel`; the window's Contrast panel drives them together with
    the slice views).

    Parameters
    ----------
    max_texture : int
        Largest volume texture side; bigger volumes are max-pooled.

    Signals
    -------
    color_by_changed(str)
        Arrows are now coloured by ``"source"``, ``"score"`` or ``"angle"``.
    """

    max_texture = 256
    color_by_changed = Signal(str)

    def __init__(self, parent=None, *, max_texture: Optional[int] = None):
        super().__init__(parent)
        import vispy
        from vispy import scene
        from vispy.visuals.transforms import STTransform

        vispy.use(app="pyside6")
        if max_texture is not None:
            self.max_texture = int(max_texture)
        self.canvas = scene.SceneCanvas(keys=None, bgcolor="#101010", show=False,
                                        size=(400, 400))
        self.canvas.native.setMinimumSize(100, 100)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(fov=30, elevation=35, azimuth=-35)
        # Image axes: y down and z = 0 on top, as in the slice views (a rotation by
        # 180° about x, so handedness is kept and nothing is mirrored).
        self.root = scene.Node(parent=self.view.scene)
        self.root.transform = STTransform(scale=(1.0, -1.0, -1.0))
        self.box = scene.visuals.Line(parent=self.root, color=(0.55, 0.55, 0.55, 0.6),
                                      connect="segments")
        self.volumes: list = []
        self.colors = [(0.24, 0.9, 0.24), (1.0, 0.24, 0.24)]
        self.clims: list = []
        self.gammas = [1.0, 1.0]
        self.visible = [True, True]
        self.method = "mip"
        self.color_by = "source"
        self.voxel_size = (1.0, 1.0, 1.0)
        self.factors = (1, 1, 1)
        self.shape = (0, 0, 0)
        self.show_layer = {"pairs": True, "vectors": True}
        self._pairs = None  # (start, end) arrays
        self._vectors = None  # VectorTable
        self.min_score = 0.0
        self.markers = scene.visuals.Markers(parent=self.root)
        self.arrows = scene.visuals.Arrow(parent=self.root, connect="segments",
                                          width=1.5, arrow_type="triangle_30", arrow_size=7)
        for visual in (self.markers, self.arrows):
            visual.set_gl_state("translucent", depth_test=False)
            visual.order = 10  # over the volumes
        #: Per-endpoint colours of the drawn markers (for tests and tools).
        self.marker_colors = np.zeros((0, 4), np.float32)
        self.marker_sources: list = []
        self._auto_frame = True
        self.canvas.events.resize.connect(self._canvas_resized)
        self.canvas.events.mouse_press.connect(self._user_moved)
        self.canvas.events.mouse_wheel.connect(self._user_moved)
        self._build_controls()

    # ------------------------------------------------------------------ building
    def _build_controls(self):
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        bar = QGridLayout()
        bar.setContentsMargins(2, 0, 2, 0)
        bar.setHorizontalSpacing(4)
        bar.setVerticalSpacing(2)
        self.method_combo = QComboBox()
        self.method_combo.addItems(["MIP", "Translucent"])
        self.method_combo.setToolTip("Volume rendering: maximum projection or translucent")
        self.method_combo.currentIndexChanged.connect(lambda i: self.set_method(METHODS[i]))
        self.color_combo = QComboBox()
        self.color_combo.addItems(["by source", "by score", "by angle"])
        self.color_combo.setToolTip("Colour of markers and arrows: source (white annotations, "
                                    "blue predictions), score, or angle in XY")
        self.color_combo.currentIndexChanged.connect(lambda i: self.set_color_by(COLOR_BY[i]))
        bar.addWidget(self.method_combo, 0, 0)
        bar.addWidget(self.color_combo, 1, 0)
        self.legend = LegendWidget()
        bar.addWidget(self.legend, 0, 1, 2, 1,
                      Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        bar.setColumnStretch(2, 1)
        self.canvas.native.setToolTip("Drag: rotate · Shift+drag: pan · wheel: zoom")
        layout.addLayout(bar)
        layout.addWidget(self.canvas.native, 1)
        # A narrow dock must not widen the window: squeeze (clip) the controls instead.
        self.setMinimumSize(40, 40)

    def sizeHint(self):
        from PySide6.QtCore import QSize

        return QSize(480, 420)

    # ------------------------------------------------------------------ volume
    def set_volume(self, planes, limits, *, voxel_size=None, colors=None):
        """Show a (k, Z, Y, X) volume (k = 1 or 2) with per-channel (low, high) ``limits``.

        Parameters
        ----------
        planes : ndarray, shape (k, Z, Y, X)
        limits : array-like, shape (k, 2)
            Contrast limits (e.g. from ``percentile_limits``).
        voxel_size : (z, y, x) µm, optional
            1 µm per voxel when None.
        colors : sequence of colours, optional
            ``#rrggbb`` strings or RGB 0-255 tuples of the start and end channels.
        """
        from vispy import scene
        from vispy.visuals.transforms import STTransform

        for vol in self.volumes:
            vol.parent = None
        self.volumes = []
        planes = np.asarray(planes)
        if colors is not None:
            self.colors = [hex_to_rgb(c) for c in colors]
        self.voxel_size = tuple(float(v) for v in voxel_size) if voxel_size else (1.0, 1.0, 1.0)
        self.shape = tuple(planes.shape[1:])
        self.clims = [tuple(float(v) for v in lim) for lim in np.asarray(limits, float)]
        vz, vy, vx = self.voxel_size
        for k in range(len(planes)):
            data, self.factors = downsample_max(planes[k], max_size=self.max_texture)
            lo, hi = self.clims[k]
            rgb = (1.0, 1.0, 1.0) if len(planes) == 1 else self.colors[k]
            vol = scene.visuals.Volume(data, clim=(lo, hi if hi > lo else lo + 1),
                                       method=self.method, cmap=_colormap(rgb),
                                       gamma=self.gammas[k], parent=self.root)
            vol.set_gl_state("additive", depth_test=False)
            fz, fy, fx = self.factors
            # Pooled voxel i covers voxels i*f ... i*f+f-1: its centre is i*f + (f-1)/2.
            vol.transform = STTransform(scale=(fx * vx, fy * vy, fz * vz),
                                        translate=((fx - 1) / 2 * vx, (fy - 1) / 2 * vy,
                                                   (fz - 1) / 2 * vz))
            vol.visible = self.visible[k]
            self.volumes.append(vol)
        self._update_box()
        self.reset_camera()
        self._update_points()

    def _extent(self) -> np.ndarray:
        """(x, y, z) size of the volume in µm."""
        nz, ny, nx = self.shape
        vz, vy, vx = self.voxel_size
        return np.array([nx * vx, ny * vy, nz * vz])

    def _update_box(self):
        ext = self._extent()
        lo = -0.5 * np.array(self.voxel_size)[::-1]
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
        corners = lo + corners * ext
        edges = [(a, b) for a in range(8) for b in range(a + 1, 8)
                 if bin(a ^ b).count("1") == 1]
        self.box.set_data(pos=np.array([corners[i] for e in edges for i in e], np.float32))

    def reset_camera(self):
        """Frame the whole volume, seen from above and a side."""
        ext = self._extent()
        cam = self.view.camera
        cam.center = (ext[0] / 2, -ext[1] / 2, -ext[2] / 2)
        cam.elevation, cam.azimuth = 35.0, -35.0
        # The diagonal, so that no rotation cuts the volume off (vispy fits it to the
        # canvas' smaller side).
        cam.scale_factor = 1.12 * float(max(np.linalg.norm(ext), 1.0))
        self._auto_frame = True
        self.canvas.update()

    def _canvas_resized(self, event):
        if self._auto_frame and len(self.shape) == 3 and min(self.shape) > 0:
            self.reset_camera()

    def _user_moved(self, event):
        self._auto_frame = False  # keep the user's view when the dock is resized

    def set_channel(self, index: int, *, visible=None, clim=None, gamma=None, color=None):
        """Change the visibility, (low, high) contrast limits, gamma or colour of a channel."""
        if visible is not None:
            self.visible[index] = bool(visible)
        if gamma is not None:
            self.gammas[index] = float(gamma)
        if index >= len(self.volumes):
            return
        vol = self.volumes[index]
        if visible is not None:
            vol.visible = bool(visible)
        if clim is not None:
            lo, hi = (float(v) for v in clim)
            self.clims[index] = (lo, hi)
            vol.clim = (lo, hi if hi > lo else lo + 1)
        if gamma is not None:
            vol.gamma = float(gamma)
        if color is not None:
            self.colors[index] = hex_to_rgb(color)
            vol.cmap = _colormap(self.colors[index])
        self.canvas.update()

    def set_gamma(self, index: int, gamma: float):
        self.set_channel(index, gamma=gamma)

    def set_method(self, method: str):
        """``"mip"`` or ``"translucent"`` rendering of the volumes."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        for vol in self.volumes:
            vol.method = method
        i = METHODS.index(method)
        if self.method_combo.currentIndex() != i:
            self.method_combo.setCurrentIndex(i)
        self.canvas.update()

    # ------------------------------------------------------------------ points
    def set_pairs(self, start, end):
        """Annotated pairs: (N, 3) start and end points in (z, y, x) voxels."""
        start = np.asarray(start, float).reshape(-1, 3)
        end = np.asarray(end, float).reshape(-1, 3)
        self._pairs = (start, end)
        self._update_points()

    def set_vectors(self, table):
        """Predicted vectors (a VectorTable); None clears."""
        self._vectors = table
        self._update_points()

    def set_layer(self, layer: str, *, visible=None, opacity=None):
        """Show/hide the ``"pairs"`` or ``"vectors"`` markers (opacity is not used in 3D)."""
        if visible is not None:
            self.show_layer[layer] = bool(visible)
            self._update_points()

    def set_min_score(self, value: float):
        self.min_score = float(value)
        self._update_points()

    def set_color_by(self, mode: str):
        """Colour markers and arrows ``"by source"``, ``"score"`` or ``"angle"``."""
        if mode not in COLOR_BY:
            raise ValueError(f"colour mode must be one of {COLOR_BY}, got {mode!r}")
        changed = mode != self.color_by
        self.color_by = mode
        i = COLOR_BY.index(mode)
        if self.color_combo.currentIndex() != i:
            self.color_combo.setCurrentIndex(i)
        self._update_points()
        if changed:
            self.color_by_changed.emit(mode)

    def drawn(self):
        """(start, end, source, score) of the pairs and vectors drawn now."""
        starts, ends, sources, scores = [], [], [], []
        if self._pairs is not None and self.show_layer["pairs"] and len(self._pairs[0]):
            s, e = self._pairs
            starts.append(s)
            ends.append(e)
            sources += ["annotation"] * len(s)
            scores.append(np.ones(len(s)))
        t = self._vectors
        if t is not None and self.show_layer["vectors"] and len(t):
            keep = np.arange(len(t))
            score = np.ones(len(t)) if t.score is None else np.asarray(t.score, float)
            if t.score is not None and self.min_score > 0:
                keep = np.flatnonzero(score >= self.min_score)
            starts.append(t.start[keep])
            ends.append(t.end[keep])
            sources += ["prediction"] * len(keep)
            scores.append(score[keep])
        if not starts:
            z = np.zeros((0, 3))
            return z, z, [], np.zeros(0)
        return np.concatenate(starts), np.concatenate(ends), sources, np.concatenate(scores)

    def _colors(self, start, end, sources, scores):
        return arrow_colors(self.color_by, start, end, sources, scores,
                            voxel_size=self.voxel_size)

    def _to_scene(self, points):
        # (z, y, x) voxels -> vispy (x, y, z) µm.
        return (np.asarray(points, float) * np.asarray(self.voxel_size))[:, ::-1]

    def _update_points(self):
        start, end, sources, scores = self.drawn()
        self.marker_sources = sources
        entries = [s for s in ("annotation", "prediction") if s in sources]
        self.legend.set_legend(self.color_by, entries or ("annotation", "prediction"))
        if len(start) == 0:
            self.marker_colors = np.zeros((0, 4), np.float32)
            self.markers.visible = False
            self.arrows.visible = False
            self.canvas.update()
            return
        colors = self._colors(start, end, sources, scores)
        self.marker_colors = colors
        s, e = self._to_scene(start), self._to_scene(end)
        self.markers.set_data(s, size=6, face_color=colors, edge_color=(1, 1, 1, 0.8),
                             edge_width=0.8)
        seg = np.empty((2 * len(s), 3), np.float32)
        seg[0::2], seg[1::2] = s, e
        seg_colors = np.repeat(colors, 2, axis=0)
        self.arrows.set_data(pos=seg, color=seg_colors, connect="segments",
                             arrows=np.hstack([s, e]).astype(np.float32))
        self.arrows.arrow_color = colors
        self.markers.visible = True
        self.arrows.visible = True
        self.canvas.update()

    @property
    def n_markers(self) -> int:
        """Number of centroid markers drawn (one per pair or vector)."""
        return len(self.marker_sources)

    # ------------------------------------------------------------------ output
    def render(self) -> np.ndarray:
        """The 3D view as an (H, W, 4) uint8 RGBA array."""
        return np.asarray(self.canvas.render())

    def save_png(self, path) -> bool:
        """Save the 3D view as a PNG."""
        from PySide6.QtGui import QImage

        from PySide6.QtCore import QRectF
        from PySide6.QtGui import QPainter

        from .arrows import legend_size, paint_legend

        rgba = np.ascontiguousarray(self.render())
        h, w = rgba.shape[:2]
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        if self.marker_sources:  # the colour legend, top right
            entries = [s for s in ("annotation", "prediction") if s in self.marker_sources]
            size = legend_size(self.color_by, entries)
            painter = QPainter(image)
            paint_legend(painter, QRectF(w - size.width() - 6, 6, size.width(), size.height()),
                         self.color_by, entries)
            painter.end()
        return image.save(str(path))

    def closeEvent(self, event):
        self.canvas.close()
        super().closeEvent(event)

