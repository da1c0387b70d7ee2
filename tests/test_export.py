"""Round trips of every vector format: CellPol, VAT, napari points, Polarity-JaM."""

import csv
import math

import numpy as np
import pytest

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.io.export import (POLARITYJAM_COLUMNS, is_polarityjam_csv, napari_paths,
                                 polarityjam_orientation_rad, read_napari_points,
                                 read_napari_vectors, read_polarityjam, write_napari_points,
                                 write_polarityjam)
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vat, write_vectors


def _table3d():
    start = np.array([[1.0, 10.5, 20.25], [5.0, 30.0, 40.0], [0.0, 2.0, 3.0]])
    end = np.array([[3.0, 12.0, 25.0], [5.5, 20.25, 41.0], [1.0, 2.0, 1.0]])
    return VectorTable(start, end, score=np.array([0.9, 0.5, 0.25]))


def _table2d():
    start = np.array([[0.0, 10.0, 20.0], [0.0, 30.0, 40.0]])
    end = np.array([[0.0, 12.5, 25.0], [0.0, 20.0, 40.0]])
    return VectorTable(start, end, names=("cytoplasm", "nucleus"), ndim=2)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_cellpol_round_trip(tmp_path):
    t = _table3d()
    write_vectors(tmp_path / "v.csv", t, voxel_size=(0.27, 0.666, 0.666))
    back = read_vectors(tmp_path / "v.csv")
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)
    np.testing.assert_allclose(back.score, t.score)


def test_vat_round_trip(tmp_path):
    t = _table3d()
    write_vat(tmp_path / "v.csv", t)
    back = read_vectors(tmp_path / "v.csv")
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)


def test_napari_round_trip_3d(tmp_path):
    t = _table3d()
    paths = write_napari_points(tmp_path / "cells.csv", t)
    assert [p.name for p in paths] == ["cells_nucleus.csv", "cells_golgi.csv"]
    rows = _rows(paths[0])
    assert rows[0] == ["index", "axis-0", "axis-1", "axis-2", "pair_id", "score"]
    # napari order is (z, y, x)
    assert [float(v) for v in rows[1][1:4]] == [1.0, 10.5, 20.25]
    back = read_napari_vectors(*paths)
    assert back.names == ("nucleus", "golgi") and back.ndim == 3
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)


def test_napari_round_trip_2d(tmp_path):
    t = _table2d()
    paths = write_napari_points(tmp_path / "img", t)
    assert [p.name for p in paths] == ["img_cytoplasm.csv", "img_nucleus.csv"]
    assert _rows(paths[1])[0] == ["index", "axis-0", "axis-1", "pair_id"]
    back = read_napari_vectors(*paths)
    assert back.ndim == 2 and back.names == ("cytoplasm", "nucleus")
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)


def test_napari_pairs_by_pair_id(tmp_path):
    a, b = tmp_path / "x_a.csv", tmp_path / "x_b.csv"
    a.write_text("index,axis-0,axis-1,pair_id\n0,1,1,7\n1,2,2,3\n2,9,9,5\n")
    b.write_text("index,axis-0,axis-1,pair_id\n0,4,4,3\n1,8,8,7\n")
    t = read_napari_vectors(a, b)
    # pair 5 has no end point; order is by pair id (3, 7)
    np.testing.assert_allclose(t.start[:, 1:], [[2, 2], [1, 1]])
    np.testing.assert_allclose(t.end[:, 1:], [[4, 4], [8, 8]])
    assert t.names == ("a", "b")
    b.write_text("index,axis-0,axis-1,pair_id\n0,4,4,3\n1,8,8,3\n")
    with pytest.raises(InputError, match="duplicate pair_id"):
        read_napari_vectors(a, b)
    bad = tmp_path / "bad.csv"
    bad.write_text("index,x,y\n0,1,2\n")
    with pytest.raises(InputError, match="axis-0"):
        read_napari_points(bad)


