"""Vox2Vox GAN: networks, training job, generation, SSIM and the ``cellpol gan`` CLI."""

import csv
import json

import numpy as np
import pytest
import torch

from cellpol_core.cli import main
from cellpol_core.errors import Cancelled, InputError
from cellpol_core.synthetic.gan import (PatchDiscriminator, UNetGenerator, evaluate_gan, generate, load_gan,
                              ssim, train_gan)
from cellpol_core.io.image import CellImage, read_image, write_ome_tiff
from cellpol_core.jobs import CancelToken, run_job
from cellpol_core.detection.model import load_state
from cellpol_core.synthetic.phantom import generate_phantom
from cellpol_core.io.vectors import read_vectors, write_vectors

VS = (1.0, 1.0, 1.0)
PATCH = (16, 32, 32)


def _data(n=2):
    images, vectors = [], []
    for seed in range(n):
        p = generate_phantom(shape=(16, 48, 48), voxel_size=VS, seed=seed)
        images.append(CellImage(p.image, VS, list(p.channel_names)))
        vectors.append(p.vectors)
    return images, vectors


def _train(outdir, *, epochs=1, steps=2, resume=False, cancel=None, events=None, on_event=None):
    images, vectors = _data()
    job = train_gan(images, vectors, outdir=outdir, epochs=epochs, patch=PATCH, base_filters=4,
                    steps_per_epoch=steps, device="cpu", seed=0, resume=resume, cancel=cancel)
    return run_job(job, on_event or (None if events is None else events.append))


