"""Polarity figures: rose histograms, polar scatter plots, per-condition panels.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend switch), so this works headless and from worker threads; files
are rendered by the Agg/SVG/PDF canvases chosen from the file extension.
matplotlib is imported inside the functions: importing this module is cheap.

Angles follow :mod:`cellpol_core.analysis.polarity`: 0° points right and angles grow
counter-clockwise, so an xy rose looks like the image (90° = up on screen).
For the side planes the vertical axis is +z (xz: 0° = +x; yz: 0° = up on
screen). With a reference, angles are relative and the reference is at 0°.
Bar radii are the fraction of vectors per bin.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from ..errors import InputError

FORMATS = ("png", "svg", "pdf")

_DIRECTION_LABELS = {
    "xy": ("+x", "up\n(−y)", "−x", "down\n(+y)"),
    "xz": ("+x", "+z", "−x", "−z"),
    "yz": ("up\n(−y)", "+z", "down\n(+y)", "−z"),
}
_PLANE_TITLES = {"xy": "xy plane (azimuth)", "xz": "xz plane", "yz": "yz plane"}
_BAR = "#4878a8"
_MEAN = "#c0392b"


def _finite(angles_deg) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    return np.mod(a[np.isfinite(a)], 360.0)


def _mean_vector(angles_deg):
    a = np.radians(_finite(angles_deg))
    if len(a) == 0:
        return math.nan, math.nan
    c, s = np.cos(a).mean(), np.sin(a).mean()
    return math.atan2(s, c), math.hypot(c, s)


def _style_polar(ax, plane, relative):
    ticks = np.radians([0, 90, 180, 270])
    if relative:
        labels = ("0°\nreference", "+90°", "180°", "−90°")
    else:
        labels = tuple(f"{d}°\n{name}" for d, name in zip((0, 90, 180, 270),
                                                        _DIRECTION_LABELS.get(plane, ("",) * 4)))
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_rlabel_position(112.5)
    ax.grid(alpha=0.4)


def _angle_text(theta, relative):
    deg = math.degrees(theta) % 360
    if relative and deg > 180:
        deg -= 360  # relative angles read better signed: -30° rather than 330°
    return f"{deg:.0f}°"


def _mean_arrow(ax, theta, length, text):
    ax.annotate("", xy=(theta, length), xytext=(0, 0),
                arrowprops=dict(arrowstyle="-|>", color=_MEAN, lw=1.8))
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=7, color=_MEAN)


def _fractions(angles_deg, bins):
    a = _finite(angles_deg)
    counts, edges = np.histogram(a, bins=int(bins), range=(0.0, 360.0))
    return a, counts / max(len(a), 1), edges


def rose(ax, angles_deg, *, bins=36, plane="xy", relative=False, show_mean=True, title=None,
         rmax=None):
    """Draw a rose histogram of ``angles_deg`` on a polar ``ax``.

    Parameters
    ----------
    ax : matplotlib polar Axes
        Target axes (``projection="polar"``).
    angles_deg : array_like
        Angles in degrees; NaNs are ignored.
    bins : int
        Number of sectors over 360°.
    plane : {"xy", "yz", "xz"}
        Labels the 0/90/180/270° directions.
    relative : bool
        The angles are relative to a reference (labels say so, and a dashed
        line marks the reference at 0°).
    show_mean : bool
        Draw the mean resultant vector (length R relative to the outer circle).
    title : str, optional
        Axes title.
    rmax : float, optional
        Outer radius (a fraction of vectors); default: the largest bar. Give
        the same value to roses that are to be compared.
    """
    a, frac, edges = _fractions(angles_deg, bins)
    centers = np.radians((edges[:-1] + edges[1:]) / 2)
    ax.bar(centers, frac, width=2 * np.pi / bins, bottom=0.0, color=_BAR, edgecolor="white",
           linewidth=0.5, alpha=0.9)
    top = float(rmax) if rmax else (float(frac.max()) if len(a) else 1.0)
    top = top if top > 0 else 1.0
    ax.set_ylim(0, top * 1.1)
    if relative:
        ax.plot([0, 0], [0, top * 1.1], ls="--", color="0.25", lw=1)
    if show_mean and len(a):
        theta, r = _mean_vector(a)
        if r > 1e-12:
            _mean_arrow(ax, theta, r * top, f"mean {_angle_text(theta, relative)}, R = {r:.2f}")
    _style_polar(ax, plane, relative)
    ax.set_title(f"{title}\n(n = {len(a)})" if title else f"n = {len(a)}", fontsize=9)


def polar_scatter(ax, angles_deg, *, lengths=None, plane="xy", relative=False, title=None):
    """Draw each vector as a point (angle, length) with the mean resultant vector.

    Without ``lengths`` points sit on the unit circle. The mean vector's
    length is R times the largest radius.
    """
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    r = np.ones_like(a) if lengths is None else np.asarray(lengths, dtype=np.float64).reshape(-1)
    ok = np.isfinite(a) & np.isfinite(r)
    a, r = a[ok], r[ok]
    ax.scatter(np.radians(a), r, s=8, color=_BAR, alpha=0.6, linewidths=0)
    rmax = float(r.max()) if len(r) else 1.0
    rmax = rmax if rmax > 0 else 1.0
    ax.set_ylim(0, rmax * 1.1)
    if relative:
        ax.plot([0, 0], [0, rmax * 1.1], ls="--", color="0.25", lw=1)
    theta, big_r = _mean_vector(a)
    if len(a) and big_r > 1e-12:
        _mean_arrow(ax, theta, big_r * rmax,
                    f"mean {_angle_text(theta, relative)}, R = {big_r:.2f}")
    _style_polar(ax, plane, relative)
    unit = "" if lengths is None else " (radius: length in the plane)"
    ax.set_title((f"{title}\n" if title else "") + f"n = {len(a)}{unit}", fontsize=9)


def _figure(ncols, *, height=3.6, width=3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1, projection="polar") for i in range(ncols)]
    return fig, axes


def rose_planes_figure(angles_by_plane: dict, *, relative_planes=None, title=None, bins=36):
    """One rose per plane, side by side.

    Parameters
    ----------
    angles_by_plane : dict of str to array_like
        e.g. ``{"xy": ..., "yz": ..., "xz": ...}`` (2D data: only ``"xy"``).
        Planes whose angles are all NaN are left out.
    relative_planes : dict of str to bool, optional
        Which planes hold angles relative to a reference.
    title : str, optional
        Figure title.
    bins : int
        Sectors per rose.

    Returns
    -------
    matplotlib.figure.Figure
    """
    relative_planes = relative_planes or {}
    planes = [p for p, a in angles_by_plane.items() if np.isfinite(np.asarray(a, float)).any()]
    planes = planes or list(angles_by_plane)[:1] or ["xy"]
    fig, axes = _figure(len(planes))
    for ax, p in zip(axes, planes):
        rel = bool(relative_planes.get(p, False))
        rose(ax, angles_by_plane.get(p, []), bins=bins, plane=p, relative=rel,
             title=_PLANE_TITLES.get(p, p) + (", relative" if rel else ""))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def scatter_figure(angles_deg, *, lengths=None, plane="xy", relative=False, title=None):
    """A polar scatter of the vectors with their mean resultant vector."""
    fig, (ax,) = _figure(1, height=4.0, width=4.0)
    polar_scatter(ax, angles_deg, lengths=lengths, plane=plane, relative=relative,
                  title=_PLANE_TITLES.get(plane, plane) + (", relative" if relative else ""))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def conditions_figure(groups: dict, *, plane="xy", relative=False, bins=36, title=None):
    """One rose per condition, side by side (same plane for all).

    Parameters
    ----------
    groups : dict of str to array_like
        Condition name to angles in degrees, in display order.
    """
    names = list(groups) or ["(none)"]
    fig, axes = _figure(len(names))
    # one radial scale for all conditions, so that bar heights compare
    rmax = max([float(_fractions(groups.get(n, []), bins)[1].max()) for n in names] + [0.0])
    for ax, name in zip(axes, names):
        rose(ax, groups.get(name, []), bins=bins, plane=plane, relative=relative, title=name,
             rmax=rmax or None)
    suffix = _PLANE_TITLES.get(plane, plane) + (", relative to the reference" if relative else "")
    fig.suptitle(f"{title} — {suffix}" if title else suffix, fontsize=10)
    return fig


def save_figure(fig, path, *, dpi=150) -> Path:
    """Write ``fig`` atomically; the format follows the extension (.png, .svg, .pdf).

    Raises
    ------
    InputError
        For another extension.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"unknown figure format {path.suffix or '(none)'}; use .png, .svg or .pdf",
                         path)
    # No timestamps: the same data gives the same file.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
    return path
