"""The offset head: targets that follow augmentation, the masked loss, pairing with offsets."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from cellpol_core.detection.decode import decode_maps, pair_by_embedding, predicted_ends
from cellpol_core.detection.losses import CellPolLoss, offset_loss
from cellpol_core.detection.model import Thresholds
from cellpol_core.detection.network import OFFSET_KEYS, CellPolNet
from cellpol_core.detection.targets import OFFSET_UNIT, make_targets, render_offsets
from cellpol_core.detection.train import augment
from cellpol_core.errors import InputError
from cellpol_core.io.vectors import VectorTable

VS = (0.5, 0.7, 0.7)
RADII = (3.0, 1.5)


class ScriptedRng:
    """Answers augment()'s draws from a script: rotate?, k, flip y?, flip x?."""

    def __init__(self, rotate_k, flip_y, flip_x):
        self.randoms = [0.0 if rotate_k else 0.9, 0.0 if flip_y else 0.9,
                        0.0 if flip_x else 0.9]
        self.k = rotate_k

    def random(self):
        return self.randoms.pop(0)

    def integers(self, low, high):
        return self.k


def _vectors(rng, n=5, shape=(12, 32, 32)):
    start = rng.uniform([2, 4, 4], [s - 2 for s in shape], size=(n, 3))
    end = start + rng.uniform(-4, 4, size=(n, 3)) * [0.3, 1, 1]
    return VectorTable(start, end)


def _transform_offsets(off, k, flip_y, flip_x):
    """The offset target of a transformed patch, from the original one."""
    off = off.copy()
    for _ in range(k):
        # np.rot90 moves (y, x) to (nx - 1 - x, y): a displacement (dy, dx) to (-dx, dy).
        dy, dx = off[1].copy(), off[2].copy()
        off = np.rot90(off, 1, axes=(-2, -1)).copy()
        off[1], off[2] = -np.rot90(dx, 1, axes=(-2, -1)), np.rot90(dy, 1, axes=(-2, -1))
    if flip_y:
        off = off[..., ::-1, :].copy()
        off[1] = -off[1]
    if flip_x:
        off = off[..., ::-1].copy()
        off[2] = -off[2]
    return off


def test_offset_targets_are_displacements_to_the_end_on_the_start_support():
    vec = VectorTable(np.array([[5.0, 10.0, 10.0]]), np.array([[6.0, 12.0, 16.0]]))
    tg = make_targets((12, 32, 32), vec, voxel_size=VS, radii=RADII, offsets=True)
    assert tg.offset.shape == (3, 12, 32, 32) and tg.offset.dtype == np.float32
    assert np.array_equal(tg.offset_mask, (tg.ids_start > 0).astype(np.float32))
    v = (5, 10, 10)
    assert np.allclose(tg.offset[(slice(None),) + v],
                       np.array([1.0, 2.0, 6.0]) * VS / OFFSET_UNIT)
    v = (4, 9, 12)  # another support voxel: its own displacement
    assert tg.ids_start[v] == 1
    assert np.allclose(tg.offset[(slice(None),) + v],
                       (np.array([6.0, 12.0, 16.0]) - v) * VS / OFFSET_UNIT)
    assert np.all(tg.offset[:, tg.ids_start == 0] == 0)
    assert "offset" in tg.as_dict()
    plain = make_targets((12, 32, 32), vec, voxel_size=VS, radii=RADII)
    assert plain.offset is None and "offset" not in plain.as_dict()


@pytest.mark.parametrize("k,flip_y,flip_x", [(1, False, False), (2, False, False),
                                             (3, False, False), (0, True, False),
                                             (0, False, True), (1, True, True),
                                             (3, False, True)])
def test_offset_targets_follow_augmentation(k, flip_y, flip_x):
    rng = np.random.default_rng(k + 10 * flip_y + 100 * flip_x)
    shape = (12, 32, 32)
    vec = _vectors(rng)
    patch = rng.random((2,) + shape).astype(np.float32)
    before = make_targets(shape, vec, voxel_size=VS, radii=RADII, offsets=True)
    out, moved = augment(patch, vec, ScriptedRng(k, flip_y, flip_x), p=0.5, intensity=False)
    after = make_targets(out.shape[1:], moved, voxel_size=VS, radii=RADII, offsets=True)
    expected = _transform_offsets(before.offset, k, flip_y, flip_x)
    mask = _transform_offsets(before.offset_mask[None].repeat(3, 0), k, flip_y, flip_x)[0]
    assert np.array_equal(np.abs(mask), after.offset_mask)
    assert after.offset_mask.sum() > 0
    assert np.allclose(after.offset, expected, atol=1e-5)
    # Not trivially so: the transform changed the offsets.
    assert not np.allclose(after.offset, before.offset, atol=1e-3)