def test_polarityjam_orientation_convention():
    # nucleus at (X=10, Y=10); organelle right, above (smaller row), left, below
    ox = np.array([15.0, 10.0, 5.0, 10.0])
    oy = np.array([10.0, 5.0, 10.0, 15.0])
    rad = polarityjam_orientation_rad(10.0, 10.0, ox, oy)
    np.testing.assert_allclose(rad, [0.0, math.pi / 2, math.pi, 3 * math.pi / 2])


def test_polarityjam_round_trip(tmp_path):
    t = _table2d()
    out = tmp_path / "pj.csv"
    write_polarityjam(out, t)
    rows = _rows(out)
    assert tuple(rows[0]) == POLARITYJAM_COLUMNS
    # cell 1: nucleus (X 20, Y 10) -> organelle (X 25, Y 12.5): below-right
    x, y = 5.0, 2.5
    assert float(rows[1][5]) == pytest.approx(math.atan2(-y, x) % (2 * math.pi), abs=1e-6)
    assert float(rows[2][6]) == pytest.approx(90.0)  # straight up on screen
    assert is_polarityjam_csv(out)
    back = read_polarityjam(out, names=t.names)
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)
    # orientation equals CellPol's azimuth in pixels
    from cellpol_core.io.vectors import vector_geometry
    az = vector_geometry(t.start, t.end, (1, 1, 1))["azimuth_deg"]
    np.testing.assert_allclose([float(r[6]) for r in rows[1:]], az, atol=1e-3)


def test_polarityjam_reads_its_own_layout(tmp_path):
    # pandas index column first, extra columns, a cell without organelle
    f = tmp_path / "pj_out.csv"
    f.write_text(",filename,label,nuc_X,nuc_Y,organelle_X,organelle_Y,organelle_orientation_deg\n"
                 "0,img.tif,1,10.5,20.0,12.0,18.0,53.1\n"
                 "1,img.tif,2,30.0,40.0,,,\n"
                 "2,img.tif,3,50.0,60.0,nan,nan,nan\n")
    t = read_polarityjam(f)
    assert len(t) == 1 and t.ndim == 2
    np.testing.assert_allclose(t.start, [[0, 20.0, 10.5]])
    np.testing.assert_allclose(t.end, [[0, 18.0, 12.0]])
    assert t.extra["label"].tolist() == [1.0]
    f.write_text("nuc_X,nuc_Y\n1,2\n")
    with pytest.raises(InputError, match="organelle_X"):
        read_polarityjam(f)


def test_polarityjam_from_3d_drops_z(tmp_path):
    t = _table3d()
    write_polarityjam(tmp_path / "p.csv", t)
    back = read_polarityjam(tmp_path / "p.csv")
    np.testing.assert_allclose(back.start[:, 1:], t.start[:, 1:])
    assert np.all(back.start[:, 0] == 0)


def test_convert_cli_formats(tmp_path, capsys):
    src = tmp_path / "v.csv"
    write_vectors(src, _table3d())
    assert main(["convert", str(src), "-o", str(tmp_path / "n.csv"), "--to", "napari"]) == 0
    starts, ends = napari_paths(tmp_path / "n.csv", ("nucleus", "golgi"))
    assert starts.exists() and ends.exists()
    # two napari files back to CellPol
    assert main(["convert", str(starts), str(ends), "-o", str(tmp_path / "back.csv")]) == 0
    np.testing.assert_allclose(read_vectors(tmp_path / "back.csv").end, _table3d().end)
    assert main(["convert", str(src), "-o", str(tmp_path / "pj.csv"), "--to", "polarityjam"]) == 0
    # Polarity-JaM input is detected from its header
    assert main(["convert", str(tmp_path / "pj.csv"), "-o", str(tmp_path / "from_pj.csv")]) == 0
    t = read_vectors(tmp_path / "from_pj.csv")
    assert t.ndim == 2 and len(t) == 3
    capsys.readouterr()
    # 2D tables have no VAT form
    assert main(["convert", str(tmp_path / "pj.csv"), "-o", str(tmp_path / "x.csv"),
                 "--to", "vat"]) == 2
    assert "3D" in capsys.readouterr().err
    assert main(["convert", str(src), "-o", str(tmp_path / "y.csv"), "--from", "napari"]) == 2
