"""Hostile or careless input and output: one line, exit 2, nothing lost, no Python warning.

Cases 5-12 of the reliability issue: non-finite voxels, sizes read from values,
truncated OME-TIFF, a 2-value voxel size on a 3D image, tiny images and extreme
coordinates, write failures, clashing output names and crashes on odd models.
"""

import errno

import numpy as np
import pytest

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.io.image import write_ome_tiff


def one_line(capsys, *names):
    """The single stderr line of a failed command; it names each of ``names``."""
    err = capsys.readouterr().err.strip()
    assert err, "expected an error line"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for name in names:
        assert str(name) in err, err
    return err


@pytest.fixture
def img3d(tmp_path):
    path = tmp_path / "img.ome.tif"
    rng = np.random.default_rng(0)
    write_ome_tiff(path, rng.integers(0, 1000, (2, 8, 32, 32), dtype=np.uint16),
                   voxel_size=(0.27, 0.666, 0.666), channel_names=["nucleus", "golgi"])
    return path


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if an image is read: the error must come before the work."""
    import cellpol_core.io.image as image_mod

    def refuse(*a, **k):
        raise AssertionError("the image was read before the output was checked")

    monkeypatch.setattr(image_mod, "read_image", refuse)


# --------------------------------------------------------------------------- 10: write failures

def test_output_folder_is_a_file(tmp_path, img3d, capsys, no_reading):
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    assert main(["predict", str(img3d), "-o", str(target), "--method", "otsu"]) == 2
    assert "not a folder" in one_line(capsys, "notes.txt")
    assert target.read_text() == "keep me\n"


def test_output_folder_under_a_file(tmp_path, img3d, capsys, no_reading):
    (tmp_path / "f").write_text("x")
    assert main(["predict", str(img3d), "-o", str(tmp_path / "f" / "out"),
                 "--method", "otsu"]) == 2
    one_line(capsys, "f/out")


def test_unwritable_folder_found_before_work(tmp_path, img3d, capsys, monkeypatch, no_reading):
    import tempfile

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # root ignores mode bits: simulate
    assert main(["predict", str(img3d), "-o", str(tmp_path / "out"), "--method", "otsu"]) == 2
    assert "permission denied" in one_line(capsys, "out")


def test_full_disk_found_before_work(tmp_path, img3d, capsys, monkeypatch, no_reading):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(100, 100, 0))
    assert main(["evaluate", "--gt", "a.csv", "--pred", "b.csv",
                 "-o", str(tmp_path / "m.csv")]) == 2
    assert "full" in one_line(capsys, "m.csv")


def test_evaluate_output_is_a_folder(tmp_path, capsys):
    assert main(["evaluate", "--gt", "a.csv", "--pred", "b.csv", "-o", str(tmp_path)]) == 2
    assert "is a folder" in one_line(capsys, str(tmp_path))


def test_full_disk_while_writing_names_the_file(tmp_path, img3d, capsys, monkeypatch):
    import cellpol_core.io.atomic as atomic

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    assert main(["predict", str(img3d), "-o", str(tmp_path / "out"), "--method", "otsu"]) == 2
    assert "disk is full" in one_line(capsys, "img_vectors.csv")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temporary left behind


def test_checkpoint_write_failure_is_one_line(tmp_path, monkeypatch):
    import torch

    from cellpol_core.detection.model import save_state
    from cellpol_core.errors import OutputError

    def enforce_fail(obj, f, *a, **k):
        open(f, "wb").write(b"PK")  # torch had started the file
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", enforce_fail)
    with pytest.raises(OutputError) as info:
        save_state(tmp_path / "checkpoint.pt", {"w": torch.zeros(3)})
    assert "checkpoint.pt" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, InputError)  # exit code 2 in the CLI, a dialog in the GUI
    assert list(tmp_path.iterdir()) == []


def test_other_runtime_errors_are_not_disguised(tmp_path):
    from cellpol_core.io.atomic import atomic_path

    with pytest.raises(RuntimeError, match="a bug"):
        with atomic_path(tmp_path / "x.txt"):
            raise RuntimeError("a bug")


# --------------------------------------------------------------------------- 11: same stems

def _blobs(path, seed, shape=(8, 48, 48), n=4):
    """An image with ``n`` nucleus/Golgi blob pairs, and its true vectors."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 5, (2,) + shape).clip(0)
    zz, yy, xx = np.indices(shape)
    for _ in range(n):
        c = np.array([shape[0] / 2, *rng.uniform(8, shape[1] - 8, 2)])
        g = c + [0, *rng.uniform(-4, 4, 2)]
        for ch, p, r in ((0, c, 3.0), (1, g, 1.5)):
            d2 = ((zz - p[0]) * 0.5) ** 2 + (yy - p[1]) ** 2 + (xx - p[2]) ** 2
            data[ch] += 1000 * np.exp(-d2 / (2 * r * r))
    write_ome_tiff(path, data.astype(np.uint16), voxel_size=(1.0, 1.0, 1.0),
                   channel_names=["nucleus", "golgi"])
    return path


