"""Polarity figures: rose histograms, polar scatter plots, per-condition panels.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no
global backend switch), so this works headless and from worker threads; files
are rendered by the Agg/SVG/PDF canvases chosen from the file extension.
matplotlib is imported inside the functions: importing this module is cheap.

Angles follow :mod:`cellpol_core.analysis.polarity`: 0° points right and angles grow
counter-clockwise, so an xy rose looks like the image (90° = up on screen).
For the side planes the vertical axis is +z (xz: 0° = +x; yz: 0° = up on
screen). With a reference, angles are relative and the reference is at 0°.
Bar radii are the fraction of vectors per bin. Axial data (``axial=True``:
axes, angles modulo 180°) are drawn on half circles ("hemiroses"), their mean
axis from the doubled angles. Colours come from a palette of
:mod:`cellpol_core.analysis.palettes` (``palette=``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from .choices import DEFAULT_PALETTE, palette_colours

FORMATS = ("png", "svg", "pdf")

_DIRECTION_LABELS = {
    "xy": ("+x", "up\n(−y)", "−x", "down\n(+y)"),
    "xz": ("+x", "+z", "−x", "−z"),
    "yz": ("up\n(−y)", "+z", "down\n(+y)", "−z"),
}
_PLANE_TITLES = {"xy": "xy plane (azimuth)", "xz": "xz plane", "yz": "yz plane"}


def _finite(angles_deg, axial=False) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    return np.mod(a[np.isfinite(a)], 180.0 if axial else 360.0)


def _mean_vector(angles_deg, axial=False):
    """Mean direction (radians) and R; for axes the mean axis and R of the doubled angles."""
    k = 2.0 if axial else 1.0
    a = k * np.radians(_finite(angles_deg, axial))
    if len(a) == 0:
        return math.nan, math.nan
    c, s = np.cos(a).mean(), np.sin(a).mean()
    return math.atan2(s, c) / k % (math.pi if axial else 2 * math.pi), math.hypot(c, s)


def _style_polar(ax, plane, relative, axial=False):
    if axial:
        ax.set_thetamin(0)
        ax.set_thetamax(180)
        ticks = np.radians([0, 45, 90, 135, 180])
        if relative:
            labels = ("0°\nreference", "+45°", "±90°", "−45°", "0°")
        else:
            names = _DIRECTION_LABELS.get(plane, ("",) * 4)
            labels = (f"0°\n{names[0]}", "45°", f"90°\n{names[1]}", "135°", f"180°\n{names[2]}")
    elif relative:
        ticks = np.radians([0, 90, 180, 270])
        labels = ("0°\nreference", "+90°", "180°", "−90°")
    else:
        ticks = np.radians([0, 90, 180, 270])
        labels = tuple(f"{d}°\n{name}" for d, name in zip((0, 90, 180, 270),
                                                        _DIRECTION_LABELS.get(plane, ("",) * 4)))
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.tick_params(axis="y", labelsize=6)
    if axial:  # the radial labels lie along the base line: fewer, so they do not collide
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.set_rlabel_position(112.5)
    ax.grid(alpha=0.4)


def _angle_text(theta, relative, axial=False):
    period = 180 if axial else 360
    deg = math.degrees(theta) % period
    if relative and deg > period / 2:
        deg -= period  # relative angles read better signed: -30° rather than 330°
    return f"{deg:.0f}°" + (" (axis)" if axial else "")


def _mean_arrow(ax, theta, length, text, colour):
    ax.annotate("", xy=(theta, length), xytext=(0, 0),
                arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.8))
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=7, color=colour)


def _fractions(angles_deg, bins, axial=False):
    """Angles, fraction per sector and edges; axes fill half as many sectors over 180°."""
    a = _finite(angles_deg, axial)
    n_bins, top = (max(1, int(bins) // 2), 180.0) if axial else (int(bins), 360.0)
    counts, edges = np.histogram(a, bins=n_bins, range=(0.0, top))
    return a, counts / max(len(a), 1), edges


def rose(ax, angles_deg, *, bins=36, plane="xy", relative=False, show_mean=True, title=None,
         rmax=None, axial=False, palette=DEFAULT_PALETTE):
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
    axial : bool
        Axes: a hemirose of the angles modulo 180° (sectors as wide as
        ``bins`` would make them on a full circle), with the mean axis.
    palette : str
        A name of :data:`~cellpol_core.analysis.palettes.PALETTES`.
    """
    colours = palette_colours(palette)
    a, frac, edges = _fractions(angles_deg, bins, axial)
    centers = np.radians((edges[:-1] + edges[1:]) / 2)
    ax.bar(centers, frac, width=np.radians(edges[1] - edges[0]), bottom=0.0,
           color=colours["bar"], edgecolor="white", linewidth=0.5, alpha=0.9)
    top = float(rmax) if rmax else (float(frac.max()) if len(a) else 1.0)
    top = top if top > 0 else 1.0
    ax.set_ylim(0, top * 1.1)
    if relative:
        ax.plot([0, 0], [0, top * 1.1], ls="--", color="0.25", lw=1)
    if show_mean and len(a):
        theta, r = _mean_vector(a, axial)
        if r > 1e-12:
            _mean_arrow(ax, theta, r * top,
                        f"mean {_angle_text(theta, relative, axial)}, R = {r:.2f}",
                        colours["mean"])
    _style_polar(ax, plane, relative, axial)
    ax.set_title(f"{title}\n(n = {len(a)})" if title else f"n = {len(a)}", fontsize=9)


