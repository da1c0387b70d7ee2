"""Training data pipeline and the training job (tiny sizes, CPU)."""

import csv

import numpy as np
import pytest
import torch

from cellpol_core.errors import Cancelled, InputError
from cellpol_core.io.image import CellImage
from cellpol_core.jobs import CancelToken, run_job
from cellpol_core.detection.targets import make_targets
from cellpol_core.detection.train import (PatchSampler, TrainingImage, augment, crop_patch, fit_patch_size,
                                split_holdout, train)
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


def _train(tmp_path, **kw):
    img, vec = _tiny_image()
    opts = dict(outdir=tmp_path / "m", arch="light", epochs=2, steps_per_epoch=2,
                patch_size=(16, 32, 32), batch_size=1, device="cpu", seed=3, val_fraction=0.25)
    opts.update(kw)
    return run_job(train([img], [vec], **opts))


def _log(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_train_writes_model_folder_and_is_deterministic(tmp_path):
    events = []
    img, vec = _tiny_image()
    out = run_job(train([img], [vec], outdir=tmp_path / "a", epochs=2, steps_per_epoch=2,
                        patch_size=(16, 32, 32), batch_size=1, device="cpu", seed=3,
                        val_fraction=0.25), events.append)
    for name in ["config.json", "thresholds.json", "weights_best.pt", "weights_last.pt",
                 "training_log.csv", "checkpoint_last.pt"]:
        assert (out / name).exists(), name
    log = _log(out / "training_log.csv")
    assert [r["epoch"] for r in log] == ["1", "2"]
    assert all(r["device"].startswith("CPU") for r in log)
    assert any(e.data.get("device", "").startswith("CPU") for e in events)
    assert sum(bool(e.data.get("epoch_end")) for e in events) == 2
    state = torch.load(out / "weights_last.pt", weights_only=True)
    again = _train(tmp_path, outdir=tmp_path / "b")
    state2 = torch.load(again / "weights_last.pt", weights_only=True)
    for k in state:
        torch.testing.assert_close(state[k], state2[k])


@pytest.mark.slow
def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    full = _train(tmp_path, outdir=tmp_path / "full", epochs=3)
    part = _train(tmp_path, outdir=tmp_path / "part", epochs=2)
    resumed = _train(tmp_path, outdir=part, epochs=3, resume=True)
    assert [r["epoch"] for r in _log(resumed / "training_log.csv")] == ["1", "2", "3"]
    a = torch.load(full / "weights_last.pt", weights_only=True)
    b = torch.load(resumed / "weights_last.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.slow
def test_cancel_between_steps_saves_a_checkpoint(tmp_path):
    token = CancelToken()
    img, vec = _tiny_image()
    job = train([img], [vec], outdir=tmp_path / "c", epochs=5, steps_per_epoch=3,
                patch_size=(16, 32, 32), batch_size=1, device="cpu", cancel=token)
    seen = []

    def on_event(e):
        seen.append(e)
        if e.stage == "train" and e.data.get("step") == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        run_job(job, on_event)
    assert (tmp_path / "c" / "checkpoint_last.pt").exists()
    assert not any(e.data.get("epoch_end") for e in seen)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    img, vec = _tiny_image()
    with pytest.raises(InputError, match="nothing to resume"):
        run_job(train([img], [vec], outdir=tmp_path / "none", resume=True, device="cpu"))


def test_mismatched_images_and_vectors(tmp_path):
    img, vec = _tiny_image()
    with pytest.raises(InputError, match="one CSV per image"):
        run_job(train([img, img], [vec], outdir=tmp_path / "x", device="cpu"))


@pytest.mark.slow
def test_training_with_zero_vectors_runs(tmp_path):
    img, _ = _tiny_image()
    out = run_job(train([img], [VectorTable.empty()], outdir=tmp_path / "z", epochs=1,
                        steps_per_epoch=1, patch_size=(16, 32, 32), batch_size=1, device="cpu"))
    row = _log(out / "training_log.csv")[0]
    assert np.isfinite(float(row["train_loss"]))