def test_same_stem_inputs_keep_both_outputs(tmp_path, capsys):
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    a = _blobs(tmp_path / "d1" / "x.ome.tif", 1)
    b = _blobs(tmp_path / "d2" / "x.tif", 2, n=3)
    out = tmp_path / "out"
    assert main(["predict", str(a), str(b), "-o", str(out), "--method", "otsu"]) == 0
    io = capsys.readouterr()
    assert io.out.split() == [str(out / "x_vectors.csv"), str(out / "x-2_vectors.csv")]
    notes = [line for line in io.err.splitlines() if line.strip()]
    assert len(notes) == 1 and "x.tif" in notes[0] and "x-2_vectors.csv" in notes[0], io.err
    # each CSV holds its own image's vectors: the same as predicting that image alone
    for image, csv in ((a, "x_vectors.csv"), (b, "x-2_vectors.csv")):
        solo = tmp_path / f"solo_{image.parent.name}"
        assert main(["predict", str(image), "-o", str(solo), "--method", "otsu"]) == 0
        assert (out / csv).read_text() == (solo / "x_vectors.csv").read_text()
    assert (out / "x_vectors.csv").read_text() != (out / "x-2_vectors.csv").read_text()


def test_renamed_outputs_never_take_another_inputs_name(tmp_path):
    from cellpol_core.io.paths import vectors_paths_for

    outs, renamed = vectors_paths_for(["d1/x.ome.tif", "d2/x.tif", "x-2.tif", "X.lsm"], "o")
    assert [p.name for p in outs] == ["x_vectors.csv", "x-3_vectors.csv", "x-2_vectors.csv",
                                      "X-4_vectors.csv"]
    assert [str(img) for img, _ in renamed] == ["d2/x.tif", "X.lsm"]


# --------------------------------------------------------------------------- 12: evaluate memory

def _dense_reference(gt, pred, vs, tau_s, tau_e):
    """The matching as first written: a dense gated G×P matrix and linear_sum_assignment."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    from cellpol_core.detection.evaluate import GATE_COST, REL_TOL

    ds = cdist(gt.start * vs, pred.start * vs)
    de = cdist(gt.end * vs, pred.end * vs)
    ok = (ds <= tau_s * (1 + REL_TOL)) & (de <= tau_e * (1 + REL_TOL))
    rows, cols = linear_sum_assignment(np.where(ok, ds + de, GATE_COST))
    keep = ok[rows, cols]
    return sorted(zip(rows[keep].tolist(), cols[keep].tolist())), len(rows)


@pytest.mark.parametrize("seed", range(6))
def test_gated_matching_equals_dense_matching(seed, monkeypatch):
    import cellpol_core.detection.evaluate as ev
    from cellpol_core.detection.evaluate import evaluate_vectors, level_thresholds

    monkeypatch.setattr(ev, "DENSE_MAX", 0, raising=False)  # the sparse matching, always
    from cellpol_core.io.vectors import VectorTable

    rng = np.random.default_rng(seed)
    g, p = rng.integers(50, 300, 2)
    side = rng.uniform(60, 200)  # from crowded (many candidates per vector) to sparse
    gs = rng.uniform(0, side, (g, 3))
    ge = gs + rng.normal(0, 3, (g, 3))
    src = rng.integers(0, g, p)
    ps = np.where(rng.random((p, 1)) < 0.7, gs[src] + rng.normal(0, 3, (p, 3)),
                  rng.uniform(0, side, (p, 3)))
    pe = ps + (ge - gs)[src] + rng.normal(0, 2, (p, 3))
    vs = np.array([0.5, 1.0, 1.0])
    gt, pred = VectorTable(gs / vs, ge / vs), VectorTable(ps / vs, pe / vs)
    r = evaluate_vectors(gt, pred, voxel_size=tuple(vs))
    _, _, tau_s, tau_e = level_thresholds()[0]
    want, n_pairs = _dense_reference(gt, pred, vs, tau_s, tau_e)
    m = r.matching
    got = sorted(zip(m.gt_index[~m.gated].tolist(), m.pred_index[~m.gated].tolist()))
    assert len(want) > 10 and got == want
    assert len(m.gt_index) == n_pairs  # gated leftovers paired too, as before
    assert m.tp_pairs(0).tolist() == [list(pair) for pair in want]


def test_evaluate_a_million_vectors_in_little_memory():
    """1 M × 1 M vectors needed a 425 GiB dense matrix; the gated matching is linear."""
    import resource

    from cellpol_core.detection.evaluate import evaluate_vectors
    from cellpol_core.io.vectors import VectorTable

    n = 200_000  # the dense matrices would take 2 × 320 GB; keep the test quick
    rng = np.random.default_rng(0)
    side = (n * 1e4) ** (1 / 3)
    gs = rng.uniform(0, side, (n, 3))
    ge = gs + rng.normal(0, 3, (n, 3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = evaluate_vectors(VectorTable(gs, ge), VectorTable(gs + 0.5, ge + 0.5),
                         voxel_size=(1.0, 1.0, 1.0))
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.levels[0].tp == n
    assert grown_kb < 2_000_000  # < 2 GB


# --------------------------------------------------------------------------- 12: odd models

@pytest.fixture
def demo_copy(tmp_path):
    import shutil

    from cellpol_core.detection.model import find_model

    out = tmp_path / "model"
    shutil.copytree(find_model("demo"), out)
    return out


def test_weights_file_holding_a_list(tmp_path, img3d, demo_copy, capsys):
    import torch

    torch.save([1, 2, 3], demo_copy / "weights_best.pt")
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--model",
                 str(demo_copy)]) == 2
    assert "list" in one_line(capsys, "weights_best.pt")


def test_model_taking_three_channels(tmp_path, img3d, demo_copy, capsys):
    import json

    import torch

    from cellpol_core.detection.model import build_net, read_config

    cfg = json.loads((demo_copy / "config.json").read_text())
    cfg["network"]["in_channels"] = 3
    (demo_copy / "config.json").write_text(json.dumps(cfg))
    torch.save(build_net(read_config(demo_copy)).state_dict(), demo_copy / "weights_best.pt")
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--model",
                 str(demo_copy)]) == 2
    assert "3 input channels" in one_line(capsys, "model")
