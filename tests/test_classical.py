"""The classical Otsu baseline and distance pairing."""

import numpy as np
import pytest

from cellpol_core.detection.classical import predict_otsu, segment_centroids
from cellpol_core.errors import InputError
from cellpol_core.detection.pairing import pair_by_distance


def test_pairing_prefers_global_optimum():
    # Start 0 is nearest to end 1, but the optimal one-to-one assignment pairs
    # 0-0 and 1-1 (total 2+2 < 1+5).
    start = np.array([[0, 0, 0], [0, 0, 4.0]])
    end = np.array([[0, 0, 2.0], [0, 0, 1.0]])
    i, j = pair_by_distance(start, end, d_max_um=10)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 0)]


def test_pairing_drops_long_pairs_and_uses_um():
    start = np.array([[0, 0, 0.0], [0, 0, 100.0]])
    end = np.array([[0, 0, 10.0], [0, 0, 130.0]])
    # 10 voxels * 1.0 µm = 10 <= 14 kept; 30 voxels > 14 dropped.
    i, j = pair_by_distance(start, end, voxel_size=(1, 1, 1.0), d_max_um=14)
    assert list(zip(i, j)) == [(0, 0)]
    # With 0.5 µm voxels, 30 voxels are 15 µm: still dropped; 28 would be kept.
    i, _ = pair_by_distance(start, end, voxel_size=(1, 1, 0.5), d_max_um=14)
    assert list(i) == [0]
    assert pair_by_distance(np.zeros((0, 3)), end)[0].size == 0


def _blob_image():
    img = np.zeros((2, 16, 64, 64), np.float32)
    zz, yy, xx = np.mgrid[:16, :64, :64]
    cells = [((8, 16, 16), (8, 16, 22)), ((8, 45, 45), (8, 39, 45))]
    for (n, g) in cells:
        img[0] += 100 * (((zz - n[0]) / 4) ** 2 + ((yy - n[1]) / 5) ** 2 + ((xx - n[2]) / 5) ** 2 <= 1)
        img[1] += 100 * (((zz - g[0]) / 2) ** 2 + ((yy - g[1]) / 2) ** 2 + ((xx - g[2]) / 2) ** 2 <= 1)
    rng = np.random.default_rng(0)
    return img + rng.normal(5, 1, img.shape).astype(np.float32), cells


def test_segment_centroids_finds_blobs():
    img, cells = _blob_image()
    c, vol = segment_centroids(img[0], voxel_size=(1, 1, 1), smooth_um=0.5, min_size_um=10)
    assert len(c) == 2
    found = sorted(map(tuple, np.round(c).astype(int)))
    assert found == sorted(n for n, _ in cells)
    assert np.all(vol > 100)


def test_predict_otsu_pairs_each_cell():
    img, cells = _blob_image()
    t = predict_otsu(img, channels=(0, 1), voxel_size=(1, 1, 1), d_max_um=14, min_size_um=(10, 2))
    assert len(t) == 2
    pairs = sorted((tuple(np.round(s).astype(int)), tuple(np.round(e).astype(int)))
                   for s, e in zip(t.start, t.end))
    assert pairs == sorted(cells)
    assert np.all(t.score == 1.0)


def test_predict_otsu_needs_voxel_size_in_3d():
    img, _ = _blob_image()
    with pytest.raises(InputError, match="voxel size"):
        predict_otsu(img)


def test_predict_otsu_2d():
    img, cells = _blob_image()
    t = predict_otsu(img[:, 8], channels=(0, 1), d_max_um=14, min_size_um=(10, 2))
    assert t.ndim == 2 and len(t) == 2
    assert np.all(t.start[:, 0] == 0)


HUVEC = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "huvec_ecs.tif"


@pytest.mark.skipif(not HUVEC.exists(), reason="shared real image not available")
def test_otsu_on_real_huvec_image(tmp_path):
    """The real 2D HUVEC image: about 8 whole cells, nuclei in channel 2, Golgi in channel 0."""
    from cellpol_core.cli import main
    from cellpol_core.io.vectors import read_vectors

    assert main(["predict", str(HUVEC), "--method", "otsu", "--channels", "2", "0",
                 "-o", str(tmp_path)]) == 0
    t = read_vectors(tmp_path / "huvec_ecs_vectors.csv")
    assert t.ndim == 2
    assert 5 <= len(t) <= 16
    length_um = np.linalg.norm((t.end - t.start) * [1.0, 0.4151, 0.4151], axis=1)
    assert np.all(length_um <= 14.0) and np.median(length_um) > 2.0