def polar_scatter(ax, angles_deg, *, lengths=None, plane="xy", relative=False, title=None,
                  axial=False, palette=DEFAULT_PALETTE):
    """Draw each vector as a point (angle, length) with the mean resultant vector.

    Without ``lengths`` points sit on the unit circle. The mean vector's
    length is R times the largest radius. With ``axial`` the angles are
    taken modulo 180° on a half circle.
    """
    colours = palette_colours(palette)
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    r = np.ones_like(a) if lengths is None else np.asarray(lengths, dtype=np.float64).reshape(-1)
    ok = np.isfinite(a) & np.isfinite(r)
    a, r = a[ok], r[ok]
    if axial:
        a = np.mod(a, 180.0)
    ax.scatter(np.radians(a), r, s=8, color=colours["bar"], alpha=0.6, linewidths=0)
    rmax = float(r.max()) if len(r) else 1.0
    rmax = rmax if rmax > 0 else 1.0
    ax.set_ylim(0, rmax * 1.1)
    if relative:
        ax.plot([0, 0], [0, rmax * 1.1], ls="--", color="0.25", lw=1)
    theta, big_r = _mean_vector(a, axial)
    if len(a) and big_r > 1e-12:
        _mean_arrow(ax, theta, big_r * rmax,
                    f"mean {_angle_text(theta, relative, axial)}, R = {big_r:.2f}",
                    colours["mean"])
    _style_polar(ax, plane, relative, axial)
    unit = "" if lengths is None else " (radius: length in the plane)"
    ax.set_title((f"{title}\n" if title else "") + f"n = {len(a)}{unit}", fontsize=9)


