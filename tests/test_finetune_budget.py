"""Training with a time budget, frozen layers, the fine-tuning defaults and the offset head."""

import argparse

import numpy as np
import pytest
import torch

from cellpol_core.detection.config import FINETUNE_DEFAULTS, TrainConfig
from cellpol_core.detection.infer import predict_image
from cellpol_core.detection.loop import read_training_log
from cellpol_core.detection.model import load_model, read_config
from cellpol_core.detection.train import LOG_COLUMNS, UNTUNED_OFFSET_WEIGHT, train
from cellpol_core.detection.tune import NO_GATE, tune
from cellpol_core.errors import InputError
from cellpol_core.io.image import CellImage
from cellpol_core.jobs import run_job

TINY = TrainConfig(arch="light", epochs=1, steps_per_epoch=2, patch_size=(16, 32, 32),
                   batch_size=1, device="cpu", seed=3, val_fraction=0.25, precision="fp32")


def _tiny_image(seed=0):
    from cellpol_core.synthetic.phantom import generate_phantom

    ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=seed, density=0.6)
    img = CellImage(ph.image, voxel_size=(1.0, 1.0, 1.0), channel_names=["nucleus", "golgi"])
    return img, ph.vectors


def _train(outdir, **changes):
    img, vec = _tiny_image()
    init = changes.pop("init", None)
    return run_job(train([img], [vec], outdir=outdir, config=TINY.replace(**changes), init=init,
                         overwrite=True))


@pytest.mark.slow
def test_offset_model_trains_predicts_and_tunes(tmp_path):
    out = _train(tmp_path / "m", offset_head=True)
    assert read_config(out).network["offset"] is True
    log = read_training_log(out / "training_log.csv", LOG_COLUMNS)
    assert log[0]["offset"] > 0  # the offset loss was trained
    model = load_model(out)
    # Untuned offset models pair with all three terms.
    assert model.thresholds.offset_weight == UNTUNED_OFFSET_WEIGHT > 0
    img, vec = _tiny_image(1)
    table = run_job(predict_image(img, model))
    assert table.ndim == 3
    best, report = run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False))
    assert report["offset"] is True
    only_embed, _ = run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False,
                                 terms=("embedding",)))
    assert only_embed.offset_weight == 0.0 and only_embed.distance_weight == 1.0
    only_offset, _ = run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False,
                                  terms=("offset",)))
    assert only_offset.embed_weight == 0.0 and only_offset.delta == NO_GATE


@pytest.mark.slow
def test_budget_run_stops_and_records_its_schedule(tmp_path):
    out = _train(tmp_path / "m", minutes=0.02, lr=1e-3)
    log = read_training_log(out / "training_log.csv", LOG_COLUMNS)
    assert len(log) >= 1
    # The schedule, not reduce-on-plateau, set the rate: below the initial one by the end.
    assert log[-1]["lr"] < 1e-3
    assert read_config(out).training.minutes == 0.02


@pytest.mark.slow
def test_frozen_encoder_keeps_its_weights(tmp_path):
    base = _train(tmp_path / "base")
    tuned = _train(tmp_path / "tuned", init=base, freeze="encoder", lr=1e-2)
    a = torch.load(base / "weights_last.pt", weights_only=True)
    b = torch.load(tuned / "weights_last.pt", weights_only=True)
    enc = [k for k in a if k.startswith(("inc.", "down."))]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("head_start."))


def _cli_args(**kw):
    base = dict(arch="light", preset="nucleus-golgi", structures=None, model_voxel_size=None,
                epochs=50, steps_per_epoch=None, patch=None, batch_size=2, lr=None,
                val_fraction=0.1, alpha=1.0, beta=1.0, seed=0, device="cpu", precision="fp32",
                init=None, minutes=None, freeze=None, offset_head=False)
    return argparse.Namespace(**{**base, **kw})


def test_cli_fine_tuning_defaults_and_minutes():
    from cellpol_core.cli.train import train_config

    scratch = train_config(_cli_args())
    assert scratch.lr == TrainConfig().lr and scratch.minutes is None
    tuned = train_config(_cli_args(init="demo", minutes=5.0))
    assert tuned.minutes == 5.0
    assert (tuned.lr, tuned.freeze, tuned.pair_bias) == tuple(
        FINETUNE_DEFAULTS[k] for k in ("lr", "freeze", "pair_bias"))
    mine = train_config(_cli_args(init="demo", lr=0.01, freeze="encoder"))
    assert (mine.lr, mine.freeze, mine.minutes) == (0.01, "encoder", None)
    assert train_config(_cli_args(offset_head=True)).offset_head is True
    with pytest.raises(InputError, match="minutes must be a finite number above 0"):
        train_config(_cli_args(minutes=0.0))
    with pytest.raises(InputError, match="freeze must be one of none, encoder"):
        TrainConfig(freeze="decoder")


def test_bundled_model_has_no_offset_head():
    model = load_model("demo")
    assert "offset" not in model.config.network and model.net.offset_head is None
    assert model.thresholds.offset_weight == 0.0 and model.thresholds.distance_weight == 1.0
    with torch.no_grad():
        out = model.net(torch.zeros((1, 2) + tuple(model.net.size_multiple())))
    assert not any(k.startswith("offset") for k in out)
    assert np.isfinite(out["heatmap_start"].numpy()).all()


@pytest.mark.slow
def test_fine_tuned_model_keeps_its_init_thresholds(tmp_path):
    from dataclasses import replace

    from cellpol_core.detection.model import write_thresholds

    base = _train(tmp_path / "base")
    tuned = replace(load_model(base).thresholds, tau=(0.35, 0.45), embed_weight=1.0,
                    source="tuned")
    write_thresholds(base, tuned)
    out = _train(tmp_path / "ft", init=base, minutes=0.01)
    assert load_model(out).thresholds == tuned


@pytest.mark.slow
def test_offset_head_added_to_a_frozen_model(tmp_path):
    base = _train(tmp_path / "base")
    out = _train(tmp_path / "ft", init=base, offset_head=True, freeze="backbone", lr=1e-2)
    assert read_config(out).network["offset"] is True
    a = torch.load(base / "weights_last.pt", weights_only=True)
    b = torch.load(out / "weights_last.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the base model's outputs stay
    head = [k for k in b if k.startswith("offset_head.")]
    assert head and set(b) == set(a) | set(head)


@pytest.mark.slow
def test_tune_keeps_the_given_flips_and_the_distance_floor(tmp_path):
    from cellpol_core.detection.tune import format_report

    out = _train(tmp_path / "m")
    img, vec = _tiny_image(1)
    best, report = run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False,
                                flips=2, d_max_floor_um=16.0))
    assert best.flips == 2 and report["thresholds"]["flips"] == 2
    assert best.d_max_um >= 16.0
    assert "test-time flips 2" in format_report(report)
    unfloored, _ = run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False))
    assert unfloored.flips == load_model(out).thresholds.flips
    with pytest.raises(InputError, match="flips"):
        run_job(tune(out, [img], [vec], device="cpu", rounds=1, write=False, flips=3))