@pytest.mark.parametrize("dims", [2, 3])
def test_network_shapes(dims):
    size = (16, 32, 32)[-dims:]
    gen = UNetGenerator(dims, 2, 2, base_filters=4, depth=4)
    disc = PatchDiscriminator(dims, 4, base_filters=4, n_layers=3)
    mask = (torch.rand((2, 2) + size) > 0.7).float()
    with torch.no_grad():
        out = gen(mask)
        logits = disc(mask, out)
    assert out.shape == (2, 2) + size
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert logits.shape == (2, 1) + tuple(s // 8 for s in size)
    assert UNetGenerator(**gen.config()).config() == gen.config()
    with pytest.raises(ValueError):
        gen(torch.zeros((1, 2) + tuple(s + 4 for s in size)))


def test_train_two_steps_writes_gan_folder(tmp_path):
    events = []
    out = tmp_path / "gan"
    torch.manual_seed(0)
    init = UNetGenerator(3, 2, 2, base_filters=4).state_dict()
    assert _train(out, events=events) == out
    losses = [e.data for e in events if e.stage == "gan" and "d_loss" in e.data]
    assert len(losses) == 3 and losses[-1]["epoch_end"]
    for d in losses:
        assert all(np.isfinite(d[k]) for k in ("d_loss", "g_loss", "l1"))
        assert d["g_loss"] >= 100 * d["l1"] - 1e-4  # BCE part is non-negative
    for name in ("config.json", "generator.pt", "discriminator.pt", "checkpoint_last.pt",
                 "training_log.csv", "masks.npz"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["schema_version"] == 1 and cfg["patch_size_zyx"] == list(PATCH)
    assert cfg["voxel_size_zyx_um"] == list(VS) and cfg["structures"] == ["nucleus", "golgi"]
    assert cfg["generator"]["base_filters"] == 4
    # Same seed, same initial weights: training moved them.
    trained = load_state(out / "generator.pt")
    assert any(not torch.equal(trained[k], init[k]) for k in init)
    gen, _, dictionary = load_gan(out)
    assert len(dictionary.start) > 5 and not gen.training
    with open(out / "training_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1"]


def test_resume_continues(tmp_path):
    out = tmp_path / "gan"
    _train(out, epochs=1, steps=1)
    first = load_state(out / "generator.pt")
    events = []
    _train(out, epochs=2, steps=1, resume=True, events=events)
    epochs = [e.data["epoch"] for e in events if e.data.get("epoch_end")]
    assert epochs == [2]
    with open(out / "training_log.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
    second = load_state(out / "generator.pt")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert int(load_state(out / "checkpoint_last.pt")["epoch"]) == 2
    with pytest.raises(InputError):
        _train(tmp_path / "empty", resume=True)


def test_cancel_saves_checkpoint(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        _train(tmp_path / "gan", cancel=token)
    assert int(load_state(tmp_path / "gan" / "checkpoint_last.pt")["epoch"]) == 0


def _same_weights(a, b):
    a, b = load_state(a), load_state(b)
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_mid_epoch_then_resume_is_exact(tmp_path):
    """GAN training runs in the shared epoch loop: a cancelled epoch resumes where it stopped."""
    full = tmp_path / "full"
    _train(full, epochs=2, steps=2)
    token = CancelToken()
    seen = []

    def on_event(e):
        seen.append(e)
        if e.stage == "gan" and e.data.get("epoch") == 2 and e.data.get("step") == 1:
            token.cancel()

    out = tmp_path / "gan"
    with pytest.raises(Cancelled):
        _train(out, epochs=2, steps=2, cancel=token, on_event=on_event)
    ck = load_state(out / "checkpoint_last.pt")
    assert (int(ck["epoch"]), int(ck["step"])) == (1, 1)
    events = []
    _train(out, epochs=2, steps=2, resume=True, events=events)
    assert [e.data["step"] for e in events if e.stage == "gan" and "step" in e.data] == [2]
    assert _same_weights(full / "generator.pt", out / "generator.pt")
    assert _same_weights(full / "discriminator.pt", out / "discriminator.pt")
    with open(full / "training_log.csv") as a, open(out / "training_log.csv") as b:
        cols = ("epoch", "d_loss", "g_loss", "l1")
        assert [[r[c] for c in cols] for r in csv.DictReader(a)] == \
            [[r[c] for c in cols] for r in csv.DictReader(b)]


def test_train_and_train_gan_share_the_epoch_loop(tmp_path, monkeypatch):
    import cellpol_core.detection.loop as loop
    from cellpol_core.detection.config import TrainConfig
    from cellpol_core.detection.train import train

    stages = []
    real = loop.epoch_loop

    def spy(trainer, **kw):
        stages.append((trainer.stage, kw["epochs"], kw["steps_per_epoch"]))
        return (yield from real(trainer, **kw))

    monkeypatch.setattr(loop, "epoch_loop", spy)
    _train(tmp_path / "gan", epochs=1, steps=1)
    images, vectors = _data(1)
    config = TrainConfig(epochs=1, steps_per_epoch=1, patch_size=PATCH, batch_size=1,
                         device="cpu")
    run_job(train(images, vectors, outdir=tmp_path / "model", config=config))
    assert stages == [("gan", 1, 1), ("train", 1, 1)]


def test_default_steps_per_epoch_is_one_rule():
    from cellpol_core.detection.loop import default_steps_per_epoch

    assert default_steps_per_epoch([(16, 48, 48)], (16, 32, 32), 1) == 4  # at least 4
    assert default_steps_per_epoch([(64, 256, 256)] * 2, (16, 32, 32), 2) == 256


def test_generate_writes_readable_pairs(tmp_path):
    out = tmp_path / "gan"
    _train(out, steps=1)
    paths = run_job(generate(out, n=2, outdir=tmp_path / "syn", seed=3, n_pairs=(2, 3),
                             device="cpu"))
    assert [p.name for p in paths] == ["synthetic_0000.ome.tif", "synthetic_0001.ome.tif"]
    for p in paths:
        img = read_image(p)
        assert img.data.shape == (2,) + PATCH and img.data.dtype == np.uint16
        assert img.voxel_size == VS and list(img.channel_names) == ["nucleus", "golgi"]
        table = read_vectors(p.with_name(p.name.replace(".ome.tif", "_vectors.csv")))
        assert 2 <= len(table) <= 3 and table.names == ("nucleus", "golgi")
        pair = np.linalg.norm(table.end - table.start, axis=1)
        assert np.all(pair <= 14.0 + 1e-3)
    again = run_job(generate(out, n=1, outdir=tmp_path / "syn2", seed=3, n_pairs=(2, 3),
                             device="cpu"))
    np.testing.assert_array_equal(read_image(again[0]).data, read_image(paths[0]).data)


def test_ssim_identical_and_different():
    rng = np.random.default_rng(0)
    a = rng.random((2, 8, 16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a + rng.normal(0, 0.3, a.shape), 0, 1)
    assert ssim(a, b) < 0.9
    # 2D and the 0-255 scaling: a constant offset of 10/255 lowers only the luminance term.
    c = rng.random((2, 32, 32)) * 0.5
    assert 0.95 < ssim(c, c + 10 / 255) < 1.0


def test_evaluate_gan_reports_ssim(tmp_path):
    out = tmp_path / "gan"
    _train(out, steps=1)
    images, vectors = _data()
    res = evaluate_gan(out, images, vectors, device="cpu")
    # 48-voxel images tiled by 32-voxel patches: 4 tiles each.
    assert res["n_patches"] == 8 and len(res["per_image"]) == 2
    assert -1.0 <= res["ssim_mean"] <= 1.0 and res["ssim_sd"] >= 0.0
    with pytest.raises(InputError):
        evaluate_gan(tmp_path / "nope", images, vectors)


def test_cli_round_trip(tmp_path, capsys):
    images, vectors = _data()
    img_paths, csv_paths = [], []
    for i, (im, vec) in enumerate(zip(images, vectors)):
        ip, cp = tmp_path / f"img{i}.ome.tif", tmp_path / f"img{i}.csv"
        write_ome_tiff(ip, im.data, voxel_size=VS, channel_names=im.channel_names)
        write_vectors(cp, vec, voxel_size=VS)
        img_paths.append(str(ip))
        csv_paths.append(str(cp))
    gan = tmp_path / "gan"
    rc = main(["gan", "train", "--images", *img_paths, "--vectors", *csv_paths, "-o", str(gan),
               "--epochs", "1", "--steps-per-epoch", "1", "--patch", "32", "32", "16",
               "--base-filters", "4", "--device", "cpu", "--start-box", "12", "12", "6"])
    assert rc == 0
    assert "GAN written to" in capsys.readouterr().out
    cfg = json.loads((gan / "config.json").read_text())
    assert cfg["box_um"] == [[6.0, 12.0, 12.0], [5.0, 8.0, 8.0]]
    rc = main(["gan", "train", "--images", *img_paths, "--vectors", *csv_paths, "-o",
               str(tmp_path / "bad"), "--patch", "32", "32", "--device", "cpu"])
    assert rc == 2 and "patch must have 3 sizes" in capsys.readouterr().err
    rc = main(["gan", "generate", str(gan), "--n", "2", "-o", str(tmp_path / "syn"),
               "--pairs", "2", "4", "--device", "cpu"])
    assert rc == 0
    assert len(list((tmp_path / "syn").glob("*.ome.tif"))) == 2
    rc = main(["gan", "evaluate", str(gan), "--images", *img_paths, "--vectors", *csv_paths,
               "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "SSIM" in out and "±" in out and "over 8 patches" in out
    rc = main(["gan", "generate", str(tmp_path / "missing"), "--n", "1", "-o",
               str(tmp_path / "x")])
    assert rc == 2
    assert "GAN folder not found" in capsys.readouterr().err


def test_2d_train_generate_evaluate(tmp_path):
    images, vectors = [], []
    for seed in range(2):
        p = generate_phantom(ndim=2, shape=(96, 96), seed=seed, density=2.0)
        images.append(CellImage(p.image, p.voxel_size, list(p.channel_names)))
        vectors.append(p.vectors)
    assert sum(len(v) for v in vectors) > 0
    out = tmp_path / "gan2d"
    box = ((1.0, 120.0, 120.0), (1.0, 30.0, 30.0))  # pixels: cytoplasm, nucleus
    run_job(train_gan(images, vectors, outdir=out, epochs=1, patch=(64, 64), base_filters=4,
                      steps_per_epoch=1, device="cpu", box_um=box))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["spatial_dims"] == 2 and cfg["generator"]["spatial_dims"] == 2
    assert cfg["structures"] == ["cytoplasm", "nucleus"]
    paths = run_job(generate(out, n=1, outdir=tmp_path / "syn", n_pairs=2, max_pair_um=40.0,
                             device="cpu"))
    img = read_image(paths[0])
    assert img.data.shape == (2, 64, 64)
    table = read_vectors(tmp_path / "syn" / "synthetic_0000_vectors.csv")
    assert table.ndim == 2 and len(table) == 2
    res = evaluate_gan(out, images, vectors, device="cpu")
    assert res["n_patches"] == 8  # 96 px tiled by 64: 2 x 2 tiles per image


def _write_real(tmp_path, n=1):
    images, vectors = _data(n)
    img_paths, csv_paths = [], []
    for i, (im, vec) in enumerate(zip(images, vectors)):
        ip, cp = tmp_path / f"real{i}.ome.tif", tmp_path / f"real{i}_vectors.csv"
        write_ome_tiff(ip, im.data, voxel_size=VS, channel_names=im.channel_names)
        write_vectors(cp, vec, voxel_size=VS)
        img_paths.append(str(ip))
        csv_paths.append(str(cp))
    return img_paths, csv_paths


def _synthetic_setup(tmp_path):
    img, csv_ = _write_real(tmp_path)
    gan = tmp_path / "gan"
    _train(gan, steps=1)
    syn = tmp_path / "syn"
    run_job(generate(gan, n=1, outdir=syn, n_pairs=(3, 4), device="cpu"))
    common = ["--images", *img, "--vectors", *csv_, "-o", str(tmp_path / "model"), "--epochs",
              "1", "--steps-per-epoch", "1", "--patch", "32", "32", "16", "--batch-size", "1",
              "--device", "cpu", "--no-tune"]
    return syn, common


def test_train_synthetic_bad_input(tmp_path, capsys):
    syn, common = _synthetic_setup(tmp_path)
    rc = main(["train", *common, "--synthetic", str(syn), "--init", str(tmp_path / "gan")])
    assert rc == 2 and "--synthetic and --init" in capsys.readouterr().err
    rc = main(["train", *common, "--synthetic", str(syn), "--resume"])
    assert rc == 2 and "--resume" in capsys.readouterr().err
    rc = main(["train", *common, "--synthetic", str(tmp_path / "nothing")])
    assert rc == 2 and "no synthetic images" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_train_synthetic_pretraining_cli(tmp_path, capsys):
    syn, common = _synthetic_setup(tmp_path)
    model = tmp_path / "model"
    rc = main(["train", *common, "--synthetic", str(syn), "--synthetic-epochs", "1"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "synthetic pre-training: epoch 1/1" in out and "model written to" in out
    pre = tmp_path / "model_synthetic"
    assert (pre / "weights_last.pt").exists() and (model / "weights_last.pt").exists()
    # The fine-tuned model kept the pre-trained network and voxel size.
    assert json.loads((model / "config.json").read_text())["network"] == \
        json.loads((pre / "config.json").read_text())["network"]
