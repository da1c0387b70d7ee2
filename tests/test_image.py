"""Reading microscopy files: formats, axes, calibration, lazy reads, errors, intensities."""

import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellpol_core.errors import InputError
from cellpol_core.io.image import (CellImage, LazyArray, normalize_percentile, percentile_limits,
                                read_image, resolve_channels, write_ome_tiff)

HUVEC = Path(__file__).parents[2] / "shared" / "data" / "huvec_ecs.tif"


def _rand(shape, dtype=np.uint16, hi=60000, seed=0):
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


# --- helpers that build an LSM file -----------------------------------------
# tifffile cannot write LSM, but reads any TIFF whose first page has a
# CZ_LSMINFO tag (34412) as LSM. Zeiss files interleave each data page with a
# thumbnail page and store channels as separate sample planes.

_PLACEHOLDER_TAG = 34413  # no meaning to tifffile; renamed to 34412 afterwards


def _lsm_info(base, shape, voxel_size_m_xyz, names):
    nz, nc, ny, nx = shape
    dt = np.dtype(tifffile.TIFF.CZ_LSMINFO)
    rec = np.zeros((), dt)
    rec["MagicNumber"] = 67127628
    rec["StructureSize"] = dt.itemsize
    rec["DimensionX"], rec["DimensionY"], rec["DimensionZ"] = nx, ny, nz
    rec["DimensionChannels"], rec["DimensionTime"] = nc, 1
    rec["VoxelSizeX"], rec["VoxelSizeY"], rec["VoxelSizeZ"] = voxel_size_m_xyz
    rec["ScanType"] = 0  # x-y-z stack
    # ChannelColors sub-record (holds the channel names) right after the record
    text = b"".join(struct.pack("<I", len(n) + 1) + n.encode() + b"\0" for n in names)
    colors = bytes(4 * nc)
    sub = struct.pack("<6I", 24 + len(colors) + len(text), nc, nc, 24, 24 + len(colors), 0)
    rec["OffsetChannelColors"] = base + dt.itemsize
    return rec.tobytes() + sub + colors + text


def write_lsm(path, data, *, voxel_size_m_xyz, names):
    """Write (Z, C, Y, X) data as a minimal Zeiss LSM file."""
    nz, nc = data.shape[:2]
    size = len(_lsm_info(0, data.shape, voxel_size_m_xyz, names))
    with tifffile.TiffWriter(path) as tw:
        for z in range(nz):
            extra = [(_PLACEHOLDER_TAG, "B", size, bytes(size), True)] if z == 0 else []
            tw.write(data[z] if nc > 1 else data[z, 0], photometric="minisblack",
                     planarconfig="separate" if nc > 1 else None, metadata=None,
                     extratags=extra, contiguous=False)
            tw.write(np.zeros((8, 8, 3), np.uint8), photometric="rgb", subfiletype=1,
                     metadata=None, contiguous=False)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[_PLACEHOLDER_TAG]
        entry, value_offset = tag.offset, tag.valueoffset
        bps = [(p.tags[258].offset, p.tags[258].value) for p in tif.pages[::2]] if nc == 2 else []
    with open(path, "r+b") as fh:
        fh.seek(entry)
        fh.write(struct.pack("<H", 34412))
        fh.seek(value_offset)
        fh.write(_lsm_info(value_offset, data.shape, voxel_size_m_xyz, names))
        # Zeiss stores a 2-value BitsPerSample out of line, and tifffile expects that
        for off, value in bps:
            end = fh.seek(0, 2)
            fh.write(struct.pack("<HH", *value))
            fh.seek(off + 8)
            fh.write(struct.pack("<I", end))


# --- ImageJ -----------------------------------------------------------------


def test_imagej_hyperstack(tmp_path):
    d = _rand((3, 2, 20, 24))  # Z C Y X
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, d, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um",
                               "Labels": ["nucleus", "golgi"] * 3})
    img = read_image(path)
    assert isinstance(img, CellImage)
    assert img.data.shape == (2, 3, 20, 24) and img.is_3d and img.n_channels == 2
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img.data, d.transpose(1, 0, 2, 3))
    assert img.voxel_size == pytest.approx((2.0, 0.5, 0.5))
    assert img.channel_names == ["nucleus", "golgi"]
    assert img.axes == "ZCYX"
    assert img.path == path


