"""Model folders and training under hostile or careless use (cases 1-4 of the reliability issue).

A model folder is replaced whole or not at all, a checkpoint resumes only its
own run, two runs never write one folder, corrupted weights and impossible
config values are refused on load, stale temporaries are cleaned, and bad
training options are one line with exit code 2.
"""

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from cellpol_core.cli import main
from cellpol_core.detection.config import TrainConfig
from cellpol_core.detection.model import (CHECKSUMS_FILE, file_sha256, find_model, load_model,
                                          load_state, read_checksums, read_config,
                                          record_checksum, save_state)
from cellpol_core.detection.runfolder import pending_run, staging_dirs
from cellpol_core.detection.train import train
from cellpol_core.errors import Cancelled, InputError
from cellpol_core.io.image import CellImage, write_ome_tiff
from cellpol_core.io.lock import FolderBusy, FolderLock, lock_path
from cellpol_core.io.vectors import write_vectors
from cellpol_core.jobs import CancelToken, run_job

# fp32: some tests compare weights bit for bit.
TINY = TrainConfig(arch="light", epochs=1, steps_per_epoch=1, patch_size=(16, 32, 32),
                   batch_size=1, device="cpu", seed=3, val_fraction=0.25, precision="fp32")


def one_line(capsys, *words):
    """The single stderr line of a failed command, holding each of ``words``."""
    err = capsys.readouterr().err.strip()
    assert err, "expected an error line"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err and "Warning" not in err, err
    for word in words:
        assert str(word) in err, err
    return err


def _phantom():
    from cellpol_core.synthetic.phantom import generate_phantom

    ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=0, density=0.6)
    return CellImage(ph.image, voxel_size=(1.0, 1.0, 1.0),
                     channel_names=["nucleus", "golgi"]), ph.vectors


def _train(outdir, *, cancel=None, on_event=None, resume=False, overwrite=False, **changes):
    img, vec = _phantom()
    return run_job(train([img], [vec], outdir=outdir, config=TINY.replace(**changes),
                         resume=resume, overwrite=overwrite, cancel=cancel), on_event)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _cancel_at(token, *, epoch, step, events=None):
    def on_event(e):
        if events is not None:
            events.append(e)
        if e.stage == "train" and e.data.get("epoch") == epoch and e.data.get("step") == step:
            token.cancel()
    return on_event


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An annotated image and its CSV on disk, for the CLI."""
    folder = tmp_path_factory.mktemp("data")
    img, vec = _phantom()
    write_ome_tiff(folder / "a.ome.tif", (img.data * 1000).astype(np.uint16),
                   voxel_size=(1.0, 1.0, 1.0), channel_names=["nucleus", "golgi"])
    write_vectors(folder / "a.csv", vec, voxel_size=(1.0, 1.0, 1.0))
    return folder / "a.ome.tif", folder / "a.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch model folder (copy it before changing it)."""
    return _train(tmp_path_factory.mktemp("trained") / "m")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _cli_train(files, out, *extra):
    img, csv = files
    return main(["train", "--images", str(img), "--vectors", str(csv), "-o", str(out),
                 "--epochs", "1", "--steps-per-epoch", "1", "--patch", "32", "32", "16",
                 "--batch-size", "1", "--device", "cpu", "--precision", "fp32", "--no-tune",
                 *extra])


# --------------------------------------------------------------------------- 1: staging, run ids

def test_cli_refuses_to_replace_a_trained_model_without_overwrite(tmp_path, trained, files,
                                                                  capsys):
    m = _copy(trained, tmp_path / "m")
    before = _snapshot(m)
    assert _cli_train(files, m) == 2
    one_line(capsys, "--overwrite", str(m))
    assert _snapshot(m) == before
    assert _cli_train(files, m, "--overwrite") == 0
    assert read_config(m).run_id != read_config(trained).run_id