def test_offset_targets_are_physical_across_voxel_sizes():
    """Halving the voxel size (coordinates doubled) keeps the µm offsets."""
    vec = VectorTable(np.array([[4.0, 8.0, 8.0]]), np.array([[5.0, 9.0, 13.0]]))
    coarse = make_targets((10, 20, 20), vec, voxel_size=VS, radii=RADII, offsets=True)
    fine = make_targets((20, 40, 40), vec.scaled((2, 2, 2)), voxel_size=np.array(VS) / 2,
                        radii=RADII, offsets=True)
    both = coarse.offset_mask > 0
    assert np.allclose(fine.offset[:, ::2, ::2, ::2][:, both], coarse.offset[:, both])


def test_offset_targets_2d():
    ids = np.zeros((8, 8), int)
    ids[2:4, 2:4] = 1
    off, mask = render_offsets(ids, np.array([[0.0, 6.0, 7.0]]), voxel_size=(1, 2.0, 3.0))
    assert off.shape == (2, 8, 8) and mask.sum() == 4
    assert np.allclose(off[:, 2, 3], np.array([(6 - 2) * 2.0, (7 - 3) * 3.0]) / OFFSET_UNIT)


# ----------------------------------------------------------------------------- loss

def _loss_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(2, 3, 4, 6, 6, generator=g)
    mask = (torch.rand(2, 1, 4, 6, 6, generator=g) > 0.6).float()
    return target, mask


def test_offset_loss_zero_at_perfect_prediction_and_positive_otherwise():
    target, mask = _loss_inputs()
    assert float(offset_loss(target.clone(), target, mask)) == 0.0
    pred = target + 0.5 * mask  # wrong on the support only
    # smooth L1 of 0.5 is 0.125 per axis, 3 axes.
    assert float(offset_loss(pred, target, mask)) == pytest.approx(0.375)
    # Errors off the support cost nothing.
    assert float(offset_loss(target + 5.0 * (1 - mask), target, mask)) == 0.0


def test_offset_loss_gradient_only_on_support():
    target, mask = _loss_inputs(1)
    pred = torch.zeros_like(target, requires_grad=True)
    offset_loss(pred, target, mask).backward()
    grad = pred.grad.abs().sum(1, keepdim=True)
    assert torch.all(grad[mask == 0] == 0)
    assert torch.all(grad[mask == 1] > 0)


def test_offset_loss_sample_without_support_counts_as_zero():
    target, mask = _loss_inputs(2)
    mask[1] = 0
    pred = target + 1.0
    both = float(offset_loss(pred, target, mask))
    first = float(offset_loss(pred[:1], target[:1], mask[:1]))
    assert both == pytest.approx(first / 2)
    assert np.isfinite(both)


def test_cellpol_loss_adds_weighted_offset_term():
    net = CellPolNet(spatial_dims=2, base_filters=4, depth=1, head_filters=4, offset=True)
    x = torch.rand(2, 2, 16, 16)
    out = net(x)
    vec = VectorTable(np.array([[0.0, 6.0, 6.0]]), np.array([[0.0, 8.0, 11.0]]), ndim=2)
    tg = make_targets((16, 16), vec, voxel_size=(1, 1, 1), radii=(3, 2), offsets=True)
    batch = {k: torch.from_numpy(np.stack([v, v]) if k == "offset" else np.stack([v, v])[:, None])
             for k, v in tg.as_dict().items()}
    batch["ids_start"], batch["ids_end"] = batch["ids_start"].long(), batch["ids_end"].long()
    t1, p1 = CellPolLoss(gamma=1.0)(out, batch)
    t3, p3 = CellPolLoss(gamma=3.0)(out, batch)
    assert float(p1["offset"]) > 0
    assert float((t3 - t1).detach()) == pytest.approx(2 * float(p1["offset"]), rel=1e-5)


# ----------------------------------------------------------------------------- network

def test_offset_head_outputs_and_config():
    net3 = CellPolNet(base_filters=4, depth=1, head_filters=4, offset=True).eval()
    out = net3(torch.rand(1, 2, 4, 8, 8))
    assert set(OFFSET_KEYS) <= set(out) and out["offset_x"].shape == (1, 1, 4, 8, 8)
    assert tuple(out) == net3.output_keys
    assert net3.config()["offset"] is True
    assert CellPolNet(**net3.config()).offset
    plain = CellPolNet(base_filters=4, depth=1, head_filters=4)
    assert "offset" not in plain.config() and plain.offset_head is None
    assert not any(k.startswith("offset") for k in plain(torch.rand(1, 2, 4, 8, 8)))
    net2 = CellPolNet(spatial_dims=2, base_filters=4, depth=1, head_filters=4, offset=True)
    assert [k for k in net2(torch.rand(1, 2, 8, 8)) if k.startswith("offset")] == [
        "offset_y", "offset_x"]


