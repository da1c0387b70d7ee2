"""Tests of the 14-level evaluation (cellpol_core.detection.evaluate) and `cellpol evaluate`.

Every expected number is worked out by hand in the comments. Reminder of the
nucleus-golgi thresholds (MAF·16 µm, MAF·8 µm), level 0 … 13:
  tau_start = 12.0 11.2 10.4 9.6 8.8 8.0 7.2 6.4 5.6 4.8 4.0 3.2 2.4 1.6
  tau_end   =  6.0  5.6  5.2 4.8 4.4 4.0 3.6 3.2 2.8 2.4 2.0 1.6 1.2 0.8
"""

import csv
import math

import numpy as np
import pytest

from cellpol_core.cli import main
from cellpol_core.detection.evaluate import (CSV_COLUMNS, MAF, evaluate_vectors, level_thresholds,
                                   pool_results, write_metrics_csv)
from cellpol_core.io.vectors import VectorTable, write_vectors

NG_START = [12.0, 11.2, 10.4, 9.6, 8.8, 8.0, 7.2, 6.4, 5.6, 4.8, 4.0, 3.2, 2.4, 1.6]
NG_END = [6.0, 5.6, 5.2, 4.8, 4.4, 4.0, 3.6, 3.2, 2.8, 2.4, 2.0, 1.6, 1.2, 0.8]
CN_START = [72.0, 67.2, 62.4, 57.6, 52.8, 48.0, 43.2, 38.4, 33.6, 28.8, 24.0, 19.2, 14.4, 9.6]
CN_END = [12.75, 11.9, 11.05, 10.2, 9.35, 8.5, 7.65, 6.8, 5.95, 5.1, 4.25, 3.4, 2.55, 1.7]


def table(starts, ends, ndim=3):
    """A VectorTable from lists of (z, y, x) points."""
    if not starts:
        return VectorTable.empty(ndim=ndim)
    return VectorTable(np.array(starts, float), np.array(ends, float), ndim=ndim)


def tp_levels(result):
    """The levels at which there is at least one TP."""
    return [lv.level for lv in result.levels if lv.tp > 0]


# ----------------------------------------------------------------------------- thresholds

def test_level_presets():
    assert MAF[0] == 0.75 and MAF[-1] == 0.1 and len(MAF) == 14
    ng = level_thresholds("nucleus-golgi")
    assert [t[0] for t in ng] == list(range(14))
    assert [t[2] for t in ng] == NG_START
    assert [t[3] for t in ng] == NG_END
    cn = level_thresholds("cytoplasm-nucleus")
    assert [t[2] for t in cn] == CN_START  # exact: 0.7*96 alone is 67.19999999999999
    assert [t[3] for t in cn] == CN_END
    custom = level_thresholds(major_axes=(10, 20))
    assert custom[0][2:] == (7.5, 15.0) and custom[13][2:] == (1.0, 2.0)
    with pytest.raises(ValueError):
        level_thresholds("golgi-nucleus")
    with pytest.raises(ValueError):
        level_thresholds(major_axes=(0, 5))


# ----------------------------------------------------------------------------- matching

def test_perfect_prediction():
    gt = table([(3, 10, 10), (5, 40, 60), (8, 70, 20)], [(4, 12, 15), (5, 45, 60), (2, 70, 10)])
    r = evaluate_vectors(gt, gt.subset(slice(None)), voxel_size=(0.27, 0.666, 0.666))
    assert r.unit == "um" and r.g == 3 and r.p == 3
    for lv in r.levels:
        assert (lv.tp, lv.fp, lv.fn) == (3, 0, 0)
        assert lv.tpr == 1.0 and lv.fdr == 0.0 and lv.f1 == 1.0
        row = lv.row()
        assert row["cs_mean"] == pytest.approx(1.0) and row["cs_std"] == pytest.approx(0.0, abs=1e-12)
        for k in ("error", "start_dist", "end_dist"):
            assert row[f"{k}_mean"] == 0.0 and row[f"{k}_std"] == 0.0
    assert sorted(r.matching.tp_pairs(13).tolist()) == [[0, 0], [1, 1], [2, 2]]


