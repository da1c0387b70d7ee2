"""Arrows of pairs and vectors: colours (by source, score or angle), drawing and legend.

The slice views and the 3D view colour arrows the same way (:func:`arrow_colors`)
and show the same legend (:func:`paint_legend`). :class:`ArrowsItem` draws
arrows in a pyqtgraph view with heads and line widths that follow the zoom.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QConicalGradient, QFont, QLinearGradient, QPen, \
    QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["COLOR_BY", "SOURCE_RGB", "SOURCE_LABEL", "arrow_colors", "ArrowsItem",
           "paint_legend", "LegendWidget", "zoom_scale"]

#: Ways to colour arrows.
COLOR_BY = ("source", "score", "angle")
#: Arrow colours (0-255 RGB) by source.
SOURCE_RGB = {"annotation": (255, 255, 255), "prediction": (80, 200, 255)}
SOURCE_LABEL = {"annotation": "annotations", "prediction": "predictions"}
#: Screen pixels per voxel at which markers have their base size.
BASE_ZOOM = 1.6


def zoom_scale(pixels_per_voxel: float) -> float:
    """Size factor of markers at a zoom: 1 at :data:`BASE_ZOOM`, growing (capped) when zoomed in."""
    return float(np.clip((max(pixels_per_voxel, 1e-6) / BASE_ZOOM) ** 0.6, 0.8, 2.4))


def _hue_rgb(hue) -> np.ndarray:
    """(N, 3) RGB in [0, 1] of hues in [0, 1) (full saturation, slightly dimmed value)."""
    h = (np.asarray(hue, float) % 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    v, s = 1.0, 0.85
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in (
        (np.full_like(f, v), t, np.full_like(f, p)), (q, np.full_like(f, v), np.full_like(f, p)),
        (np.full_like(f, p), np.full_like(f, v), t), (np.full_like(f, p), q, np.full_like(f, v)),
        (t, np.full_like(f, p), np.full_like(f, v)), (np.full_like(f, v), np.full_like(f, p), q))])
    return table[i, np.arange(len(f))]


def _viridis(values) -> np.ndarray:
    cmap = pg.colormap.get("viridis")
    return np.asarray(cmap.map(np.clip(np.asarray(values, float), 0, 1), mode="float"))[:, :3]


def xy_angle(start, end, voxel_size=None) -> np.ndarray:
    """Angle in the XY plane (degrees in [0, 360), 0 = +x, 90 = +y i.e. down on screen)."""
    vs = np.ones(3) if voxel_size is None else np.asarray(voxel_size, float)
    d = (np.asarray(end, float).reshape(-1, 3) - np.asarray(start, float).reshape(-1, 3)) * vs
    return np.degrees(np.arctan2(d[:, 1], d[:, 2])) % 360.0


def arrow_colors(mode, start, end, sources, scores, *, voxel_size=None) -> np.ndarray:
    """RGBA colours in [0, 1], shape (N, 4), of arrows start→end.

    Parameters
    ----------
    mode : {"source", "score", "angle"}
    start, end : ndarray, shape (N, 3)
        (z, y, x) voxels.
    sources : sequence of {"annotation", "prediction"}
    scores : ndarray, shape (N,)
        In [0, 1] (annotations count as 1).
    voxel_size : (z, y, x) µm, optional
        For the angle.
    """
    if mode not in COLOR_BY:
        raise ValueError(f"colour mode must be one of {COLOR_BY}, got {mode!r}")
    n = len(sources)
    if n == 0:
        return np.zeros((0, 4), np.float32)
    if mode == "source":
        rgb = np.array([SOURCE_RGB[s] for s in sources], float) / 255.0
    elif mode == "score":
        rgb = _viridis(scores)
    else:
        rgb = _hue_rgb(xy_angle(start, end, voxel_size) / 360.0)
    return np.hstack([rgb, np.ones((n, 1))]).astype(np.float32)


class ArrowsItem(pg.GraphicsObject):
    """Arrows (a line and a filled head) in view coordinates, one colour each.

    Line widths and head sizes are in screen pixels and grow with the zoom
    (:func:`zoom_scale`), so arrows stay readable zoomed out and in.
    """

    #: Head length and line width (screen pixels) at :data:`BASE_ZOOM`.
    head_px = 8.0
    width_px = 1.6

    def __init__(self):
        super().__init__()
        self.start = np.zeros((0, 2))
        self.end = np.zeros((0, 2))
        self.rgba = np.zeros((0, 4), np.uint8)
        self.widths = np.zeros(0)
        self._bounds = QRectF()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def set_arrows(self, start, end, rgba, widths=None):
        """Arrows from (N, 2) ``start`` to ``end`` (h, v), 0-255 ``rgba`` (N, 4), width factors."""
        self.prepareGeometryChange()
        self.start = np.asarray(start, float).reshape(-1, 2)
        self.end = np.asarray(end, float).reshape(-1, 2)
        self.rgba = np.asarray(rgba).reshape(-1, 4).astype(int)
        self.widths = np.ones(len(self.start)) if widths is None else np.asarray(widths, float)
        if len(self.start):
            pts = np.vstack([self.start, self.end])
            lo, hi = pts.min(0), pts.max(0)
            self._bounds = QRectF(lo[0], lo[1], max(hi[0] - lo[0], 1e-6),
                                  max(hi[1] - lo[1], 1e-6))
        else:
            self._bounds = QRectF()
        self.update()

    def __len__(self):
        return len(self.start)

    def viewTransformChanged(self):
        self.prepareGeometryChange()  # the margin for heads is in pixels

    def boundingRect(self):
        if self._bounds.isNull():
            return QRectF()
        px = self.pixelLength(pg.Point(1, 0)) or 1.0
        py = self.pixelLength(pg.Point(0, 1)) or 1.0
        m = 3 * self.head_px
        return self._bounds.adjusted(-m * px, -m * py, m * px, m * py)

    def head_size(self, pixels_per_voxel: float) -> tuple:
        """(head length, line width) in screen pixels at this zoom."""
        s = zoom_scale(pixels_per_voxel)
        return self.head_px * s, self.width_px * min(s, 1.8)

    def paint(self, painter, *args):
        if not len(self.start):
            return
        tr = painter.transform()
        inv, ok = tr.inverted()
        if not ok:
            return
        head, width = self.head_size(abs(tr.m11()) or 1.0)
        painter.setRenderHint(painter.RenderHint.Antialiasing, True)

        def to_px(p):
            return np.stack([tr.m11() * p[:, 0] + tr.m21() * p[:, 1] + tr.dx(),
                             tr.m12() * p[:, 0] + tr.m22() * p[:, 1] + tr.dy()], 1)

        a, b = to_px(self.start), to_px(self.end)
        for k in range(len(a)):
            r, g, bl, al = (int(v) for v in self.rgba[k])
            w = width * self.widths[k]
            d = b[k] - a[k]
            length = float(np.hypot(*d))
            tip = QPointF(*b[k])
            poly = None
            line_end = tip
            if length > 3:
                u = d / length
                hl = min(head, 0.5 * length)
                base = b[k] - u * hl
                n = np.array([-u[1], u[0]]) * hl * 0.45
                poly = QPolygonF([inv.map(tip), inv.map(QPointF(*(base + n))),
                                  inv.map(QPointF(*(base - n)))])
                line_end = QPointF(*(b[k] - u * hl * 0.7))
            p0, p1 = inv.map(QPointF(*a[k])), inv.map(line_end)
            shadow = QPen(QColor(0, 0, 0, int(0.75 * al)), w + 2.0)
            shadow.setCosmetic(True)
            pen = QPen(QColor(r, g, bl, al), w)
            pen.setCosmetic(True)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(shadow)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawLine(p0, p1)
            if poly is not None:
                painter.setBrush(QBrush(QColor(0, 0, 0, int(0.75 * al))))
                painter.drawPolygon(poly)
            painter.setPen(pen)
            painter.drawLine(p0, p1)
            if poly is not None:
                edge = QPen(QColor(r, g, bl, al), 1.0)
                edge.setCosmetic(True)
                painter.setPen(edge)
                painter.setBrush(QBrush(QColor(r, g, bl, al)))
                painter.drawPolygon(poly)


# ----------------------------------------------------------------------------- legend
def legend_size(mode: str, entries) -> QSize:
    """Size in pixels of the legend :func:`paint_legend` draws."""
    if mode == "source":
        return QSize(118, 8 + 17 * max(len(entries), 1))
    if mode == "score":
        return QSize(132, 44)
    return QSize(132, 62)


def paint_legend(painter, rect: QRectF, mode: str, entries=("annotation", "prediction")):
    """Draw the arrow-colour legend in ``rect`` (device pixels) with ``painter``.

    Parameters
    ----------
    mode : {"source", "score", "angle"}
    entries : sequence of {"annotation", "prediction"}
        The sources shown (for ``mode="source"``).
    """
    painter.save()
    painter.setRenderHint(painter.RenderHint.Antialiasing, True)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 170))
    painter.drawRoundedRect(rect, 4, 4)
    font = QFont(painter.font())
    font.setPointSizeF(8.5)
    painter.setFont(font)
    x, y = rect.left() + 6, rect.top() + 4
    white = QColor(235, 235, 235)
    if mode == "source":
        for source in entries:
            rgb = QColor(*SOURCE_RGB[source])
            cy = y + 8
            pen = QPen(rgb, 2)
            painter.setPen(pen)
            painter.drawLine(QPointF(x, cy), QPointF(x + 16, cy))
            painter.setBrush(rgb)
            painter.drawPolygon(QPolygonF([QPointF(x + 22, cy), QPointF(x + 14, cy - 4),
                                           QPointF(x + 14, cy + 4)]))
            painter.setPen(white)
            painter.drawText(QRectF(x + 28, y, rect.width() - 36, 16),
                             Qt.AlignmentFlag.AlignVCenter, SOURCE_LABEL[source])
            y += 17
    elif mode == "score":
        painter.setPen(white)
        painter.drawText(QRectF(x, y, rect.width() - 12, 14), Qt.AlignmentFlag.AlignLeft,
                         "score")
        bar = QRectF(x, y + 16, rect.width() - 12, 9)
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        for t in np.linspace(0, 1, 9):
            grad.setColorAt(float(t), QColor(*(int(255 * c) for c in _viridis([t])[0])))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(grad))
        painter.drawRect(bar)
        painter.setPen(white)
        small = QFont(font)
        small.setPointSizeF(7.5)
        painter.setFont(small)
        painter.drawText(QRectF(x, bar.bottom(), 30, 12), Qt.AlignmentFlag.AlignLeft, "0")
        painter.drawText(QRectF(bar.right() - 30, bar.bottom(), 30, 12),
                         Qt.AlignmentFlag.AlignRight, "1")
    else:
        radius = 24.0
        centre = QPointF(x + radius + 2, y + radius + 6)
        # Angles grow clockwise on screen (y points down); Qt's conical gradient runs
        # counter-clockwise, so its position t is the angle 360° (1 - t).
        grad = QConicalGradient(centre, 0.0)
        for t in np.linspace(0, 1, 13):
            rgb = _hue_rgb([(1.0 - t) % 1.0])[0]
            grad.setColorAt(float(t), QColor(*(int(255 * c) for c in rgb)))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(grad))
        painter.drawEllipse(centre, radius, radius)
        painter.setBrush(QColor(0, 0, 0, 255))
        painter.drawEllipse(centre, radius * 0.45, radius * 0.45)
        painter.setPen(white)
        tx = centre.x() + radius + 8
        painter.drawText(QRectF(tx, y, rect.right() - tx, 16), Qt.AlignmentFlag.AlignLeft,
                         "angle in XY")
        painter.drawText(QRectF(tx, y + 16, rect.right() - tx, 16), Qt.AlignmentFlag.AlignLeft,
                         "0° → right")
        painter.drawText(QRectF(tx, y + 32, rect.right() - tx, 16), Qt.AlignmentFlag.AlignLeft,
                         "90° ↓ down")
    painter.restore()


class LegendWidget(QWidget):
    """A widget showing :func:`paint_legend` (for views that cannot draw it themselves)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = "source"
        self.entries = ("annotation", "prediction")
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self._resize()

    def set_legend(self, mode: str, entries=("annotation", "prediction")):
        self.mode, self.entries = mode, tuple(entries)
        self._resize()
        self.update()

    def _resize(self):
        self.setFixedSize(legend_size(self.mode, self.entries))

    def paintEvent(self, event):
        from PySide6.QtGui import QPainter

        painter = QPainter(self)
        paint_legend(painter, QRectF(self.rect()), self.mode, self.entries)
        painter.end()