def test_a_folder_of_other_files_is_never_replaced(tmp_path, files, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("keep me\n")
    assert _cli_train(files, tmp_path / "data", "--overwrite") == 2
    one_line(capsys, "not a model folder")
    assert (tmp_path / "data" / "notes.txt").read_text() == "keep me\n"


@pytest.mark.slow
def test_interrupted_new_run_keeps_the_old_model_and_resumes_its_own_run(tmp_path, trained):
    m = _copy(trained, tmp_path / "m")
    before = _snapshot(m)
    old_weights = load_state(m / "weights_best.pt")
    token = CancelToken()
    # Another architecture: a half-replaced folder would no longer load.
    with pytest.raises(Cancelled):
        _train(m, arch="ctrdet-light", steps_per_epoch=2, overwrite=True, cancel=token,
               on_event=_cancel_at(token, epoch=1, step=1))
    assert _snapshot(m) == before
    loaded = load_model(m, for_inference=False)
    assert loaded.config.arch == "light"
    for k, v in loaded.net.state_dict().items():
        assert torch.equal(v, old_weights[k]), k
    staging = pending_run(m, "checkpoint_last.pt")
    ck = torch.load(staging / "checkpoint_last.pt", weights_only=True)
    assert ck["run_id"] == read_config(staging).run_id != read_config(m).run_id

    # --resume continues the interrupted run (epoch 1, step 2), not the old finished one.
    events = []
    _train(m, arch="ctrdet-light", steps_per_epoch=2, resume=True, on_event=events.append)
    steps = [e.data["step"] for e in events if e.stage == "train" and "step" in e.data]
    assert steps == [2]
    config = read_config(m)
    assert config.arch == "ctrdet-light" and config.run_id == ck["run_id"]
    assert torch.load(m / "checkpoint_last.pt", weights_only=True)["run_id"] == ck["run_id"]
    assert staging_dirs(m) == []
    load_model(m)


def test_a_new_run_needs_overwrite_to_drop_an_interrupted_run(tmp_path):
    m = tmp_path / "m"
    token = CancelToken()
    with pytest.raises(Cancelled):
        _train(m, steps_per_epoch=2, cancel=token, on_event=_cancel_at(token, epoch=1, step=1))
    assert not m.exists()
    with pytest.raises(InputError, match="interrupted training run; pass --resume"):
        _train(m)
    assert pending_run(m, "checkpoint_last.pt") is not None


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, trained):
    m = _copy(trained, tmp_path / "m")
    cfg = json.loads((m / "config.json").read_text())
    cfg["run_id"] = "0123456789ab"  # the config of another run beside this checkpoint
    (m / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="belongs to another training run") as err:
        _train(m, epochs=2, resume=True)
    assert len(str(err.value).splitlines()) == 1
    assert read_config(m).run_id == "0123456789ab"  # the folder is left as it was


# --------------------------------------------------------------------------- 2: locking

def test_second_training_into_a_locked_folder_names_the_holder(tmp_path, trained):
    """Another process holds the folder: refused in one line naming its pid."""
    m = _copy(trained, tmp_path / "m")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from cellpol_core.io.lock import FolderLock\n"
         "FolderLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)",
         str(m)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusy) as err:
            _train(m, overwrite=True)
        text = str(err.value)
        assert f"pid {holder.pid}" in text and len(text.splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is stale and taken over.
    assert lock_path(m).exists()
    _train(m, overwrite=True)
    assert not lock_path(m).exists()


def test_two_trainings_at_once_one_is_refused(tmp_path):
    """Two threads train into one folder: the second is refused while the first runs."""
    m = tmp_path / "m"
    first_running, second_done = threading.Event(), threading.Event()
    outcome = {}

    def first_events(e):
        if e.stage == "train" and not first_running.is_set():
            first_running.set()
            second_done.wait(120)

    def run(name, on_event=None):
        try:
            _train(m, overwrite=True, on_event=on_event)
            outcome[name] = "ok"
        except FolderBusy as exc:
            outcome[name] = str(exc)
        finally:
            if name == "second":
                second_done.set()

    a = threading.Thread(target=run, args=("first", first_events))
    a.start()
    assert first_running.wait(120)
    b = threading.Thread(target=run, args=("second",))
    b.start()
    b.join(120)
    a.join(120)
    assert outcome["first"] == "ok"
    assert "in use by another training" in outcome["second"] and f"pid {os.getpid()}" in \
        outcome["second"]
    load_model(m)


def test_lock_file_holds_the_holder_and_is_exclusive(tmp_path):
    with FolderLock(tmp_path / "m", what="training") as lock:
        info = json.loads(lock_path(tmp_path / "m").read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["started"] > 0
        with pytest.raises(FolderBusy, match="in use by another training"):
            FolderLock(tmp_path / "m").acquire()
        assert lock.info == info
    assert not lock_path(tmp_path / "m").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    lock_path(tmp_path / "m").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "started": 1.0, "what": "training"}))
    with FolderLock(tmp_path / "m"):
        assert json.loads(lock_path(tmp_path / "m").read_text())["pid"] == os.getpid()