def test_shifted_flips_nucleus_golgi():
    # vs (z, y, x) = (0.5, 1, 1). Start moved 10 z-voxels = 5 µm, end moved 3 x-voxels = 3 µm.
    # start: 5 <= 5.6 (level 8), > 4.8 (level 9); end: 3 <= 3.2 (level 7), > 2.8 (level 8).
    gt = table([(10, 50, 50)], [(10, 50, 60)])
    vs = (0.5, 1.0, 1.0)
    both = evaluate_vectors(gt, table([(20, 50, 50)], [(10, 50, 63)]), voxel_size=vs)
    assert tp_levels(both) == list(range(8))  # TP at 0..7, flips at level 8
    start_only = evaluate_vectors(gt, table([(20, 50, 50)], [(10, 50, 60)]), voxel_size=vs)
    assert tp_levels(start_only) == list(range(9))  # flips at level 9
    end_only = evaluate_vectors(gt, table([(10, 50, 50)], [(10, 50, 63)]), voxel_size=vs)
    assert tp_levels(end_only) == list(range(8))
    lv = both.levels[0]
    assert lv.row()["start_dist_mean"] == pytest.approx(5.0)
    assert lv.row()["end_dist_mean"] == pytest.approx(3.0)
    # at level 8 the pair is matched but not a TP: 1 FP and 1 FN
    assert (both.levels[8].tp, both.levels[8].fp, both.levels[8].fn) == (0, 1, 1)
    assert both.matching.tp_level.tolist() == [7]


def test_shifted_flips_cytoplasm_nucleus_2d_pixels():
    # 2D, pixels. GT start (50, 50), end (50, 60) (y, x). Pred start moved 30 px in y, end 5 px in x.
    # start 30 <= 33.6 (level 8), > 28.8 (level 9); end 5 <= 5.1 (level 9), > 4.25 (level 10).
    gt = table([(0, 50, 50)], [(0, 50, 60)], ndim=2)
    pred = table([(0, 80, 50)], [(0, 50, 65)], ndim=2)
    r = evaluate_vectors(gt, pred, levels="cytoplasm-nucleus")
    assert r.unit == "px"
    assert tp_levels(r) == list(range(9))
    # GT V = (0, 10), pred V = (-30, 15) (y, x): cos = 150 / (10 * sqrt(1125)) = 1/sqrt(5);
    # error = |(0,10) - (-30,15)| = |(30, -5)| = sqrt(925)
    row = r.levels[0].row()
    assert row["cs_mean"] == pytest.approx(1 / math.sqrt(5))
    assert row["error_mean"] == pytest.approx(math.sqrt(925))
    assert row["cs_std"] == 0.0
    end_only = evaluate_vectors(gt, table([(0, 50, 50)], [(0, 50, 65)], ndim=2),
                                levels="cytoplasm-nucleus")
    assert tp_levels(end_only) == list(range(10))  # flips at level 10
    # end moved exactly 1.7 px = tau_end at level 13 (inclusive): TP at every level
    exact = evaluate_vectors(gt, table([(0, 50, 50)], [(0, 50, 61.7)], ndim=2),
                             levels="cytoplasm-nucleus")
    assert tp_levels(exact) == list(range(14))
    # the same pair with nucleus-golgi thresholds: start 30 px > 12 -> gated, never TP
    assert tp_levels(evaluate_vectors(gt, pred)) == []


def test_custom_major_axes():
    # A = 40, B = 10: tau_start level 0 = 30, tau_end level 0 = 7.5, level 5 = 20 and 5.
    gt = table([(0, 50, 50)], [(0, 50, 60)], ndim=2)
    pred = table([(0, 70, 50)], [(0, 50, 65)], ndim=2)  # start 20, end 5: TP up to level 5
    r = evaluate_vectors(gt, pred, major_axes=(40, 10))
    assert r.levels[5].tau_start == 20.0 and r.levels[5].tau_end == 5.0
    assert tp_levels(r) == list(range(6))


