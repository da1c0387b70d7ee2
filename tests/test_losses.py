import numpy as np
import pytest
import torch

from cellpol_core.detection.losses import CellPolLoss, pull_push_loss, weighted_mse


# ----------------------------------------------------------------------------- reference

def loop_pull_push(es, ee, is_, ie, delta=2.0):
    """Straight from docs/method.md §3.4, one sample and one pair at a time."""
    pulls, pushes = [], []
    for b in range(es.shape[0]):
        s_emb, e_emb = es[b].reshape(-1), ee[b].reshape(-1)
        s_id, e_id = is_[b].reshape(-1), ie[b].reshape(-1)
        ks = sorted(set(s_id[s_id > 0].tolist()) | set(e_id[e_id > 0].tolist()))
        means, pull = [], 0.0
        for k in ks:
            a = e_emb[e_id == k]  # end (Golgi) voxels, G of them
            bb = s_emb[s_id == k]  # start (nucleus) voxels, N of them
            ek = (a.sum() + bb.sum()) / (len(a) + len(bb))
            means.append(ek)
            pull += (((a - ek) ** 2).sum() + ((bb - ek) ** 2).sum()) / (len(a) + len(bb))
        n = len(ks)
        pulls.append(pull / n if n else 0.0)
        push = 0.0
        for k in range(n):
            for j in range(n):
                if j != k:
                    push += max(0.0, delta - abs(means[k] - means[j]))
        pushes.append(push / (n * (n - 1)) if n >= 2 else 0.0)
    return float(np.mean(pulls)), float(np.mean(pushes))


def random_ids(rng, shape, n_pairs, fill=0.4):
    ids = np.zeros(shape, np.int64)
    if n_pairs:
        labels = rng.choice(np.arange(1, 10 * n_pairs + 1), n_pairs, replace=False)  # sparse ids
        m = rng.random(shape) < fill
        ids[m] = rng.choice(labels, m.sum())
    return ids


def test_matches_loop_on_random_batches():
    rng = np.random.default_rng(1)
    counts = [0, 1, 2, 7, 60]
    shape = (4, 10, 12)
    b = len(counts)
    es = rng.normal(0, 1.5, (b, 1) + shape)
    ee = rng.normal(0, 1.5, (b, 1) + shape)
    is_ = np.stack([random_ids(rng, shape, n) for n in counts])
    ie = np.stack([random_ids(rng, shape, n, fill=0.2) for n in counts])
    want = loop_pull_push(es, ee, is_, ie, delta=2.0)
    got = pull_push_loss(torch.tensor(es), torch.tensor(ee), torch.tensor(is_)[:, None],
                         torch.tensor(ie), delta=2.0)
    assert np.allclose([float(got[0]), float(got[1])], want, rtol=1e-10, atol=1e-12)
    assert want[1] > 0 and want[0] > 0
    # each sample alone, too (checks the per-sample separation of equal ids)
    for i in range(b):
        w = loop_pull_push(es[i:i + 1], ee[i:i + 1], is_[i:i + 1], ie[i:i + 1])
        g = pull_push_loss(torch.tensor(es[i:i + 1]), torch.tensor(ee[i:i + 1]),
                           torch.tensor(is_[i:i + 1]), torch.tensor(ie[i:i + 1]))
        assert np.allclose([float(g[0]), float(g[1])], w, rtol=1e-10, atol=1e-12)


def test_hundreds_of_pairs_2d_float32():
    rng = np.random.default_rng(2)
    shape = (64, 64)
    es = rng.normal(0, 20, (2, 1) + shape).astype(np.float32)
    ee = rng.normal(0, 20, (2, 1) + shape).astype(np.float32)
    is_ = np.stack([random_ids(rng, shape, 300, 0.5), random_ids(rng, shape, 150, 0.5)])
    ie = np.stack([random_ids(rng, shape, 300, 0.5), random_ids(rng, shape, 150, 0.5)])
    want = loop_pull_push(es.astype(np.float64), ee.astype(np.float64), is_, ie, delta=2.0)
    got = pull_push_loss(torch.tensor(es), torch.tensor(ee), torch.tensor(is_), torch.tensor(ie))
    assert got[0].dtype == torch.float32
    assert np.allclose([float(got[0]), float(got[1])], want, rtol=1e-4)


def test_same_id_in_two_samples_is_two_pairs():
    # pair 1 in sample 0 and pair 1 in sample 1: no pushing across samples
    es = torch.tensor([[[0.0, 0.0]], [[0.5, 0.5]]])
    ids = torch.tensor([[[1, 1]], [[1, 1]]])
    pull, push = pull_push_loss(es, es, ids, torch.zeros_like(ids))
    assert float(pull) == 0.0 and float(push) == 0.0


