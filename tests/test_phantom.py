"""The phantom generator: ground truth, realism knobs, files and CLI."""

import math

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.jobs import ProgressEvent, run_job
from cellpol_core.synthetic.phantom import (MAX_PAIR_DISTANCE_2D, MAX_PAIR_DISTANCE_3D, PAPER_VOXEL_SIZE,
                                  generate_phantom, write_phantom_set)
from cellpol_core.io.vectors import read_vectors


@pytest.fixture(scope="module")
def ph3():
    """The default 3D phantom (64 x 256 x 256)."""
    return generate_phantom(seed=0)


@pytest.fixture(scope="module")
def ph2():
    return generate_phantom(ndim=2, shape=(256, 320), seed=1)


def _centroids(mask, ids):
    return np.array(ndimage.center_of_mass(np.ones_like(mask), labels=mask, index=list(ids)))


def _present(mask):
    u = np.unique(mask)
    return set(u[u > 0].tolist())


def _circular_mean_deg(az):
    a = np.radians(az)
    return math.degrees(math.atan2(np.sin(a).mean(), np.cos(a).mean())) % 360.0, \
        float(np.hypot(np.sin(a).mean(), np.cos(a).mean()))


def _angle_diff(a, b):
    return abs((a - b + 180.0) % 360.0 - 180.0)


# ----------------------------------------------------------------------------- 3D ground truth

def test_default_3d_layout(ph3):
    assert ph3.image.shape == (2, 64, 256, 256)
    assert ph3.image.dtype == np.uint16
    assert ph3.masks.shape == (2, 64, 256, 256)
    assert ph3.masks.dtype == np.int32
    assert ph3.voxel_size == PAPER_VOXEL_SIZE
    assert ph3.channel_names == ("nucleus", "golgi")
    assert ph3.vectors.names == ("nucleus", "golgi")
    assert ph3.vectors.ndim == 3
    assert len(ph3.vectors) >= 40  # crowded tissue


def test_vectors_are_mask_centroids(ph3):
    ids = ph3.vectors.extra["cell_id"].astype(int)
    np.testing.assert_allclose(ph3.vectors.start, _centroids(ph3.masks[0], ids), atol=1e-6)
    np.testing.assert_allclose(ph3.vectors.end, _centroids(ph3.masks[1], ids), atol=1e-6)


def test_one_vector_per_labelled_pair(ph3):
    pairs = _present(ph3.masks[0]) & _present(ph3.masks[1])
    ids = ph3.vectors.extra["cell_id"].astype(int).tolist()
    assert len(ids) == len(set(ids)) == len(pairs)
    assert set(ids) == pairs


def test_pair_distances_within_limit(ph3):
    length = ph3.vectors.geometry(ph3.voxel_size)["length_um"]
    assert length.max() <= MAX_PAIR_DISTANCE_3D
    assert length.min() > 1.0  # the Golgi sits beside the nucleus, not on its centre


def test_golgi_outside_nuclei_and_objects_sized(ph3):
    assert not np.any((ph3.masks[0] > 0) & (ph3.masks[1] > 0))
    vox = float(np.prod(ph3.voxel_size))
    ids = ph3.vectors.extra["cell_id"].astype(int)
    nuc_vol = ndimage.sum_labels(np.ones_like(ph3.masks[0]), ph3.masks[0], ids) * vox
    golgi_vol = ndimage.sum_labels(np.ones_like(ph3.masks[1]), ph3.masks[1], ids) * vox
    # Median volumes of whole objects: nuclei ~ 15x8x5 µm ellipsoids, Golgi a few µm³ blobs.
    assert 100 < np.median(nuc_vol) < 800
    assert 5 < np.median(golgi_vol) < 100


def _mean_near(channel, points, voxel_size, radius_um):
    """Mean of ``channel`` over the voxels within ``radius_um`` of any of ``points``."""
    vs = np.asarray(voxel_size)
    r = np.ceil(radius_um / vs).astype(int)
    values = []
    for p in points:
        c = np.round(p).astype(int)
        lo = np.maximum(c - r, 0)
        hi = np.minimum(c + r + 1, channel.shape)
        grid = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        d2 = sum(((g - q) * s) ** 2 for g, q, s in zip(grid, p, vs))
        values.append(channel[tuple(slice(a, b) for a, b in zip(lo, hi))][d2 <= radius_um ** 2])
    return float(np.concatenate(values).mean())