def test_tie_gives_one_tp_one_fp():
    # Two predictions both shifted 2 µm (one +x, one -x) at start and end: cost 4 each.
    # end 2.0 <= tau_end 2.0 at level 10 (inclusive), > 1.6 at level 11.
    gt = table([(5, 50, 50)], [(5, 50, 55)])
    pred = table([(5, 50, 52), (5, 50, 48)], [(5, 50, 57), (5, 50, 53)])
    r = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1))
    for lv in r.levels[:11]:
        assert (lv.tp, lv.fp, lv.fn) == (1, 1, 0)
        assert lv.tpr == 1.0 and lv.fdr == 0.5
        assert lv.f1 == pytest.approx(2 / 3)  # 2*1 / (2 + 1 + 0)
    for lv in r.levels[11:]:
        assert (lv.tp, lv.fp, lv.fn) == (0, 2, 1)
    assert len(r.matching.gt_index) == 1


def test_inclusive_threshold_exactly_at_tau():
    # vs x = 0.5: 24 voxels = 12.0 µm = tau_start at level 0 -> TP at 0, not at 1 (11.2).
    gt = table([(2, 40, 40)], [(2, 40, 45)])
    pred = table([(2, 40, 64)], [(2, 40, 45)])
    r = evaluate_vectors(gt, pred, voxel_size=(1.0, 0.5, 0.5))
    assert r.levels[0].row()["start_dist_mean"] == 12.0
    assert tp_levels(r) == [0]
    # 61.2 - 50 = 11.200000000000003 in floats, still TP at level 1 (11.2), not at 2 (10.4)
    gt = table([(0, 50, 50)], [(0, 50, 55)])
    pred = table([(0, 50, 61.2)], [(0, 50, 55)])
    assert tp_levels(evaluate_vectors(gt, pred)) == [0, 1]


def test_empty_tables():
    some = table([(0, 10, 10), (0, 30, 30)], [(0, 10, 15), (0, 30, 35)])
    empty = table([], [])
    no_gt = evaluate_vectors(empty, some)  # G = 0, P = 2
    for lv in no_gt.levels:
        assert (lv.tp, lv.fp, lv.fn) == (0, 2, 0)
        assert lv.tpr is None and lv.fdr == 1.0 and lv.f1 == 0.0
        assert lv.row()["cs_mean"] is None and lv.row()["error_std"] is None
    no_pred = evaluate_vectors(some, empty)  # G = 2, P = 0
    for lv in no_pred.levels:
        assert (lv.tp, lv.fp, lv.fn) == (0, 0, 2)
        assert lv.tpr == 0.0 and lv.fdr is None and lv.f1 == 0.0
    neither = evaluate_vectors(empty, empty)
    for lv in neither.levels:
        assert (lv.tp, lv.fp, lv.fn) == (0, 0, 0)
        assert lv.tpr is None and lv.fdr is None and lv.f1 is None