def test_push_hand_case_two_pairs():
    # pair 1 embedding 0.5 (start) and 0.5 (end); pair 2 embedding 1.25
    es = torch.tensor([[[0.5, 1.25, 0.0]]], requires_grad=True)
    ee = torch.tensor([[[0.5, 1.25, 9.0]]], requires_grad=True)
    ids = torch.tensor([[[1, 2, 0]]])
    pull, push = pull_push_loss(es, ee, ids, ids, delta=2.0)
    assert pull.item() == pytest.approx(0.0)  # constant embedding per pair
    # 1/(2·1)·2·(2 − 0.75)
    assert push.item() == pytest.approx(2.0 - 0.75)
    (pull + push).backward()
    # push = 2 − (e_2 − e_1), so d push/d e_1 = +1 and d push/d e_2 = −1; each e_k is the
    # mean of one start and one end voxel, which get half of it each
    assert es.grad[0, 0, 0] == pytest.approx(0.5)
    assert es.grad[0, 0, 1] == pytest.approx(-0.5)
    assert es.grad[0, 0, 2] == 0.0 and ee.grad[0, 0, 2] == 0.0
    # beyond the margin, no push
    _, push = pull_push_loss(torch.tensor([[[0.0, 3.0]]]), torch.tensor([[[0.0, 3.0]]]),
                             torch.tensor([[[1, 2]]]), torch.tensor([[[1, 2]]]))
    assert float(push) == 0.0


def test_pull_hand_case():
    # pair 1: start voxels [0, 2], end voxel [4] -> e = 2, squared devs 4 + 0 + 4 -> 8/3
    es = torch.tensor([[[0.0, 2.0, 7.0]]])
    ee = torch.tensor([[[4.0, 5.0, 5.0]]])
    pull, push = pull_push_loss(es, ee, torch.tensor([[[1, 1, 0]]]), torch.tensor([[[1, 0, 0]]]))
    assert float(pull) == pytest.approx(8.0 / 3.0)
    assert float(push) == 0.0
    # batch of two: the second sample has no pair and counts as 0 in the mean
    es2 = torch.cat([es, es])
    ee2 = torch.cat([ee, ee])
    pull, _ = pull_push_loss(es2, ee2, torch.tensor([[[1, 1, 0]], [[0, 0, 0]]]),
                             torch.tensor([[[1, 0, 0]], [[0, 0, 0]]]))
    assert float(pull) == pytest.approx(4.0 / 3.0)


def test_pull_zero_when_pairs_constant_and_push_zero_below_two_pairs():
    rng = np.random.default_rng(3)
    ids = torch.tensor(random_ids(rng, (2, 6, 6), 5)).unsqueeze(0)
    vals = torch.tensor(rng.normal(size=51))
    emb = vals[ids]  # constant per pair id
    pull, push = pull_push_loss(emb, emb, ids, ids)
    assert float(pull) == pytest.approx(0.0, abs=1e-12)
    one = (ids == ids.max()).long() * 3
    pull, push = pull_push_loss(emb, emb, one, one)
    assert float(push) == 0.0


@pytest.mark.parametrize("n_pairs", [0, 1])
def test_finite_gradients_with_zero_or_one_pair(n_pairs):
    es = torch.randn(2, 1, 3, 5, 5, requires_grad=True)
    ee = torch.randn(2, 1, 3, 5, 5, requires_grad=True)
    ids = torch.zeros(2, 1, 3, 5, 5, dtype=torch.long)
    if n_pairs:
        ids[0, 0, 1, 1:3, 1:3] = 4
    pull, push = pull_push_loss(es, ee, ids, ids)
    assert torch.isfinite(pull) and torch.isfinite(push)
    assert push.item() == 0.0
    (pull + push).backward()
    assert torch.isfinite(es.grad).all() and torch.isfinite(ee.grad).all()
    # only voxels of a pair get a gradient
    assert torch.all(es.grad[ids == 0] == 0)
    if n_pairs:
        assert pull.item() > 0 and es.grad.abs().sum() > 0


