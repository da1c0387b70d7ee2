"""Training data pipeline and the training job (tiny sizes, CPU)."""

import csv

import numpy as np
import pytest
import torch

from cellpol_core.detection.config import TrainConfig
from cellpol_core.errors import Cancelled, InputError
from cellpol_core.io.image import CellImage
from cellpol_core.jobs import CancelToken, run_job
from cellpol_core.detection.targets import make_targets
from cellpol_core.detection.model import (ModelConfig, load_model, read_config, save_state,
                                         write_config)
from cellpol_core.detection.train import (PatchSampler, TrainingImage, augment, crop_patch,
                                          fit_patch_size, split_holdout, train)
from cellpol_core.io.vectors import VectorTable

VS = (1.0, 1.0, 1.0)
RADII = (3.0, 2.0)


def _vectors():
    start = np.array([[8.0, 10.0, 12.0], [6.0, 22.0, 25.0], [10.0, 5.0, 27.0]])
    end = np.array([[8.0, 13.0, 17.0], [7.0, 18.0, 26.0], [9.0, 9.0, 24.0]])
    return VectorTable(start, end)


@pytest.mark.parametrize("seed", range(8))
def test_targets_follow_the_image(seed):
    """Augmenting (image + its targets) equals building targets from augmented vectors."""
    v = _vectors()
    shape = (16, 32, 32)
    t = make_targets(shape, v, voxel_size=VS, radii=RADII)
    stack = np.stack([t.heatmap_start, t.heatmap_end])
    rng = np.random.default_rng(seed)
    out, v2 = augment(stack, v, rng, p=0.7, intensity=False)
    t2 = make_targets(shape, v2, voxel_size=VS, radii=RADII)
    np.testing.assert_allclose(out[0], t2.heatmap_start, atol=1e-5)
    np.testing.assert_allclose(out[1], t2.heatmap_end, atol=1e-5)


def test_augment_changes_something_and_keeps_shape():
    v = _vectors()
    patch = np.random.default_rng(0).random((2, 16, 32, 32)).astype(np.float32)
    changed = 0
    for seed in range(10):
        out, v2 = augment(patch, v, np.random.default_rng(seed), p=0.9)
        assert out.shape == patch.shape and out.dtype == np.float32
        changed += not np.allclose(v2.start, v.start)
    assert changed >= 5


def test_non_square_patches_only_take_half_turns():
    v = _vectors()
    patch = np.zeros((2, 16, 32, 48), np.float32)
    for seed in range(10):
        out, _ = augment(patch, v, np.random.default_rng(seed), p=1.0)
        assert out.shape == patch.shape


def test_crop_patch_pads_and_shifts():
    data = np.ones((2, 8, 20, 20), np.float32)
    item = TrainingImage(data, _vectors())
    patch, v = crop_patch(item, (0, -4, 10), (8, 16, 16), np.random.default_rng(0))
    assert patch.shape == (2, 8, 16, 16)
    assert np.all(patch[:, :, 4:, :10] == 1.0)
    assert np.all(patch[:, :, :4] < 0.05)  # background-like padding
    np.testing.assert_allclose(v.start[0], [8, 14, 2])


def test_sampler_prefers_pairs():
    data = np.zeros((2, 8, 128, 128), np.float32)
    v = VectorTable([[4, 100, 100]], [[4, 104, 104]])
    sampler = PatchSampler([TrainingImage(data, v)], patch_size=(8, 32, 32), pair_bias=0.9)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(50):
        _, vt = sampler.sample(rng)
        inside = np.all((vt.start[:, 1:] >= 0) & (vt.start[:, 1:] < 32), axis=1)
        hits += int(inside.any())
    # A uniform sampler would hit this one cell in about 6 % of patches.
    assert hits >= 35


def test_split_holdout():
    data = np.zeros((2, 4, 10, 100), np.float32)
    v = VectorTable([[1, 2, 10], [1, 2, 95]], [[1, 2, 12], [1, 2, 97]])
    tr, va = split_holdout(TrainingImage(data, v), fraction=0.1)
    assert tr.data.shape[-1] == 90 and va.data.shape[-1] == 10
    assert len(tr.vectors) == 1 and len(va.vectors) == 1
    assert va.vectors.start[0, 2] == 5


def test_fit_patch_size():
    assert fit_patch_size((64, 128, 128), [(20, 50, 300)], (16, 16, 16)) == (32, 64, 128)
    assert fit_patch_size((60, 100, 100), [(200, 200, 200)], (8, 16, 16)) == (64, 112, 112)


def _tiny_image(seed=0):
    from cellpol_core.synthetic.phantom import generate_phantom

    ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=seed, density=0.6)
    img = CellImage(ph.image, voxel_size=(1.0, 1.0, 1.0), channel_names=["nucleus", "golgi"])
    return img, ph.vectors