def test_border_exclusion():
    # shape (Z, Y, X) = (10, 100, 200), vs x = y = 0.5 µm.
    # end x = 13.8 -> 13.8 * 0.5 = 6.9 µm from the left edge: excluded with border 7.
    # right edge: x = 199 - 13.8 = 185.2 -> also 6.9 µm. A point at x = 14 is 7.0 µm: kept.
    shape, vs = (10, 100, 200), (0.27, 0.5, 0.5)
    near_left = table([(5, 50, 100)], [(5, 50, 13.8)])
    near_right = table([(5, 50, 100)], [(5, 50, 185.2)])
    at_seven = table([(5, 50, 100)], [(5, 50, 14.0)])
    for t in (near_left, near_right):
        r = evaluate_vectors(t, t, voxel_size=vs, shape=shape, border_um=7)
        assert (r.g, r.p, r.gt_excluded, r.pred_excluded) == (0, 0, 1, 1)
        assert r.levels[0].tpr is None
        r0 = evaluate_vectors(t, t, voxel_size=vs, shape=shape, border_um=0)
        assert (r0.g, r0.p, r0.levels[0].tp) == (1, 1, 1)
    r = evaluate_vectors(at_seven, at_seven, voxel_size=vs, shape=shape, border_um=7)
    assert (r.g, r.levels[0].tp) == (1, 1)
    # the start point counts too: y = 13 -> 6.5 µm from the top edge
    start_near = table([(5, 13, 100)], [(5, 50, 100)])
    r = evaluate_vectors(start_near, table([], []), voxel_size=vs, shape=shape, border_um=7)
    assert r.g == 0 and r.matching.gt_kept.tolist() == [False]
    # z is not used: z = 0 is fine; no shape -> no exclusion
    flat = table([(0, 50, 100)], [(9, 50, 110)])
    assert evaluate_vectors(flat, flat, voxel_size=vs, shape=shape).g == 1
    assert evaluate_vectors(near_left, near_left, voxel_size=vs).g == 1
    # a 2D shape (Y, X) is accepted and only GT is excluded where only GT is near the edge
    gt = table([(0, 50, 100), (0, 50, 100)], [(0, 50, 13.8), (0, 60, 100)], ndim=2)
    pred = table([(0, 50, 100)], [(0, 60, 100)], ndim=2)
    r = evaluate_vectors(gt, pred, voxel_size=(1, 0.5, 0.5), shape=(100, 200))
    assert (r.g, r.p, r.levels[0].tp) == (1, 1, 1)
    assert r.matching.tp_pairs(0).tolist() == [[1, 0]]  # indices into the tables as given


def test_gating_beyond_level_zero():
    gt = table([(0, 50, 50)], [(0, 50, 55)])
    # the only candidate: start 13 µm away (> 12), end exact -> must not be matched as TP
    r = evaluate_vectors(gt, table([(0, 63, 50)], [(0, 50, 55)]), voxel_size=(1, 1, 1))
    assert tp_levels(r) == []
    assert (r.levels[0].fp, r.levels[0].fn) == (1, 1)
    assert r.matching.gated.tolist() == [True] and r.matching.tp_level.tolist() == [-1]
    # start exact, end 6.5 µm away (> 6): gated on the end distance alone
    r = evaluate_vectors(gt, table([(0, 50, 50)], [(0, 56.5, 55)]), voxel_size=(1, 1, 1))
    assert tp_levels(r) == []


def test_gating_changes_assignment():
    # Starts on y = 50, ends on y = 80 (x given), voxel 1 µm:
    #   GT0 start 20, end 20;  GT1 start 31.5, end 26;  P0 start 31, end 20;  P1 start 20, end 32.
    # ds/de: GT0-P0 11/0 (ok, 11); GT1-P1 11.5/6 (ok, 17.5); GT0-P1 0/12 (end > 6: gated);
    # GT1-P0 0.5/6 (ok, 6.5). Raw sums pick the crossed pairs (12 + 6.5 = 18.5 < 28.5),
    # which give 1 TP; with the gate the assignment keeps GT0-P0 and GT1-P1: 2 TPs at level 0.
    # Level 1 (11.2, 5.6): only GT0-P0 (11 <= 11.2); level 2 (10.4): none.
    from scipy.optimize import linear_sum_assignment

    gt = table([(0, 50, 20), (0, 50, 31.5)], [(0, 80, 20), (0, 80, 26)])
    pred = table([(0, 50, 31), (0, 50, 20)], [(0, 80, 20), (0, 80, 32)])
    raw = np.array([[11.0, 12.0], [6.5, 17.5]])
    assert linear_sum_assignment(raw)[1].tolist() == [1, 0]  # what an ungated match would do
    r = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1))
    assert r.matching.tp_pairs(0).tolist() == [[0, 0], [1, 1]]
    assert [lv.tp for lv in r.levels[:3]] == [2, 1, 0]
    assert r.matching.tp_level.tolist() == [1, 0]


