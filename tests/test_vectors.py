"""Vector tables: the CellPol CSV contract, VAT import/export, geometry."""

import csv

import numpy as np
import pytest

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.io.vectors import (VectorTable, read_vectors, vector_geometry, write_vat,
                                  write_vectors)

VS = (0.27, 0.666, 0.666)


def _table():
    start = np.array([[1.0, 10.0, 20.0], [5.5, 30.25, 40.0]])
    end = np.array([[3.0, 10.0, 25.0], [5.5, 20.25, 40.0]])
    return VectorTable(start, end, score=np.array([0.9, 0.5]))


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_header_and_order(tmp_path):
    out = tmp_path / "v.csv"
    write_vectors(out, _table())
    header, first, _ = _rows(out)
    assert header == ["nucleus_x", "nucleus_y", "nucleus_z", "golgi_x", "golgi_y", "golgi_z", "score"]
    # x = column (last array axis), y = row, z = plane.
    assert [float(v) for v in first[:6]] == [20.0, 10.0, 1.0, 25.0, 10.0, 3.0]


def test_round_trip_with_voxel_size(tmp_path):
    out = tmp_path / "v.csv"
    t = _table()
    write_vectors(out, t, voxel_size=VS)
    header = _rows(out)[0]
    for col in ["nucleus_x_um", "golgi_z_um", "dx_um", "dy_um", "dz_um", "length_um",
                "azimuth_deg", "elevation_deg"]:
        assert col in header
    back = read_vectors(out)
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)
    np.testing.assert_allclose(back.score, t.score)
    assert back.names == ("nucleus", "golgi") and back.ndim == 3
    # Derived columns are kept as extras on reading but recomputed, not duplicated, on writing.
    write_vectors(tmp_path / "again.csv", back, voxel_size=VS)
    assert _rows(tmp_path / "again.csv")[0] == header