# --------------------------------------------------------------------------- 3: checksums, config

@pytest.fixture
def demo_copy(tmp_path):
    return _copy(find_model("demo"), tmp_path / "demo")


def _flip(path, n=4096):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


def test_corrupted_weights_fail_predict_in_one_line(tmp_path, demo_copy, files, capsys):
    _flip(demo_copy / "weights_best.pt")
    assert main(["predict", str(files[0]), "--model", str(demo_copy), "-o",
                 str(tmp_path / "out")]) == 2
    one_line(capsys, "weights_best.pt", "SHA-256")
    assert not list((tmp_path / "out").glob("*.csv"))


def test_bundled_models_carry_matching_checksums():
    from cellpol_core.io.resources import bundled_models_dir

    folders = [d for d in bundled_models_dir().iterdir() if (d / "config.json").exists()]
    assert folders
    for folder in folders:
        sums = read_checksums(folder)
        weights = sorted(p.name for p in folder.glob("*.pt"))
        assert weights and sorted(sums) == weights, folder
        for name in weights:
            assert sums[name] == [file_sha256(folder / name)], name


def test_folder_without_checksums_still_loads(demo_copy):
    (demo_copy / CHECKSUMS_FILE).unlink()
    _flip(demo_copy / "metrics.json", n=8)  # not a weights file: not checked
    assert load_model(demo_copy).config.arch == "light"


def test_checksums_verify_at_every_point_of_a_replacement(tmp_path):
    path = tmp_path / "w.pt"
    save_state(path, {"a": torch.zeros(3)})
    old = path.read_bytes()
    assert read_checksums(tmp_path) == {"w.pt": [file_sha256(path)]}
    save_state(tmp_path / "new.pt", {"a": torch.ones(3)})
    new_digest = file_sha256(tmp_path / "new.pt")
    # Killed after recording the new digest, before the rename: the old file verifies.
    record_checksum(path, new_digest, keep_old=True)
    assert torch.equal(load_state(path)["a"], torch.zeros(3))
    # Killed after the rename, before dropping the old digest: the new file verifies.
    os.replace(tmp_path / "new.pt", path)
    assert torch.equal(load_state(path)["a"], torch.ones(3))
    record_checksum(path, new_digest)
    path.write_bytes(old)  # the old bytes no longer match
    with pytest.raises(InputError, match="SHA-256"):
        load_state(path)


def _edit(folder, name, change):
    data = json.loads((folder / name).read_text())
    change(data)
    (folder / name).write_text(json.dumps(data))  # json writes NaN as NaN