def test_reversed_vector_cs_minus_one():
    # GT V = 4 µm along x; pred swaps start and end: start dist 4, end dist 4.
    # cos = -1, error = |V - (-V)| = 8. start 4 <= 4.0 (level 10); end 4 <= 4.0 (level 5).
    gt = table([(0, 50, 50)], [(0, 50, 54)])
    pred = table([(0, 50, 54)], [(0, 50, 50)])
    r = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1))
    assert tp_levels(r) == list(range(6))
    row = r.levels[0].row()
    assert row["cs_mean"] == -1.0 and row["error_mean"] == 8.0


def test_anisotropic_voxel_size():
    # vs (z, y, x) = (2, 0.5, 1). GT (1,10,10)->(1,10,14): V = (0, 0, 4) µm.
    # pred (4,10,10)->(1,14,14): start 3 z-voxels = 6 µm, end 4 y-voxels = 2 µm,
    # pred V = (1-4, 14-10, 14-10) = (-3, 4, 4) voxels = (-6, 2, 4) µm:
    # cos = 16 / (4 * sqrt(56)) = 4/sqrt(56); error = |(0,0,4) - (-6,2,4)| = sqrt(40).
    # µm: start 6 <= 6.4 (level 7) > 5.6; end 2 <= 2.0 (level 10) -> TP 0..7.
    # voxels: start 3 <= 3.2 (level 11); end 4 <= 4.0 (level 5) -> TP 0..5.
    gt = table([(1, 10, 10)], [(1, 10, 14)])
    pred = table([(4, 10, 10)], [(1, 14, 14)])
    r = evaluate_vectors(gt, pred, voxel_size=(2.0, 0.5, 1.0))
    assert tp_levels(r) == list(range(8))
    row = r.levels[0].row()
    assert row["start_dist_mean"] == pytest.approx(6.0)
    assert row["end_dist_mean"] == pytest.approx(2.0)
    assert row["cs_mean"] == pytest.approx(4 / math.sqrt(56))
    assert row["error_mean"] == pytest.approx(math.sqrt(40))
    assert tp_levels(evaluate_vectors(gt, pred)) == list(range(6))


def test_zero_length_vector_cs_is_excluded():
    # GT has zero length: cos undefined (NaN, left out), but the pair is a TP with error 3.
    gt = table([(0, 50, 50)], [(0, 50, 50)])
    pred = table([(0, 50, 50)], [(0, 50, 53)])
    lv = evaluate_vectors(gt, pred).levels[0]
    assert lv.tp == 1 and lv.row()["cs_mean"] is None and lv.row()["error_mean"] == 3.0


def test_pooling_equals_hand_sum():
    # Image A: GT0 matched by a pred whose end is 2 µm off (error 2, TP up to level 10);
    # GT1 and pred1 are far from everything. G=2, P=2, TP=1 (levels 0..10).
    a = evaluate_vectors(
        table([(0, 20, 20), (0, 80, 80)], [(0, 20, 25), (0, 80, 85)]),
        table([(0, 20, 20), (0, 20, 150)], [(0, 20, 27), (0, 20, 155)]), voxel_size=(1, 1, 1))
    # Image B: one exact match plus two far predictions. G=1, P=3, TP=1 at every level.
    b = evaluate_vectors(
        table([(0, 30, 30)], [(0, 30, 35)]),
        table([(0, 30, 30), (0, 90, 90), (0, 5, 90)], [(0, 30, 35), (0, 90, 95), (0, 5, 95)]),
        voxel_size=(1, 1, 1))
    pooled = pool_results([a, b])
    assert pooled.n_images == 2 and pooled.matching is None
    lv0 = pooled.levels[0]
    # TP 1+1, FP 1+2, FN 1+0; TPR 2/3, FDR 3/5, F1 4/(4+3+1) = 0.5
    assert (lv0.tp, lv0.fp, lv0.fn) == (2, 3, 1)
    assert lv0.tpr == pytest.approx(2 / 3) and lv0.fdr == pytest.approx(0.6)
    assert pooled.f1(0) == 0.5
    row = lv0.row()
    # errors {2, 0}: mean 1, population SD 1; end distances the same; start distances 0
    assert (row["error_mean"], row["error_std"]) == (1.0, 1.0)
    assert (row["end_dist_mean"], row["end_dist_std"]) == (1.0, 1.0)
    assert (row["start_dist_mean"], row["cs_mean"]) == (0.0, 1.0)
    lv11 = pooled.levels[11]  # only image B's TP remains
    assert (lv11.tp, lv11.fp, lv11.fn) == (1, 4, 2)
    assert lv11.row()["error_mean"] == 0.0 and lv11.row()["error_std"] == 0.0
    with pytest.raises(ValueError):
        pool_results([a, evaluate_vectors(table([], []), table([], []), levels="cytoplasm-nucleus")])
    with pytest.raises(ValueError):
        pool_results([a, evaluate_vectors(table([], []), table([], []))])  # µm with px