# fp32: the tests compare weights bit for bit, and CPU bf16 autocast does not repeat exactly.
TINY = TrainConfig(arch="light", epochs=2, steps_per_epoch=2, patch_size=(16, 32, 32),
                  batch_size=1, device="cpu", seed=3, val_fraction=0.25, precision="fp32")


def _train(tmp_path, *, outdir=None, resume=False, overwrite=False, cancel=None, on_event=None,
           **changes):
    img, vec = _tiny_image()
    job = train([img], [vec], outdir=outdir or tmp_path / "m", config=TINY.replace(**changes),
                resume=resume, overwrite=overwrite, cancel=cancel)
    return run_job(job, on_event)


def _pending_checkpoint(outdir):
    """The checkpoint of ``outdir``'s interrupted run (in its staging folder)."""
    from cellpol_core.detection.runfolder import pending_run

    staging = pending_run(outdir, "checkpoint_last.pt")
    assert staging is not None, "no interrupted run"
    return staging / "checkpoint_last.pt"


def _log(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _weights(path):
    return torch.load(path, weights_only=True)


def _assert_same_weights(a, b):
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_train_writes_model_folder_and_is_deterministic(tmp_path):
    events = []
    out = _train(tmp_path, outdir=tmp_path / "a", on_event=events.append)
    for name in ["config.json", "thresholds.json", "weights_best.pt", "weights_last.pt",
                 "training_log.csv", "checkpoint_last.pt"]:
        assert (out / name).exists(), name
    log = _log(out / "training_log.csv")
    assert [r["epoch"] for r in log] == ["1", "2"]
    assert all(r["device"].startswith("CPU") for r in log)
    assert any(e.data.get("device", "").startswith("CPU") for e in events)
    assert sum(bool(e.data.get("epoch_end")) for e in events) == 2
    again = _train(tmp_path, outdir=tmp_path / "b")
    _assert_same_weights(out / "weights_last.pt", again / "weights_last.pt")
    # The model folder records how it was trained.
    assert read_config(out).training == TINY
    assert load_model(out).config.training == TINY


@pytest.mark.slow
def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    full = _train(tmp_path, outdir=tmp_path / "full", epochs=3)
    part = _train(tmp_path, outdir=tmp_path / "part", epochs=2)
    resumed = _train(tmp_path, outdir=part, epochs=3, resume=True)
    assert [r["epoch"] for r in _log(resumed / "training_log.csv")] == ["1", "2", "3"]
    _assert_same_weights(full / "weights_last.pt", resumed / "weights_last.pt")
    assert read_config(resumed).training.epochs == 3


def _cancel_at(token, *, stage, epoch, step):
    def on_event(e):
        if e.stage == stage and e.data.get("epoch") == epoch and e.data.get("step") == step:
            token.cancel()
    return on_event


@pytest.mark.slow
def test_cancel_mid_epoch_then_resume_is_exact(tmp_path):
    """The shared loop checkpoints the unfinished epoch on cancel; resuming finishes it."""
    full = _train(tmp_path, outdir=tmp_path / "full", steps_per_epoch=3)
    token = CancelToken()
    events = []
    with pytest.raises(Cancelled):
        _train(tmp_path, outdir=tmp_path / "c", steps_per_epoch=3, cancel=token,
               on_event=_Both(events, _cancel_at(token, stage="train", epoch=2, step=1)))
    ck = torch.load(_pending_checkpoint(tmp_path / "c"), weights_only=True)
    assert (ck["epoch"], ck["step"]) == (1, 1)
    assert not (tmp_path / "c").exists()  # the model folder appears only when the run ends
    assert sum(bool(e.data.get("epoch_end")) for e in events) == 1
    resumed_events = []
    _train(tmp_path, outdir=tmp_path / "c", steps_per_epoch=3, resume=True,
           on_event=resumed_events.append)
    _assert_same_weights(full / "weights_last.pt", tmp_path / "c" / "weights_last.pt")
    _assert_same_weights(full / "weights_best.pt", tmp_path / "c" / "weights_best.pt")
    a, b = _log(full / "training_log.csv"), _log(tmp_path / "c" / "training_log.csv")
    key = ("train_loss", "val_loss", "hm_start", "pull", "lr")
    assert [[r[k] for k in key] for r in a] == [[r[k] for k in key] for r in b]
    steps = [e.data["step"] for e in resumed_events if e.stage == "train" and "step" in e.data]
    assert steps == [2, 3]  # the unfinished epoch goes on from its second step


class _Both:
    def __init__(self, events, then):
        self.events, self.then = events, then

    def __call__(self, e):
        self.events.append(e)
        self.then(e)


@pytest.mark.slow
def test_cancel_between_steps_saves_a_checkpoint(tmp_path):
    token = CancelToken()
    seen = []
    with pytest.raises(Cancelled):
        _train(tmp_path, outdir=tmp_path / "c", epochs=5, steps_per_epoch=3, cancel=token,
               on_event=_Both(seen, _cancel_at(token, stage="train", epoch=1, step=2)))
    assert _pending_checkpoint(tmp_path / "c").exists()
    assert not any(e.data.get("epoch_end") for e in seen)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        _train(tmp_path, outdir=tmp_path / "none", resume=True)


def test_mismatched_images_and_vectors(tmp_path):
    img, vec = _tiny_image()
    with pytest.raises(InputError, match="one CSV per image"):
        run_job(train([img, img], [vec], outdir=tmp_path / "x", config=TINY))


@pytest.mark.slow
def test_training_with_zero_vectors_runs(tmp_path):
    img, _ = _tiny_image()
    out = run_job(train([img], [VectorTable.empty()], outdir=tmp_path / "z",
                        config=TINY.replace(epochs=1, steps_per_epoch=1)))
    row = _log(out / "training_log.csv")[0]
    assert np.isfinite(float(row["train_loss"]))


# ----------------------------------------------------------------------------- TrainConfig

def test_train_config_round_trips_through_config_json(tmp_path):
    config = TrainConfig(arch="paper", structures=("nucleus", "golgi"),
                         model_voxel_size=(0.5, 1.0, 1.0), epochs=7, steps_per_epoch=3,
                         patch_size=(8, 32, 32), lr=5e-4, val_fraction=0.0, augment_p=0.0,
                         weighting="reference", seed=11, device="cpu", precision="fp32",
                         num_threads=2)
    model = ModelConfig(network={"base_filters": 4}, training=config)
    write_config(tmp_path, model)
    back = read_config(tmp_path)
    assert back.training == config and back.training is not config
    assert back.training.patch_size == (8, 32, 32)  # tuples again, not JSON lists
    assert TrainConfig.from_dict(dict(config.to_dict(), unknown_later_field=1)) == config


def test_model_folder_without_training_config_still_loads(tmp_path):
    """Folders written before TrainConfig existed have no "training" key."""
    from cellpol_core.detection.network import CellPolNet

    net = CellPolNet(base_filters=4, depth=2)
    write_config(tmp_path, ModelConfig(network=net.config(), spatial_dims=3))
    import json

    data = json.loads((tmp_path / "config.json").read_text())
    assert "training" not in data
    save_state(tmp_path / "weights_best.pt", net.state_dict())
    model = load_model(tmp_path)
    assert model.config.training is None


def test_broken_training_config_is_an_input_error(tmp_path):
    import json

    write_config(tmp_path, ModelConfig(network={}, training=TrainConfig()))
    data = json.loads((tmp_path / "config.json").read_text())
    data["training"]["epochs"] = 0
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="config.json: broken training configuration .*epochs"):
        read_config(tmp_path)


