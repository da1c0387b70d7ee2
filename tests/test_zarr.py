"""OME-Zarr images: NGFF 0.4 and 0.5 round trips, other writers' layouts, `cellpol convert`."""

import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from cellpol_core.cli import main  # noqa: E402
from cellpol_core.errors import InputError  # noqa: E402
from cellpol_core.io.image import LazyArray, read_image, write_ome_tiff  # noqa: E402
from cellpol_core.io.ome_zarr import levels, lowres_image, write_ome_zarr  # noqa: E402
from cellpol_core.io.paths import expand_inputs, image_stem  # noqa: E402


def _volume(shape=(2, 9, 70, 84), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, size=shape).astype(np.uint16)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_round_trip_with_pyramid(tmp_path, version):
    data = _volume()
    out = tmp_path / "v.ome.zarr"
    n = write_ome_zarr(out, data, voxel_size=(0.5, 0.25, 0.2), channel_names=["nucleus", "golgi"],
                       version=version, chunks=(4, 32, 32), n_levels=3)
    assert n == 3
    lazy = read_image(out, lazy=True)
    assert isinstance(lazy.data, LazyArray)
    assert lazy.data.shape == data.shape and lazy.data.dtype == np.uint16
    np.testing.assert_array_equal(lazy.data[1, 2:7, 10:50, 3], data[1, 2:7, 10:50, 3])
    eager = read_image(out)
    np.testing.assert_array_equal(eager.data, data)
    assert eager.voxel_size == pytest.approx((0.5, 0.25, 0.2))
    assert eager.channel_names == ["nucleus", "golgi"]
    assert image_stem(out) == "v"
    # The pyramid halves y and x (mean of 2 x 2), the scales follow.
    lv = levels(out)
    assert [a.shape for a, _ in lv] == [(2, 9, 70, 84), (2, 9, 35, 42), (2, 9, 17, 21)]
    mean = data[:, :, :70, :84].reshape(2, 9, 35, 2, 42, 2).astype(float).mean(axis=(3, 5))
    np.testing.assert_allclose(np.asarray(lv[1][0]), np.rint(mean), atol=0.5)
    assert lv[2][1] == pytest.approx([1.0, 0.5, 1.0, 0.8])
    low, factors = lowres_image(out, max_factor=5)
    assert low.data.shape == (2, 9, 17, 21) and list(factors) == pytest.approx([1, 70 / 17, 4])
    low, factors = lowres_image(out, max_factor=4)  # 70 / 17 > 4: level 1
    assert low.data.shape == (2, 9, 35, 42) and list(factors) == pytest.approx([1, 2, 2])
    # The metadata is where each version keeps it.
    if version == "0.5":
        meta = json.loads((out / "zarr.json").read_text())
        assert meta["zarr_format"] == 3 and meta["attributes"]["ome"]["version"] == "0.5"
    else:
        attrs = json.loads((out / ".zattrs").read_text())
        assert attrs["multiscales"][0]["version"] == "0.4"
        assert json.loads((out / ".zgroup").read_text())["zarr_format"] == 2


def test_2d_round_trip(tmp_path):
    data = _volume((2, 40, 30))
    out = tmp_path / "flat.ome.zarr"
    write_ome_zarr(out, data, voxel_size=(1.0, 0.5, 0.5), n_levels=1)
    img = read_image(out)
    assert not img.is_3d and img.voxel_size == (1.0, 0.5, 0.5)
    assert img.channel_names == ["C0", "C1"]
    np.testing.assert_array_equal(img.data, data)


def _hand_written(path, *, version, axes, scale, shape, units="micrometer", omero=True):
    """An NGFF image laid out as other writers do (not by write_ome_zarr)."""
    fmt = 3 if version == "0.5" else 2
    g = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    data = _volume(shape, seed=3)
    arr = g.create_array(name="s0", shape=shape, chunks=shape, dtype=data.dtype)
    arr[...] = data
    ax = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")} for a in axes]
    for a in ax:
        if a["type"] == "space" and units:
            a["unit"] = units
    ms = {"axes": ax, "datasets": [{"path": "s0", "coordinateTransformations": [
        {"type": "scale", "scale": scale}]}]}
    meta = {"multiscales": [ms]}
    if omero:
        meta["omero"] = {"channels": [{"label": "DAPI"}, {"label": "GM130"}]}
    if version == "0.5":
        g.attrs["ome"] = {"version": "0.5", **meta}
    else:
        ms["version"] = "0.4"
        g.attrs.update(meta)
    return data


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_reads_other_layouts(tmp_path, version):
    # t c z y x with a single time point, nanometre units, another dataset name
    path = tmp_path / "other.zarr"
    data = _hand_written(path, version=version, axes="tczyx", scale=[1, 1, 300, 150, 150],
                         shape=(1, 2, 5, 20, 24), units="nanometer")
    img = read_image(path)
    np.testing.assert_array_equal(img.data, data[0])
    assert img.voxel_size == pytest.approx((0.3, 0.15, 0.15))
    assert img.channel_names == ["DAPI", "GM130"]
    # z y x c order, no units: scales are taken as µm
    path = tmp_path / "zyxc.zarr"
    data = _hand_written(path, version=version, axes="zyxc", scale=[2, 0.5, 0.5, 1],
                         shape=(4, 16, 18, 2), units=None, omero=False)
    img = read_image(path, lazy=True)
    np.testing.assert_array_equal(np.asarray(img.data), np.moveaxis(data, -1, 0))
    assert img.voxel_size == (2.0, 0.5, 0.5) and img.channel_names == ["C0", "C1"]


