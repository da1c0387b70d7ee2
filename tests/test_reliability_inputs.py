"""Hostile or careless input and output: one line, exit 2, nothing lost, no Python warning.

Cases 5-12 of the reliability issue: non-finite voxels, sizes read from values,
truncated OME-TIFF, a 2-value voxel size on a 3D image, tiny images and extreme
coordinates, write failures, clashing output names and crashes on odd models.
"""

import errno
import warnings

import numpy as np
import pytest
import tifffile

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.io.image import read_image, write_ome_tiff


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


def _save_weights(obj, path):
    """Save ``obj`` as the model's weights, recording its checksum as training would."""
    import torch

    from cellpol_core.detection import model as model_mod

    torch.save(obj, path)
    if hasattr(model_mod, "record_checksum"):
        model_mod.record_checksum(path, model_mod.file_sha256(path))


def test_weights_file_holding_a_list(tmp_path, img3d, demo_copy, capsys):
    _save_weights([1, 2, 3], demo_copy / "weights_best.pt")
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--model",
                 str(demo_copy)]) == 2
    assert "list" in one_line(capsys, "weights_best.pt")


def test_model_taking_three_channels(tmp_path, img3d, demo_copy, capsys):
    import json

    from cellpol_core.detection.model import build_net, read_config

    cfg = json.loads((demo_copy / "config.json").read_text())
    cfg["network"]["in_channels"] = 3
    (demo_copy / "config.json").write_text(json.dumps(cfg))
    _save_weights(build_net(read_config(demo_copy)).state_dict(), demo_copy / "weights_best.pt")
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--model",
                 str(demo_copy)]) == 2
    assert "3 input channels" in one_line(capsys, "model")


# --------------------------------------------------------------------------- 5: NaN / Inf voxels

