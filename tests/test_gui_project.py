"""Project folders and their manifest (cellpol_app.project; no Qt, no display)."""

import json
import os

import numpy as np
import pytest

from cellpol_core.errors import InputError
from cellpol_core.io.vectors import VectorTable, read_vectors


def _project(tmp_path):
    from cellpol_app.project import Project

    return Project.create(tmp_path / "proj")


def test_round_trip_with_relative_paths(tmp_path):
    from cellpol_app.project import MANIFEST_NAME, Project

    project = _project(tmp_path)
    inside = project.root / "images" / "cell.ome.tif"
    inside.parent.mkdir()
    inside.write_bytes(b"")
    outside = tmp_path / "data" / "other.tif"
    outside.parent.mkdir()
    outside.write_bytes(b"")
    a = project.add_image(inside, channels=(1, 0), colors=("#00ff00", "#ff00ff"),
                          voxel_size=(1.0, 0.5, 0.25))
    project.add_image(outside)
    project.add_prediction(a, project.root / "predictions" / "cell_pred.csv")
    project.add_model("tiny", project.root / "models" / "tiny")

    raw = json.loads((project.root / MANIFEST_NAME).read_text())
    assert raw["images"][0]["path"] == "images/cell.ome.tif"
    assert raw["images"][1]["path"] == "../data/other.tif"
    assert raw["images"][0]["predictions"] == ["predictions/cell_pred.csv"]
    assert raw["models"] == [{"name": "tiny", "path": "models/tiny"}]

    again = Project.load(project.root)
    assert len(again.images) == 2
    e0, e1 = again.images
    assert e0.channels == (1, 0) and e0.colors == ("#00ff00", "#ff00ff")
    assert e0.voxel_size == (1.0, 0.5, 0.25) and e1.voxel_size is None
    assert again.image_path(e0) == inside and again.image_path(e1) == outside
    assert again.models[0].name == "tiny"
    assert again.resolve(again.models[0].path) == project.root / "models" / "tiny"
    # The manifest path itself also opens the project.
    assert Project.load(project.root / MANIFEST_NAME).root == project.root
    # Adding the same image again updates it instead of duplicating.
    again.add_image(inside, channels=(0, 1))
    assert len(Project.load(project.root).images) == 2
    assert Project.load(project.root).images[0].channels == (0, 1)


def test_moved_project_keeps_its_images(tmp_path):
    from cellpol_app.project import Project

    project = _project(tmp_path)
    img = project.root / "a.tif"
    img.write_bytes(b"x")
    project.add_image(img)
    moved = tmp_path / "moved"
    os.rename(project.root, moved)
    again = Project.load(moved)
    assert again.image_path(again.images[0]) == moved / "a.tif"


def test_annotations_saved_as_cellpol_csv(tmp_path):
    from cellpol_app.project import Project

    project = _project(tmp_path)
    entry = project.add_image(project.root / "stack.ome.tif", voxel_size=(2.0, 0.5, 0.5))
    assert project.load_annotations(entry) is None
    table = VectorTable(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 6.0, 3.0]]))
    path = project.save_annotations(entry, table)
    assert path == project.root / "annotations" / "stack_annotations.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header[:6] == ["nucleus_x", "nucleus_y", "nucleus_z", "golgi_x", "golgi_y", "golgi_z"]
    assert "length_um" in header  # the voxel size was used
    back = Project.load(project.root)
    assert back.images[0].annotations == "annotations/stack_annotations.csv"
    got = back.load_annotations(back.images[0])
    np.testing.assert_allclose(got.start, [[1, 2, 3]])
    np.testing.assert_allclose(got.end, [[1, 6, 3]])
    np.testing.assert_allclose(read_vectors(path).extra["length_um"], [2.0])


def test_failed_write_keeps_old_manifest(tmp_path, monkeypatch):
    from cellpol_app.project import MANIFEST_NAME
    from cellpol_core.errors import OutputError

    project = _project(tmp_path)
    project.add_image(project.root / "one.tif")
    before = (project.root / MANIFEST_NAME).read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OutputError, match="cellpol_project.json: cannot write the file: the disk is full"):
        project.add_image(project.root / "two.tif")
    monkeypatch.undo()
    assert (project.root / MANIFEST_NAME).read_bytes() == before
    assert sorted(p.name for p in project.root.iterdir()) == [MANIFEST_NAME]  # no temp left


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"images": []}', "not a CellPol project"),
    ('{"format": "cellpol-project", "version": 99}', "unsupported project version"),
    ('{"format": "cellpol-project", "version": 1, "images": [{"path": 3}]}', "images[0]"),
    ('{"format": "cellpol-project", "version": 1, "images": '
     '[{"path": "a.tif", "channels": [0, 0]}]}', "two different"),
    ('{"format": "cellpol-project", "version": 1, "images": '
     '[{"path": "a.tif", "voxel_size": [1, -1, 1]}]}', "voxel_size"),
    ('{"format": "cellpol-project", "version": 1, "models": [{"name": 1}]}', "models[0]"),
])
def test_corrupt_manifest_is_input_error(tmp_path, text, words):
    from cellpol_app.project import MANIFEST_NAME, Project

    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(InputError) as info:
        Project.load(tmp_path)
    message = str(info.value)
    assert words in message and MANIFEST_NAME in message and "\n" not in message


def test_missing_and_duplicate_projects(tmp_path):
    from cellpol_app.project import Project

    with pytest.raises(InputError, match="not a CellPol project"):
        Project.load(tmp_path)
    Project.create(tmp_path / "p")
    with pytest.raises(InputError, match="already holds"):
        Project.create(tmp_path / "p")