def test_bad_zarr_inputs(tmp_path):
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w")
    with pytest.raises(InputError, match="no OME-NGFF multiscales"):
        read_image(plain)
    old = tmp_path / "old.zarr"
    _hand_written(old, version="0.4", axes="czyx", scale=[1, 1, 1, 1], shape=(2, 3, 8, 8))
    attrs = dict(zarr.open_group(str(old), mode="r").attrs)
    attrs["multiscales"][0]["version"] = "0.3"
    zarr.open_group(str(old), mode="a").attrs.update(attrs)
    with pytest.raises(InputError, match="version 0.3 is not supported"):
        read_image(old)
    with pytest.raises(InputError, match="file not found"):
        read_image(tmp_path / "missing.ome.zarr")
    with pytest.raises(InputError, match="0.6 cannot be written"):
        write_ome_zarr(tmp_path / "x.ome.zarr", _volume(), version="0.6")


def test_interrupted_write_leaves_nothing(tmp_path):
    out = tmp_path / "v.ome.zarr"

    def stop(k, n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_ome_zarr(out, _volume(), chunks=(2, 32, 32), progress=stop)
    assert list(tmp_path.iterdir()) == []
    # A finished write replaces an existing image whole.
    write_ome_zarr(out, _volume(seed=1), n_levels=1)
    write_ome_zarr(out, _volume(seed=2), n_levels=1)
    np.testing.assert_array_equal(read_image(out).data, _volume(seed=2))
    assert [p.name for p in tmp_path.iterdir()] == ["v.ome.zarr"]


def test_folders_list_zarr_images(tmp_path):
    write_ome_tiff(tmp_path / "a.ome.tif", _volume((2, 3, 8, 8)), voxel_size=(1, 1, 1))
    write_ome_zarr(tmp_path / "b.ome.zarr", _volume((2, 3, 8, 8)), n_levels=1)
    (tmp_path / "notes").mkdir()
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.ome.tif", "b.ome.zarr"]
    assert expand_inputs([tmp_path / "b.ome.zarr"]) == [tmp_path / "b.ome.zarr"]


def test_convert_cli(tmp_path, capsys):
    data = _volume((2, 6, 600, 520))
    src = tmp_path / "stack.ome.tif"
    write_ome_tiff(src, data, voxel_size=(0.5, 0.3, 0.3), channel_names=["nucleus", "golgi"])
    out = tmp_path / "stack.ome.zarr"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    assert "OME-NGFF 0.5" in capsys.readouterr().out
    img = read_image(out)
    np.testing.assert_array_equal(img.data, data)
    assert img.voxel_size == pytest.approx((0.5, 0.3, 0.3))
    assert img.channel_names == ["nucleus", "golgi"]
    assert [a.shape[-2:] for a, _ in levels(out)] == [(600, 520), (300, 260)]
    out4 = tmp_path / "stack4.ome.zarr"
    assert main(["convert", str(src), "-o", str(out4), "--ngff", "0.4", "--levels", "3",
                 "--voxel-size", "0.4", "0.4", "1.0"]) == 0
    assert len(levels(out4)) == 3
    assert read_image(out4).voxel_size == pytest.approx((1.0, 0.4, 0.4))
    back = tmp_path / "back.ome.tif"
    assert main(["convert", str(out4), "-o", str(back)]) == 0
    np.testing.assert_array_equal(read_image(back).data, data)
    assert main(["convert", str(src), "-o", str(tmp_path / "x.ome.zarr"), "--levels", "0"]) == 2
    assert "--levels must be at least 1" in capsys.readouterr().err