def test_imagej_2d_ignores_spacing_and_reads_labels(tmp_path):
    d = _rand((2, 16, 16), np.float32)
    path = tmp_path / "ij2d.tif"
    tifffile.imwrite(path, d, imagej=True, resolution=(1 / 0.415, 1 / 0.415),
                     metadata={"axes": "CYX", "spacing": 0.852, "unit": "micron",
                               "Labels": ["Golgi", "Nucleus (DAPI)"]})
    img = read_image(path)
    assert img.data.shape == (2, 16, 16) and not img.is_3d
    assert img.dtype == np.float32
    assert img.voxel_size == pytest.approx((1.0, 0.415, 0.415))
    assert img.channel_names == ["Golgi", "Nucleus (DAPI)"]
    np.testing.assert_array_equal(img.data, d)


@pytest.mark.parametrize("unit,res,expected", [("nm", 1 / 200.0, 0.2), ("mm", 1 / 0.002, 2.0),
                                               ("\\u00B5m", 1 / 0.3, 0.3)])
def test_imagej_units(tmp_path, unit, res, expected):
    path = tmp_path / "u.tif"
    tifffile.imwrite(path, _rand((8, 8)), imagej=True, resolution=(res, res),
                     metadata={"unit": unit})
    assert read_image(path).voxel_size == pytest.approx((1.0, expected, expected))


def test_imagej_without_unit_has_no_voxel_size(tmp_path):
    path = tmp_path / "px.tif"
    tifffile.imwrite(path, _rand((4, 8, 8)), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "pixel"})
    img = read_image(path)
    assert img.voxel_size is None and img.data.shape == (1, 4, 8, 8)


def test_imagej_3d_without_spacing_means_one_unit(tmp_path):
    path = tmp_path / "nospacing.tif"
    tifffile.imwrite(path, _rand((4, 8, 8)), imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "ZYX", "unit": "um"})
    assert read_image(path).voxel_size == pytest.approx((1.0, 0.25, 0.25))


def test_imagej_time_lapse_refused(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, _rand((2, 3, 2, 8, 8)), imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(InputError, match="time-lapse") as err:
        read_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_imagej_rgb_samples_are_channels(tmp_path):
    d = _rand((16, 20, 3), np.uint8, hi=255)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, d, imagej=True, photometric="rgb")
    img = read_image(path)
    assert img.data.shape == (3, 16, 20)
    np.testing.assert_array_equal(img.data, d.transpose(2, 0, 1))


# --- OME-TIFF ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_ome_round_trip_3d(tmp_path, dtype):
    d = _rand((2, 5, 24, 20), dtype)
    path = tmp_path / "a.ome.tif"
    write_ome_tiff(path, d, voxel_size=(0.27, 0.666, 0.666), channel_names=["DAPI", "GM130"])
    img = read_image(path)
    assert img.dtype == dtype
    np.testing.assert_array_equal(img.data, d)
    assert img.voxel_size == pytest.approx((0.27, 0.666, 0.666))
    assert img.channel_names == ["DAPI", "GM130"]
    assert img.axes == "CZYX"


def test_ome_2d(tmp_path):
    d = _rand((2, 24, 20))
    path = tmp_path / "b.ome.tif"
    write_ome_tiff(path, d, voxel_size=(5.0, 0.3, 0.4), channel_names=["a", "b"])
    img = read_image(path)
    assert not img.is_3d and img.data.shape == (2, 24, 20)
    assert img.voxel_size == pytest.approx((1.0, 0.3, 0.4))
    np.testing.assert_array_equal(img.data, d)


def test_ome_units_and_missing_names(tmp_path):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(path, _rand((3, 4, 8, 8)), ome=True, photometric="minisblack",
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 200.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 0.0002, "PhysicalSizeYUnit": "mm",
                               "PhysicalSizeZ": 1.5, "PhysicalSizeZUnit": "µm"})
    img = read_image(path)
    assert img.data.shape == (4, 3, 8, 8)
    assert img.voxel_size == pytest.approx((1.5, 0.2, 0.2))
    assert img.channel_names == ["C0", "C1", "C2", "C3"]


