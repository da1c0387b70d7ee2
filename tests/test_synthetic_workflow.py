"""cellpol_core.synthetic.workflow: the synthetic-data jobs and folder readers (no Qt)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cellpol_core.errors import InputError
from cellpol_core.io.image import write_ome_tiff
from cellpol_core.io.vectors import write_vectors
from cellpol_core.jobs import run_job
from cellpol_core.synthetic.phantom import generate_phantom
from cellpol_core.synthetic.workflow import (
    dictionary_counts,
    dictionary_job,
    gan_folder_state,
    gan_job,
    gan_preview,
    generate_job,
    preview_job,
    read_gan_log,
    synthetic_count,
)

# One tiny 2D GAN epoch: a couple of seconds on one CPU thread.
TINY_GAN = dict(epochs=1, patch=(32, 32), steps_per_epoch=1, base_filters=4, batch_size=1,
                device="cpu")


def _annotated(tmp_path, *, name="flat", flat=False, seed=0):
    """A 2D phantom image and its ground-truth vectors CSV."""
    p = generate_phantom(shape=(64, 64), ndim=2, seed=seed)
    image, csv = tmp_path / f"{name}.ome.tif", tmp_path / f"{name}_vectors.csv"
    data = np.full_like(p.image, 100) if flat else p.image
    write_ome_tiff(image, data, voxel_size=p.voxel_size, channel_names=list(p.channel_names))
    write_vectors(csv, p.vectors, voxel_size=p.voxel_size)
    return image, csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 2D GAN folder, its training image, vectors and the job's result."""
    tmp = tmp_path_factory.mktemp("gan")
    image, csv = _annotated(tmp)
    events = []
    out = run_job(gan_job([image], [csv], outdir=tmp / "gan", **dict(TINY_GAN, epochs=2),
                          preview_every=1), events.append)
    return tmp / "gan", image, csv, out, events


def test_dictionary_job_saves_and_counts(tmp_path):
    image, csv = _annotated(tmp_path)
    path = tmp_path / "synthetic" / "dictionary.npz"
    events = []
    counts = run_job(dictionary_job([image], [csv], path=path), events.append)
    assert counts["start"] > 0 and counts["end"] > 0 and counts["path"] == str(path)
    assert [e.stage for e in events] == ["dictionary", "dictionary"]
    assert events[-1].message == f"{counts['start']} + {counts['end']} masks"
    # The counts read back from the file's metadata only.
    assert dictionary_counts(path) == (counts["start"], counts["end"], counts["structures"])


def test_dictionary_job_refuses_flat_images(tmp_path):
    image, csv = _annotated(tmp_path, flat=True)
    path = tmp_path / "dictionary.npz"
    with pytest.raises(InputError, match="no object masks"):
        run_job(dictionary_job([image], [csv], path=path))
    assert not path.exists()


def test_dictionary_counts_missing_or_broken(tmp_path):
    assert dictionary_counts(tmp_path / "none.npz") is None
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    assert dictionary_counts(broken) is None


def test_synthetic_count_needs_both_files(tmp_path):
    assert synthetic_count(tmp_path / "absent") == 0
    for i in range(3):
        (tmp_path / f"synthetic_{i:04d}.ome.tif").write_bytes(b"")
    for i in range(2):
        (tmp_path / f"synthetic_{i:04d}_vectors.csv").write_text("")
    (tmp_path / "other.ome.tif").write_bytes(b"")
    assert synthetic_count(tmp_path) == 2


def test_gan_folder_state_from_files(tmp_path):
    empty = {"trained": False, "epochs": 0, "checkpoint": False, "config": None, "log": []}
    assert gan_folder_state(None) == empty
    assert gan_folder_state(tmp_path / "absent") == empty
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "config.json").write_text(json.dumps({"kind": "something else"}))
    assert gan_folder_state(gan) == empty
    cfg = {"kind": "cellpol-gan", "patch_size_zyx": [32, 32]}
    (gan / "config.json").write_text(json.dumps(cfg))
    state = gan_folder_state(gan)
    assert state["config"] == cfg and not state["trained"] and state["epochs"] == 0
    (gan / "generator.pt").write_bytes(b"")
    (gan / "masks.npz").write_bytes(b"")
    (gan / "checkpoint_last.pt").write_bytes(b"")
    (gan / "training_log.csv").write_text("epoch,d_loss,g_loss,l1,seconds,device\n"
                                          "1,0.7,1.5,0.25,1.0,cpu\n2,0.6,1.4,0.125,1.0,cpu\n")
    state = gan_folder_state(gan)
    assert state["trained"] and state["checkpoint"] and state["epochs"] == 2
    assert [r["l1"] for r in state["log"]] == [0.25, 0.125]
    assert read_gan_log(gan / "absent.csv") == []