def _close_tables(a, b, tol):
    """Fraction of vectors of ``a`` with a vector of ``b`` within ``tol`` voxels at both ends."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if len(a) != len(b) or not len(a):
        return 0.0
    cost = cdist(a.start, b.start) + cdist(a.end, b.end)
    r, c = linear_sum_assignment(cost)
    ok = (np.abs(a.start[r] - b.start[c]).max(1) <= tol) & (np.abs(a.end[r] - b.end[c]).max(1) <= tol)
    return ok.mean()


def _spoil(data, n, seed=0):
    """A float32 copy of ``data`` with ``n`` NaN voxels and 5 +Inf/-Inf ones."""
    rng = np.random.default_rng(seed)
    out = data.astype(np.float32)
    flat = out.reshape(-1)
    idx = rng.choice(flat.size, n + 5, replace=False)
    flat[idx[:n]] = np.nan
    flat[idx[n:n + 3]] = np.inf
    flat[idx[n + 3:]] = -np.inf
    return out


def test_nan_voxels_otsu_same_vectors(tmp_path, capsys):
    from cellpol_core.io.vectors import read_vectors

    clean = _blobs(tmp_path / "clean.ome.tif", 3, n=5)
    img = read_image(clean)
    spoilt = tmp_path / "spoilt.ome.tif"
    write_ome_tiff(spoilt, _spoil(img.data, 100), voxel_size=img.voxel_size,
                   channel_names=img.channel_names)
    assert main(["predict", str(clean), "-o", str(tmp_path / "a"), "--method", "otsu"]) == 0
    capsys.readouterr()
    assert main(["predict", str(spoilt), "-o", str(tmp_path / "b"), "--method", "otsu"]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "105 NaN/Inf voxel(s)" in err and "spoilt" in err, err
    a = read_vectors(tmp_path / "a" / "clean_vectors.csv")
    b = read_vectors(tmp_path / "b" / "spoilt_vectors.csv")
    assert len(a) >= 3 and _close_tables(a, b, 0.05) == 1.0


def test_nan_voxels_model_same_vectors(tmp_path, capsys):
    """The model found 0 vectors instead of 66 with 100 NaN voxels in the demo image."""
    from cellpol_core.io.resources import demo_image_path
    from cellpol_core.io.vectors import read_vectors

    img = read_image(demo_image_path())
    spoilt = tmp_path / "spoilt.ome.tif"
    write_ome_tiff(spoilt, _spoil(img.data, 100), voxel_size=img.voxel_size,
                   channel_names=img.channel_names)
    clean = tmp_path / "clean.ome.tif"
    write_ome_tiff(clean, img.data.astype(np.float32), voxel_size=img.voxel_size,
                   channel_names=img.channel_names)
    assert main(["predict", str(clean), str(spoilt), "-o", str(tmp_path / "o"),
                 "--model", "demo"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(notes) == 1 and "105 NaN/Inf" in notes[0], notes
    a = read_vectors(tmp_path / "o" / "clean_vectors.csv")
    b = read_vectors(tmp_path / "o" / "spoilt_vectors.csv")
    # the network's peaks of ambiguous cells move under any change of the input (even +1
    # on one corner voxel): nearly all vectors stay put, none is lost
    assert len(a) > 50 and len(b) == len(a)
    assert _close_tables(a, b, 0.5) >= 0.9


def test_fill_nonfinite_uses_neighbours():
    from cellpol_core.io.image import fill_nonfinite

    a = np.arange(5 * 6 * 7, dtype=np.float64).reshape(5, 6, 7)
    b = a.copy()
    b[2, 3, 4] = np.nan  # a linear ramp: the neighbourhood median is the value itself
    b[0, 0, 0] = np.inf
    b[4, :, :] = np.nan  # a whole missing plane: filled from the nearest plane
    fill_nonfinite(b, channel_axis=None)
    assert b[2, 3, 4] == a[2, 3, 4] and np.isfinite(b).all()
    assert np.abs(b[4] - a[3]).max() <= 7  # one y step of the ramp, at the clipped edges
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = np.full((2, 3, 3), np.nan, np.float32)
        c[1] = 1
        fill_nonfinite(c, channel_axis=0)
    assert c[0].tolist() == np.zeros((3, 3)).tolist() and (c[1] == 1).all()


def test_info_tells_about_nonfinite_voxels(tmp_path, capsys):
    path = tmp_path / "nan.ome.tif"
    write_ome_tiff(path, _spoil(np.ones((2, 4, 16, 16)), 7), voxel_size=(1, 1, 1))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr()
    assert "12 NaN/Inf voxel(s)" in out.out and "nan" not in out.out.split("min")[-1]
    assert out.err == ""


# --------------------------------------------------------------------------- 6: sizes from values

@pytest.mark.parametrize("vs", [1e30, 1e-6])
@pytest.mark.parametrize("method", [["--method", "otsu"], ["--model", "demo"]])
def test_absurd_metadata_voxel_size(tmp_path, capsys, vs, method):
    """1e30 µm made prediction allocate 7 GB; 1e-6 µm made Otsu smooth for hours."""
    path = tmp_path / "odd.ome.tif"
    write_ome_tiff(path, np.ones((2, 4, 16, 16), np.uint16), voxel_size=(vs, vs, vs))
    assert main(["predict", str(path), "-o", str(tmp_path / "o"), *method]) == 2
    assert "voxel size" in one_line(capsys, "odd.ome.tif")
    # the user's own voxel size overrides the metadata
    assert main(["predict", str(path), "-o", str(tmp_path / "o"), "--method", "otsu",
                 "--voxel-size", "0.5", "0.5", "1"]) == 0


def test_absurd_voxel_size_option(tmp_path, img3d, capsys):
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--method", "otsu",
                 "--voxel-size", "1e-6", "1e-6", "1e-6"]) == 2
    assert "plausible" in one_line(capsys, "img.ome.tif")


def _bomb(path, side=100_000):
    """A tiny deflate TIFF whose header claims side × side pixels."""
    tifffile.imwrite(path, np.zeros((8, 8), np.uint16), compression="zlib")
    with tifffile.TiffFile(path, mode="r+") as tif:
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tif.pages[0].tags[tag].overwrite(side)
    return path


@pytest.fixture
def memory_cap():
    """Cap this process's address space at its size + 3 GiB, so that an attempt to
    allocate tens of GiB fails here even where memory is overcommitted."""
    import resource

    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    before = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_AS, before)


@pytest.mark.parametrize("command", ["info", "predict"])
def test_decompression_bomb_refused_before_allocating(tmp_path, capsys, command, memory_cap):
    path = _bomb(tmp_path / "bomb.tif")
    assert path.stat().st_size < 400
    extra = ["-o", str(tmp_path / "o"), "--method", "otsu"] if command == "predict" else []
    assert main([command, str(path), *extra]) == 2
    assert "corrupt" in one_line(capsys, "bomb.tif")


def test_image_larger_than_memory_refused(tmp_path, img3d, capsys, monkeypatch):
    import cellpol_core.io.image as image_mod

    monkeypatch.setattr(image_mod, "_available_memory", lambda: 10_000)
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--method", "otsu"]) == 2
    assert "memory" in one_line(capsys, "img.ome.tif")


def test_resampling_growth_needs_force(tmp_path, capsys):
    """A plausible but coarse voxel size grows the image many times at the model's scale."""
    path = tmp_path / "coarse.ome.tif"
    write_ome_tiff(path, np.ones((2, 4, 16, 16), np.uint16), voxel_size=(5.0, 8.0, 8.0),
                   channel_names=["nucleus", "golgi"])
    assert main(["predict", str(path), "-o", str(tmp_path / "o"), "--model", "demo"]) == 2
    assert "--force" in one_line(capsys, "coarse.ome.tif")
    assert main(["predict", str(path), "-o", str(tmp_path / "o"), "--model", "demo",
                 "--force"]) == 0