def test_ome_3d_without_z_size_has_no_voxel_size(tmp_path):
    path = tmp_path / "noz.ome.tif"
    tifffile.imwrite(path, _rand((2, 4, 8, 8)), ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    assert read_image(path).voxel_size is None


# --- plain TIFFs (no axes metadata) -------------------------------------------


@pytest.mark.parametrize("stored_shape,to_czyx,axes", [
    ((2, 8, 32, 32), (0, 1, 2, 3), "CZYX"),
    ((8, 32, 32, 2), (3, 0, 1, 2), "ZYXC"),
    ((64, 64, 16, 2), (3, 2, 0, 1), "YXZC"),   # 3DCellPol layout
    ((8, 3, 32, 32), (1, 0, 2, 3), "ZCYX"),
])
def test_plain_4d_layouts(tmp_path, stored_shape, to_czyx, axes):
    d = _rand(stored_shape)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, d, photometric="minisblack")
    img = read_image(path)
    expected = d.transpose(to_czyx)
    assert img.data.shape == expected.shape and img.is_3d
    np.testing.assert_array_equal(img.data, expected)
    assert img.axes == axes
    assert img.voxel_size is None
    assert img.channel_names == [f"C{i}" for i in range(expected.shape[0])]


def test_plain_2d_and_3d(tmp_path):
    d2 = _rand((20, 30))
    tifffile.imwrite(tmp_path / "yx.tif", d2)
    img = read_image(tmp_path / "yx.tif")
    assert img.data.shape == (1, 20, 30) and not img.is_3d and img.channel_names == ["C0"]
    np.testing.assert_array_equal(img.data[0], d2)

    d3 = _rand((10, 20, 30))  # smallest axis > 4: a one-channel stack
    tifffile.imwrite(tmp_path / "zyx.tif", d3)
    img = read_image(tmp_path / "zyx.tif")
    assert img.data.shape == (1, 10, 20, 30) and img.is_3d
    np.testing.assert_array_equal(img.data[0], d3)

    dc = _rand((3, 20, 30))  # smallest axis <= 4: channels
    tifffile.imwrite(tmp_path / "cyx.tif", dc, photometric="minisblack")
    img = read_image(tmp_path / "cyx.tif")
    assert img.data.shape == (3, 20, 30) and not img.is_3d
    np.testing.assert_array_equal(img.data, dc)


def test_plain_rgb_and_singletons(tmp_path):
    d = _rand((20, 30, 3), np.uint8, hi=255)
    tifffile.imwrite(tmp_path / "rgb.tif", d, photometric="rgb")
    img = read_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(img.data, d.transpose(2, 0, 1))
    # a length-1 axis is dropped, not taken for channels
    d = _rand((1, 6, 20, 30))
    tifffile.imwrite(tmp_path / "one.tif", d)
    img = read_image(tmp_path / "one.tif")
    assert img.data.shape == (1, 6, 20, 30) and img.is_3d


def test_uint16_high_values_intact(tmp_path):
    d = np.array([[0, 32767, 32768, 40000, 65535, 1]], dtype=np.uint16).repeat(4, axis=0)
    tifffile.imwrite(tmp_path / "hi.tif", d)
    for lazy in (False, True):
        img = read_image(tmp_path / "hi.tif", lazy=lazy)
        assert img.dtype == np.uint16
        np.testing.assert_array_equal(np.asarray(img.data)[0], d)
    write_ome_tiff(tmp_path / "hi.ome.tif", d[None])
    img = read_image(tmp_path / "hi.ome.tif")
    assert img.dtype == np.uint16 and int(np.asarray(img.data).max()) == 65535
    np.testing.assert_array_equal(img.data[0], d)


# --- overrides ----------------------------------------------------------------


def test_axes_override(tmp_path):
    d = _rand((2, 3, 16, 16))  # really Z=2, C=3
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, d, photometric="minisblack")
    guessed = read_image(path)  # the heuristic takes the length-2 axis for channels
    assert guessed.data.shape == (2, 3, 16, 16)
    img = read_image(path, axes="ZCYX")
    assert img.data.shape == (3, 2, 16, 16) and img.axes == "ZCYX"
    np.testing.assert_array_equal(img.data, d.transpose(1, 0, 2, 3))
    # lower case and a 2D reading of a 3D stack
    img = read_image(path, axes="zcyx", lazy=True)
    np.testing.assert_array_equal(np.asarray(img.data), d.transpose(1, 0, 2, 3))