def _figure(ncols, *, height=3.6, width=3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = [fig.add_subplot(1, ncols, i + 1, projection="polar") for i in range(ncols)]
    return fig, axes


def rose_planes_figure(angles_by_plane: dict, *, relative_planes=None, title=None, bins=36,
                       axial=False, palette=DEFAULT_PALETTE):
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
        Sectors per full rose (a hemirose of axes has half as many).
    axial, palette
        See :func:`rose`.

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
        rose(ax, angles_by_plane.get(p, []), bins=bins, plane=p, relative=rel, axial=axial,
             palette=palette, title=_PLANE_TITLES.get(p, p) + (", relative" if rel else "")
             + (", axes" if axial else ""))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def scatter_figure(angles_deg, *, lengths=None, plane="xy", relative=False, title=None,
                   axial=False, palette=DEFAULT_PALETTE):
    """A polar scatter of the vectors with their mean resultant vector."""
    fig, (ax,) = _figure(1, height=4.0, width=4.0)
    polar_scatter(ax, angles_deg, lengths=lengths, plane=plane, relative=relative, axial=axial,
                  palette=palette,
                  title=_PLANE_TITLES.get(plane, plane) + (", relative" if relative else ""))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def conditions_figure(groups: dict, *, plane="xy", relative=False, bins=36, title=None,
                      axial=False, palette=DEFAULT_PALETTE):
    """One rose per condition, side by side (same plane for all).

    Parameters
    ----------
    groups : dict of str to array_like
        Condition name to angles in degrees, in display order.
    """
    names = list(groups) or ["(none)"]
    fig, axes = _figure(len(names))
    # one radial scale for all conditions, so that bar heights compare
    rmax = max([float(_fractions(groups.get(n, []), bins, axial)[1].max()) for n in names]
               + [0.0])
    for ax, name in zip(axes, names):
        rose(ax, groups.get(name, []), bins=bins, plane=plane, relative=relative, title=name,
             rmax=rmax or None, axial=axial, palette=palette)
    suffix = _PLANE_TITLES.get(plane, plane) + (", relative to the reference" if relative else "")
    fig.suptitle(f"{title} — {suffix}" if title else suffix, fontsize=10)
    return fig


def _cdf_range(relative, axial):
    """Display interval of the angles: signed when relative (the reference in the middle)."""
    period = 180.0 if axial else 360.0
    return (-period / 2, period / 2) if relative else (0.0, period)


def _display_angles(angles_deg, relative, axial) -> np.ndarray:
    lo, _ = _cdf_range(relative, axial)
    a = _finite(angles_deg, axial)
    return np.sort(np.mod(a - lo, 180.0 if axial else 360.0) + lo)


def empirical_cdf(angles_deg, *, relative=False, axial=False) -> tuple:
    """Sorted display angles and their cumulative fractions (a step function).

    Angles run over [0, 360) (axes [0, 180)), or centred on the reference
    when ``relative``: (-180, 180] ((-90, 90] for axes).
    """
    a = _display_angles(angles_deg, relative, axial)
    return a, np.arange(1, len(a) + 1) / max(len(a), 1)


def cdf_figure(groups: dict, *, control, plane="xy", relative=False, axial=False,
               palette=DEFAULT_PALETTE, title=None):
    """Angle CDFs: one panel per condition, each against the control condition.

    Parameters
    ----------
    groups : dict of str to array_like
        Condition name to angles in degrees, in display order.
    control : str
        The condition every other one is drawn against (a key of ``groups``).

    Raises
    ------
    InputError
        When ``control`` is not in ``groups``.
    """
    from matplotlib.figure import Figure

    if control not in groups:
        raise InputError(f"control condition {control!r} is not among " + ", ".join(groups))
    colours = palette_colours(palette)["cycle"]
    others = [n for n in groups if n != control] or [control]
    fig = Figure(figsize=(max(4.2, 3.6 * len(others)), 3.6), layout="constrained")
    lo, hi = _cdf_range(relative, axial)
    x0, y0 = empirical_cdf(groups[control], relative=relative, axial=axial)
    for k, name in enumerate(others):
        ax = fig.add_subplot(1, len(others), k + 1)
        for j, (label, (x, y)) in enumerate(((f"{control} (control)", (x0, y0)),
                                              (name, empirical_cdf(groups[name], relative=relative,
                                                                   axial=axial)))):
            ax.step(np.r_[lo, x, hi], np.r_[0.0, y, 1.0 if len(y) else 0.0], where="post",
                    color=colours[(0 if j == 0 else k + 1) % len(colours)], lw=1.6,
                    ls="--" if j == 0 else "-", label=f"{label}, n = {len(x)}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(np.linspace(lo, hi, 5))
        ax.set_xlabel(("angle to the reference" if relative else "angle")
                      + (" of the axis" if axial else "") + " (°)", fontsize=8)
        ax.set_ylabel("cumulative fraction", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{name} vs {control}", fontsize=9)
    suffix = _PLANE_TITLES.get(plane, plane) + ("\nrelative to the reference" if relative else "")
    fig.suptitle(f"{title or 'Angle CDF'}, {suffix}", fontsize=10)
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
