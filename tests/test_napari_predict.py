"""The napari Predict widget: inputs checked before Run, a prediction of the demo, cancel."""

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")

from cellpol_core.detection.model import find_model, read_thresholds  # noqa: E402
from cellpol_core.io.image import read_image  # noqa: E402
from cellpol_core.io.resources import demo_image_path  # noqa: E402

pytestmark = pytest.mark.gui

# A corner of the demo image keeps the network's time small (about 1 s on one core).
CROP = (slice(None), slice(None), slice(0, 96), slice(0, 96))


@pytest.fixture(scope="module")
def demo_crop():
    image = read_image(demo_image_path())
    return np.ascontiguousarray(image.data[CROP]), tuple(image.voxel_size)


def _add_demo(viewer, demo_crop):
    data, vs = demo_crop
    viewer.add_image(data[0], name="demo nucleus", scale=vs, colormap="magenta", blending="additive")
    viewer.add_image(data[1], name="demo golgi", scale=vs, colormap="green", blending="additive")


def _widget(viewer):
    from cellpol_app.napari._predict import PredictWidget

    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="CellPol predict")
    return widget


def test_inputs_are_checked_before_run(make_napari_viewer, demo_crop):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert widget.model_combo.currentText() == "nucleus-golgi-3d"
    assert not widget.run_button.isEnabled()
    assert "Open an image" in widget.status.text()
    # Thresholds and tile come from the model folder.
    thr = read_thresholds(find_model("demo"))
    assert widget.tau_start.value() == pytest.approx(thr.tau[0])
    assert widget.tau_end.value() == pytest.approx(thr.tau[1])
    assert widget.d_max.value() == pytest.approx(thr.d_max_um)
    assert "tuned" in widget.thr_source.text()
    # 2D layers for a 3D model.
    viewer.add_image(np.zeros((40, 40)), name="a nucleus")
    viewer.add_image(np.zeros((40, 40)), name="a golgi")
    assert not widget.run_button.isEnabled()
    assert "model is 3D" in widget.status.text()
    viewer.layers.clear()
    # Shapes that differ, and no voxel size.
    viewer.add_image(np.zeros((8, 40, 40)), name="b nucleus")
    viewer.add_image(np.zeros((8, 40, 41)), name="b golgi")
    assert "differ in shape" in widget.status.text()
    viewer.layers.clear()
    viewer.add_image(np.zeros((8, 40, 40)), name="c nucleus")
    viewer.add_image(np.zeros((8, 40, 40)), name="c golgi")
    assert widget.start_combo.currentText() == "c nucleus"
    assert widget.end_combo.currentText() == "c golgi"
    assert "voxel size" in widget.status.text()
    for box, v in zip(widget.voxel, (0.5, 0.3, 0.3)):
        box.setValue(v)
    assert widget.run_button.isEnabled(), widget.status.text()
    widget.end_combo.setCurrentText("c nucleus")
    assert "must be different" in widget.status.text()
    # A folder that is not a model.
    widget.end_combo.setCurrentText("c golgi")
    widget.model_combo.setCurrentText("Model folder…")
    widget.model_path.setText("/no/such/model")
    widget.model_path.editingFinished.emit()
    assert not widget.run_button.isEnabled()
    assert "Model:" in widget.status.text() and "/no/such/model" in widget.status.text()


@pytest.mark.gui_jobs
def test_widget_predicts_demo_and_adds_layers(make_napari_viewer, qtbot, demo_crop):
    from napari.utils import progress

    from cellpol_app.napari._jobs import supports_precision
    from cellpol_core.detection.infer import predict_image
    from cellpol_core.detection.model import load_model
    from cellpol_core.io.image import CellImage
    from cellpol_core.jobs import run_job

    viewer = make_napari_viewer()
    _add_demo(viewer, demo_crop)
    widget = _widget(viewer)
    assert widget.start_combo.currentText() == "demo nucleus"
    assert widget.end_combo.currentText() == "demo golgi"
    np.testing.assert_allclose([b.value() for b in widget.voxel], demo_crop[1])
    widget.show_maps.setChecked(True)
    widget.device_combo.setCurrentText("cpu")
    widget.precision_combo.setCurrentText("fp32")
    assert widget.run_button.isEnabled(), widget.status.text()
    seen = []
    widget.progress_bar.valueChanged.connect(seen.append)
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.run()
        assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
        # The run shows in napari's activity dock.
        assert any("CellPol" in str(p.desc) for p in progress._all_instances)
    assert "vectors found" in widget.status.text(), widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert seen, "no progress was shown"
    # The precision reaches the engine once it takes one.
    assert widget.last_result.precision_used == supports_precision()
    assert widget.precision_combo.isEnabled() == supports_precision()
    # The same vectors as the engine on the same crop.
    data, vs = demo_crop
    model = load_model("demo", device="cpu")
    same = {"precision": "fp32"} if supports_precision() else {}
    expected = run_job(predict_image(CellImage(data, voxel_size=vs), model, channels=(0, 1), **same))
    assert len(expected) > 5
    vectors = viewer.layers["predicted"]
    np.testing.assert_allclose(vectors.data[:, 0], expected.start, atol=1e-4)
    np.testing.assert_allclose(vectors.data[:, 0] + vectors.data[:, 1], expected.end, atol=1e-4)
    np.testing.assert_allclose(vectors.scale, vs)
    np.testing.assert_allclose(vectors.features["score"], expected.score, atol=1e-5)
    assert np.all(vectors.features["length_um"] > 0)
    assert len(viewer.layers["predicted nucleus"].data) == len(expected)
    assert len(viewer.layers["predicted golgi"].data) == len(expected)
    # CNN output: heatmaps and embeddings at the model's voxel size, over the image.
    for key in ("heatmap_start", "heatmap_end", "embed_start", "embed_end"):
        layer = viewer.layers[f"CNN {key}"]
        extent = np.asarray(layer.data.shape) * np.asarray(layer.scale)
        np.testing.assert_allclose(extent, np.asarray(data.shape[1:]) * np.asarray(vs), rtol=0.06)
    heat = viewer.layers["CNN heatmap_start"].data
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.4


@pytest.mark.gui_jobs
def test_broken_model_gives_one_line_error(make_napari_viewer, qtbot, demo_crop, tmp_path):
    import shutil

    model = tmp_path / "broken"
    shutil.copytree(find_model("demo"), model)
    (model / "weights_best.pt").write_bytes(b"not a torch file")
    viewer = make_napari_viewer()
    _add_demo(viewer, demo_crop)
    widget = _widget(viewer)
    widget.model_combo.setCurrentText("Model folder…")
    widget.model_path.setText(str(model))
    widget.model_path.editingFinished.emit()
    assert widget.run_button.isEnabled(), widget.status.text()
    before = len(viewer.layers)
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.run()
    text = widget.status.text()
    # the folder's checksum catches the damaged file before torch reads it
    assert "weights_best.pt" in text and ("SHA-256" in text or "cannot load weights" in text)
    assert "Traceback" not in text and "\n" not in text
    assert len(viewer.layers) == before


@pytest.mark.gui_jobs
def test_cancel_stops_the_run_without_layers(make_napari_viewer, qtbot, demo_crop):
    viewer = make_napari_viewer()
    _add_demo(viewer, demo_crop)
    widget = _widget(viewer)
    before = len(viewer.layers)
    with qtbot.waitSignal(widget.run_finished, timeout=120000):
        widget.run()
        widget.cancel()
    assert widget.status.text() == "Cancelled."
    assert len(viewer.layers) == before
    assert widget.run_button.isEnabled()
