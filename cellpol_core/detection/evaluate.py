"""The paper's evaluation: match predicted vectors to ground truth at 14 levels.

For one image (docs/method.md §6):

1. Optionally exclude ground-truth and predicted vectors having an endpoint
   (start or end point) near the x/y image border.
2. Build the G×P pairing matrix ``PM(t, p) = ‖IP_t − ÎP_p‖ + ‖EP_t − ÊP_p‖``
   in µm. Entries whose start distance exceeds the level-0 ``τ_start`` or
   whose end distance exceeds the level-0 ``τ_end`` are set to
   :data:`GATE_COST` (1e6), so that such pairs are never true positives.
3. Solve the assignment once. Only pairs within the level-0 gate can be TPs,
   so they are found with a k-d tree and matched sparsely
   (``scipy.sparse.csgraph.min_weight_full_bipartite_matching``): the same
   matching as ``scipy.optimize.linear_sum_assignment`` on the dense gated
   matrix, in memory linear in the number of vectors (1 M × 1 M vectors would
   need 425 GiB dense). Vectors left unmatched are paired in index order as
   gated pairs, as the dense assignment pairs them.
4. At each level L = 0…13 a matched pair is a true positive (TP) when its
   start distance ≤ ``τ_start(L)`` and its end distance ≤ ``τ_end(L)``.
   ``FP = P − TP`` and ``FN = G − TP``.

Thresholds
----------
``τ_start = MAF·A`` and ``τ_end = MAF·B`` with the major-axis fractions
MAF = 0.75, 0.70, …, 0.10 (level 0 is the loosest). Presets:
``"nucleus-golgi"`` A = 16 µm, B = 8 µm; ``"cytoplasm-nucleus"`` A = 96 px,
B = 17 px (pixel units: evaluate a 2D image without voxel size).

Comparisons are inclusive, with a relative tolerance of :data:`REL_TOL`
(1e-9): a distance ``d`` passes ``τ`` when ``d <= τ·(1 + 1e-9)``. This keeps a
point shifted by exactly ``τ`` a TP despite float rounding (for instance
61.2 − 50 = 11.200000000000003 in binary floats); no real distance is that
close to a threshold by chance. The thresholds themselves are rounded to 9
decimals (0.7·96 would otherwise read 67.19999999999999).

Metrics per level
-----------------
TPR = TP/(TP+FN) (None when G = 0), FDR = FP/(FP+TP) (None when P = 0) and,
over the TPs, the mean and population standard deviation (ddof = 0) of

* ``cs``: the signed cosine similarity between the ground-truth and the
  predicted vector, computed in µm. When either vector has zero length the
  cosine is undefined: it is NaN and left out of the ``cs`` statistics (the
  pair still counts as a TP and enters the other statistics);
* ``error``: ``‖V − V̂‖`` with ``V = EP − IP``, in µm;
* ``start_dist`` and ``end_dist``: ``‖IP − ÎP‖`` and ``‖EP − ÊP‖``, in µm.

Statistics over no TP are None. Without a voxel size, every distance (and
``border_um``) is in voxels/pixels, i.e. the voxel size is taken as (1, 1, 1).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..defaults import BORDER_UM
from ..io.atomic import write_text_atomic

N_LEVELS = 14
#: Major-axis fraction per level, as exact decimals (0.75, 0.70, …, 0.10).
MAF = tuple(round(0.75 - 0.05 * i, 2) for i in range(N_LEVELS))
#: Major axes (start, end) of the presets: µm for nucleus-golgi, pixels for cytoplasm-nucleus.
LEVEL_PRESETS = {"nucleus-golgi": (16.0, 8.0), "cytoplasm-nucleus": (96.0, 17.0)}
#: Cost given to pairs beyond the level-0 thresholds.
GATE_COST = 1e6
#: Relative tolerance of the inclusive threshold comparisons.
REL_TOL = 1e-9
#: Largest G×P solved with a dense matrix; larger ones are matched sparsely (same result).
DENSE_MAX = 40_000

CSV_COLUMNS = ("level", "maf", "tau_start", "tau_end", "tp", "fp", "fn", "tpr", "fdr",
               "cs_mean", "cs_std", "error_mean", "error_std", "start_dist_mean",
               "start_dist_std", "end_dist_mean", "end_dist_std")
_STATS = ("cs", "error", "start_dist", "end_dist")


def level_thresholds(levels="nucleus-golgi", *, major_axes=None) -> list:
    """The 14 threshold levels.

    Parameters
    ----------
    levels : str
        ``"nucleus-golgi"`` or ``"cytoplasm-nucleus"``; ignored when
        ``major_axes`` is given.
    major_axes : (float, float), optional
        Custom major axes (A, B): ``τ_start = MAF·A``, ``τ_end = MAF·B``.

    Returns
    -------
    list of (int, float, float, float)
        ``(level, maf, tau_start, tau_end)`` from level 0 (loosest) to 13.

    Raises
    ------
    ValueError
        On an unknown preset or non-positive major axes.
    """
    if major_axes is not None:
        a, b = (float(v) for v in major_axes)
        if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"major axes must be positive numbers, got {a} {b}")
    else:
        if levels not in LEVEL_PRESETS:
            raise ValueError(f"unknown levels preset {levels!r}; choose one of "
                             f"{', '.join(LEVEL_PRESETS)}")
        a, b = LEVEL_PRESETS[levels]
    # Rounded so that 0.7*96 reads 67.2, not 67.19999999999999.
    return [(i, maf, round(maf * a, 9), round(maf * b, 9)) for i, maf in enumerate(MAF)]


def _within(d, tau):
    """Inclusive ``d <= tau`` with a relative tolerance (see module docstring)."""
    return np.asarray(d) <= tau * (1.0 + REL_TOL)


def _stat(values, kind):
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return float(np.mean(v)) if kind == "mean" else float(np.std(v, ddof=0))


@dataclass
class LevelResult:
    """Counts and TP measurements at one threshold level.

    Attributes
    ----------
    level, maf, tau_start, tau_end
        The level and its thresholds.
    g, p : int
        Ground-truth and predicted vectors evaluated (after border exclusion).
    cs, error, start_dist, end_dist : ndarray
        One value per TP at this level (cs may hold NaN for zero-length vectors).
    """

    level: int
    maf: float
    tau_start: float
    tau_end: float
    g: int
    p: int
    cs: np.ndarray
    error: np.ndarray
    start_dist: np.ndarray
    end_dist: np.ndarray

    @property
    def tp(self) -> int:
        return int(len(self.error))

    @property
    def fp(self) -> int:
        return self.p - self.tp

    @property
    def fn(self) -> int:
        return self.g - self.tp

    @property
    def tpr(self) -> Optional[float]:
        """TP/(TP+FN), None when there is no ground truth."""
        return None if self.g == 0 else self.tp / self.g

    @property
    def fdr(self) -> Optional[float]:
        """FP/(FP+TP), None when there is no prediction."""
        return None if self.p == 0 else self.fp / self.p

    @property
    def f1(self) -> Optional[float]:
        """2TP/(2TP+FP+FN), None when the denominator is 0."""
        den = 2 * self.tp + self.fp + self.fn
        return None if den == 0 else 2 * self.tp / den

    def stat(self, name: str, kind: str = "mean") -> Optional[float]:
        """Mean (``kind="mean"``) or population SD (``"std"``) of a TP measurement."""
        if name not in _STATS or kind not in ("mean", "std"):
            raise ValueError(f"unknown statistic {name}_{kind}")
        return _stat(getattr(self, name), kind)

    def row(self) -> dict:
        """This level as a dict with the :data:`CSV_COLUMNS` keys."""
        out = {"level": self.level, "maf": self.maf, "tau_start": self.tau_start,
               "tau_end": self.tau_end, "tp": self.tp, "fp": self.fp, "fn": self.fn,
               "tpr": self.tpr, "fdr": self.fdr}
        for name in _STATS:
            out[f"{name}_mean"] = self.stat(name, "mean")
            out[f"{name}_std"] = self.stat(name, "std")
        return out


@dataclass
class Matching:
    """The one assignment of an image, in indices of the tables as given.

    Attributes
    ----------
    gt_index, pred_index : ndarray of int
        Assigned pairs (including gated ones), indices into the original tables.
    start_dist, end_dist : ndarray
        Start and end point distances of each assigned pair.
    gated : ndarray of bool
        True where the pair is beyond the level-0 thresholds (cost 1e6): it is
        an assignment artefact, never a TP.
    gt_kept, pred_kept : ndarray of bool
        Which vectors survived the border exclusion.
    tp_level : ndarray of int
        For each pair, the strictest level at which it is a TP, or -1 if none.
        The pair is a TP at level L exactly when ``L <= tp_level`` (thresholds
        shrink monotonically).
    """

    gt_index: np.ndarray
    pred_index: np.ndarray
    start_dist: np.ndarray
    end_dist: np.ndarray
    gated: np.ndarray
    gt_kept: np.ndarray
    pred_kept: np.ndarray
    tp_level: np.ndarray

    def tp_pairs(self, level: int) -> np.ndarray:
        """(K, 2) (gt_index, pred_index) of the TPs at ``level``."""
        sel = self.tp_level >= level
        return np.stack([self.gt_index[sel], self.pred_index[sel]], axis=1)


@dataclass
class EvalResult:
    """Evaluation of one image, or of several pooled with :func:`pool_results`.

    Attributes
    ----------
    levels : list of LevelResult
        Level 0 (loosest) to 13.
    unit : str
        ``"um"`` when a voxel size was used, else ``"px"``.
    matching : Matching or None
        The assignment (None for pooled results).
    n_images : int
        Images pooled into this result.
    gt_excluded, pred_excluded : int
        Vectors left out by the border exclusion.
    region : ((z0, y0, x0), (z1, y1, x1)) or None
        The region the evaluation was restricted to (voxels, inclusive), if any.
    gt_outside, pred_outside : int
        Vectors left out because an endpoint lies outside ``region``.
    """

    levels: list
    unit: str = "um"
    matching: Optional[Matching] = None
    n_images: int = 1
    gt_excluded: int = 0
    pred_excluded: int = 0
    region: Optional[tuple] = None
    gt_outside: int = 0
    pred_outside: int = 0

    @property
    def g(self) -> int:
        return self.levels[0].g

    @property
    def p(self) -> int:
        return self.levels[0].p

    def f1(self, level: int) -> Optional[float]:
        """F1 = 2TP/(2TP+FP+FN) at ``level``; None when the denominator is 0."""
        return self.levels[level].f1

    def rows(self) -> list:
        """One dict per level with exactly the :data:`CSV_COLUMNS` keys."""
        return [lv.row() for lv in self.levels]


def _edge_distance(points, shape, vs):
    """Distance (µm) of each (z, y, x) point to the nearest x or y image edge."""
    ny, nx = int(shape[-2]), int(shape[-1])
    x, y = points[:, 2], points[:, 1]
    dx = np.minimum(x, (nx - 1) - x) * vs[2]
    dy = np.minimum(y, (ny - 1) - y) * vs[1]
    return np.minimum(dx, dy)


def _keep_mask(table, shape, border_um, vs):
    n = len(table)
    if shape is None or n == 0:
        return np.ones(n, dtype=bool)
    d = np.minimum(_edge_distance(table.start, shape, vs), _edge_distance(table.end, shape, vs))
    return d >= border_um


def _inside(table, region):
    """Vectors whose start and end lie in ``region`` ((z0, y0, x0), (z1, y1, x1)) voxels."""
    low, high = (np.asarray(c, dtype=np.float64) for c in region)
    return np.all((table.start >= low) & (table.start <= high)
                  & (table.end >= low) & (table.end <= high), axis=1)


def annotated_region(table, *, margin_um=0.0, voxel_size=None, shape=None):
    """The bounding box of a table's start and end points, grown by ``margin_um``.

    For partial annotations: predictions far from every annotated cell are
    then not counted as false positives (see ``region`` of :func:`evaluate_vectors`).

    Parameters
    ----------
    table : VectorTable
        Non-empty; (z, y, x) voxels.
    margin_um : float
        Added on every side (µm; voxels without a voxel size).
    voxel_size : tuple of 3 floats, optional
    shape : tuple of int, optional
        Spatial shape (Z, Y, X) or (Y, X): the box is clipped to the image.

    Returns
    -------
    ((z0, y0, x0), (z1, y1, x1)) : tuple of float tuples
        Inclusive corners in voxels.
    """
    if len(table) == 0:
        raise ValueError("annotated_region needs at least one vector")
    points = np.concatenate([table.start, table.end])
    vs = np.ones(3) if voxel_size is None else np.asarray(voxel_size, dtype=np.float64)
    grow = float(margin_um) / vs
    low, high = points.min(axis=0) - grow, points.max(axis=0) + grow
    if shape is not None:
        full = (1,) * (3 - len(shape)) + tuple(int(n) for n in shape)
        low = np.maximum(low, 0.0)
        high = np.minimum(high, np.asarray(full, dtype=np.float64) - 1)
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def _cosine(a, b):
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.sum(a * b, axis=1) / (na * nb)
    c = np.where((na > 0) & (nb > 0), c, np.nan)
    return np.clip(c, -1.0, 1.0)


def _gated_assignment(gs, ge, ps, pe, tau_s, tau_e):
    """The minimum-cost assignment of the G×P gated matrix (built only when small).

    Minimising ``Σ cost`` over full assignments where gated pairs cost
    :data:`GATE_COST` is minimising ``Σ (cost − GATE_COST)`` over matchings of
    the pairs within the gate. That is a minimum-weight full matching of a
    sparse doubled graph: rows are the GT vectors and a stand-in per
    prediction, columns the predictions and a stand-in per GT vector; a GT
    vector (prediction) left alone takes its own stand-in at ``GATE_COST / 2``,
    and each pair within the gate has a mirror edge between the two stand-ins.

    Returns
    -------
    rows, cols : ndarray of int
        Assigned (GT, prediction) pairs, ``min(G, P)`` of them, sorted by GT.
    start_dist, end_dist : ndarray
        Their start and end point distances.
    gated : ndarray of bool
        Pairs outside the gate (leftovers paired in index order).
    """
    g, p = len(gs), len(ps)
    if g * p <= DENSE_MAX:  # small images (tuning evaluates many): the dense matrix is quicker
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist

        ds, de = cdist(gs, ps), cdist(ge, pe)
        ok = _within(ds, tau_s) & _within(de, tau_e)
        rows, cols = linear_sum_assignment(np.where(ok, ds + de, GATE_COST))
        return rows, cols, ds[rows, cols], de[rows, cols], ~ok[rows, cols]
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching
    from scipy.spatial import cKDTree

    near = cKDTree(gs).sparse_distance_matrix(cKDTree(ps), tau_s * (1.0 + 2 * REL_TOL),
                                              output_type="ndarray")
    i, j = near["i"].astype(np.int64), near["j"].astype(np.int64)
    # the distances as cdist computes them, so inclusive thresholds behave as before
    ds = np.sqrt(np.sum((gs[i] - ps[j]) ** 2, axis=1))
    de = np.sqrt(np.sum((ge[i] - pe[j]) ** 2, axis=1))
    ok = _within(ds, tau_s) & _within(de, tau_e)
    i, j, cost = i[ok], j[ok], (ds + de)[ok]
    rows, cols = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(i):
        half = GATE_COST / 2
        # +1 on every edge: a full matching has G + P edges, so the optimum is unchanged,
        # and no edge weighs 0 (which a sparse matrix would drop)
        a = csr_matrix((np.concatenate([cost + 1, np.full(g + p, half + 1), np.ones(len(i))]),
                        (np.concatenate([i, np.arange(g), g + np.arange(p), g + j]),
                         np.concatenate([j, p + np.arange(g), np.arange(p), p + i]))),
                       shape=(g + p, p + g))
        r, c = min_weight_full_bipartite_matching(a)
        real = (r < g) & (c < p)
        rows, cols = r[real].astype(np.int64), c[real].astype(np.int64)
    n_left = min(g, p) - len(rows)
    free_g = np.flatnonzero(~np.isin(np.arange(g), rows))[:n_left]
    free_p = np.flatnonzero(~np.isin(np.arange(p), cols))[:n_left]
    rows, cols = np.concatenate([rows, free_g]), np.concatenate([cols, free_p])
    gated = np.arange(len(rows)) >= len(rows) - n_left
    rows, cols, gated = (a[np.argsort(rows, kind="stable")] for a in (rows, cols, gated))
    m_ds = np.sqrt(np.sum((gs[rows] - ps[cols]) ** 2, axis=1))
    m_de = np.sqrt(np.sum((ge[rows] - pe[cols]) ** 2, axis=1))
    return rows, cols, m_ds, m_de, gated


def evaluate_vectors(gt, pred, *, voxel_size=None, shape=None, border_um=BORDER_UM,
                     levels="nucleus-golgi", major_axes=None, region=None) -> EvalResult:
    """Evaluate predicted vectors against ground truth for one image.

    Parameters
    ----------
    gt, pred : VectorTable
        Ground-truth and predicted vectors, (z, y, x) voxels.
    voxel_size : tuple of 3 floats, optional
        (z, y, x) µm per voxel. Without it, distances are in voxels/pixels.
    shape : tuple of int, optional
        Spatial image shape (Z, Y, X) or (Y, X) in voxels. When given, GT and
        predicted vectors with an endpoint (start or end point) closer than
        ``border_um`` to an x/y edge are excluded. The edge distance of a point
        is ``min(min(x, (X-1)-x)·vx, min(y, (Y-1)-y)·vy)`` (z is not used); a
        vector is excluded when that distance is ``< border_um`` for its start
        or its end point (points outside the image have negative distances
        and are always excluded). Without ``shape``, nothing is excluded.
    border_um : float
        Border width (µm; pixels without voxel size). 0 keeps every vector
        inside the image.
    levels : str
        Threshold preset, ``"nucleus-golgi"`` or ``"cytoplasm-nucleus"``.
    major_axes : (float, float), optional
        Custom major axes (A, B), overriding ``levels``.
    region : ((z0, y0, x0), (z1, y1, x1)), optional
        Evaluate inside this box only (voxels, inclusive; 2D tables have z 0):
        GT and predicted vectors with an endpoint outside it are left out
        (counted in ``gt_outside`` / ``pred_outside``). For ground truth that
        covers part of the image (see :func:`annotated_region`).

    Returns
    -------
    EvalResult
        See the module docstring for the metrics.
    """
    thresholds = level_thresholds(levels, major_axes=major_axes)
    vs = np.ones(3) if voxel_size is None else np.asarray(voxel_size, dtype=np.float64)
    if vs.shape != (3,):
        raise ValueError(f"voxel_size must be (z, y, x), got {voxel_size!r}")
    gt_keep = _keep_mask(gt, shape, border_um, vs)
    pred_keep = _keep_mask(pred, shape, border_um, vs)
    gt_out = pred_out = 0
    if region is not None:
        gt_in, pred_in = _inside(gt, region), _inside(pred, region)
        gt_out, pred_out = int((gt_keep & ~gt_in).sum()), int((pred_keep & ~pred_in).sum())
        gt_keep, pred_keep = gt_keep & gt_in, pred_keep & pred_in
    gi = np.flatnonzero(gt_keep)
    pi = np.flatnonzero(pred_keep)
    gs, ge = gt.start[gi] * vs, gt.end[gi] * vs
    ps, pe = pred.start[pi] * vs, pred.end[pi] * vs

    _, _, tau_s0, tau_e0 = thresholds[0]
    if len(gi) and len(pi):
        rows, cols, m_ds, m_de, gated = _gated_assignment(gs, ge, ps, pe, tau_s0, tau_e0)
    else:
        rows = cols = np.zeros(0, dtype=int)
        m_ds = m_de = np.zeros(0)
        gated = np.zeros(0, dtype=bool)

    v_gt = (ge - gs)[rows]
    v_pred = (pe - ps)[cols]
    cs = _cosine(v_gt, v_pred)
    err = np.linalg.norm(v_gt - v_pred, axis=1)

    tp_level = np.full(len(rows), -1, dtype=int)
    out = []
    for level, maf, tau_s, tau_e in thresholds:
        tp = ~gated & _within(m_ds, tau_s) & _within(m_de, tau_e)
        tp_level[tp] = level
        out.append(LevelResult(level, maf, tau_s, tau_e, len(gi), len(pi),
                               cs[tp], err[tp], m_ds[tp], m_de[tp]))
    matching = Matching(gi[rows], pi[cols], m_ds, m_de, gated, gt_keep, pred_keep, tp_level)
    return EvalResult(out, unit="px" if voxel_size is None else "um", matching=matching,
                      gt_excluded=int((~gt_keep).sum()) - gt_out,
                      pred_excluded=int((~pred_keep).sum()) - pred_out,
                      region=None if region is None else tuple(tuple(map(float, c))
                                                               for c in region),
                      gt_outside=gt_out, pred_outside=pred_out)


def pool_results(results: Sequence[EvalResult]) -> EvalResult:
    """Pool the evaluations of several images into one.

    TP/FP/FN (and G, P) are summed and the TP measurements concatenated, then
    every statistic is recomputed over the pooled TPs.

    Raises
    ------
    ValueError
        When ``results`` is empty, or mixes threshold levels or units.
    """
    results = list(results)
    if not results:
        raise ValueError("no results to pool")
    first = results[0]
    taus = [(lv.tau_start, lv.tau_end) for lv in first.levels]
    for r in results[1:]:
        if [(lv.tau_start, lv.tau_end) for lv in r.levels] != taus:
            raise ValueError("cannot pool results evaluated with different threshold levels")
        if r.unit != first.unit:
            raise ValueError("cannot pool results in µm with results in pixels")
    pooled = []
    for i, lv in enumerate(first.levels):
        parts = [r.levels[i] for r in results]
        pooled.append(LevelResult(
            lv.level, lv.maf, lv.tau_start, lv.tau_end,
            sum(p.g for p in parts), sum(p.p for p in parts),
            *(np.concatenate([getattr(p, name) for p in parts]) for name in _STATS)))
    return EvalResult(pooled, unit=first.unit, matching=None,
                      n_images=sum(r.n_images for r in results),
                      gt_excluded=sum(r.gt_excluded for r in results),
                      pred_excluded=sum(r.pred_excluded for r in results),
                      gt_outside=sum(r.gt_outside for r in results),
                      pred_outside=sum(r.pred_outside for r in results))


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return ""
    return repr(round(v, 6) + 0.0)  # + 0.0 turns -0.0 into 0.0


def metrics_csv_text(result: EvalResult) -> str:
    """The metrics table as CSV text (header :data:`CSV_COLUMNS`, None -> empty cell)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in result.rows():
        w.writerow([_csv_value(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def write_metrics_csv(path, result: EvalResult):
    """Write the per-level metrics of ``result`` as CSV, atomically."""
    write_text_atomic(path, metrics_csv_text(result))


def format_table(result: EvalResult) -> str:
    """The per-level metrics as an aligned plain-text table ("-" for None)."""
    unit = "µm" if result.unit == "um" else "px"

    def num(v, digits):
        return "-" if v is None else f"{v:.{digits}f}"

    def pm(lv, name, digits):
        m, s = lv.stat(name, "mean"), lv.stat(name, "std")
        return "-" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"

    header = ["level", "maf", f"tau_start({unit})", f"tau_end({unit})", "TP", "FP", "FN",
              "TPR", "FDR", "CS", f"error({unit})", f"start_dist({unit})", f"end_dist({unit})"]
    table = [header]
    for lv in result.levels:
        table.append([str(lv.level), f"{lv.maf:.2f}", f"{lv.tau_start:g}", f"{lv.tau_end:g}",
                      str(lv.tp), str(lv.fp), str(lv.fn), num(lv.tpr, 3), num(lv.fdr, 3),
                      pm(lv, "cs", 3), pm(lv, "error", 2), pm(lv, "start_dist", 2),
                      pm(lv, "end_dist", 2)])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in table]
    return "\n".join(lines) + "\n"