def test_golgi_signal_concentrated_at_vector_ends(ph3):
    golgi = ph3.image[1].astype(float)
    nucleus = ph3.image[0].astype(float)
    near_end = _mean_near(golgi, ph3.vectors.end, ph3.voxel_size, 2.0)
    near_start = _mean_near(golgi, ph3.vectors.start, ph3.voxel_size, 2.0)
    assert near_end > 5 * np.median(golgi)
    assert near_end > 4 * near_start
    assert _mean_near(nucleus, ph3.vectors.start, ph3.voxel_size, 2.0) > 5 * np.median(nucleus)


def test_some_golgi_closer_to_a_neighbour_nucleus(ph3):
    vs = np.asarray(ph3.voxel_size)
    all_ids = sorted(_present(ph3.masks[0]))
    nuclei = _centroids(ph3.masks[0], all_ids) * vs
    ids = ph3.vectors.extra["cell_id"].astype(int)
    closer = []
    for k, s, e in zip(ids, ph3.vectors.start * vs, ph3.vectors.end * vs):
        d = np.linalg.norm(nuclei - e, axis=1)
        d[all_ids.index(k)] = np.inf
        closer.append(d.min() < np.linalg.norm(e - s))
    closer = np.array(closer)
    print(f"\nGolgi closer to a neighbour nucleus: {closer.sum()}/{len(closer)} "
          f"({closer.mean():.1%})")
    assert closer.sum() >= 1
    np.testing.assert_array_equal(ph3.closer_to_neighbour(), closer)


def test_border_cells_and_dim_cells(ph3):
    nuc = ph3.masks[0]
    edges = np.concatenate([nuc[:, 0, :].ravel(), nuc[:, -1, :].ravel(),
                            nuc[:, :, 0].ravel(), nuc[:, :, -1].ravel()])
    assert len(_present(edges)) >= 4  # cells cut by the x/y borders
    dim = ph3.vectors.extra["dim"].astype(bool)
    assert 0 < dim.sum() < len(dim)
    ids = ph3.vectors.extra["cell_id"].astype(int)
    mean_nuc = ndimage.mean(ph3.image[0], ph3.masks[0], ids)
    assert np.median(mean_nuc[dim]) < 0.6 * np.median(mean_nuc[~dim])


def test_uniform_directions_by_default(ph3):
    _, resultant = _circular_mean_deg(ph3.vectors.geometry(ph3.voxel_size)["azimuth_deg"])
    assert resultant < 0.35


@pytest.mark.parametrize("mean", [90.0, 200.0])
def test_mean_direction_respected(mean):
    ph = generate_phantom(shape=(32, 160, 160), seed=4, mean_direction=mean, concentration=20.0)
    az = ph.vectors.geometry(ph.voxel_size)["azimuth_deg"]
    assert len(az) >= 20
    circ_mean, resultant = _circular_mean_deg(az)
    assert _angle_diff(circ_mean, mean) < 15.0
    assert resultant > 0.7


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_arrays():
    a = generate_phantom(shape=(16, 80, 96), seed=7)
    b = generate_phantom(shape=(16, 80, 96), seed=7)
    c = generate_phantom(shape=(16, 80, 96), seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.vectors.start, b.vectors.start)
    np.testing.assert_array_equal(a.vectors.end, b.vectors.end)
    assert not np.array_equal(a.masks, c.masks)


def test_distractors_and_noise_leave_truth_alone():
    kw = dict(shape=(16, 96, 96), seed=3)
    full = generate_phantom(**kw)
    clean = generate_phantom(distractors=0, vessels=0, noise=0, **kw)
    np.testing.assert_array_equal(full.masks, clean.masks)
    np.testing.assert_array_equal(full.vectors.end, clean.vectors.end)
    # Dirt: bright Golgi-channel spots away from every Golgi mask.
    outside = full.masks[1] == 0
    far = ndimage.binary_dilation(~outside, iterations=3) == 0
    assert full.image[1][far].max() > clean.image[1][far].max() + 500
    # Noise-free and dirt-free: nothing bright away from the objects.
    assert clean.image[1][far].max() < 400


