"""Tiled inference, model folders and the train -> tune -> predict -> evaluate chain."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.detection.evaluate import evaluate_vectors
from cellpol_core.io.image import CellImage, write_ome_tiff
from cellpol_core.detection.infer import Timings, plan_tiles, predict_image, predict_maps, tile_origins
from cellpol_core.jobs import run_job
from cellpol_core.detection.model import (LoadedModel, ModelConfig, Thresholds, load_model, write_config)
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vectors


class Oracle(nn.Module):
    """Outputs its input channels as heatmaps: tests tiling without training."""

    def __init__(self, dims=3):
        super().__init__()
        self.dims = dims
        self.dummy = nn.Parameter(torch.zeros(1))

    def size_multiple(self):
        return (8,) * self.dims

    def forward(self, x):
        zero = torch.zeros_like(x[:, :1])
        return {"heatmap_start": x[:, :1], "heatmap_end": x[:, 1:2],
                "embed_start": zero, "embed_end": zero}


def _blob_image(shape, starts, ends, sigma=1.5):
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.zeros((2,) + tuple(shape), np.float32)
    for c, pts in enumerate((starts, ends)):
        for p in pts:
            d2 = sum((g - v) ** 2 for g, v in zip(grids, p[-len(shape):]))
            img[c] = np.maximum(img[c], np.exp(-d2 / (2 * sigma ** 2)))
    return (img * 1000).astype(np.uint16)


def _grid_cells(shape, n_y, n_x, *, step=24, offset=10, dz=None):
    starts, ends = [], []
    for i in range(n_y):
        for j in range(n_x):
            z = shape[0] // 2 if dz is None else (i + j) % max(shape[0] - 6, 1) + 3
            s = np.array([z, offset + i * step, offset + j * step], float)
            e = s + np.array([0, 3, 4])
            starts.append(s)
            ends.append(e)
    return np.array(starts), np.array(ends)


def _assert_same_points(found, expected, atol):
    d = np.linalg.norm(found[:, None, :] - expected[None, :, :], axis=-1)
    assert np.all(d.min(axis=1) <= atol), d.min(axis=1).max()
    assert len(set(d.argmin(axis=1).tolist())) == len(expected)


def _oracle_model(dims=3, voxel_size=(1.0, 1.0, 1.0)):
    cfg = ModelConfig(network={}, spatial_dims=dims, voxel_size=voxel_size, radii=(3.0, 2.0))
    thr = Thresholds(tau=(0.5, 0.5), d_min_um=(4.0, 3.0), d_max_um=10.0, delta=2.0)
    return LoadedModel(net=Oracle(dims), config=cfg, thresholds=thr, path=None)


def test_tile_origins_cover():
    assert tile_origins(50, 64, 16) == [0]
    o = tile_origins(200, 64, 16)
    assert o[0] == 0 and o[-1] == 136 and all(b - a <= 48 for a, b in zip(o, o[1:]))
    tile, origins, interiors = plan_tiles((20, 100, 300), tile=(64, 64, 64), overlap=(8, 16, 16),
                                          multiple=(8, 16, 16))
    assert tile == (24, 64, 64)
    assert len(origins) == 1 * 2 * 6
    # Interiors partition space: every voxel belongs to exactly one tile.
    pts = np.stack(np.meshgrid(np.arange(0, 20, 3), np.arange(0, 100, 7), np.arange(0, 300, 5),
                               indexing="ij"), -1).reshape(-1, 3)
    owners = sum(np.all((pts >= lo) & (pts < hi), axis=1).astype(int) for lo, hi in interiors)
    assert np.all(owners == 1)
    # An overlap as large as the tile is capped, so tiles still advance.
    tile, origins, _ = plan_tiles((20, 16, 16), tile=(16, 16, 16), overlap=(16, 16, 16),
                                  multiple=(8, 8, 8))
    assert [o[0] for o in origins] == [0, 4]


@pytest.mark.parametrize("tile", [(16, 48, 48), (16, 128, 128)])
def test_tiled_prediction_recovers_vectors_once(tile):
    shape = (20, 110, 130)
    s, e = _grid_cells(shape, 4, 5, dz=True)
    img = CellImage(_blob_image(shape, s, e), voxel_size=(1.0, 1.0, 1.0),
                    channel_names=["nucleus", "golgi"])
    timings = Timings()
    table = run_job(predict_image(img, _oracle_model(), tile=tile, overlap=(8, 16, 16),
                                  batch_size=2, timings=timings))
    assert len(table) == len(s)  # no duplicates from overlapping tiles
    gt = VectorTable(s, e)
    res = evaluate_vectors(gt, table, voxel_size=(1, 1, 1))
    assert res.levels[13].tp == len(s)
    _assert_same_points(table.start, s, 0.2)
    _assert_same_points(table.end, e, 0.2)
    assert timings.tiles >= 1 and timings.network >= 0


def test_resampled_prediction_maps_back():
    # The image has 0.5 µm voxels in y and x; the model was trained at 1 µm.
    shape = (20, 160, 160)
    s, e = _grid_cells(shape, 3, 3, step=48, offset=24)
    e = s + np.array([0, 6, 8])
    img = CellImage(_blob_image(shape, s, e, sigma=3.0), voxel_size=(1.0, 0.5, 0.5),
                    channel_names=["nucleus", "golgi"])
    table = run_job(predict_image(img, _oracle_model(), tile=(16, 64, 64)))
    assert len(table) == len(s)
    _assert_same_points(table.start, s, 0.7)
    _assert_same_points(table.end, e, 0.7)


def test_image_smaller_than_a_tile():
    shape = (6, 20, 22)
    s = np.array([[3.0, 8.0, 8.0]])
    e = np.array([[3.0, 11.0, 12.0]])
    img = CellImage(_blob_image(shape, s, e), voxel_size=(1, 1, 1.0),
                    channel_names=["nucleus", "golgi"])
    table = run_job(predict_image(img, _oracle_model(), tile=(64, 128, 128)))
    assert len(table) == 1
    np.testing.assert_allclose(table.start[0], s[0], atol=0.2)


def test_2d_prediction_and_maps():
    shape = (90, 100)
    s3, e3 = _grid_cells((1,) + shape, 3, 3, step=28)
    s3[:, 0] = e3[:, 0] = 0
    img = CellImage(_blob_image(shape, s3, e3), voxel_size=(1.0, 1.0, 1.0),
                    channel_names=["nucleus", "golgi"])
    table = run_job(predict_image(img, _oracle_model(2), tile=(48, 48), overlap=(16, 16)))
    assert table.ndim == 2 and len(table) == 9
    maps = run_job(predict_maps(img, _oracle_model(2), tile=(48, 48), overlap=(16, 16)))
    assert maps.maps["heatmap_start"].shape == shape
    assert maps.maps["heatmap_start"].max() > 0.9


def test_incompatible_images():
    model = _oracle_model()
    one = CellImage(np.zeros((1, 8, 16, 16), np.uint16), voxel_size=(1, 1, 1.0))
    with pytest.raises(InputError, match="2 channels"):
        run_job(predict_image(one, model))
    flat = CellImage(np.zeros((2, 16, 16), np.uint16), voxel_size=(1, 1, 1.0))
    with pytest.raises(InputError, match="3D"):
        run_job(predict_image(flat, model))


# ----------------------------------------------------------------------------- model folders

def test_broken_model_folders(tmp_path):
    with pytest.raises(InputError, match="not found|no model"):
        load_model(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_model(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_model(bad)
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(InputError, match="newer"):
        load_model(newer)


def test_missing_or_corrupt_weights(tmp_path):
    from cellpol_core.detection.network import build_network

    net = build_network("light", spatial_dims=3)
    cfg = ModelConfig(network=net.config())
    d = tmp_path / "m"
    write_config(d, cfg)
    with pytest.raises(InputError, match="weights"):
        load_model(d)
    (d / "weights_best.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot load weights"):
        load_model(d)
    other = build_network("light", spatial_dims=2)
    torch.save(other.state_dict(), d / "weights_best.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_model(d)
    torch.save(net.state_dict(), d / "weights_best.pt")
    assert load_model(d).config.spatial_dims == 3


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_train_tune_predict_evaluate_cli(tmp_path, capsys):
    from cellpol_core.synthetic.phantom import generate_phantom

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        ph = generate_phantom(shape=(16, 48, 48), voxel_size=(1.0, 1.0, 1.0), seed=i,
                              density=0.6)
        write_ome_tiff(data / f"p{i}.ome.tif", ph.image, voxel_size=(1.0, 1.0, 1.0),
                       channel_names=["nucleus", "golgi"])
        write_vectors(data / f"p{i}_vectors.csv", ph.vectors, voxel_size=(1.0, 1.0, 1.0))
    model = tmp_path / "model"
    rc = main(["train", "--images", str(data / "p0.ome.tif"), "--vectors",
               str(data / "p0_vectors.csv"), "-o", str(model), "--epochs", "2",
               "--steps-per-epoch", "2", "--patch", "32", "32", "16", "--batch-size", "1",
               "--device", "cpu", "--no-tune"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "device: CPU" in out and "epoch 2/2" in out
    # Until tuned, a new model pairs by the joint assignment with λ = 0.
    assert json.loads((model / "thresholds.json").read_text())["embed_weight"] == 0.0
    rc = main(["tune", str(model), "--images", str(data / "p1.ome.tif"), "--vectors",
               str(data / "p1_vectors.csv"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "pairing" in capsys.readouterr().out
    thr = json.loads((model / "thresholds.json").read_text())
    assert thr["source"] == "tuned"
    assert thr["embed_weight"] is None or thr["embed_weight"] >= 0
    assert 0.1 <= thr["tau"][0] <= 0.95
    metrics = json.loads((model / "metrics.json").read_text())
    assert len(metrics["table"]) == 14
    preds = tmp_path / "pred"
    rc = main(["predict", str(data / "p1.ome.tif"), "--model", str(model), "-o", str(preds),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    table = read_vectors(preds / "p1_vectors.csv")
    assert table.names == ("nucleus", "golgi")
    rc = main(["evaluate", "--gt", str(data / "p1_vectors.csv"), "--pred",
               str(preds / "p1_vectors.csv"), "--image", str(data / "p1.ome.tif"),
               "-o", str(tmp_path / "metrics.csv")])
    assert rc == 0
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 15
    counts = [tuple(int(v) for v in r.split(",")[4:7]) for r in rows[1:]]
    # P = TP + FP and G = TP + FN are the same at every level; TP only falls
    # as the levels get stricter; border exclusion never adds vectors.
    assert len({tp + fp for tp, fp, _ in counts}) == 1
    assert len({tp + fn for tp, _, fn in counts}) == 1
    assert all(a[0] >= b[0] for a, b in zip(counts, counts[1:]))
    assert counts[0][0] + counts[0][1] <= len(table)


def test_resample_helpers_agree():
    from cellpol_core.io.resample import coord_scale, resample_channels, resampled_shape

    shape = resampled_shape((10, 41, 61), (1.0, 0.5, 0.5), (1.0, 1.0, 1.0))
    assert shape == (10, 20, 30)  # 20.5 rounds half to even
    z, y, x = np.meshgrid(*[np.arange(n) for n in (10, 41, 61)], indexing="ij")
    data = np.exp(-((z - 5) ** 2 + (y - 20) ** 2 + (x - 40) ** 2) / 8.0)[None].astype(np.float32)
    out = resample_channels(data, shape)
    assert out.shape == (1,) + shape
    peak = np.unravel_index(np.argmax(out[0]), shape)
    expected = np.array([5, 20, 40]) * coord_scale((10, 41, 61), shape)
    assert np.allclose(peak, np.round(expected), atol=1)


def test_thresholds_pairing_rule_round_trip(tmp_path):
    thr = Thresholds(tau=(0.4, 0.3), d_min_um=(4.0, 2.0), d_max_um=11.0, delta=3.0,
                     embed_weight=0.5, source="tuned")
    again = Thresholds.from_dict(json.loads(json.dumps(thr.to_dict())))
    assert again == thr
    # Files written before the joint assignment existed keep the greedy rule.
    old = {"tau": [0.5, 0.5], "d_min_um": [4, 2], "d_max_um": 14, "delta": 2, "source": "tuned"}
    assert Thresholds.from_dict(old).embed_weight is None
    assert Thresholds.from_dict({**old, "embed_weight": None}).embed_weight is None


def test_tile_reader_waits_for_limits_computed_elsewhere():
    from concurrent.futures import Future

    from cellpol_core.detection.infer import TileReader

    data = np.arange(2 * 4 * 6 * 6, dtype=np.uint16).reshape(2, 4, 6, 6)
    limits = np.array([[0.0, 100.0], [100.0, 300.0]])
    direct = TileReader(data, channels=(0, 1), limits=limits, model_shape=(4, 6, 6))
    fut = Future()
    later = TileReader(data, channels=(0, 1), limits=fut, model_shape=(4, 6, 6))
    fut.set_result((limits, 0.25))
    np.testing.assert_array_equal(later.read((0, 0, 0), (4, 6, 6)),
                                  direct.read((0, 0, 0), (4, 6, 6)))
    assert later.t_norm >= 0.25  # the limits' own time counts as normalising
    # A failure while computing the limits reaches the reader.
    broken = Future()
    broken.set_exception(InputError("cannot read pixels", "x.tif"))
    reader = TileReader(data, channels=(0, 1), limits=broken, model_shape=(4, 6, 6))
    with pytest.raises(InputError, match="cannot read pixels"):
        reader.read((0, 0, 0), (4, 6, 6))