def test_gradcheck_float64():
    torch.manual_seed(0)
    es = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    ee = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    is_ = torch.tensor([[[1, 1, 0, 2], [2, 0, 3, 3], [0, 0, 0, 5]],
                        [[7, 7, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])[:, None]
    ie = torch.tensor([[[0, 1, 1, 0], [2, 2, 0, 3], [5, 0, 0, 0]],
                       [[0, 0, 0, 7], [0, 0, 0, 0], [0, 0, 0, 0]]])[:, None]

    def f(a, b):
        pull, push = pull_push_loss(a, b, is_, ie, delta=2.0)
        return pull, push

    assert torch.autograd.gradcheck(f, (es, ee), eps=1e-6, atol=1e-6)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        pull_push_loss(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4),
                       torch.zeros(1, 1, 5, dtype=torch.long), torch.zeros(1, 1, 4, dtype=torch.long))


# ----------------------------------------------------------------------------- heatmap loss

def test_weighted_mse_hand_case():
    pred = torch.tensor([[[0.0, 0.5, 1.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]])
    target = torch.tensor([[[1.0, 0.5, 0.0, 0.0]], [[1.0, 1.0, 1.0, 0.0]]])
    weight = torch.tensor([[[2.0, 3.0, 1.0, 5.0]], [[1.0, 1.0, 1.0, 4.0]]])
    # sample 0: (1·2 + 0 + 1·1 + 0)/4 = 0.75; sample 1: 4/4 = 1
    assert float(weighted_mse(pred, target, weight)) == pytest.approx(0.875)
    # targets without a channel axis are accepted
    assert float(weighted_mse(pred, target[:, 0], weight[:, 0])) == pytest.approx(0.875)
    with pytest.raises(ValueError):
        weighted_mse(pred, target[:, :, :3], weight)


# ----------------------------------------------------------------------------- total

def _batch(b=2, shape=(4, 8, 8)):
    rng = np.random.default_rng(4)
    hm = torch.tensor(rng.random((b, 1) + shape), dtype=torch.float32)
    hm[hm < 0.7] = 0
    w = torch.where(hm > 0, 5 * hm, torch.full_like(hm, 0.5))
    ids = torch.tensor(random_ids(rng, (b,) + shape, 3))
    return {"heatmap_start": hm, "heatmap_end": hm.flip(-1), "weight_start": w,
            "weight_end": w.flip(-1), "ids_start": ids, "ids_end": ids.flip(-1)}


def test_cellpol_loss_total_and_backprop():
    batch = _batch()
    b, shape = 2, (4, 8, 8)
    params = {k: torch.randn((b, 1) + shape, requires_grad=True)
              for k in ("hm_s", "hm_e", "es", "ee")}
    out = {"heatmap_start": torch.sigmoid(params["hm_s"]),
           "heatmap_end": torch.sigmoid(params["hm_e"]),
           "embed_start": params["es"], "embed_end": params["ee"]}
    loss = CellPolLoss(alpha=2.0, beta=0.5, delta=2.0)
    total, parts = loss(out, batch)
    assert set(parts) == {"hm_start", "hm_end", "pull", "push"}
    want = 2.0 * (parts["hm_start"] + parts["hm_end"]) + 0.5 * (parts["pull"] + parts["push"])
    assert total.item() == pytest.approx(float(want), rel=1e-6)
    assert float(parts["pull"]) > 0 and float(parts["push"]) > 0
    assert not parts["pull"].requires_grad
    total.backward()
    for p in params.values():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_cellpol_loss_ctrdet_variant():
    batch = _batch()
    del batch["ids_start"], batch["ids_end"]
    logits = torch.randn(2, 1, 4, 8, 8, requires_grad=True)
    out = {"heatmap_start": torch.sigmoid(logits), "heatmap_end": torch.sigmoid(logits)}
    total, parts = CellPolLoss()(out, batch)
    assert float(parts["pull"]) == 0.0 and float(parts["push"]) == 0.0
    assert total.item() == pytest.approx(float(parts["hm_start"] + parts["hm_end"]))
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_targets_feed_the_loss():
    from cellpol_core.detection.targets import make_targets
    from cellpol_core.io.vectors import VectorTable
    t = make_targets((6, 16, 16), VectorTable([[3, 4, 4], [3, 11, 11]], [[3, 6, 6], [3, 12, 9]]),
                     voxel_size=(1, 1, 1), radii=(3.0, 2.0))
    batch = {k: torch.from_numpy(v)[None, None] for k, v in t.as_dict().items()}
    out = {"heatmap_start": batch["heatmap_start"].clone(), "heatmap_end": batch["heatmap_end"].clone(),
           "embed_start": batch["ids_start"].float() * 3, "embed_end": batch["ids_end"].float() * 3}
    total, parts = CellPolLoss()(out, batch)
    # perfect heatmaps, constant embeddings per pair 3 apart: everything is 0
    assert total.item() == pytest.approx(0.0, abs=1e-7)