def test_fused_network_keeps_the_offsets():
    torch.manual_seed(0)
    net = CellPolNet(base_filters=4, depth=1, head_filters=4, offset=True).eval()
    x = torch.rand(1, 2, 4, 8, 8)
    with torch.no_grad():
        ref = net(x)
        fused = net.fuse_for_inference()(x)
    assert set(fused) == set(ref)
    for k in OFFSET_KEYS:
        assert torch.allclose(fused[k], ref[k], atol=1e-5)


# ----------------------------------------------------------------------------- pairing

def test_old_thresholds_load_without_offsets():
    old = {"tau": [0.5, 0.5], "d_min_um": [3, 2], "d_max_um": 20, "delta": 2,
           "embed_weight": 0.0, "source": "tuned"}
    thr = Thresholds.from_dict(old)
    assert thr.offset_weight == 0.0 and thr.distance_weight == 1.0
    new = replace(thr, offset_weight=2.0, distance_weight=0.5)
    assert Thresholds.from_dict(new.to_dict()) == new
    with pytest.raises(InputError, match="offset_weight"):
        Thresholds.from_dict({**old, "offset_weight": -1})


def _crossing():
    """Two cells whose ends are each nearer the other cell's start."""
    start = np.array([[0.0, 10.0, 10.0], [0.0, 10.0, 20.0]])
    end = np.array([[0.0, 10.0, 14.0], [0.0, 10.0, 24.0]])
    truth_j = np.array([1, 0])  # start 0 -> end 1, start 1 -> end 0
    return start, end, truth_j


def test_offsets_fix_pairs_that_distance_gets_wrong():
    start, end, truth_j = _crossing()
    reach = end[truth_j]  # a perfect offset head
    kw = dict(voxel_size=(1, 1, 1), d_max_um=30.0, delta=2.0)
    emb = np.zeros(2)
    i, j = pair_by_embedding(start, emb, end, emb, embed_weight=0.0, **kw)
    assert not np.array_equal(j, truth_j)
    i, j = pair_by_embedding(start, emb, end, emb, embed_weight=0.0, predicted_end=reach,
                             offset_weight=2.0, **kw)
    assert np.array_equal(i, [0, 1]) and np.array_equal(j, truth_j)
    # The greedy rule (λ None) switches to the joint one when offsets weigh.
    i, j = pair_by_embedding(start, emb, end, emb, embed_weight=None, predicted_end=reach,
                             offset_weight=2.0, **kw)
    assert np.array_equal(j, truth_j)
    # Offset weight 0 ignores the predicted ends.
    i0, j0 = pair_by_embedding(start, emb, end, emb, embed_weight=0.0, predicted_end=reach,
                               offset_weight=0.0, **kw)
    assert np.array_equal(j0, [0, 1])


def _gauss_maps(points, shape, sigma=1.2):
    zz, yy, xx = np.indices(shape)
    hm = np.zeros(shape, np.float32)
    for p in points:
        d2 = (zz - p[0]) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2
        hm = np.maximum(hm, np.exp(-d2 / (2 * sigma**2)))
    return hm


def test_decode_maps_reads_the_offset_maps():
    start, end, truth_j = _crossing()
    start[:, 0] = end[:, 0] = 3
    shape = (7, 20, 32)
    hs, he = _gauss_maps(start, shape), _gauss_maps(end, shape)
    vs = (1.0, 0.5, 0.5)
    # Offset maps: at each voxel near start k, the displacement to its true end.
    off = np.zeros((3,) + shape, np.float32)
    for k, s in enumerate(start):
        near = np.abs(np.indices(shape)[2] - s[2]) < 4
        for a in range(3):
            grid = np.indices(shape)[a]
            off[a][near] = (end[truth_j[k]][a] - grid[near]) * vs[a] / OFFSET_UNIT
    thr = Thresholds(tau=(0.5, 0.5), d_min_um=(1.0, 1.0), d_max_um=15.0, embed_weight=0.0)
    plain = decode_maps(hs, he, voxel_size=vs, thresholds=thr, offset_maps=list(off))
    assert len(plain) == 2
    with_off = decode_maps(hs, he, voxel_size=vs, offset_maps=list(off),
                           thresholds=replace(thr, offset_weight=2.0))
    by_start = np.argsort(with_off.start[:, 2])
    assert np.allclose(with_off.end[by_start][:, 2], end[truth_j][:, 2], atol=0.2)
    # The distance-only decode paired them the other way.
    assert not np.allclose(np.sort(plain.end[np.argsort(plain.start[:, 2])][:, 2]),
                           end[truth_j][:, 2])
    reach = predicted_ends(list(off), start, voxel_size=vs)
    assert np.allclose(reach, end[truth_j], atol=1e-4)
    with pytest.raises(ValueError, match="offset maps"):
        decode_maps(hs, he, voxel_size=vs, thresholds=thr, offset_maps=list(off[:2]))
