"""The phantom generator: ground truth, realism knobs, files and CLI."""

import math
from dataclasses import replace

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


# ----------------------------------------------------------------------------- domain randomisation

from cellpol_core.synthetic.phantom import (FAMILIES, DomainRandomisation,  # noqa: E402
                                            generate_randomised)

# Small arrays keep the tests quick; every other range is the broad default.
SMALL_3D = DomainRandomisation(pixels_xy=(32, 80), planes=(6, 16))
SMALL_2D = DomainRandomisation(ndim=2, pixels_xy=(48, 160))


def _inside(r, name):
    lo, hi = getattr(DomainRandomisation(), name)
    return lo <= r[name] <= hi


@pytest.mark.parametrize("config", [SMALL_3D, SMALL_2D], ids=["3d", "2d"])
def test_randomised_ranges_respected(config):
    seen_dtypes, seen_voxels = set(), []
    for seed in range(8):
        ph = generate_randomised(seed=seed, config=config)
        r = ph.info["randomisation"]
        for name in ("voxel_xy", "psf_xy_um", "overlap", "nucleus_aspect", "golgi_fragmentation",
                     "golgi_at_pole", "dim_fraction", "haze", "crosstalk", "photons", "density"):
            assert _inside(r, name), (name, r[name])
        assert ph.ndim == config.ndim
        assert ph.image.dtype == np.dtype(r["dtype"])
        assert ph.image.shape == (2,) + ph.masks.shape[1:]
        assert ph.voxel_size[2] == ph.voxel_size[1] == pytest.approx(r["voxel_xy"])
        assert all(32 <= n <= 160 for n in ph.masks.shape[-2:])
        if config.ndim == 3:
            assert 0.2 <= ph.voxel_size[0] <= 2.0
            assert 6 <= ph.masks.shape[1] <= 16
        else:
            assert ph.voxel_size[0] == 1.0
        seen_dtypes.add(r["dtype"])
        seen_voxels.append(r["voxel_xy"])
    assert len(seen_dtypes) >= 2  # the factors really vary between images
    assert np.ptp(seen_voxels) > 0.2


def test_randomised_deterministic_by_seed():
    a = generate_randomised(seed=5, config=SMALL_3D)
    b = generate_randomised(seed=5, config=SMALL_3D)
    c = generate_randomised(seed=6, config=SMALL_3D)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.vectors.start, b.vectors.start)
    assert a.info["randomisation"] == b.info["randomisation"]
    assert a.info["randomisation"] != c.info["randomisation"]


@pytest.mark.parametrize("config", [
    SMALL_3D.with_ranges(density=(0.8, 1.5)),
    SMALL_2D.with_ranges(density=(0.8, 1.5)),
    FAMILIES["cytology-2d"].with_ranges(pixels_xy=(64, 200)),
], ids=["3d", "2d", "cytology"])
def test_randomised_truth_vectors_inside_their_objects(config):
    n = 0
    for seed in range(3):
        ph = generate_randomised(seed=seed, config=config, shape=None)
        vs = np.asarray(ph.voxel_size)[3 - ph.ndim:]
        ids = ph.vectors.extra["cell_id"].astype(int)
        n += len(ids)
        for k, s, e in zip(ids, ph.vectors.start[:, 3 - ph.ndim:], ph.vectors.end[:, 3 - ph.ndim:]):
            # A (possibly overlapped) nucleus holds its centroid, or nearly.
            own = ph.masks[0] == k
            d_in = ndimage.distance_transform_edt(~own, sampling=vs)
            assert d_in[tuple(np.round(s).astype(int))] <= 1.0
            # The end centroid lies in or right beside its own end object
            # (a fragmented Golgi ribbon curves around the nucleus).
            d_end = ndimage.distance_transform_edt(ph.masks[1] != k, sampling=vs)
            assert d_end[tuple(np.round(e).astype(int))] <= 4.0
        limit = MAX_PAIR_DISTANCE_2D if config.geometry == "cytoplasm-nucleus" else MAX_PAIR_DISTANCE_3D
        assert ph.vectors.geometry(ph.voxel_size)["length_um"].max(initial=0) <= limit
    assert n >= 10


def test_randomised_2d_cytology_nuclei_in_their_cytoplasm():
    ph = generate_randomised(seed=1, config=FAMILIES["cytology-2d"].with_ranges(pixels_xy=(64, 200)))
    assert ph.structures == ("cytoplasm", "nucleus")
    assert ph.voxel_size == (1.0, 1.0, 1.0)
    cyto, nuc = ph.masks
    assert np.all(cyto[nuc > 0] == nuc[nuc > 0])


