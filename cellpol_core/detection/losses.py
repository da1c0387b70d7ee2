"""Training losses: weighted heatmap MSE and the pull/push embedding loss.

All reductions are per sample first, then the mean over the batch samples.
The pull/push loss is vectorised over the batch and over any number of pairs
(segment sums with ``index_add``; the push term on a padded (B, K, K)
matrix), with no Python loop over objects or samples.
"""

from __future__ import annotations

import torch
from torch import nn

from ..defaults import EMBED_MARGIN

__all__ = ["weighted_mse", "pull_push_loss", "offset_loss", "stack_offsets", "CellPolLoss"]


def _match(target: torch.Tensor, pred: torch.Tensor, name: str) -> torch.Tensor:
    """``target`` shaped like ``pred``, adding the channel axis if it is missing."""
    if target.dim() == pred.dim() - 1:
        target = target.unsqueeze(1)
    if target.shape != pred.shape:
        raise ValueError(f"{name} shape {tuple(target.shape)} does not match prediction "
                         f"shape {tuple(pred.shape)}")
    return target.to(dtype=pred.dtype)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared error ``(1/M) Σ_i (h_i − ĥ_i)²·w_i``.

    Parameters
    ----------
    pred : Tensor, shape (B, C, *spatial)
        Predicted heatmap (after the sigmoid).
    target, weight : Tensor
        Same shape as ``pred``, or without its channel axis.

    Returns
    -------
    Tensor
        Scalar: per sample the sum over its M voxels (M = C·prod(spatial))
        divided by M, then the mean over the B samples.
    """
    target = _match(target, pred, "target")
    weight = _match(weight, pred, "weight")
    per_sample = ((pred - target) ** 2 * weight).flatten(1).mean(1)
    return per_sample.mean()


def _flat(embed: torch.Tensor, ids: torch.Tensor, name: str):
    b = embed.shape[0]
    e = embed.reshape(b, -1)
    i = ids.reshape(ids.shape[0], -1)
    if i.shape != e.shape:
        raise ValueError(f"ids_{name} shape {tuple(ids.shape)} does not match embed_{name} "
                         f"shape {tuple(embed.shape)}")
    return e, i.to(device=embed.device, dtype=torch.long)


def pull_push_loss(embed_start: torch.Tensor, embed_end: torch.Tensor,
                   ids_start: torch.Tensor, ids_end: torch.Tensor, *,
                   delta: float = EMBED_MARGIN):
    """Pull and push losses of the pairing embeddings.

    Parameters
    ----------
    embed_start, embed_end : Tensor, shape (B, 1, *spatial)
        Embedding maps of the start and end structures.
    ids_start, ids_end : Tensor of int, shape (B, 1, *spatial) or (B, *spatial)
        Pair id of each voxel (0 = none). Ids are per sample: pair 1 of sample
        0 is unrelated to pair 1 of sample 1. Ids need not be contiguous.
    delta : float
        Push margin Δ.

    Returns
    -------
    pull, push : Tensor
        Scalars. For each sample, with its L pairs present (pairs with at
        least one voxel in either map), ``e_k`` the mean embedding over the
        start and end voxels of pair k together, and ``n_k`` their count:

        * ``pull = (1/L) Σ_k (1/n_k) Σ_{v in pair k} (e(v) − e_k)²``
        * ``push = 1/(L(L−1)) Σ_k Σ_{j≠k} max(0, Δ − |e_k − e_j|)``

        A sample with no pair gives pull 0, one with fewer than 2 pairs push
        0; every sample counts in the mean over the batch. Gradients stay
        finite in these cases (counts are clamped and invalid terms masked by
        multiplication, never by ``where`` on NaN).
    """
    if embed_start.shape[0] != embed_end.shape[0]:
        raise ValueError("embed_start and embed_end have different batch sizes")
    es, is_ = _flat(embed_start, ids_start, "start")
    ee, ie = _flat(embed_end, ids_end, "end")
    b = es.shape[0]
    device, dtype = es.device, es.dtype

    # Only voxels with a pair id matter; start and end voxels enter the pull
    # term alike, so they form one list.
    sample = torch.arange(b, device=device)[:, None]
    ms, me = is_ > 0, ie > 0
    emb = torch.cat([es[ms], ee[me]])
    pid = torch.cat([is_[ms], ie[me]])
    smp = torch.cat([sample.expand_as(is_)[ms], sample.expand_as(ie)[me]])
    zero = (embed_start.sum() + embed_end.sum()) * 0.0  # keeps the graph connected
    if emb.numel() == 0:
        return zero, zero.clone()

    # Segment = (sample, pair id), compacted so that huge ids cost nothing.
    stride = int(pid.max()) + 1
    key = smp * stride + pid
    seg_key, seg = torch.unique(key, sorted=True, return_inverse=True)
    n_seg = seg_key.numel()
    count = torch.zeros(n_seg, device=device, dtype=dtype).index_add_(
        0, seg, torch.ones_like(emb))
    mean = torch.zeros(n_seg, device=device, dtype=dtype).index_add(0, seg, emb) / count
    sq = torch.zeros(n_seg, device=device, dtype=dtype).index_add(0, seg, (emb - mean[seg]) ** 2)
    seg_sample = seg_key // stride
    n_pairs = torch.bincount(seg_sample, minlength=b)  # L per sample
    pull_b = torch.zeros(b, device=device, dtype=dtype).index_add(0, seg_sample, sq / count)
    pull = (pull_b / n_pairs.clamp(min=1).to(dtype)).mean()

    # Push: segments are sorted by sample, so a segment's slot in its sample
    # row is its rank after the sample's first segment.
    k_max = int(n_pairs.max())
    first = torch.cumsum(n_pairs, 0) - n_pairs
    slot = seg_sample * k_max + torch.arange(n_seg, device=device) - first[seg_sample]
    e_pad = torch.zeros(b * k_max, device=device, dtype=dtype).index_add(0, slot, mean)
    valid = torch.zeros(b * k_max, device=device, dtype=torch.bool)
    valid[slot] = True
    e_pad, valid = e_pad.view(b, k_max), valid.view(b, k_max)
    eye = torch.eye(k_max, device=device, dtype=torch.bool)
    mask = (valid[:, :, None] & valid[:, None, :] & ~eye).to(dtype)
    hinge = torch.relu(delta - (e_pad[:, :, None] - e_pad[:, None, :]).abs())
    denom = (n_pairs * (n_pairs - 1)).clamp(min=1).to(dtype)
    push = ((hinge * mask).sum((1, 2)) / denom).mean()
    return pull, push


def offset_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked smooth-L1 loss of the offset head.

    Parameters
    ----------
    pred, target : Tensor, shape (B, D, *spatial)
        Predicted and target offsets (D axes, in
        :data:`~cellpol_core.detection.targets.OFFSET_UNIT` units).
    mask : Tensor, shape (B, 1, *spatial) or (B, *spatial)
        1 on the start supports, 0 elsewhere.

    Returns
    -------
    Tensor
        Scalar: per sample, the smooth-L1 (β = 1) summed over the D axes and
        averaged over its masked voxels (0 for a sample without any), then
        the mean over the B samples. Voxels outside the mask get no gradient.
    """
    if mask.dim() == pred.dim() - 1:
        mask = mask.unsqueeze(1)
    target = target.to(dtype=pred.dtype)
    if target.shape != pred.shape or mask.shape[2:] != pred.shape[2:]:
        raise ValueError(f"offset target {tuple(target.shape)} / mask {tuple(mask.shape)} do "
                         f"not match prediction {tuple(pred.shape)}")
    m = mask.to(dtype=pred.dtype)
    # The mask multiplies the loss, not the prediction: no gradient leaks outside.
    per_voxel = nn.functional.smooth_l1_loss(pred, target, reduction="none").sum(1, keepdim=True)
    per_sample = (per_voxel * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1.0)
    return per_sample.mean()