def test_density_controls_crowding():
    sparse = generate_phantom(shape=(16, 128, 128), seed=2, density=0.3)
    crowded = generate_phantom(shape=(16, 128, 128), seed=2, density=1.0)
    empty = generate_phantom(shape=(8, 32, 32), seed=2, density=0.0)
    assert len(sparse.vectors) < 0.6 * len(crowded.vectors)
    assert len(empty.vectors) == 0 and empty.masks.max() == 0


def test_intensity_scales_grey_levels():
    a = generate_phantom(shape=(8, 64, 64), seed=1, noise=0)
    b = generate_phantom(shape=(8, 64, 64), seed=1, noise=0, intensity=0.5)
    np.testing.assert_allclose(b.image.astype(float), 0.5 * a.image, atol=1.0)


@pytest.mark.parametrize("kwargs", [
    dict(density=-1), dict(shape=(10, 10)), dict(shape=(0, 10, 10)), dict(rgb=True),
    dict(voxel_size=(0.3, -1, 1)), dict(dim_fraction=2.0), dict(ndim=4),
    dict(structures=("a",)), dict(intensity=0), dict(neighbour_fraction=1.5),
    dict(psf_sigma=(1.0, 1.0)), dict(seed=-1),
])
def test_bad_options(kwargs):
    with pytest.raises(InputError):
        generate_phantom(**kwargs)


# ----------------------------------------------------------------------------- 2D

def test_2d_layout_and_truth(ph2):
    assert ph2.image.shape == (2, 256, 320)
    assert ph2.image.dtype == np.uint16
    assert ph2.masks.shape == (2, 256, 320)
    assert ph2.channel_names == ("cytoplasm", "nucleus")
    assert ph2.voxel_size == (1.0, 1.0, 1.0)
    v = ph2.vectors
    assert v.ndim == 2 and v.names == ("cytoplasm", "nucleus")
    assert len(v) >= 5
    assert np.all(v.start[:, 0] == 0) and np.all(v.end[:, 0] == 0)
    ids = v.extra["cell_id"].astype(int)
    np.testing.assert_allclose(v.start[:, 1:], _centroids(ph2.masks[0], ids), atol=1e-6)
    np.testing.assert_allclose(v.end[:, 1:], _centroids(ph2.masks[1], ids), atol=1e-6)
    assert set(ids.tolist()) == _present(ph2.masks[0]) & _present(ph2.masks[1])
    length = np.linalg.norm(v.end - v.start, axis=1)
    assert length.max() <= MAX_PAIR_DISTANCE_2D
    assert np.median(length) > 3.0  # nuclei sit off-centre


def test_2d_nuclei_inside_their_cytoplasm(ph2):
    cyto, nuc = ph2.masks
    inside = nuc > 0
    assert inside.any()
    np.testing.assert_array_equal(cyto[inside], nuc[inside])
    # Nuclei are much smaller than their cells.
    ids = ph2.vectors.extra["cell_id"].astype(int)
    cyto_area = ndimage.sum_labels(np.ones_like(cyto), cyto, ids)
    nuc_area = ndimage.sum_labels(np.ones_like(nuc), nuc, ids)
    assert np.median(nuc_area / cyto_area) < 0.2


def test_2d_rgb_colours():
    ph = generate_phantom(ndim=2, shape=(200, 240), seed=5, rgb=True)
    assert ph.image.shape == (3, 200, 240) and ph.image.dtype == np.uint8
    assert ph.channel_names == ("red", "green", "blue")
    cyto, nuc = ph.masks
    red, green = ph.image[0].astype(float), ph.image[1].astype(float)
    bg = cyto == 0
    cyto_only = (cyto > 0) & (nuc == 0)
    assert red[nuc > 0].mean() < red[cyto_only].mean() < red[bg].mean()
    assert red[bg].mean() > 220  # light background
    assert green[cyto_only].mean() < red[cyto_only].mean()  # pinkish cytoplasm


