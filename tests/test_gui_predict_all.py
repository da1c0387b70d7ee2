"""Jobs → Predict all images: one Otsu job over a project's two images."""

import numpy as np
import pytest
from gui_phantom import VOXEL, blobs
from gui_wait import wait_job

pytest.importorskip("PySide6")
pytest.importorskip("superqt")

from PySide6.QtWidgets import QInputDialog  # noqa: E402

from cellpol_core.io.image import write_ome_tiff  # noqa: E402
from cellpol_core.io.vectors import read_vectors  # noqa: E402

pytestmark = pytest.mark.gui

SHAPE = (10, 40, 48)
# (nuclei, golgi) per image: two pairs in the first, one in the second.
CELLS = [([(2, 10, 12), (6, 28, 30)], [(3, 12, 18), (6, 34, 34)]),
         ([(5, 20, 24)], [(6, 22, 30)])]


@pytest.fixture
def window(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    w.set_project(Project.create(tmp_path / "proj"))
    rng = np.random.default_rng(3)
    for k, (nuclei, golgi) in enumerate(CELLS):
        path = tmp_path / f"img{k}.ome.tif"
        write_ome_tiff(path, np.stack([blobs(nuclei, rng, SHAPE), blobs(golgi, rng, SHAPE)]),
                       voxel_size=VOXEL, channel_names=["nucleus", "golgi"])
        assert w.load_image(path, background=False)
    return w


def test_predict_all_images_with_otsu(window, qtbot, errors, monkeypatch):
    from cellpol_app.project import Project

    # The menu asks which predictor: choose Otsu.
    monkeypatch.setattr(QInputDialog, "getItem",
                        lambda *a, **kw: ("Otsu (classical)", True))
    window.predict_all_action.trigger()
    assert window.jobs.running and not window.predict_all_action.isEnabled()
    wait_job(qtbot, window.jobs, timeout=30000)
    assert not errors and window.predict_all_action.isEnabled()
    root = window.project.root
    manifest = Project.load(root)
    assert [e.predictions for e in manifest.images] == \
        [["predictions/img0_predicted.csv"], ["predictions/img1_predicted.csv"]]
    for k, (nuclei, golgi) in enumerate(CELLS):
        table = read_vectors(root / "predictions" / f"img{k}_predicted.csv")
        order = np.argsort(table.start[:, 2])
        np.testing.assert_allclose(table.start[order], nuclei, atol=0.6)
        np.testing.assert_allclose(table.end[order], golgi, atol=0.6)
    # The open image (the second) shows its prediction.
    assert window.vectors_path == root / "predictions" / "img1_predicted.csv"
    assert len(window.vectors) == 1


def test_predict_all_needs_images(qtbot, tmp_path, errors):
    from cellpol_app.annotator import AnnotatorWindow
    from cellpol_app.project import Project

    w = AnnotatorWindow(detect_device=False)
    qtbot.addWidget(w)
    assert not w.predict_all()
    w.set_project(Project.create(tmp_path / "empty"))
    assert not w.predict_all() and len(errors) == 2 and not w.jobs.running


def test_choose_predictor_offers_project_models(window, monkeypatch):
    from cellpol_app.batch_predict import choose_predictor

    window.project.add_model("m1", window.project.root / "models" / "m1")
    offered = []

    def get_item(parent, title, label, items, current, editable):
        offered.extend(items)
        return items[current], True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    ok, model = choose_predictor(window, window.project)
    assert offered == ["Otsu (classical)", "m1"]
    assert ok and model == str(window.project.root / "models" / "m1")