def test_metrics_csv_columns(tmp_path):
    out = tmp_path / "m.csv"
    some = table([(0, 10, 10)], [(0, 10, 15)])
    write_metrics_csv(out, evaluate_vectors(table([], []), some))
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS == (
        "level", "maf", "tau_start", "tau_end", "tp", "fp", "fn", "tpr", "fdr", "cs_mean",
        "cs_std", "error_mean", "error_std", "start_dist_mean", "start_dist_std",
        "end_dist_mean", "end_dist_std")
    assert len(rows) == 15
    first = dict(zip(rows[0], rows[1]))
    assert first["level"] == "0" and float(first["maf"]) == 0.75
    assert float(first["tau_start"]) == 12.0 and float(first["tau_end"]) == 6.0
    assert (first["tp"], first["fp"], first["fn"]) == ("0", "1", "0")
    assert first["tpr"] == "" and float(first["fdr"]) == 1.0 and first["cs_mean"] == ""
    last = dict(zip(rows[0], rows[14]))
    assert float(last["tau_start"]) == 1.6 and float(last["maf"]) == 0.1
    assert list(tmp_path.iterdir()) == [out]  # atomic write left no temporary file


# ----------------------------------------------------------------------------- CLI

def write_table(path, starts, ends, ndim=3):
    write_vectors(path, table(starts, ends, ndim=ndim))


def read_metrics(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_files(tmp_path, capsys):
    gt, pred, out = tmp_path / "gt.csv", tmp_path / "pred.csv", tmp_path / "m.csv"
    # x voxel 0.5 µm: start shifted 8 voxels = 4 µm -> TP up to level 10 (4.0)
    write_table(gt, [(3, 50, 50)], [(3, 50, 60)])
    write_table(pred, [(3, 50, 58)], [(3, 50, 60)])
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(pred),
               "--voxel-size", "0.5", "0.5", "0.27", "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "TPR" in text and "1 ground-truth and 1 predicted" in text
    rows = read_metrics(out)
    assert [r["tp"] for r in rows] == ["1"] * 11 + ["0"] * 3
    assert float(rows[0]["start_dist_mean"]) == 4.0


def test_cli_shape_and_levels(tmp_path, capsys):
    gt, out = tmp_path / "gt.csv", tmp_path / "m.csv"
    # 2D pixels, X = 200, Y = 100. x = 150 is 49 px from the right edge: kept. Had the
    # shape been read as (X, Y) = (100, 200), x = 150 would lie outside and be excluded.
    write_table(gt, [(0, 50, 150)], [(0, 50, 160)], ndim=2)
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(gt), "--shape", "200", "100",
               "--levels", "cytoplasm-nucleus", "-o", str(out)])
    assert rc == 0
    rows = read_metrics(out)
    assert float(rows[0]["tau_start"]) == 72.0 and float(rows[13]["tau_end"]) == 1.7
    assert rows[0]["tp"] == "1"
    # y = 95 is 4 px from the bottom edge (99 - 95): excluded with border 7, kept with 3
    write_table(gt, [(0, 95, 150)], [(0, 50, 160)], ndim=2)
    assert main(["evaluate", "--gt", str(gt), "--pred", str(gt), "--shape", "200", "100",
                 "-o", str(out)]) == 0
    assert read_metrics(out)[0]["tp"] == "0" and read_metrics(out)[0]["tpr"] == ""
    assert main(["evaluate", "--gt", str(gt), "--pred", str(gt), "--shape", "200", "100",
                 "--border-um", "3", "--major-axes", "20", "40", "-o", str(out)]) == 0
    rows = read_metrics(out)
    assert rows[0]["tp"] == "1" and float(rows[0]["tau_end"]) == 30.0
    capsys.readouterr()