def test_axes_override_yxzc_and_cyx(tmp_path):
    d = _rand((16, 12, 4, 2))
    tifffile.imwrite(tmp_path / "a.tif", d)
    img = read_image(tmp_path / "a.tif", axes="YXZC")
    np.testing.assert_array_equal(img.data, d.transpose(3, 2, 0, 1))
    d = _rand((4, 16, 12))
    tifffile.imwrite(tmp_path / "b.tif", d, photometric="minisblack")
    assert read_image(tmp_path / "b.tif", axes="ZYX").data.shape == (1, 4, 16, 12)
    assert read_image(tmp_path / "b.tif", axes="CYX").data.shape == (4, 16, 12)


def test_axes_override_squeezes_single_time_point(tmp_path):
    d = _rand((1, 3, 2, 8, 8))
    tifffile.imwrite(tmp_path / "t1.tif", d)
    img = read_image(tmp_path / "t1.tif", axes="TZCYX")
    np.testing.assert_array_equal(img.data, d[0].transpose(1, 0, 2, 3))


@pytest.mark.parametrize("axes,match", [("ZYX", "4 dimensions"), ("ZCYA", "unknown letter"),
                                        ("ZZYX", "more than once"), ("ZCQY", "Y and X")])
def test_axes_override_errors(tmp_path, axes, match):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, _rand((2, 3, 8, 8)), photometric="minisblack")
    with pytest.raises(InputError, match=match) as err:
        read_image(path, axes=axes)
    assert str(path) in str(err.value)


def test_voxel_size_override(tmp_path):
    path = tmp_path / "a.ome.tif"
    write_ome_tiff(path, _rand((2, 3, 8, 8)), voxel_size=(1.0, 0.5, 0.5))
    assert read_image(path, voxel_size=(0.3, 0.2, 0.1)).voxel_size == (0.3, 0.2, 0.1)
    tifffile.imwrite(tmp_path / "2d.tif", _rand((8, 8)))
    assert read_image(tmp_path / "2d.tif", voxel_size=(9.0, 0.2, 0.1)).voxel_size == \
        (1.0, 0.2, 0.1)
    for bad in [(0.3, 0.2), (0.0, 0.2, 0.1), (-1, 1, 1), ("a", 1, 1)]:
        with pytest.raises(InputError, match="voxel size"):
            read_image(path, voxel_size=bad)


# --- LSM ----------------------------------------------------------------------


@pytest.mark.parametrize("nc", [1, 2, 3])
def test_lsm(tmp_path, nc):
    d = _rand((4, nc, 16, 24), seed=nc)
    names = ["Ch1-T1", "DAPI", "GM130"][:nc]
    path = tmp_path / "a.lsm"
    write_lsm(path, d, voxel_size_m_xyz=(0.2e-6, 0.3e-6, 1.5e-6), names=names)
    with tifffile.TiffFile(path) as tif:  # the file really is LSM to tifffile
        assert tif.is_lsm and tif.series[0].kind == "lsm"
    img = read_image(path)
    assert img.data.shape == (nc, 4, 16, 24) and img.dtype == np.uint16
    np.testing.assert_array_equal(img.data, d.transpose(1, 0, 2, 3))
    assert img.voxel_size == pytest.approx((1.5, 0.3, 0.2))
    assert img.channel_names == names
    # LSM data pages are interleaved with thumbnails: lazily read via the page reader
    lazy = read_image(path, lazy=True)
    assert not isinstance(lazy.data.base, np.memmap)
    np.testing.assert_array_equal(lazy.data[:, 1:3, 4:9], d.transpose(1, 0, 2, 3)[:, 1:3, 4:9])


# --- lazy reading -------------------------------------------------------------