@pytest.mark.parametrize("name, change, words", [
    ("config.json", lambda d: d.update(voxel_size_zyx_um=[float("nan"), 1.0, 1.0]),
     "voxel_size_zyx_um"),
    ("config.json", lambda d: d.update(voxel_size_zyx_um=[0.0, 1.0, 1.0]), "voxel_size_zyx_um"),
    ("config.json", lambda d: d.update(voxel_size_zyx_um=[1.0, -1.0, 1.0]), "voxel_size_zyx_um"),
    ("config.json", lambda d: d.update(radii=[float("inf"), 3.0]), "radii"),
    ("config.json", lambda d: d["network"].update(base_filters=4096), "base_filters"),
    ("config.json", lambda d: d["network"].update(depth=40), "depth"),
    ("config.json", lambda d: d["network"].update(base_filters=128, depth=6), "too large"),
    ("config.json", lambda d: d["network"].update(head_filters=10 ** 6), "head_filters"),
    ("thresholds.json", lambda d: d.update(tau=[float("nan"), 0.5]), "tau"),
    ("thresholds.json", lambda d: d.update(tau=[0.5, 3.0]), "tau"),
    ("thresholds.json", lambda d: d.update(d_max_um=-5.0), "d_max_um"),
    ("thresholds.json", lambda d: d.update(d_min_um=[float("nan"), 1.0]), "d_min_um"),
    ("thresholds.json", lambda d: d.update(delta=0.0), "delta"),
    ("thresholds.json", lambda d: d.update(embed_weight=float("inf")), "embed_weight"),
])
def test_impossible_config_values_are_refused_on_load(demo_copy, monkeypatch, name, change,
                                                      words):
    import cellpol_core.detection.network as network

    def refuse(*a, **k):
        raise AssertionError("the network was built from a config that should be refused")

    monkeypatch.setattr(network, "CellPolNet", refuse)
    _edit(demo_copy, name, change)
    with pytest.raises(InputError, match=words) as err:
        load_model(demo_copy)
    assert name in str(err.value) and len(str(err.value).splitlines()) == 1


def test_nan_voxel_size_in_config_fails_predict_in_one_line(tmp_path, demo_copy, files, capsys):
    _edit(demo_copy, "config.json",
          lambda d: d.update(voxel_size_zyx_um=[float("nan"), 1.332, 1.332]))
    assert main(["predict", str(files[0]), "--model", str(demo_copy), "-o",
                 str(tmp_path / "out")]) == 2
    one_line(capsys, "config.json", "voxel_size_zyx_um")


# --------------------------------------------------------------------------- 4: leftovers, no-ops

def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path, trained):
    m = _copy(trained, tmp_path / "m")
    stale = [m / ".weights_last.k2j4x9a1.tmp.pt", m / ".checkpoint_last.0aa1bb2c.tmp.pt",
             m / ".training_log.q1w2e3r4.tmp.csv"]
    keep = [m / ".notes.k2j4x9a1.tmp.txt", m / "weights_last.tmp.pt", m / ".thresholds.x.tmp.json"]
    for p in stale + keep:
        p.write_bytes(b"\0" * 68_000)
    _train(m, epochs=2, resume=True)
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in keep)
    assert not list(tmp_path.glob(".m.*"))  # no staging folder, no lock left beside it


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "0"], "epochs"),
    (["--epochs", "-3"], "epochs"),
    (["--steps-per-epoch", "0"], "steps_per_epoch"),
    (["--lr", "nan"], "lr"),
    (["--lr", "-1"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--val-fraction", "2"], "val_fraction"),
    (["--alpha", "inf"], "alpha"),
    (["--synthetic-epochs", "0", "--synthetic", "."], "synthetic-epochs"),
])
def test_cli_rejects_bad_training_values(tmp_path, files, capsys, flags, words):
    img, csv = files
    with _no_warnings():
        code = main(["train", "--images", str(img), "--vectors", str(csv), "-o",
                     str(tmp_path / "m"), "--device", "cpu", *flags])
    assert code == 2
    one_line(capsys, words)
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.*"))


def test_cli_rejects_a_negative_pair_distance(tmp_path, files, capsys):
    with _no_warnings():
        code = main(["predict", str(files[0]), "-o", str(tmp_path / "out"), "--method", "otsu",
                     "--d-max", "-5"])
    assert code == 2
    one_line(capsys, "--d-max")