@pytest.mark.parametrize("changes, message", [
    (dict(epochs=0), "epochs must be a whole number of at least 1, got 0"),
    (dict(epochs=2.5), "epochs must be a whole number"),
    (dict(batch_size=0), "batch_size must be a whole number of at least 1"),
    (dict(steps_per_epoch=0), "steps_per_epoch must be a whole number of at least 1"),
    (dict(lr=0.0), "lr must be a finite number above 0"),
    (dict(lr=float("nan")), "lr must be a finite number above 0"),
    (dict(lr=float("inf")), "lr must be a finite number above 0"),
    (dict(delta=-1.0), "delta must be a finite number above 0"),
    (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
    (dict(val_fraction=-0.1), r"val_fraction must be in \[0, 1\)"),
    (dict(augment_p=1.5), r"augment_p must be in \[0, 1\]"),
    (dict(weighting="heavy"), "weighting must be one of balanced, reference"),
    (dict(precision="fp8"), "precision must be one of auto, fp32, bf16"),
    (dict(patch_size=(0, 32, 32)), "patch_size must be 2 or 3 sizes"),
    (dict(model_voxel_size=(1.0, 0.0, 1.0)), "model_voxel_size must be 3 sizes above 0"),
    (dict(structures=("nucleus",)), "structures must be two names"),
    (dict(seed=-1), "seed must be a whole number of at least 0"),
])
def test_train_config_rejects_bad_values(changes, message):
    with pytest.raises(InputError, match=message) as info:
        TrainConfig(**changes)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=message):
        TINY.replace(**changes)  # replace validates too


def test_train_config_from_options_takes_its_fields_out():
    options = {"config": TINY, "epochs": 9, "device": "cuda", "val_images": ["a.tif"]}
    config = TrainConfig.from_options(options)
    assert config == TINY.replace(epochs=9, device="cuda")
    assert options == {"val_images": ["a.tif"]}
    assert TrainConfig.from_options({}) == TrainConfig()