def test_cli_folders(tmp_path, capsys):
    gdir, pdir = tmp_path / "gt", tmp_path / "pred"
    gdir.mkdir()
    pdir.mkdir()
    # a: exact match. b: one GT, prediction off by 13 px at the start (gated) -> FP + FN.
    write_table(gdir / "a.csv", [(0, 20, 20)], [(0, 20, 25)], ndim=2)
    write_table(pdir / "a_vectors.csv", [(0, 20, 20)], [(0, 20, 25)], ndim=2)
    write_table(gdir / "b_vectors.csv", [(0, 40, 40)], [(0, 40, 45)], ndim=2)
    write_table(pdir / "b.csv", [(0, 53, 40)], [(0, 40, 45)], ndim=2)
    (pdir / "c_vectors.csv").write_text("")  # no GT: ignored with a note
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 image(s)" in captured.out and "c_vectors.csv" in captured.err
    row = read_metrics(out)[0]
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "1", "1")
    # empty prediction file for b: FP 0
    (pdir / "b.csv").write_text("")
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "-o", str(out)]) == 0
    row = read_metrics(out)[0]
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "0", "1")
    # a GT file with no prediction: exit 2, naming it
    (pdir / "b.csv").unlink()
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "b_vectors.csv" in err and "no prediction" in err


def test_cli_image_folder(tmp_path, capsys):
    image_mod = pytest.importorskip("cellpol_core.io.image")
    if not hasattr(image_mod, "read_image"):
        pytest.skip("cellpol_core.io.image.read_image not available yet")
    gdir, pdir, idir = tmp_path / "gt", tmp_path / "pred", tmp_path / "img"
    for d in (gdir, pdir, idir):
        d.mkdir()
    # image a: (Z, Y, X) = (4, 32, 64), voxel (z, y, x) = (0.5, 0.25, 0.25) µm.
    # GT end at x = 60: min(60, 63 - 60) * 0.25 = 0.75 µm from the edge -> excluded (border 7).
    # GT start moved 8 x-voxels in the prediction of the second vector = 2 µm (kept: x 30..38).
    image_mod.write_ome_tiff(idir / "a.ome.tif", np.zeros((2, 4, 32, 64), np.uint8),
                             voxel_size=(0.5, 0.25, 0.25))
    write_table(gdir / "a.csv", [(1, 16, 40), (1, 16, 30)], [(1, 16, 60), (1, 16, 34)])
    write_table(pdir / "a_vectors.csv", [(1, 16, 38)], [(1, 16, 34)])
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "--image", str(idir),
                 "--border-um", "0.5", "-o", str(out)]) == 0
    assert "0 GT, 0 predicted" in capsys.readouterr().out  # 0.75 µm >= 0.5 µm: kept
    row = read_metrics(out)[0]
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "0", "1")
    assert float(row["start_dist_mean"]) == 2.0
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "--image", str(idir),
                 "--border-um", "1", "-o", str(out)]) == 0
    assert "1 GT, 0 predicted" in capsys.readouterr().out
    row = read_metrics(out)[0]
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "0", "0")