def test_azimuth_convention():
    start = np.zeros((5, 3))
    # +x, up on screen (-y), -x, down (+y), and +z only.
    end = np.array([[0, 0, 1], [0, -1, 0], [0, 0, -1], [0, 1, 0], [1, 0, 0]], float)
    g = vector_geometry(start, end, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(g["azimuth_deg"][:4], [0, 90, 180, 270])
    np.testing.assert_allclose(g["elevation_deg"], [0, 0, 0, 0, 90])
    assert np.all((g["azimuth_deg"] >= 0) & (g["azimuth_deg"] < 360))


def test_geometry_in_um():
    g = vector_geometry(np.array([[0, 0, 0.0]]), np.array([[10, 3, 4.0]]), (0.5, 2.0, 1.0))
    assert g["dz_um"][0] == 5.0 and g["dy_um"][0] == 6.0 and g["dx_um"][0] == 4.0
    assert g["length_um"][0] == pytest.approx(np.sqrt(25 + 36 + 16))
    assert g["azimuth_deg"][0] == pytest.approx(np.degrees(np.arctan2(-6, 4)) + 360)
    assert g["elevation_deg"][0] == pytest.approx(np.degrees(np.arctan2(5, np.hypot(6, 4))))


def test_2d_table_has_no_z_columns(tmp_path):
    t = VectorTable(np.array([[0, 5.0, 6.0]]), np.array([[0, 8.0, 9.0]]),
                    names=("cytoplasm", "nucleus"), ndim=2)
    out = tmp_path / "v2.csv"
    write_vectors(out, t, voxel_size=(1.0, 0.5, 0.5))
    header = _rows(out)[0]
    assert not any(c.endswith("_z") or "_z_" in c for c in header)
    assert header[:4] == ["cytoplasm_x", "cytoplasm_y", "nucleus_x", "nucleus_y"]
    back = read_vectors(out)
    assert back.ndim == 2 and back.names == ("cytoplasm", "nucleus")
    np.testing.assert_allclose(back.start, [[0, 5, 6]])


def test_unknown_columns_ignored_and_kept(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("id,golgi_x,nucleus_x,nucleus_y,nucleus_z,golgi_y,golgi_z,comment\n"
                 "7,1,2,3,4,5,6,hello\n")
    # Start columns come first in files we write, but readers go by the first
    # complete structure in the header: here golgi.
    t = read_vectors(p, structures=("nucleus", "golgi"))
    np.testing.assert_allclose(t.start, [[4, 3, 2]])
    np.testing.assert_allclose(t.end, [[6, 5, 1]])
    assert list(t.extra["comment"]) == ["hello"]


def test_empty_csv_is_zero_vectors(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    assert len(read_vectors(p)) == 0
    h = tmp_path / "header.csv"
    write_vectors(h, VectorTable.empty())
    t = read_vectors(h)
    assert len(t) == 0 and t.start.shape == (0, 3)


@pytest.mark.parametrize("content, fragment", [
    ("nucleus_x,nucleus_y\n1,2\n", "missing coordinate columns"),
    ("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n1,2,3,a,5,6\n", "not a number"),
    ("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n1,2,3,nan,5,6\n", "finite"),
    ("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n1,2,3,,5,6\n", "not a number"),
    ("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y\n1,2,3,4,5\n", "_z column"),
    ("1,2,3,4,5\n", "6 columns"),
])
def test_bad_csv_errors(tmp_path, content, fragment):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as err:
        read_vectors(p)
    assert fragment in str(err.value) and "bad.csv" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_vectors(tmp_path / "nope.csv")


def test_vat_import(tmp_path):
    p = tmp_path / "vat.csv"
    # XN,YN,XG,YG,ZN,ZG
    p.write_text("10,20,12,24,3,5\n100.5,200,90,210,7,8\n")
    t = read_vectors(p)
    assert t.names == ("nucleus", "golgi") and len(t) == 2
    np.testing.assert_allclose(t.start, [[3, 20, 10], [7, 200, 100.5]])
    np.testing.assert_allclose(t.end, [[5, 24, 12], [8, 210, 90]])


def test_vat_round_trip(tmp_path):
    t = _table()
    write_vat(tmp_path / "o.csv", t)
    rows = _rows(tmp_path / "o.csv")
    assert len(rows) == 2 and len(rows[0]) == 6
    assert [float(v) for v in rows[0]] == [20.0, 10.0, 25.0, 10.0, 1.0, 3.0]
    back = read_vectors(tmp_path / "o.csv")
    np.testing.assert_allclose(back.start, t.start)
    np.testing.assert_allclose(back.end, t.end)


def test_convert_cli_round_trip(tmp_path, capsys):
    vat = tmp_path / "vat.csv"
    vat.write_text("10,20,12,24,3,5\n")
    out = tmp_path / "cp.csv"
    assert main(["convert", str(vat), "-o", str(out), "--voxel-size", "0.666", "0.666", "0.27"]) == 0
    header = _rows(out)[0]
    assert header[:6] == ["nucleus_x", "nucleus_y", "nucleus_z", "golgi_x", "golgi_y", "golgi_z"]
    assert "length_um" in header
    back = tmp_path / "back.csv"
    assert main(["convert", str(out), "-o", str(back), "--to", "vat"]) == 0
    assert [float(v) for v in _rows(back)[0]] == [10, 20, 12, 24, 3, 5]


def test_convert_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["convert", str(bad), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err and "Traceback" not in err
    assert main(["convert", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.csv")]) == 2


# ----------------------------------------------------------------------------- scaled / shifted

def _extra_table(ndim=3):
    start = [[1.0, 2.0, 4.0], [0.0, 6.0, 8.0]] if ndim == 3 else [[0.0, 2.0, 4.0], [0.0, 6.0, 8.0]]
    end = [[2.0, 3.0, 5.0], [1.0, 7.0, 9.0]] if ndim == 3 else [[0.0, 3.0, 5.0], [0.0, 7.0, 9.0]]
    return VectorTable(start, end, [0.9, 0.4], names=("a", "b"), ndim=ndim,
                       extra={"pair_id": np.array([7.0, 8.0])})


def test_scaled_changes_the_voxel_grid_and_keeps_the_rest():
    t = _extra_table()
    # From voxel size (0.5, 1, 1) µm to (1, 2, 2) µm: coordinates halve.
    s = t.scaled(np.array([0.5, 1.0, 1.0]) / np.array([1.0, 2.0, 2.0]))
    np.testing.assert_allclose(s.start, [[0.5, 1.0, 2.0], [0.0, 3.0, 4.0]])
    np.testing.assert_allclose(s.end, [[1.0, 1.5, 2.5], [0.5, 3.5, 4.5]])
    # The physical vectors are unchanged.
    np.testing.assert_allclose(s.geometry((1.0, 2.0, 2.0))["length_um"],
                               t.geometry((0.5, 1.0, 1.0))["length_um"])
    assert s.names == ("a", "b") and s.ndim == 3
    np.testing.assert_array_equal(s.score, [0.9, 0.4])
    np.testing.assert_array_equal(s.extra["pair_id"], [7.0, 8.0])
    # (y, x) factors leave z alone; a scalar scales every axis.
    np.testing.assert_allclose(t.scaled((2.0, 3.0)).start[0], [1.0, 4.0, 12.0])
    np.testing.assert_allclose(t.scaled(2.0).start[0], [2.0, 4.0, 8.0])


def test_shifted_moves_the_origin_and_copies():
    t = _extra_table()
    s = t.shifted((1, -2, 10))
    np.testing.assert_allclose(s.start, t.start + [1, -2, 10])
    np.testing.assert_allclose(s.end, t.end + [1, -2, 10])
    np.testing.assert_array_equal(s.extra["pair_id"], [7.0, 8.0])
    # A new table: changing it leaves the original alone.
    s.extra["pair_id"][0] = -1
    s.score[0] = -1
    assert t.extra["pair_id"][0] == 7.0 and t.score[0] == 0.9
    np.testing.assert_allclose(t.shifted((-2, 10)).start[0], [1.0, 0.0, 14.0])


def test_shifting_a_2d_table_keeps_z_zero():
    t = _extra_table(ndim=2)
    s = t.shifted(5.0)
    assert np.all(s.start[:, 0] == 0) and np.all(s.end[:, 0] == 0)
    np.testing.assert_allclose(s.start[:, 1:], t.start[:, 1:] + 5.0)
    np.testing.assert_allclose(t.shifted((3, 4)).end[:, 1:], t.end[:, 1:] + [3, 4])
    with pytest.raises(ValueError, match="2D table"):
        t.shifted((1, 0, 0))
    with pytest.raises(ValueError):
        t.scaled((1.0, 2.0, 3.0, 4.0))