def test_lazy_memmap_tile_matches_eager(tmp_path):
    d = _rand((24, 2, 128, 160))  # stored Z C Y X, 2 MB, uncompressed
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, d, imagej=True, metadata={"axes": "ZCYX"})
    eager = read_image(path)
    lazy = read_image(path, lazy=True)
    assert isinstance(lazy.data, LazyArray)
    assert isinstance(lazy.data.base, np.memmap)
    assert lazy.data.shape == eager.data.shape == (2, 24, 128, 160)
    assert lazy.data.dtype == np.uint16 and lazy.data.ndim == 4 and lazy.is_3d
    tile = lazy.data[1, 5:17, 30:94, 100:160]
    assert isinstance(tile, np.ndarray) and not isinstance(tile, np.memmap)
    np.testing.assert_array_equal(tile, eager.data[1, 5:17, 30:94, 100:160])
    np.testing.assert_array_equal(lazy.data[0, -1], eager.data[0, -1])
    np.testing.assert_array_equal(lazy.data[..., 7], eager.data[..., 7])
    np.testing.assert_array_equal(lazy.data[:, ::5, 3, ::-7], eager.data[:, ::5, 3, ::-7])
    tile[:] = 0  # results are private copies, never the read-only map
    np.testing.assert_array_equal(np.asarray(lazy.data), eager.data)


def test_lazy_compressed_reads_only_needed_pages(tmp_path, monkeypatch):
    # The page reader (used when zarr is not installed, or tifffile's zarr store fails).
    import cellpol_core.io.image as image_mod

    monkeypatch.setattr(image_mod, "_zarr_source", lambda path, series: None)
    d = _rand((6, 2, 32, 40))
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, d, imagej=True, metadata={"axes": "ZCYX"}, compression="zlib")
    lazy = read_image(path, lazy=True)
    assert not isinstance(lazy.data.base, np.memmap)
    decoded = []
    for cls in (tifffile.TiffPage, tifffile.TiffFrame):
        def counting(self, *args, _orig=cls.asarray, **kwargs):
            decoded.append(self.index)
            return _orig(self, *args, **kwargs)
        monkeypatch.setattr(cls, "asarray", counting)
    tile = lazy.data[1, 2, 5:9, :]
    expected = d.transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(tile, expected[1, 2, 5:9, :])
    assert set(decoded) == {5}  # only plane z=2, c=1 of 12 (stored Z, C)
    np.testing.assert_array_equal(lazy.data[:, 4:], expected[:, 4:])


def test_lazy_compressed_through_zarr_matches_eager(tmp_path):
    pytest.importorskip("zarr")
    d = _rand((6, 2, 32, 40))
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, d, imagej=True, metadata={"axes": "ZCYX"}, compression="zlib")
    lazy = read_image(path, lazy=True)
    expected = d.transpose(1, 0, 2, 3)
    assert not isinstance(lazy.data, np.ndarray)  # nothing decoded up front
    np.testing.assert_array_equal(lazy.data[1, 2, 5:9, :], expected[1, 2, 5:9, :])
    np.testing.assert_array_equal(np.asarray(lazy.data), expected)


def test_lazy_array_matches_numpy_views():
    rng = np.random.default_rng(3)
    src = rng.integers(0, 100, (5, 1, 6, 3, 7))  # stored Z ? Y C X
    lazy = LazyArray(src, [3, 0, 2, 4])          # (C, Z, Y, X)
    ref = src[:, 0].transpose(2, 0, 1, 3)
    assert lazy.shape == ref.shape and len(lazy) == 3
    for key in [(0,), (slice(None), 2), (Ellipsis, 3), (1, slice(1, 4), -1, slice(None, None, 2)),
                (slice(None), slice(None), slice(2, 3), 0), (-1, -1, -1, -1)]:
        np.testing.assert_array_equal(lazy[key], ref[key])
    no_c = LazyArray(src[:, 0, :, 0], [None, 0, 1, 2])  # a missing channel axis
    assert no_c.shape == (1, 5, 6, 7)
    np.testing.assert_array_equal(np.asarray(no_c), src[None, :, 0, :, 0])
    np.testing.assert_array_equal(no_c[0, 1], src[1, 0, :, 0])
    assert no_c[1:, 0].shape == (0, 6, 7)
    with pytest.raises(IndexError):
        lazy[3]
    with pytest.raises(TypeError):
        lazy[np.array([0, 1])]
    with pytest.raises(ValueError):
        LazyArray(src, [3, 0, 4])  # the length-6 Y axis left out