def test_gan_job_previews_every_epoch(trained):
    gan, image, _, out, events = trained
    live = [e.data["gan_preview"] for e in events if "gan_preview" in e.data]
    assert [p["epoch"] for p in live] == [1, 2]
    assert out["gan_dir"] == str(gan) and out["preview"] is live[-1]  # not computed again
    state = gan_folder_state(gan)
    assert state["trained"] and state["epochs"] == 2
    p = out["preview"]
    assert p["z"] is None and p["image"] == str(image)
    assert p["mask"].shape == p["real"].shape == p["fake"].shape == (2, 32, 32)
    assert set(np.unique(p["mask"])) <= {0.0, 1.0}
    # The patch is centred on the first pair: both structures are in the mask.
    assert p["mask"][0].sum() > 0 and p["mask"][1].sum() > 0
    assert 0.0 <= p["fake"].min() and p["fake"].max() <= 1.0


def test_gan_preview_and_its_job_agree(trained):
    gan, image, csv, out, _ = trained
    direct = gan_preview(gan, image, csv, device="cpu")
    events = []
    job = run_job(preview_job(gan, image, csv, device="cpu"), events.append)
    assert [e.stage for e in events] == ["preview"]
    for key in ("mask", "real", "fake"):
        np.testing.assert_array_equal(direct[key], job[key])
    # The final generator's image, as the training's last live preview showed it.
    np.testing.assert_allclose(direct["fake"], out["preview"]["fake"], atol=1e-6)


def test_gan_preview_refuses_an_image_of_the_wrong_dimension(trained, tmp_path):
    gan = trained[0]
    p = generate_phantom(shape=(8, 32, 32), seed=0)
    image, csv = tmp_path / "vol.ome.tif", tmp_path / "vol_vectors.csv"
    write_ome_tiff(image, p.image, voxel_size=p.voxel_size, channel_names=list(p.channel_names))
    write_vectors(csv, p.vectors, voxel_size=p.voxel_size)
    with pytest.raises(InputError, match="2D but this image is 3D"):
        gan_preview(gan, image, csv, device="cpu")


def test_generate_job_replaces_earlier_images(trained, tmp_path):
    gan = trained[0]
    out = tmp_path / "patches"
    out.mkdir()
    for name in ("synthetic_0007.ome.tif", "synthetic_0007_vectors.csv", "notes.txt"):
        (out / name).write_text("old")
    paths = run_job(generate_job(gan, n=1, outdir=out, n_pairs=(2, 3), device="cpu"))
    assert [Path(p).name for p in paths] == ["synthetic_0000.ome.tif"]
    assert sorted(f.name for f in out.iterdir()) == [
        "notes.txt", "synthetic_0000.ome.tif", "synthetic_0000_vectors.csv"]
    assert synthetic_count(out) == 1


def test_live_previews_leave_gan_training_unchanged(tmp_path):
    import torch

    image, csv = _annotated(tmp_path)
    runs = {}
    for every in (1, 0):
        events = []
        out = run_job(gan_job([image], [csv], outdir=tmp_path / f"gan{every}", preview_every=every,
                              **dict(TINY_GAN, epochs=2)), events.append)
        live = [e.data["gan_preview"]["epoch"] for e in events if "gan_preview" in e.data]
        runs[every] = (out, live, (tmp_path / f"gan{every}" / "training_log.csv").read_text(),
                       torch.load(tmp_path / f"gan{every}" / "generator.pt", weights_only=True))
    assert runs[1][1] == [1, 2] and runs[0][1] == [2]  # every epoch / the last one only
    # Same losses and weights with or without the previews in between.
    strip = [[c for c in row.split(",")[:4]] for row in runs[1][2].splitlines()]
    assert strip == [[c for c in row.split(",")[:4]] for row in runs[0][2].splitlines()]
    for key, value in runs[1][3].items():
        assert torch.equal(value, runs[0][3][key]), key
    for every in (1, 0):
        preview = runs[every][0]["preview"]
        assert preview["epoch"] == 2 and preview["z"] is None
    np.testing.assert_array_equal(runs[1][0]["preview"]["fake"], runs[0][0]["preview"]["fake"])


def test_gan_job_2d_drops_z_and_previews(tmp_path):
    from cellpol_core.synthetic.gan import read_gan_config

    image, csv = _annotated(tmp_path)
    out = run_job(gan_job([image], [csv], outdir=tmp_path / "gan",
                          **dict(TINY_GAN, patch=(16, 32, 32))))
    assert read_gan_config(tmp_path / "gan")["patch_size_zyx"] == [32, 32]
    preview = out["preview"]
    assert preview["z"] is None and preview["fake"].shape == (2, 32, 32)
    # The patch is centred on the first pair: its start lies in the mask's start channel.
    assert preview["mask"][0].sum() > 0 and preview["mask"][1].sum() > 0