def stack_offsets(outputs: dict):
    """The offset head's per-axis maps as one (B, D, *spatial) tensor, or None."""
    from .network import OFFSET_KEYS

    maps = [outputs[k] for k in OFFSET_KEYS if outputs.get(k) is not None]
    return torch.cat(maps, 1) if maps else None


class CellPolLoss(nn.Module):
    """Total training loss ``α(L_hm,end + L_hm,start) + β(L_pull + L_push) + γ·L_offset``.

    Parameters
    ----------
    alpha, beta : float
        Weights of the heatmap and embedding terms.
    delta : float
        Push margin Δ.
    gamma : float
        Weight of the offset term (:func:`offset_loss`), used when the
        network has the offset head.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, delta: float = EMBED_MARGIN,
                 gamma: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.delta = float(delta)
        self.gamma = float(gamma)

    def forward(self, outputs: dict, batch: dict):
        """Loss of one batch.

        Parameters
        ----------
        outputs : dict of Tensor
            ``'heatmap_start'``, ``'heatmap_end'`` (sigmoid values) and, unless
            the network is the CtrDet variant, ``'embed_start'``, ``'embed_end'``.
        batch : dict of Tensor
            ``'heatmap_start'``, ``'heatmap_end'``, ``'weight_start'``,
            ``'weight_end'``, for embeddings ``'ids_start'``, ``'ids_end'``
            and, for the offset head, ``'offset'`` and ``'offset_mask'``.

        Returns
        -------
        total : Tensor
            Scalar loss to back-propagate.
        parts : dict of Tensor
            Detached scalars ``'hm_start'``, ``'hm_end'``, ``'pull'``, ``'push'``
            (pull and push are 0 without embeddings) and, with the offset
            head, ``'offset'``.
        """
        hm_s = weighted_mse(outputs["heatmap_start"], batch["heatmap_start"], batch["weight_start"])
        hm_e = weighted_mse(outputs["heatmap_end"], batch["heatmap_end"], batch["weight_end"])
        if outputs.get("embed_start") is not None and outputs.get("embed_end") is not None:
            pull, push = pull_push_loss(outputs["embed_start"], outputs["embed_end"],
                                        batch["ids_start"], batch["ids_end"], delta=self.delta)
        else:
            pull = push = hm_s.new_zeros(())
        total = self.alpha * (hm_e + hm_s) + self.beta * (pull + push)
        parts = {"hm_start": hm_s.detach(), "hm_end": hm_e.detach(),
                 "pull": pull.detach(), "push": push.detach()}
        pred = stack_offsets(outputs)
        if pred is not None:
            off = offset_loss(pred, batch["offset"], batch["offset_mask"])
            total = total + self.gamma * off
            parts["offset"] = off.detach()
        return total, parts