# --------------------------------------------------------------------------- 7: truncated OME-TIFF

def test_ome_tiff_cut_before_its_xml(tmp_path, capsys):
    full = tmp_path / "full.ome.tif"
    rng = np.random.default_rng(0)
    write_ome_tiff(full, rng.integers(0, 1000, (2, 16, 32, 32), dtype=np.uint16),
                   voxel_size=(0.27, 0.666, 0.666), channel_names=["nucleus", "golgi"],
                   compression=None)
    data = full.read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(data[:data.find(b"<?xml")])  # pixels complete, trailing OME-XML gone
    with pytest.raises(InputError, match="truncated"):
        read_image(cut)
    assert main(["info", str(cut)]) == 2
    assert "truncated" in one_line(capsys, "cut.ome.tif")


# --------------------------------------------------------------------------- 8: X Y on a 3D image

def test_two_value_voxel_size_on_3d_image(tmp_path, img3d, capsys):
    for cmd in (["info", str(img3d)],
                ["predict", str(img3d), "-o", str(tmp_path / "o"), "--method", "otsu"]):
        assert main([*cmd, "--voxel-size", "0.5", "0.5"]) == 2
        assert "X Y Z" in one_line(capsys, "img.ome.tif")


def test_two_value_voxel_size_on_2d_image(tmp_path, capsys):
    path = tmp_path / "flat.ome.tif"
    write_ome_tiff(path, np.ones((2, 16, 16), np.uint16))
    assert main(["info", str(path), "--voxel-size", "0.5", "0.25"]) == 0
    assert "x 0.5 y 0.25" in capsys.readouterr().out


def test_otsu_smoothing_wider_than_planned(tmp_path, img3d, capsys):
    assert main(["predict", str(img3d), "-o", str(tmp_path / "o"), "--method", "otsu",
                 "--voxel-size", "0.002", "0.002", "0.002"]) == 2
    assert "smoothing" in one_line(capsys, "img.ome.tif")


# --------------------------------------------------------------------------- 9: no Python warnings

HUGE = ("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n"
        "1e300,-1e300,0,5,5,1\n3,3,3,5,5,1\n")


def test_huge_coordinates_in_stats(tmp_path, capsys, recwarn):
    csv = tmp_path / "big.csv"
    csv.write_text(HUGE)
    assert main(["stats", str(csv), "-o", str(tmp_path / "s"), "--voxel-size", "1", "1", "1",
                 "--no-plots"]) == 2
    assert "coordinate" in one_line(capsys, "big.csv")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_huge_coordinates_in_train(tmp_path, img3d, capsys):
    csv = tmp_path / "big.csv"
    csv.write_text(HUGE)
    assert main(["train", "--images", str(img3d), "--vectors", str(csv), "-o",
                 str(tmp_path / "m"), "--epochs", "1", "--no-tune"]) == 2
    assert "line 2" in one_line(capsys, "big.csv")