def test_families_fix_their_factors():
    other = generate_randomised(seed=2, config="other-microscope")
    assert other.voxel_size == (1.0, 0.4, 0.4)
    assert other.masks.shape[1] == 16
    for seed in range(3):
        iso = generate_randomised(seed=seed, config=FAMILIES["isolated"].with_ranges(pixels_xy=(32, 96)))
        assert iso.info["randomisation"]["density"] <= 0.2
        assert iso.info["randomisation"]["overlap"] == 0.0
    assert FAMILIES["cultured-2d"].ndim == 2
    with pytest.raises(InputError, match="unknown phantom family"):
        generate_randomised(config="nope")


def test_crowding_and_photons_follow_their_ranges():
    sparse = generate_randomised(seed=4, config=SMALL_2D.with_ranges(density=(0.1, 0.1)),
                                 shape=(160, 160), voxel_size=(1.0, 0.5, 0.5))
    dense = generate_randomised(seed=4, config=SMALL_2D.with_ranges(density=(1.2, 1.2)),
                                shape=(160, 160), voxel_size=(1.0, 0.5, 0.5))
    assert dense.info["cells_placed"] > 3 * max(sparse.info["cells_placed"], 1)

    def noise_share(photons):
        cfg = SMALL_2D.with_ranges(photons=(photons, photons), haze=(0.3, 0.3), vessels=(0, 0),
                                   distractors=(0, 0), crosstalk=(0, 0), dim_fraction=(0, 0))
        cfg = replace(cfg, dtypes=("uint16",), noise_models=("poisson",), saturation=0.0)
        ph = generate_randomised(seed=9, config=cfg, shape=(128, 128), voxel_size=(1, 0.4, 0.4))
        bg = ph.image[0].astype(float)
        grain = bg - ndimage.gaussian_filter(bg, 3.0)  # pixel noise, not the smooth haze
        far = ndimage.distance_transform_edt((ph.masks[0] == 0) & (ph.masks[1] == 0)) > 8
        return grain[far].std() / bg[far].mean()

    assert noise_share(20.0) > 3 * noise_share(2000.0)


def test_fixed_dtype_and_saturation():
    cfg = replace(SMALL_2D, dtypes=("uint8",), saturation=1.0)
    ph = generate_randomised(seed=0, config=cfg)
    assert ph.image.dtype == np.uint8
    assert ph.info["randomisation"]["saturate"]
    assert (ph.image == 255).sum() > 10


def test_generate_phantom_randomise_option():
    a = generate_phantom(randomise="cultured-2d", seed=3)
    b = generate_randomised(config="cultured-2d", seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    c = generate_phantom(randomise=True, ndim=2, structures=("nucleus", "golgi"), seed=1,
                         shape=(96, 96))
    assert c.structures == ("nucleus", "golgi") and c.info["randomisation"]["geometry"] == "nucleus-golgi"
    d = generate_phantom(randomise=True, ndim=2, seed=1, shape=(96, 96))
    assert d.info["randomisation"]["geometry"] == "cytoplasm-nucleus"


@pytest.mark.parametrize("bad", [dict(voxel_xy=(0.7, 0.1)), dict(photons=(-1.0, 10.0)),
                                 dict(dtypes=("int64",)), dict(ndim=3, geometry="cytoplasm-nucleus")])
def test_bad_randomisation(bad):
    with pytest.raises(InputError):
        generate_randomised(config=replace(DomainRandomisation(), **bad))


def test_cli_randomised_family(tmp_path, capsys):
    out = tmp_path / "fam"
    assert main(["phantom", str(out), "--family", "cultured-2d", "--seed", "4",
                 "--shape", "120", "100"]) == 0
    assert "randomised" in capsys.readouterr().out
    img = tifffile.imread(out / "phantom_000.ome.tif")
    assert img.shape[-2:] == (100, 120)
    vec = read_vectors(out / "phantom_000_vectors.csv")
    assert vec.names == ("nucleus", "golgi") and vec.ndim == 2
    out2 = tmp_path / "r2"
    assert main(["phantom", str(out2), "--randomise", "--2d", "--structures", "nucleus", "golgi",
                 "--shape", "96", "96"]) == 0
    assert read_vectors(out2 / "phantom_000_vectors.csv").names == ("nucleus", "golgi")
    assert main(["phantom", str(tmp_path / "x"), "--family", "nope"]) == 2
    assert main(["phantom", str(tmp_path / "y"), "--structures", "a", "b"]) == 2