class _no_warnings:
    """Fail when a Python warning is issued inside the block."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not self.caught, [str(w.message) for w in self.caught]


# --------------------------------------------------------------------------- kill -9, GAN folders

KILLED_RUN = """
import sys
from cellpol_core.detection.config import TrainConfig
from cellpol_core.detection.train import train
from cellpol_core.io.image import CellImage
from cellpol_core.jobs import run_job
from cellpol_core.synthetic.phantom import generate_phantom

ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=0, density=0.6)
img = CellImage(ph.image, voxel_size=(1.0, 1.0, 1.0), channel_names=["nucleus", "golgi"])
config = TrainConfig(arch="light", epochs=50, steps_per_epoch=1, patch_size=(16, 32, 32),
                     batch_size=1, device="cpu", seed=3, val_fraction=0.25, precision="fp32")
run_job(train([img], [ph.vectors], outdir=sys.argv[1], config=config, overwrite=True))
"""


@pytest.mark.slow
def test_kill_9_during_a_new_run_keeps_the_old_model_and_resume_finishes(tmp_path, trained):
    import time

    m = _copy(trained, tmp_path / "m")
    before = _snapshot(m)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(m)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while pending_run(m, "checkpoint_last.pt") is None:  # at least one epoch done
            assert run.poll() is None and time.time() < deadline, "the run ended early"
            time.sleep(0.2)
    finally:
        run.kill()  # SIGKILL: no cleanup of any kind
        run.wait()
    assert _snapshot(m) == before
    load_model(m)
    staging = pending_run(m, "checkpoint_last.pt")
    (staging / ".weights_last.deadbeef.tmp.pt").write_bytes(b"\0" * 68_000)  # as a kill leaves
    assert lock_path(m).exists()  # the dead run's lock
    ck = torch.load(staging / "checkpoint_last.pt", weights_only=True)
    _train(m, epochs=int(ck["epoch"]) + 1, resume=True)
    config = read_config(m)
    assert config.run_id == ck["run_id"] and config.training.epochs == int(ck["epoch"]) + 1
    assert staging_dirs(m) == [] and not lock_path(m).exists()
    assert not list(m.glob(".*.tmp.*"))
    load_model(m)


def _gan(outdir, **options):
    from cellpol_core.synthetic.gan import train_gan

    img, vec = _phantom()
    return run_job(train_gan([img], [vec], outdir=outdir, **dict(
        dict(epochs=1, patch=(16, 32, 32), base_filters=4, steps_per_epoch=1, device="cpu",
             precision="fp32", seed=0), **options)))


def test_gan_resume_refuses_a_checkpoint_of_another_run_and_a_locked_folder(tmp_path):
    from cellpol_core.synthetic.gan import load_gan

    out = _gan(tmp_path / "gan")
    cfg = json.loads((out / "config.json").read_text())
    ck = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert cfg["run_id"] == ck["run_id"] and read_checksums(out)["generator.pt"]
    with FolderLock(out):
        with pytest.raises(FolderBusy, match=f"pid {os.getpid()}"):
            _gan(out, epochs=2, resume=True)
    cfg["run_id"] = "0123456789ab"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="belongs to another training run"):
        _gan(out, epochs=2, resume=True)
    cfg["generator"]["base_filters"] = 4096
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="base_filters"):
        load_gan(out)


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "0"], "epochs"),
    (["--steps-per-epoch", "0"], "steps_per_epoch"),
    (["--base-filters", "4096"], "base_filters"),
    (["--base-filters", "0"], "base_filters"),
])
def test_cli_rejects_bad_gan_values(tmp_path, files, capsys, flags, words):
    img, csv = files
    with _no_warnings():
        code = main(["gan", "train", "--images", str(img), "--vectors", str(csv), "-o",
                     str(tmp_path / "g"), "--device", "cpu", *flags])
    assert code == 2
    one_line(capsys, words)