def test_python_warnings_become_one_line(tmp_path, img3d, capsys, monkeypatch):
    """Whatever numpy or a library warns about (a tiny 2x1x1 image printed 12 lines of
    RuntimeWarning), the user reads one line."""
    import cellpol_core.io.image as image_mod

    real = image_mod.percentile_limits

    def noisy(*a, **k):
        for _ in range(12):
            np.mean(np.zeros(0))  # RuntimeWarning: Mean of empty slice
        return real(*a, **k)

    monkeypatch.setattr(image_mod, "percentile_limits", noisy)  # info imports it when run
    assert main(["info", str(img3d)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeWarning: Mean of empty slice" in err[0], err


def test_tiny_image_prints_no_warning(tmp_path, capsys):
    path = tmp_path / "tiny.ome.tif"
    write_ome_tiff(path, np.arange(4, dtype=np.uint16).reshape(2, 2, 1, 1), voxel_size=(1, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cmd in (["info", str(path)],
                    ["predict", str(path), "-o", str(tmp_path / "o"), "--method", "otsu"],
                    ["predict", str(path), "-o", str(tmp_path / "m"), "--model", "demo"]):
            assert main(cmd) in (0, 2)
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) <= 1 and "Warning" not in err, err


def test_ome_tiff_with_fewer_planes_than_its_xml(tmp_path, capsys):
    """tifffile fills missing planes with zeros: the file must be reported, not read."""
    full = tmp_path / "full.ome.tif"
    write_ome_tiff(full, np.ones((2, 16, 8, 8), np.uint16), voxel_size=(1, 1, 1),
                   compression=None)
    with tifffile.TiffFile(full) as tif:
        xml = tif.ome_metadata.replace('SizeZ="16"', 'SizeZ="32"').replace("µ", "u")
        data = tif.series[0].asarray()
    short = tmp_path / "short.ome.tif"
    tifffile.imwrite(short, data.reshape(-1, 8, 8), description=xml, metadata=None)
    assert main(["info", str(short)]) == 2
    assert "32 more plane(s)" in one_line(capsys, "short.ome.tif")


# --------------------------------------------------------------------------- 10: every writer

@pytest.mark.parametrize("argv, kind", [
    (["phantom", "{out}"], "folder"),
    (["convert", "in.csv", "-o", "{out}"], "file"),
    (["predict", "x.tif", "--method", "otsu", "-o", "{out}"], "folder"),
    (["evaluate", "--gt", "g.csv", "--pred", "p.csv", "-o", "{out}"], "file"),
    (["stats", "v.csv", "-o", "{out}"], "folder"),
    (["train", "--images", "x.tif", "--vectors", "x.csv", "-o", "{out}"], "folder"),
    (["gan", "train", "--images", "x.tif", "--vectors", "x.csv", "-o", "{out}"], "folder"),
    (["gan", "generate", "g", "--n", "1", "-o", "{out}"], "folder"),
])
def test_every_writer_checks_its_output_first(tmp_path, capsys, argv, kind):
    # a folder where a file is expected, a file where a folder is
    out = tmp_path / "taken"
    if kind == "folder":
        out.write_text("a file\n")
    else:
        out.mkdir()
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = one_line(capsys, "taken")
    assert ("not a folder" if kind == "folder" else "is a folder") in err


def test_tune_checks_the_model_folder(tmp_path, capsys, monkeypatch):
    import tempfile

    model = tmp_path / "m"
    model.mkdir()

    def denied(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert main(["tune", str(model), "--images", "x.tif", "--vectors", "x.csv"]) == 2
    assert "read-only" in one_line(capsys, str(model))


def test_training_resampling_checks_memory_first(tmp_path, monkeypatch):
    import cellpol_core.io.image as image_mod
    from cellpol_core.io.resample import resample_channels

    monkeypatch.setattr(image_mod, "_available_memory", lambda: 1 << 20)
    with pytest.raises(InputError, match="memory") as info:
        resample_channels(np.zeros((2, 4, 8, 8), np.float32), (40, 80, 80), path="a.tif")
    assert "a.tif" in str(info.value)
    with pytest.raises(InputError, match="--force"):
        resample_channels(np.zeros((2, 4, 8, 8), np.float32), (9, 16, 16), force=False)
    assert resample_channels(np.ones((2, 4, 8, 8), np.float32), (8, 16, 16)).shape == (2, 8, 16, 16)
