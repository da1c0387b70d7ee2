"""Bad input gets one line on stderr naming the file, and exit code 2."""

import numpy as np
import pytest
import tifffile

from cellpol_core.cli import main
from cellpol_core.errors import InputError
from cellpol_core.io.image import write_ome_tiff


def _one_line_error(capsys, name):
    err = capsys.readouterr().err.strip()
    assert err, "expected an error message"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert name in err
    return err


@pytest.fixture
def good_3d(tmp_path):
    path = tmp_path / "good.ome.tif"
    rng = np.random.default_rng(0)
    write_ome_tiff(path, rng.integers(0, 1000, (2, 8, 32, 32), dtype=np.uint16),
                   voxel_size=(0.27, 0.666, 0.666), channel_names=["nucleus", "golgi"])
    return path


def test_missing_file(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "absent.tif"), "-o", str(tmp_path / "o"), "--method", "otsu"]) == 2
    _one_line_error(capsys, "absent.tif")


def test_not_a_tiff(tmp_path, capsys):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not an image\n")
    assert main(["info", str(bad)]) == 2
    _one_line_error(capsys, "notes.tif")


def test_truncated_tiff(tmp_path, good_3d, capsys):
    data = good_3d.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["predict", str(cut), "-o", str(tmp_path / "o"), "--method", "otsu"]) == 2
    _one_line_error(capsys, "cut.tif")


def test_one_channel_when_two_needed(tmp_path, capsys):
    one = tmp_path / "one.ome.tif"
    write_ome_tiff(one, np.ones((1, 4, 16, 16), np.uint16), voxel_size=(1, 1, 1))
    assert main(["predict", str(one), "-o", str(tmp_path / "o"), "--method", "otsu"]) == 2
    err = _one_line_error(capsys, "one.ome.tif")
    assert "channel" in err


def test_channel_out_of_range(tmp_path, good_3d, capsys):
    assert main(["predict", str(good_3d), "-o", str(tmp_path / "o"), "--method", "otsu", "--channels", "0", "5"]) == 2
    _one_line_error(capsys, "good.ome.tif")


def test_5d_input(tmp_path, capsys):
    five = tmp_path / "five.tif"
    tifffile.imwrite(five, np.zeros((3, 4, 2, 16, 16), np.uint16), imagej=True,
                     metadata={"axes": "TZCYX"})
    assert main(["info", str(five)]) == 2
    _one_line_error(capsys, "five.tif")


def test_3d_without_voxel_size(tmp_path, capsys):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((2, 8, 32, 32), np.uint16))
    assert main(["predict", str(plain), "-o", str(tmp_path / "o"), "--method", "otsu"]) == 2
    err = _one_line_error(capsys, "plain.tif")
    assert "--voxel-size" in err
    # ...and giving it makes the same file work.
    assert main(["predict", str(plain), "-o", str(tmp_path / "o"), "--method", "otsu",
                 "--voxel-size", "0.666", "0.666", "0.27"]) == 0


def test_bad_csv_in_evaluate(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_text("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n1,2,3,4,5,NaN\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("")
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred),
                 "--voxel-size", "1", "1", "1", "-o", str(tmp_path / "m.csv")]) == 2
    _one_line_error(capsys, "gt.csv")


def test_empty_csv_is_valid_in_evaluate(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_text("nucleus_x,nucleus_y,nucleus_z,golgi_x,golgi_y,golgi_z\n1,2,3,4,5,6\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("")
    out = tmp_path / "m.csv"
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred),
                 "--voxel-size", "1", "1", "1", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 15  # header + 14 levels
    level0 = lines[1].split(",")
    assert level0[4:7] == ["0", "0", "1"]  # tp, fp, fn


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(InputError, match="absent.tif|no such file|not found"):
        main(["--debug", "info", str(tmp_path / "absent.tif")])


def test_predict_writes_vectors(tmp_path, good_3d, capsys):
    out = tmp_path / "o"
    assert main(["predict", str(good_3d), "-o", str(out), "--method", "otsu"]) == 0
    assert (out / "good_vectors.csv").exists()


def test_predict_without_a_method_names_the_bundled_model_it_chose(tmp_path, good_3d, capsys):
    assert main(["predict", str(good_3d), "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "nucleus-golgi-3d" in err  # the 3D nucleus->Golgi default, said in one line
    assert (tmp_path / "o" / "good_vectors.csv").is_file()


def test_missing_model(tmp_path, good_3d, capsys):
    assert main(["predict", str(good_3d), "-o", str(tmp_path / "o"),
                 "--model", str(tmp_path / "no_such_model")]) == 2
    _one_line_error(capsys, "no_such_model")