def test_lazy_uses_zarr_when_installed(tmp_path, monkeypatch):
    d = _rand((2, 4, 8, 8))
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, d, compression="zlib", photometric="minisblack")
    opened = []
    fake_zarr = types.ModuleType("zarr")

    def fake_open(store, mode):
        opened.append((store, mode))
        return d  # stands in for the zarr array over the store

    fake_zarr.open = fake_open
    monkeypatch.setitem(sys.modules, "zarr", fake_zarr)
    monkeypatch.setattr(tifffile, "imread", lambda p, aszarr=False: ("store", str(p), aszarr))
    img = read_image(path, lazy=True)
    assert opened == [(("store", str(path), True), "r")]
    assert img.data.base is d
    np.testing.assert_array_equal(img.data[1, 2], d[1, 2])


# --- errors -------------------------------------------------------------------


def _assert_one_line(err, path):
    text = str(err.value)
    assert str(path) in text and "\n" not in text


def test_missing_folder_and_not_tiff(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        read_image(tmp_path / "absent.tif")
    _assert_one_line(err, tmp_path / "absent.tif")
    with pytest.raises(InputError, match="folder") as err:
        read_image(tmp_path)
    fake = tmp_path / "notes.tif"
    fake.write_text("these are my notes, not an image\n")
    with pytest.raises(InputError, match="not a readable TIFF") as err:
        read_image(fake)
    _assert_one_line(err, fake)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        read_image(empty)


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zlib"},
                                    {"imagej": True, "metadata": {"axes": "ZCYX"}}])
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_file(tmp_path, kwargs, lazy):
    d = _rand((8, 2, 64, 64), seed=5)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, d, **kwargs)
    raw = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(InputError, match="truncated|corrupt") as err:
        read_image(cut, lazy=lazy)
    _assert_one_line(err, cut)


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zlib"}, {"tile": (32, 32)}])
@pytest.mark.parametrize("keep", [0.5, 8, 100])
def test_truncated_single_page(tmp_path, kwargs, keep):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, _rand((128, 128)), **kwargs)
    raw = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[:int(len(raw) * keep) if keep < 1 else keep])
    for lazy in (False, True):
        with pytest.raises(InputError, match="truncated|corrupt") as err:
            read_image(cut, lazy=lazy)
        _assert_one_line(err, cut)


def test_5d_and_empty_refused(tmp_path):
    path = tmp_path / "5d.tif"
    tifffile.imwrite(path, _rand((2, 3, 2, 8, 8)), photometric="minisblack")
    with pytest.raises(InputError, match=r"5D.*\(2, 3, 2, 8, 8\)") as err:
        read_image(path)
    _assert_one_line(err, path)
    empty = tmp_path / "zero.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(empty, np.zeros((0, 16), np.uint8))
    with pytest.raises(InputError, match="empty") as err:
        read_image(empty)
    _assert_one_line(err, empty)


def test_ambiguous_plain_4d_asks_for_axes(tmp_path):
    path = tmp_path / "amb.tif"
    tifffile.imwrite(path, _rand((6, 5, 8, 8)))
    with pytest.raises(InputError, match="--axes"):
        read_image(path)
    assert read_image(path, axes="ZCYX").data.shape == (5, 6, 8, 8)


# --- channels -----------------------------------------------------------------


def _img(names, n=None):
    n = len(names) if n is None else n
    return CellImage(np.zeros((n, 4, 4), np.uint8), None, list(names), Path("x.tif"), "CYX")


def test_resolve_channels():
    assert resolve_channels(_img(["a", "b", "c"])) == (0, 1)
    assert resolve_channels(_img(["Golgi", "x", "Nucleus (DAPI)"])) == (2, 0)
    assert resolve_channels(_img(["GM130", "NUCLEUS"]), structures=("nucleus", "gm130")) == (1, 0)
    assert resolve_channels(_img(["Golgi", "nucleus"]), structures=None) == (1, 0)
    assert resolve_channels(_img(["nucleus", "b", "c"])) == (0, 1)  # no golgi: default
    assert resolve_channels(_img(["a", "b", "c"]), channels=(2, 1)) == (2, 1)
    with pytest.raises(InputError, match="channel 3 requested but the image has 2 channel") as e:
        resolve_channels(_img(["a", "b"]), channels=(0, 3))
    assert "x.tif" in str(e.value)
    with pytest.raises(InputError, match="differ"):
        resolve_channels(_img(["a", "b"]), channels=(1, 1))
    with pytest.raises(InputError, match="needs 2 channels"):
        resolve_channels(_img(["a"]))
    with pytest.raises(InputError, match="negative"):
        resolve_channels(_img(["a", "b"]), channels=(-1, 0))