def test_2d_mean_direction():
    ph = generate_phantom(ndim=2, shape=(512, 512), seed=9, mean_direction=90.0, concentration=20)
    az = ph.vectors.geometry(ph.voxel_size)["azimuth_deg"]
    assert len(az) >= 10
    circ_mean, _ = _circular_mean_deg(az)
    assert _angle_diff(circ_mean, 90.0) < 15.0  # 90 = up on screen: ends above starts
    assert np.mean(ph.vectors.end[:, 1] < ph.vectors.start[:, 1]) > 0.8


# ----------------------------------------------------------------------------- files and CLI

def test_write_phantom_set(tmp_path):
    job = write_phantom_set(tmp_path / "set", n_images=2, shape=(8, 48, 56), seed=11)
    events = []
    paths = run_job(job, events.append)
    assert all(isinstance(e, ProgressEvent) for e in events)
    assert events[-1].step == events[-1].total == 2
    names = [p.name for p in paths]
    assert names == ["phantom_000.ome.tif", "phantom_000_vectors.csv", "phantom_000_masks.ome.tif",
                     "phantom_001.ome.tif", "phantom_001_vectors.csv", "phantom_001_masks.ome.tif"]
    # Image i is the phantom of seed + i.
    ref = generate_phantom(shape=(8, 48, 56), seed=12)
    np.testing.assert_array_equal(tifffile.imread(paths[3]), ref.image)
    masks = tifffile.imread(paths[5])
    np.testing.assert_array_equal(masks, ref.masks)
    table = read_vectors(paths[4])
    np.testing.assert_allclose(table.start, ref.vectors.start, atol=1e-4)
    np.testing.assert_allclose(table.end, ref.vectors.end, atol=1e-4)


def test_cli_round_trip_3d(tmp_path, capsys):
    from cellpol_core.io.image import read_image

    out = tmp_path / "ph"
    rc = main(["phantom", str(out), "--n-images", "2", "--shape", "64", "48", "10",
               "--voxel-size", "0.5", "0.6", "0.3", "--seed", "5", "--mean-direction", "45",
               "--concentration", "4", "--density", "1.2"])
    assert rc == 0
    assert "2 phantom image" in capsys.readouterr().out
    for i in range(2):
        img = read_image(out / f"phantom_{i:03d}.ome.tif")
        assert img.data.shape == (2, 10, 48, 64)  # --shape X Y Z -> (C, Z, Y, X)
        np.testing.assert_allclose(img.voxel_size, (0.3, 0.6, 0.5), rtol=1e-6)
        assert list(img.channel_names) == ["nucleus", "golgi"]
        ref = generate_phantom(shape=(10, 48, 64), voxel_size=(0.3, 0.6, 0.5), seed=5 + i,
                               mean_direction=45, concentration=4, density=1.2)
        np.testing.assert_array_equal(np.asarray(img.data), ref.image)
        table = read_vectors(out / f"phantom_{i:03d}_vectors.csv")
        assert len(table) == len(ref.vectors)
        np.testing.assert_allclose(table.end, ref.vectors.end, atol=1e-4)
        masks = read_image(out / f"phantom_{i:03d}_masks.ome.tif")
        np.testing.assert_array_equal(np.asarray(masks.data), ref.masks)


def test_cli_2d_rgb(tmp_path):
    from cellpol_core.io.image import read_image

    out = tmp_path / "ph2"
    assert main(["phantom", str(out), "--2d", "--rgb", "--shape", "150", "120", "--seed", "2"]) == 0
    img = read_image(out / "phantom_000.ome.tif")
    assert img.data.shape == (3, 120, 150)
    assert img.data.dtype == np.uint8
    table = read_vectors(out / "phantom_000_vectors.csv")
    assert table.ndim == 2 and table.names == ("cytoplasm", "nucleus")


@pytest.mark.parametrize("argv", [
    ["--shape", "10", "10"],                 # 3D needs X Y Z
    ["--shape", "-5", "10", "10"],
    ["--2d", "--shape", "10", "10", "10"],
    ["--voxel-size", "0", "1", "1"],
    ["--voxel-size", "1", "1"],
    ["--rgb"],
    ["--n-images", "0"],
    ["--density", "-1"],
    ["--seed", "-3"],
])
def test_cli_bad_values(tmp_path, capsys, argv):
    rc = main(["phantom", str(tmp_path / "x")] + argv)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cellpol phantom: error:") and "\n" not in err
    assert not (tmp_path / "x").exists()  # checked before anything is written