def test_cli_errors(tmp_path, capsys):
    gt, out = tmp_path / "gt.csv", tmp_path / "m.csv"
    write_table(gt, [(3, 50, 50)], [(3, 50, 60)])
    rc = main(["evaluate", "--gt", str(gt), "--pred", str(tmp_path / "missing.csv"),
               "-o", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "not found" in err and len(err.strip().splitlines()) == 1
    # 3D tables without voxel size
    assert main(["evaluate", "--gt", str(gt), "--pred", str(gt), "-o", str(out)]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(gt), "--pred", str(gt), "--voxel-size", "1", "1",
                 "-o", str(out)]) == 2
    assert "X Y Z" in capsys.readouterr().err
    assert not out.exists()
    # GT folder with a prediction file
    (tmp_path / "g").mkdir()
    assert main(["evaluate", "--gt", str(tmp_path / "g"), "--pred", str(gt), "-o", str(out)]) == 2
    capsys.readouterr()
    # 2D tables in pixels are fine
    gt2 = tmp_path / "gt2.csv"
    write_table(gt2, [(0, 50, 50)], [(0, 50, 60)], ndim=2)
    assert main(["evaluate", "--gt", str(gt2), "--pred", str(gt2), "-o", str(out)]) == 0
    assert "distances in pixels" in capsys.readouterr().out


def test_cli_image_matching_with_stand_in_reader(tmp_path, capsys, monkeypatch):
    # Checks the CLI side of --image (name matching, lazy read, shape and voxel size use)
    # with a stand-in reader, independent of the TIFF reader.
    import cellpol_core.io.image as image_mod

    calls = []

    def fake_read_image(path, *, axes=None, voxel_size=None, lazy=False):
        calls.append((path.name, lazy))
        data = np.broadcast_to(np.zeros((), np.uint8), (2, 4, 32, 64))  # (C, Z, Y, X)
        return image_mod.CellImage(data=data, voxel_size=voxel_size or (0.5, 0.25, 0.25),
                                   path=path)

    monkeypatch.setattr(image_mod, "read_image", fake_read_image, raising=False)
    gdir, pdir, idir = tmp_path / "gt", tmp_path / "pred", tmp_path / "img"
    for d in (gdir, pdir, idir):
        d.mkdir()
    (idir / "a.ome.tif").write_bytes(b"")
    (idir / "b.tif").write_bytes(b"")
    # a: the GT end at x = 60 is min(60, 3) * 0.25 = 0.75 µm from the right edge.
    write_table(gdir / "a.csv", [(1, 16, 40)], [(1, 16, 60)])
    write_table(pdir / "a.csv", [(1, 16, 40)], [(1, 16, 60)])
    # b: start moved 8 x-voxels = 2 µm (0.25 µm voxels), far from the edges.
    write_table(gdir / "b.csv", [(1, 16, 30)], [(1, 16, 34)])
    write_table(pdir / "b_vectors.csv", [(1, 16, 38)], [(1, 16, 34)])
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "--image", str(idir),
                 "--border-um", "1", "-o", str(out)]) == 0
    assert sorted(calls) == [("a.ome.tif", True), ("b.tif", True)]
    assert "1 GT, 1 predicted" in capsys.readouterr().out  # a's vector is excluded from both
    row = read_metrics(out)[0]
    assert (row["tp"], row["fp"], row["fn"]) == ("1", "0", "0")
    assert float(row["start_dist_mean"]) == 2.0
    # --voxel-size overrides the image's: 8 voxels * 0.5 µm = 4 µm
    assert main(["evaluate", "--gt", str(gdir / "b.csv"), "--pred", str(pdir / "b_vectors.csv"),
                 "--image", str(idir / "b.tif"), "--voxel-size", "0.5", "0.5", "1",
                 "-o", str(out)]) == 0
    assert float(read_metrics(out)[0]["start_dist_mean"]) == 4.0
    # an image folder lacking a GT's image
    (idir / "b.tif").unlink()
    assert main(["evaluate", "--gt", str(gdir), "--pred", str(pdir), "--image", str(idir),
                 "-o", str(out)]) == 2
    assert "no image named 'b'" in capsys.readouterr().err