# --- intensities --------------------------------------------------------------


def test_percentile_limits_exact_small():
    data = np.stack([np.arange(1000.0).reshape(10, 100), 2 * np.arange(1000.0).reshape(10, 100)])
    lim = percentile_limits(data, low=5, high=95)
    # numpy's linear interpolation on 0..999: 0.05 * 999 and 0.95 * 999
    np.testing.assert_allclose(lim, [[49.95, 949.05], [99.9, 1898.1]])
    assert lim.dtype == np.float64 and lim.shape == (2, 2)


def test_percentile_limits_subsampled_known_distribution():
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1000, (1, 40, 200, 200)).astype(np.float32)  # 1.6 M voxels
    lim = percentile_limits(data, low=1, high=99, max_samples=100_000)
    np.testing.assert_allclose(lim[0], [10, 990], atol=3)
    assert np.array_equal(lim, percentile_limits(data, low=1, high=99, max_samples=100_000))


def test_percentile_limits_lazy_samples_planes(tmp_path):
    rng = np.random.default_rng(2)
    d = rng.normal(500, 50, (2, 30, 64, 64)).astype(np.float32)
    d[1] += 1000
    path = tmp_path / "n.tif"
    tifffile.imwrite(path, d)
    lazy = read_image(path, lazy=True).data
    lim = percentile_limits(lazy, low=2.5, high=97.5, max_samples=20_000)
    # normal distribution: mean +- 1.96 sigma
    np.testing.assert_allclose(lim, [[402, 598], [1402, 1598]], atol=6)
    full = percentile_limits(lazy, low=2.5, high=97.5)
    np.testing.assert_allclose(full, percentile_limits(d, low=2.5, high=97.5))
    # 2D, compressed (page reader): strided rows and columns of the one plane
    d2 = rng.uniform(0, 100, (2, 300, 400)).astype(np.float32)
    d2[1] *= 10
    tifffile.imwrite(tmp_path / "u.tif", d2, photometric="minisblack", compression="zlib")
    lazy2 = read_image(tmp_path / "u.tif", lazy=True).data
    lim2 = percentile_limits(lazy2, low=5, high=95, max_samples=10_000)
    # within 1% of the range (sampling error of 10 000 samples is about 0.2%)
    np.testing.assert_allclose(lim2 / [[100], [1000]], [[0.05, 0.95]] * 2, atol=0.01)


def test_normalize_percentile():
    data = np.array([[[0, 50, 100, 200]], [[7, 7, 7, 7]]], dtype=np.uint16)  # (2, 1, 4)
    out = normalize_percentile(data, limits=[[50, 150], [7, 7]])
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_allclose(out[0, 0], [0, 0, 0.5, 1])
    np.testing.assert_array_equal(out[1], 0)  # equal limits: no division by zero
    raw = normalize_percentile(data, limits=[[50, 150], [7, 7]], clip=False, out_dtype=np.float64)
    assert raw.dtype == np.float64
    np.testing.assert_allclose(raw[0, 0], [-0.5, 0, 0.5, 1.5])
    auto = normalize_percentile(np.arange(101.0).reshape(1, 1, 101), low=10, high=90)
    np.testing.assert_allclose(auto[0, 0, [0, 10, 50, 90, 100]], [0, 0, 0.5, 1, 1], atol=1e-6)
    with pytest.raises(ValueError):
        normalize_percentile(data, limits=[[0, 1]])


# --- real data ----------------------------------------------------------------


@pytest.mark.skipif(not HUVEC.exists(), reason="shared sample data not present")
@pytest.mark.parametrize("lazy", [False, True])
def test_real_imagej_huvec(lazy):
    img = read_image(HUVEC, lazy=lazy)
    assert img.n_channels == 4 and img.data.shape == (4, 256, 256) and not img.is_3d
    assert img.dtype == np.float32
    assert img.voxel_size[1] == pytest.approx(0.415, abs=1e-3)
    assert img.voxel_size[2] == pytest.approx(0.415, abs=1e-3)
    assert img.voxel_size[0] == 1.0  # spacing 0.852 is not used in 2D
    assert img.axes == "CYX"
    ref = tifffile.imread(HUVEC)
    np.testing.assert_array_equal(np.asarray(img.data)[2, 100:120], ref[2, 100:120])
