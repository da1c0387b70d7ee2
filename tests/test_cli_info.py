"""`cellpol info`: what cellpol reads from an image file."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellpol_core.cli import main
from cellpol_core.io.image import write_ome_tiff

HUVEC = Path(__file__).parents[2] / "shared" / "data" / "huvec_ecs.tif"


def _field(out, name):
    line = next(ln for ln in out.splitlines() if ln.startswith(name + ":"))
    return line.split(":", 1)[1].strip()


@pytest.mark.skipif(not HUVEC.exists(), reason="shared sample data not present")
def test_info_real_imagej_file(capsys):
    assert main(["info", str(HUVEC)]) == 0
    out = capsys.readouterr().out
    assert _field(out, "shape") == "(4, 256, 256) (C, Y, X)"
    assert _field(out, "channels") == "4"
    assert _field(out, "dtype") == "float32"
    vs = _field(out, "voxel size")
    assert vs.startswith("x 0.415") and " y 0.415" in vs and "z –" in vs
    assert "0.852" not in out  # ImageJ spacing is not a pixel size in 2D
    assert _field(out, "on-disk axes") == "CYX"
    # exact per-channel ranges of the file
    ref = tifffile.imread(HUVEC)
    for c in range(4):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"{c}  C{c}"))
        assert f"min {ref[c].min():.6g}" in line and f"max {ref[c].max():.6g}" in line


def test_info_3d_ome(tmp_path, capsys):
    path = tmp_path / "a.ome.tif"
    data = np.zeros((2, 5, 16, 12), np.uint16)
    data[0, 2, 3, 4] = 40000
    data[1] = 7
    write_ome_tiff(path, data, voxel_size=(0.27, 0.666, 0.666), channel_names=["nucleus", "golgi"])
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert _field(out, "shape") == "(2, 5, 16, 12) (C, Z, Y, X)"
    assert _field(out, "voxel size") == "x 0.666 y 0.666 z 0.27 µm"
    assert _field(out, "dtype") == "uint16"
    assert "0  nucleus  min 0  max 40000" in out
    assert "1  golgi    min 7  max 7" in out


def test_info_unknown_voxel_size_and_overrides(tmp_path, capsys):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(64 * 64 * 16 * 2, dtype=np.uint16).reshape(64, 64, 16, 2))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert _field(out, "voxel size").startswith("unknown")
    assert _field(out, "on-disk axes") == "YXZC"
    assert _field(out, "shape") == "(2, 16, 64, 64) (C, Z, Y, X)"
    assert main(["info", str(path), "--axes", "ZYXC", "--voxel-size", "0.5", "0.4", "2"]) == 0
    out = capsys.readouterr().out
    assert _field(out, "shape") == "(2, 64, 64, 16) (C, Z, Y, X)"
    assert _field(out, "voxel size") == "x 0.5 y 0.4 z 2 µm"


def test_info_bad_input_is_one_line(tmp_path, capsys):
    missing = tmp_path / "absent.tif"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "not found" in err
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    assert main(["info", str(path), "--axes", "ZY"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--axes" in err
