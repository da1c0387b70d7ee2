"""One set of file-name rules for the CLI, the app and batch analysis."""

from pathlib import Path

import pytest

from cellpol_core.errors import InputError
from cellpol_core.io.paths import (expand_inputs, image_stem, is_image_path, match_vectors,
                                   vectors_path_for, vectors_stem)


@pytest.mark.parametrize("name, stem", [
    ("a/b/cell_01.ome.tif", "cell_01"), ("x.LSM", "x"), ("y.tiff", "y"), ("z.OME.TIFF", "z"),
    ("w.ome.czi", "w"), ("plain.png", "plain"), ("dots.in.name.tif", "dots.in.name"),
])
def test_image_stem(name, stem):
    assert image_stem(name) == stem


@pytest.mark.parametrize("name, stem", [
    ("img_vectors.csv", "img"), ("img.csv", "img"), ("d/img.ome.tif_vectors.csv", "img"),
    ("img_VECTORS.CSV", "img"),
])
def test_vectors_stem(name, stem):
    assert vectors_stem(name) == stem


def test_is_image_path():
    assert is_image_path("a.OME.TIF") and is_image_path("b.lsm")
    assert not is_image_path("c.csv") and not is_image_path("d.tif.bak")


def test_vectors_path_for():
    assert vectors_path_for("in/x.ome.tif", "out") == Path("out/x_vectors.csv")


def test_expand_and_match(tmp_path):
    for name in ("b.tif", "a.ome.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    csvs = tmp_path / "csv"
    csvs.mkdir()
    for name in ("a_vectors.csv", "b.csv"):
        (csvs / name).write_text("")
    images = expand_inputs([tmp_path])
    assert [p.name for p in images] == ["a.ome.tif", "b.tif"]
    assert [p.name for p in match_vectors(images, [csvs])] == ["a_vectors.csv", "b.csv"]
    (csvs / "b.csv").unlink()
    with pytest.raises(InputError, match="b.csv or b_vectors.csv"):
        match_vectors(images, [csvs])
