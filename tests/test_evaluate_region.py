"""Evaluation restricted to a region (partial annotations): cellpol_core.detection.evaluate."""

import numpy as np
import pytest

from cellpol_core.detection.evaluate import annotated_region, evaluate_vectors, pool_results
from cellpol_core.io.vectors import VectorTable


def table(starts, ends):
    return VectorTable(np.array(starts, float), np.array(ends, float), ndim=3)


def test_annotated_region_is_the_grown_box_clipped_to_the_image():
    gt = table([(5, 10, 20), (7, 30, 22)], [(6, 12, 24), (8, 31, 40)])
    # margin 2 µm with (1, 0.5, 0.25) µm voxels: 2, 4 and 8 voxels
    low, high = annotated_region(gt, margin_um=2.0, voxel_size=(1.0, 0.5, 0.25))
    assert low == (3.0, 6.0, 12.0) and high == (10.0, 35.0, 48.0)
    low, high = annotated_region(gt, margin_um=2.0, voxel_size=(1.0, 0.5, 0.25),
                                 shape=(9, 34, 100))
    assert low == (3.0, 6.0, 12.0) and high == (8.0, 33.0, 48.0)
    with pytest.raises(ValueError):
        annotated_region(VectorTable.empty(ndim=3))


def test_region_leaves_out_far_predictions_and_says_how_many():
    # 3 annotated cells in one corner; the model found them and 5 unannotated cells far away.
    gt = table([(5, 10, 10), (5, 20, 12), (5, 15, 25)], [(5, 12, 12), (5, 22, 14), (5, 17, 27)])
    far_s = [(5, 80, 80 + 3 * k) for k in range(5)]
    far_e = [(5, 82, 81 + 3 * k) for k in range(5)]
    pred = table(list(gt.start) + far_s, list(gt.end) + far_e)
    everywhere = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1))
    assert (everywhere.levels[5].tp, everywhere.levels[5].fp) == (3, 5)  # 3 TP, 5 "FP"
    assert everywhere.region is None and everywhere.pred_outside == 0
    region = annotated_region(gt, margin_um=5.0)
    inside = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1), region=region)
    assert (inside.g, inside.p) == (3, 3)
    assert (inside.levels[5].tp, inside.levels[5].fp, inside.levels[5].fn) == (3, 0, 0)
    assert inside.f1(5) == 1.0
    assert (inside.gt_outside, inside.pred_outside) == (0, 5)
    assert (inside.gt_excluded, inside.pred_excluded) == (0, 0)
    assert inside.region == ((0.0, 5.0, 5.0), (10.0, 27.0, 32.0))
    # the matching's kept masks name the left-out predictions by index
    assert inside.matching.pred_kept.tolist() == [True] * 3 + [False] * 5
    pooled = pool_results([inside, inside])
    assert (pooled.gt_outside, pooled.pred_outside) == (0, 10)


def test_region_counts_apart_from_the_border():
    # One prediction near the x edge (border), one outside the region: each counted once.
    gt = table([(0, 50, 50)], [(0, 52, 52)])
    pred = table([(0, 50, 50), (0, 50, 2), (0, 90, 60)], [(0, 52, 52), (0, 51, 3), (0, 91, 62)])
    r = evaluate_vectors(gt, pred, voxel_size=(1, 1, 1), shape=(1, 100, 100), border_um=7.0,
                         region=((0, 0, 0), (0, 60, 100)))
    assert (r.p, r.pred_excluded, r.pred_outside) == (1, 1, 1)
    assert r.f1(13) == 1.0
