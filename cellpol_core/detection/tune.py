"""Threshold tuning: the long job behind ``cellpol tune``.

The decoding parameters (per structure: heatmap threshold tau and peak
distance d_min; plus the pair distance d_max and, for embedding models, the
pairing rule: the 3DCellPol greedy rule or the joint assignment with weight
λ, and the embedding margin delta) are chosen on validation images to
maximise the vector F1 at evaluation level tau_L = 5, pooled over images.

The network runs once per image (whole-image maps, stitched from tile
interiors). Peaks are found once per image, structure and d_min at the lowest
tau; a higher tau only drops weaker peaks and never changes which stronger
peaks survive, so each tau is a filter on those. For models with the offset
head the pairing search also covers the weights of the joint assignment's
offset and plain-distance terms. Every candidate is decoded
by :func:`~cellpol_core.detection.decode.pair_peaks`, the rule prediction
uses, and scored by the evaluation of docs/method.md §6. The search is coordinate-wise:
the start structure's (tau, d_min) over the full grid with the end's fixed,
then the end's, then d_max, then the pairing rule, repeated for ``rounds``
rounds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from ..defaults import BORDER_UM, DEFAULT_DEVICE, DEFAULT_PRECISION, EVAL_LEVEL
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent
from .model import (METRICS_FILE, Thresholds, load_model, write_json, write_thresholds)
from ..io.vectors import VectorTable

TAU_GRID = tuple(round(0.10 + 0.05 * i, 2) for i in range(18))  # 0.10 ... 0.95
#: Pairing rules searched for embedding models: None is the greedy 3DCellPol
#: rule, a number the weight λ of the joint assignment (0: distance only).
EMBED_WEIGHT_GRID = (None, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
DELTA_GRID = (1.0, 2.0, 3.0, 5.0)
#: (offset weight μ, distance weight) pairs searched for offset models.
OFFSET_GRID = ((0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (2.0, 1.0), (4.0, 1.0), (1.0, 0.0),
               (1.0, 0.5))
#: Embedding margin that lets every pair through: embeddings left out.
NO_GATE = 1e6
#: Pairing terms :func:`tune` may use (those the model has).
PAIRING_TERMS = ("embedding", "offset")
#: F1 gain a pairing rule needs over the current one to replace it.
PAIRING_MARGIN = 0.005


def _dmin_grid(radius) -> tuple:
    return tuple(round(radius * f, 2) for f in (0.4, 0.55, 0.7, 0.85, 1.0, 1.2))


class _ImageCache:
    """Peaks per structure and d_min, found once at the lowest tau, of one validation image."""

    def __init__(self, maps, gt_model: VectorTable, shape, tau_min):
        self.maps = maps.maps
        self.voxel_size = maps.voxel_size
        self.gt = gt_model
        self.shape = shape
        self.tau_min = tau_min
        self._peaks = {}

    def peaks(self, role, d_min_um):
        from .decode import Peaks, offset_maps_of

        key = (role, d_min_um)
        if key not in self._peaks:
            self._peaks[key] = Peaks.find(self.maps[f"heatmap_{role}"],
                                          self.maps.get(f"embed_{role}"), tau=self.tau_min,
                                          d_min_um=d_min_um, voxel_size=self.voxel_size,
                                          offset_maps=(offset_maps_of(self.maps)
                                                       if role == "start" else None))
        return self._peaks[key]


def _decode_cached(cache: _ImageCache, thr: Thresholds, names) -> VectorTable:
    from .decode import pair_peaks

    return pair_peaks(cache.peaks("start", thr.d_min_um[0]), cache.peaks("end", thr.d_min_um[1]),
                      thr, voxel_size=cache.voxel_size, names=names, ndim=len(cache.shape))


def _score(caches, thr, names, *, level, levels, border_um):
    from .evaluate import evaluate_vectors, pool_results

    results = [evaluate_vectors(c.gt, _decode_cached(c, thr, names), voxel_size=c.voxel_size,
                                shape=c.shape, border_um=border_um, levels=levels)
               for c in caches]
    pooled = pool_results(results)
    f1 = pooled.f1(level)
    return (-1.0 if f1 is None else f1), pooled


def tune(model_dir, images: Sequence, vectors: Sequence, *, channels=None, axes=None,
         voxel_size=None, level=EVAL_LEVEL, levels=None, border_um=BORDER_UM, rounds=2,
         device=DEFAULT_DEVICE, thresholds: Optional[Thresholds] = None, write=True,
         precision=DEFAULT_PRECISION, terms=PAIRING_TERMS, flips: Optional[int] = None,
         d_max_floor_um: Optional[float] = None, cancel: Optional[CancelToken] = None):
    """Choose decoding thresholds on validation images; write ``thresholds.json``.

    A generator job returning ``(Thresholds, report)`` where ``report`` is a
    dict with the chosen values, the F1 at ``level`` before and after, and the
    evaluation table rows.

    Parameters
    ----------
    model_dir : path or str
        Model folder (or bundled model name).
    images, vectors : sequences
        Validation images (paths or CellImage) and their vector CSVs or tables.
    channels, axes, voxel_size
        As for reading images elsewhere.
    level : int
        Evaluation level whose vector F1 is maximised (default 5).
    levels : str, optional
        Level preset; default from the model's preset.
    border_um : float
        Border exclusion of the evaluation.
    rounds : int
        Rounds of the coordinate-wise search.
    device : {"auto", "cpu", "cuda"}
        Where the network runs.
    thresholds : Thresholds, optional
        Where the search starts (and the "before" F1); default the model's
        ``thresholds.json``.
    write : bool
        Write ``thresholds.json`` and ``metrics.json`` into the model folder.
    precision : {"auto", "fp32", "bf16"}
        Network arithmetic (:mod:`cellpol_core.detection.precision`).
    terms : sequence of {"embedding", "offset"}
        Pairing terms the search may use, of those the model has (the
        ablation of the offset head leaves one out): without "embedding",
        λ = 0 and no embedding gate; without "offset", μ = 0.
    flips : int, optional
        Test-time flips the maps are computed with, kept in the result
        (:attr:`~cellpol_core.detection.model.Thresholds.flips`); default
        those of ``thresholds`` (or the model's).
    d_max_floor_um : float, optional
        Shortest pair distance the search may choose. Phantoms hold few long
        pairs, so on them the search prefers a d_max that cuts real cells'
        longer nucleus-Golgi vectors; the bundled models are tuned with the
        preset's distance as the floor.
    cancel : CancelToken, optional
    """
    from .infer import predict_maps
    from .network import select_device
    from .precision import resolve_precision
    from .targets import get_preset
    from .train import load_annotated_images

    dev = select_device(device)
    prec = resolve_precision(precision, dev)
    if prec.notice:
        yield ProgressEvent("predict", 0, len(images), data={"notice": prec.notice})
    model = load_model(model_dir, device=dev)
    cfg = model.config
    if not images:
        raise InputError("no validation images given")
    pairs = load_annotated_images(images, vectors, channels=channels, structures=cfg.structures,
                                  axes=axes, voxel_size=voxel_size)
    levels = levels or (cfg.preset if cfg.preset in ("nucleus-golgi", "cytoplasm-nucleus")
                        else "nucleus-golgi")
    start_thr = model.thresholds if thresholds is None else thresholds
    if flips is not None:
        start_thr = replace(start_thr, flips=flips)
        start_thr.validate()
    caches = []
    for k, (image, table, ch) in enumerate(pairs):
        yield ProgressEvent("predict", k, len(pairs), message=str(image.path or k))
        maps = yield from predict_maps(image, model, channels=ch, device=dev, precision=prec,
                                       flips=start_thr.flips, cancel=cancel)
        gt = maps.to_model_voxels(table)
        caches.append(_ImageCache(maps, gt, maps.plan.model_shape, min(TAU_GRID)))
    names = tuple(cfg.structures)
    use_embed = cfg.embedding and "embedding" in terms
    use_offset = bool(cfg.network.get("offset")) and "offset" in terms
    if cfg.embedding and not use_embed:
        start_thr = replace(start_thr, embed_weight=0.0, delta=NO_GATE)
    if not use_offset:
        start_thr = replace(start_thr, offset_weight=0.0, distance_weight=1.0)
    base_f1, _ = _score(caches, start_thr, names, level=level, levels=levels, border_um=border_um)
    best = replace(start_thr, tau=tuple(start_thr.tau), d_min_um=tuple(start_thr.d_min_um),
                   source="tuned")
    best_f1 = base_f1  # the same thresholds, only marked tuned
    try:
        d_max0 = get_preset(cfg.preset).d_max
    except ValueError:
        d_max0 = start_thr.d_max_um
    grids = [_dmin_grid(cfg.radii[0]), _dmin_grid(cfg.radii[1])]
    d_max_grid = tuple(round(d_max0 * f, 2) for f in (0.75, 0.9, 1.0, 1.15, 1.3))
    if d_max_floor_um is not None:
        floor = float(d_max_floor_um)
        d_max_grid = tuple(v for v in d_max_grid if v >= floor) or (floor,)
        if best.d_max_um < floor:
            best = replace(best, d_max_um=floor)
            best_f1, _ = _score(caches, best, names, level=level, levels=levels,
                                border_um=border_um)
    embed_grid = ([(w, d) for w in EMBED_WEIGHT_GRID for d in DELTA_GRID] if use_embed
                  else [(start_thr.embed_weight, start_thr.delta)])
    offset_grid = OFFSET_GRID if use_offset else [(0.0, 1.0)]
    # The greedy rule (λ None) takes no offsets: the joint rule with λ = 0 does.
    pairing_grid = [(w, d, mu, wd) for w, d in embed_grid for mu, wd in offset_grid
                    if not (w is None and mu > 0)]
    if len(pairing_grid) == 1:
        pairing_grid = []
    total = rounds * (len(TAU_GRID) * (len(grids[0]) + len(grids[1])) + len(d_max_grid)
                      + len(pairing_grid))
    done = 0
    for _ in range(rounds):
        # The pairing rule first, so that the thresholds are tuned under it. A
        # rule replaces the current one only if it wins by PAIRING_MARGIN: on
        # a few validation images the 28 rules otherwise pick noise.
        rule_best, rule_f1 = best, best_f1
        for w, d, mu, wd in pairing_grid:
            if cancel is not None:
                cancel.check()
            cand = replace(best, embed_weight=w, delta=d, offset_weight=mu, distance_weight=wd)
            f1, _ = _score(caches, cand, names, level=level, levels=levels, border_um=border_um)
            if f1 > rule_f1 + 1e-12:
                rule_best, rule_f1 = cand, f1
            done += 1
        if rule_f1 > best_f1 + PAIRING_MARGIN:
            best, best_f1 = rule_best, rule_f1
        yield ProgressEvent("tune", done, total, message=f"F1@{level} {best_f1:.3f}")
        for role in (0, 1):
            for d in grids[role]:
                for tau in TAU_GRID:
                    if cancel is not None:
                        cancel.check()
                    taus = list(best.tau)
                    dmins = list(best.d_min_um)
                    taus[role], dmins[role] = tau, d
                    cand = replace(best, tau=tuple(taus), d_min_um=tuple(dmins))
                    f1, _ = _score(caches, cand, names, level=level, levels=levels,
                                   border_um=border_um)
                    if f1 > best_f1 + 1e-12:
                        best, best_f1 = cand, f1
                    done += 1
                yield ProgressEvent("tune", done, total, message=f"F1@{level} {best_f1:.3f}")
        for dm in d_max_grid:
            cand = replace(best, d_max_um=dm)
            f1, _ = _score(caches, cand, names, level=level, levels=levels, border_um=border_um)
            if f1 > best_f1 + 1e-12:
                best, best_f1 = cand, f1
            done += 1
        yield ProgressEvent("tune", done, total, message=f"F1@{level} {best_f1:.3f}")
    _, pooled = _score(caches, best, names, level=level, levels=levels, border_um=border_um)
    report = {
        "level": level, "levels": levels, "f1_before": base_f1, "f1_after": best_f1,
        "thresholds": best.to_dict(), "n_images": len(caches), "embedding": cfg.embedding,
        "offset": bool(cfg.network.get("offset")), "terms": list(terms),
        "table": pooled.rows(),
    }
    if write:
        write_thresholds(model.path, best)
        write_json(Path(model.path) / METRICS_FILE, report)
    return best, report


def _pairing_text(t: dict, embedding: bool) -> str:
    mu = t.get("offset_weight") or 0.0
    offsets = (f", offset weight {mu:g}, distance weight {t.get('distance_weight', 1.0):g}"
               if mu > 0 else "")
    if not embedding:
        return "by distance (Hungarian)" + offsets
    if t.get("embed_weight") is None and not mu:
        return f"greedy by embedding (3DCellPol), delta {t['delta']:g}"
    return (f"joint assignment, λ = {t.get('embed_weight') or 0.0:g}, delta {t['delta']:g}"
            + offsets)


def format_report(report: dict) -> str:
    """A short human-readable tuning report."""
    t = report["thresholds"]
    lv = report["level"]
    row = next((r for r in report["table"] if r["level"] == lv), {})
    lines = [
        f"tuned on {report['n_images']} image(s), maximising vector F1 at level {lv}",
        f"  tau start/end   {t['tau'][0]:.2f} / {t['tau'][1]:.2f}",
        f"  d_min start/end {t['d_min_um'][0]:.2f} / {t['d_min_um'][1]:.2f}",
        f"  d_max           {t['d_max_um']:.2f}",
        "  pairing         " + _pairing_text(t, report.get("embedding", True)),
        f"  test-time flips {t.get('flips', 1)}",
        f"  F1 before {report['f1_before']:.3f}  after {report['f1_after']:.3f}"
        + (f"  (TPR {row.get('tpr')}, FDR {row.get('fdr')})" if row else ""),
    ]
    return "\n".join(lines)


__all__ = ["tune", "format_report", "TAU_GRID"]
