"""Mask dictionary and layout sampler (cellpol_core.synthetic.masks)."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from cellpol_core.errors import InputError
from cellpol_core.io.image import CellImage, write_ome_tiff
from cellpol_core.synthetic.phantom import generate_phantom
from cellpol_core.synthetic.masks import (DEFAULT_BOX_UM, MaskDictionary, ObjectMask, annotation_masks,
                                build_mask_dictionary, extract_object_mask, image_object_masks,
                                sample_layout)
from cellpol_core.io.vectors import VectorTable, write_vectors

VS = (1.0, 1.0, 1.0)


def _phantom(seed=0):
    return generate_phantom(shape=(16, 48, 48), voxel_size=VS, seed=seed)


def _image(p):
    return CellImage(p.image, p.voxel_size, list(p.channel_names))


def _cube_dictionary():
    """A dictionary of hand-made masks with known centroid offsets."""
    s = ObjectMask(np.ones((3, 5, 5), bool), np.array([1.0, 2.0, 2.0]))
    e = ObjectMask(np.ones((1, 3, 3), bool), np.array([0.0, 1.0, 1.0]))
    return MaskDictionary([s], [e], VS, ndim=3)


def test_extract_object_mask_keeps_component_at_centroid():
    img = np.zeros((9, 20, 20))
    img[3:6, 4:9, 4:9] = 10.0          # object at the centroid
    img[3:6, 12:16, 12:16] = 10.0      # another object in the same box
    res = extract_object_mask(img, (4.0, 6.0, 6.0), half_size=(4, 9, 9))
    obj, origin = res
    assert obj.mask.shape == (3, 5, 5) and obj.mask.all()
    np.testing.assert_array_equal(origin, [3, 4, 4])
    np.testing.assert_allclose(obj.offset, [1.0, 2.0, 2.0])


def test_extract_object_mask_takes_nearest_component_when_centroid_is_background():
    img = np.zeros((20, 20))
    img[5:8, 9:12] = 5.0   # 3 px right of the centroid
    img[14:17, 2:5] = 5.0  # farther away
    obj, origin = extract_object_mask(img, (6.0, 6.0), half_size=(9, 9))
    np.testing.assert_array_equal(origin, [5, 9])
    np.testing.assert_allclose(obj.offset, [1.0, -3.0])
    assert extract_object_mask(np.ones((10, 10)), (5, 5), half_size=(3, 3)) is None


def test_dictionary_masks_centre_on_phantom_centroids():
    errors = []
    for seed in (0, 1, 2):
        p = _phantom(seed)
        starts, ends, label = image_object_masks(p.image.astype(float), p.vectors,
                                                 voxel_size=VS, box_um=DEFAULT_BOX_UM)
        assert len(starts) == len(ends) == len(p.vectors)
        for objs, pts in ((starts, p.vectors.start), (ends, p.vectors.end)):
            for obj, pt in zip(objs, pts):
                origin = pt - obj.offset
                com = np.array(ndimage.center_of_mass(obj.mask)) + origin
                errors.append(np.linalg.norm(com - pt))
        # The pasted label mask overlaps the phantom's true masks.
        inter = np.logical_and(label > 0, p.masks > 0).sum()
        assert inter / max((label > 0).sum(), 1) > 0.7
    errors = np.array(errors)
    assert np.mean(errors < 1.6) > 0.85, np.round(errors, 2)


def test_dictionary_from_files_and_npz_round_trip(tmp_path):
    p = _phantom(3)
    img = tmp_path / "a.ome.tif"
    csv = tmp_path / "a.csv"
    write_ome_tiff(img, p.image, voxel_size=VS, channel_names=list(p.channel_names))
    write_vectors(csv, p.vectors, voxel_size=VS)
    d = build_mask_dictionary([img], [csv])
    assert len(d.start) == len(d.end) == len(p.vectors)
    assert d.voxel_size == VS and d.ndim == 3
    d.save(tmp_path / "masks.npz")
    d2 = MaskDictionary.load(tmp_path / "masks.npz")
    assert d2.structures == ("nucleus", "golgi") and d2.voxel_size == VS
    for a, b in zip(d.start + d.end, d2.start + d2.end):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.offset, b.offset)
    # No pickled objects inside.
    with np.load(tmp_path / "masks.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        MaskDictionary.load(tmp_path / "bad.npz")


def test_box_size_follows_voxel_size_per_axis():
    # One bright line along x at 0.5 µm voxels: a 8 µm box is 17 voxels wide.
    img = np.zeros((2, 5, 40, 40))
    img[:, 2, 20, :] = 1.0
    table = VectorTable([[2, 20, 20]], [[2, 20, 20]])
    starts, ends, _ = image_object_masks(img, table, voxel_size=(1.0, 0.5, 0.5),
                                         box_um=((4, 16, 16), (4, 8, 8)))
    assert starts[0].mask.shape == (1, 1, 33)
    assert ends[0].mask.shape == (1, 1, 17)


def test_object_mask_transform_tracks_offset():
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 0, 3] = True
    obj = ObjectMask(mask, np.array([1.0, 0.0, 3.0]))
    for k, fy, fx in itertools.product(range(4), (False, True), (False, True)):
        t = obj.transformed(k, fy, fx)
        assert t.mask[tuple(int(v) for v in t.offset)]


def test_sample_layout_constraints_and_determinism():
    p = _phantom(0)
    d = build_mask_dictionary([_image(p)], [p.vectors])
    shape = (16, 64, 64)
    for seed in range(4):
        lay = sample_layout(d, shape=shape, n_pairs=5, seed=seed)
        assert lay.info["placed"] == 5 and len(lay.vectors) == 5
        pair = np.linalg.norm(lay.vectors.end - lay.vectors.start, axis=1)
        assert np.all(pair <= 14.0 + 1e-9) and np.all(pair >= 6.0 - 1e-9)
        pts = np.vstack([lay.vectors.start, lay.vectors.end])
        dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        assert dist[~np.eye(len(pts), dtype=bool)].min() >= 6.0 - 1e-9
        assert np.all(pts >= -0.5) and np.all(pts <= np.array(shape) - 0.5)
        assert lay.labels.shape == (2,) + shape and lay.mask.dtype == np.uint8
        assert set(np.unique(lay.labels[0])) <= set(range(6))
    a = sample_layout(d, shape=shape, n_pairs=(3, 6), seed=7)
    b = sample_layout(d, shape=shape, n_pairs=(3, 6), seed=7)
    c = sample_layout(d, shape=shape, n_pairs=(3, 6), seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.vectors.start, b.vectors.start)
    assert not np.array_equal(a.labels, c.labels)


def test_sample_layout_pastes_masks_at_vector_positions():
    d = _cube_dictionary()
    lay = sample_layout(d, shape=(12, 40, 40), n_pairs=3, seed=1)
    assert len(lay.vectors) == 3
    checked = 0
    for k in range(3):
        # Cubes are symmetric: each label's centre of mass is its placement centroid.
        for ch, pts in ((0, lay.vectors.start), (1, lay.vectors.end)):
            region = lay.labels[ch] == k + 1
            assert region.any()
            if region.sum() == (75 if ch == 0 else 9):  # not clipped by the border
                np.testing.assert_allclose(ndimage.center_of_mass(region), pts[k], atol=1e-9)
                checked += 1
    assert checked >= 4


def test_sample_layout_direction_and_crowding():
    d = _cube_dictionary()
    lay = sample_layout(d, shape=(12, 96, 96), n_pairs=12, mean_direction=90.0,
                        concentration=50.0, elevation_sd_deg=0.0, seed=3)
    dv = lay.vectors.end - lay.vectors.start
    # 90° points up on screen: y decreases, x about constant.
    assert np.all(dv[:, 1] < 0)
    assert np.mean(np.abs(dv[:, 2]) < np.abs(dv[:, 1])) > 0.9
    # A patch too small for the separation rule gets fewer pairs, not an endless loop.
    small = sample_layout(d, shape=(4, 12, 12), n_pairs=10, max_tries=50, seed=0)
    assert small.info["requested"] == 10 and small.info["placed"] < 10


def test_sample_layout_2d_and_errors():
    s = ObjectMask(np.ones((5, 5), bool), np.array([2.0, 2.0]))
    e = ObjectMask(np.ones((3, 3), bool), np.array([1.0, 1.0]))
    d = MaskDictionary([s], [e], (1.0, 1.0, 1.0), ndim=2)
    lay = sample_layout(d, shape=(48, 48), n_pairs=4, seed=2)
    assert lay.labels.shape == (2, 48, 48) and lay.vectors.ndim == 2
    assert np.all(lay.vectors.start[:, 0] == 0)
    pair = np.linalg.norm(lay.vectors.end - lay.vectors.start, axis=1)
    assert np.all((pair >= 6.0 - 1e-9) & (pair <= 14.0 + 1e-9))
    with pytest.raises(InputError):
        sample_layout(d, shape=(8, 48, 48), n_pairs=1)
    with pytest.raises(InputError):
        sample_layout(d, shape=(48, 48), min_sep_um=20.0, max_pair_um=14.0)


def test_annotation_masks_2d():
    p = generate_phantom(ndim=2, shape=(128, 128), seed=0)
    mask = annotation_masks(p.image.astype(float), p.vectors, voxel_size=(1.0, 1.0, 1.0),
                            box_um=((1, 120, 120), (1, 30, 30)))
    assert mask.shape == (2, 128, 128) and mask.dtype == np.uint8
    for ch, pts in ((0, p.vectors.start), (1, p.vectors.end)):
        for pt in pts:
            assert mask[ch][int(round(pt[1])), int(round(pt[2]))] == 1
