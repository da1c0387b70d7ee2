"""The napari plugin: manifest, reader, writers, sample data and pair annotation by clicks."""

import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")

from napari.utils.interactions import (mouse_move_callbacks, mouse_press_callbacks,  # noqa: E402
                                       mouse_release_callbacks)
from napari.utils._proxies import ReadOnlyWrapper  # noqa: E402

from cellpol_core.errors import InputError  # noqa: E402
from cellpol_core.io.resources import demo_vectors_path  # noqa: E402
from cellpol_core.io.vectors import VectorTable, read_vectors, write_vat  # noqa: E402

pytestmark = pytest.mark.gui


def _save(viewer, path, layers):
    viewer.layers.selection.clear()
    viewer.layers.selection.update(layers)
    return viewer.layers.save(str(path), selected=True, plugin="cellpol")


def _layers_by_type(viewer, kind):
    return [layer for layer in viewer.layers if layer._type_string == kind]


def test_npe2_validate_passes():
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "cellpol", "--imports"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_reader_gives_points_per_structure_and_vectors(make_napari_viewer):
    viewer = make_napari_viewer()
    path = demo_vectors_path()
    truth = read_vectors(path)
    layers = viewer.open(str(path), plugin="cellpol")
    kinds = sorted(layer._type_string for layer in layers)
    assert kinds == ["points", "points", "vectors"]
    vectors = _layers_by_type(viewer, "vectors")[0]
    start_layer, end_layer = _layers_by_type(viewer, "points")
    assert vectors.data.shape == (len(truth), 2, 3)
    np.testing.assert_allclose(vectors.data[:, 0], truth.start, atol=1e-9)
    np.testing.assert_allclose(vectors.data[:, 0] + vectors.data[:, 1], truth.end, atol=1e-9)
    np.testing.assert_allclose(start_layer.data, truth.start)
    np.testing.assert_allclose(end_layer.data, truth.end)
    # The demo CSV has µm columns: the scale is its voxel size (z, y, x).
    np.testing.assert_allclose(vectors.scale, (0.27, 0.666, 0.666), rtol=1e-4)
    np.testing.assert_allclose(start_layer.scale, vectors.scale)
    feats = vectors.features
    for col in ("pair_id", "score", "length_um", "azimuth_deg"):
        assert col in feats.columns
    np.testing.assert_allclose(feats["length_um"], truth.extra["length_um"], atol=2e-3)
    np.testing.assert_allclose(feats["azimuth_deg"], truth.extra["azimuth_deg"], atol=2e-2)
    assert list(feats["pair_id"]) == list(range(1, len(truth) + 1))
    assert list(start_layer.features["pair_id"]) == list(feats["pair_id"])


def test_reader_reads_vat_csv_in_pixels(tmp_path, make_napari_viewer):
    table = VectorTable([[2, 10, 20], [3, 30, 40]], [[4, 12, 25], [3, 33, 36]])
    path = tmp_path / "cells.csv"
    write_vat(path, table)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="cellpol")
    vectors = _layers_by_type(viewer, "vectors")[0]
    np.testing.assert_allclose(vectors.data[:, 0], table.start)
    np.testing.assert_allclose(vectors.data[:, 1], table.end - table.start)
    np.testing.assert_allclose(vectors.scale, (1, 1, 1))
    # No voxel size: the length is unknown, the azimuth is in pixels (0 = +x, 90 = up).
    assert np.all(np.isnan(vectors.features["length_um"]))
    np.testing.assert_allclose(vectors.features["azimuth_deg"],
                               np.degrees(np.arctan2([-2, -3], [5, -4])) % 360)


def test_reader_declines_other_csv(tmp_path):
    from cellpol_app.napari._io import get_reader

    other = tmp_path / "points.csv"
    other.write_text("index,axis-0,axis-1\n0,1.0,2.0\n")
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path / "image.tif")) is None


def test_vectors_layer_round_trip_through_writer(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    truth = read_vectors(demo_vectors_path())
    viewer.open(str(demo_vectors_path()), plugin="cellpol")
    vectors = _layers_by_type(viewer, "vectors")[0]
    out = tmp_path / "saved.csv"
    written = _save(viewer, out, [vectors])
    assert [str(p) for p in written] == [str(out)]
    back = read_vectors(out)
    assert back.names == truth.names and back.ndim == 3
    np.testing.assert_allclose(back.start, truth.start, atol=1e-4)
    np.testing.assert_allclose(back.end, truth.end, atol=1e-4)
    # µm columns come back from the layer's voxel size.
    np.testing.assert_allclose(back.extra["length_um"], truth.extra["length_um"], atol=2e-3)
    np.testing.assert_allclose(back.extra["cell_id"], truth.extra["cell_id"])
    # And reading the written file again gives the same layers.
    viewer.layers.clear()
    viewer.open(str(out), plugin="cellpol")
    again = _layers_by_type(viewer, "vectors")[0]
    np.testing.assert_allclose(again.data, vectors.data, atol=1e-4)
    np.testing.assert_allclose(again.scale, vectors.scale, rtol=1e-4)


def test_two_points_layers_written_by_pair_id(tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    start = viewer.add_points(np.array([[1.0, 5, 6], [2, 7, 8], [3, 9, 10]]), name="nuc",
                              features={"pair_id": [10, 11, 12]}, scale=(0.5, 0.2, 0.2))
    # The end layer lists the same pairs in another order.
    end = viewer.add_points(np.array([[3.0, 12, 10], [1, 5, 9], [2, 4, 8]]), name="gol",
                            features={"pair_id": [12, 10, 11]}, scale=(0.5, 0.2, 0.2))
    out = tmp_path / "pairs.csv"
    _save(viewer, out, [start, end])
    back = read_vectors(out)
    assert back.names == ("nuc", "gol")
    np.testing.assert_allclose(back.start, start.data)
    np.testing.assert_allclose(back.end, [[1, 5, 9], [2, 4, 8], [3, 12, 10]])
    assert list(back.extra["pair_id"]) == [10, 11, 12]
    np.testing.assert_allclose(back.extra["nuc_z_um"], [0.5, 1.0, 1.5])


def test_points_writer_refuses_unpaired_points(tmp_path):
    from cellpol_app.napari._io import write_points_pairs

    a = (np.zeros((2, 2)), {"name": "a", "features": {"pair_id": [1, 2]}}, "points")
    b = (np.ones((1, 2)), {"name": "b", "features": {"pair_id": [1]}}, "points")
    out = tmp_path / "x.csv"
    with pytest.raises(InputError, match="pair_id 2 appear"):
        write_points_pairs(str(out), [a, b])
    no_ids = (np.ones((1, 2)), {"name": "b", "features": {}}, "points")
    with pytest.raises(InputError, match="no pair_id feature"):
        write_points_pairs(str(out), [a, no_ids])
    assert not out.exists()


def test_2d_vectors_layer_writes_2d_csv(tmp_path):
    from cellpol_app.napari._io import read_vectors_layers, write_vectors_layer

    data = np.array([[[10.0, 20.0], [3.0, -4.0]]])
    out = tmp_path / "flat.csv"
    write_vectors_layer(str(out), data, {"name": "v", "scale": (0.5, 0.5), "features": {"score": [0.9]}})
    back = read_vectors(out)
    assert back.ndim == 2
    np.testing.assert_allclose(back.end[:, 1:], [[13.0, 16.0]])
    np.testing.assert_allclose(back.score, [0.9])
    np.testing.assert_allclose(back.extra["length_um"], [2.5])
    layers = read_vectors_layers(out)
    np.testing.assert_allclose(layers[-1][0], data)
    assert tuple(layers[-1][1]["scale"]) == (0.5, 0.5)
    with pytest.raises(InputError, match="4 dimensions"):
        write_vectors_layer(str(out), np.zeros((1, 2, 4)), {"name": "t"})


def test_sample_data_is_demo_with_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("cellpol", "demo_3d")
    images = _layers_by_type(viewer, "image")
    assert len(images) == 2
    assert images[0].data.shape == (48, 192, 192)
    np.testing.assert_allclose(images[0].scale, (0.27, 0.666, 0.666), rtol=1e-6)
    vectors = _layers_by_type(viewer, "vectors")[0]
    assert len(vectors.data) == len(read_vectors(demo_vectors_path()))
    np.testing.assert_allclose(vectors.scale, images[0].scale, rtol=1e-4)


# ----------------------------------------------------------------------------- pair annotation

@pytest.fixture
def pair_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    nuc = rng.uniform(0, 10, (20, 40, 50)).astype(np.float32)
    gol = rng.uniform(0, 10, (20, 40, 50)).astype(np.float32)
    viewer.add_image(nuc, name="nucleus", scale=(0.5, 0.25, 0.25))
    viewer.add_image(gol, name="golgi", scale=(0.5, 0.25, 0.25))
    return viewer


@dataclass
class _Event:
    """The fields of a napari mouse event that the viewer's drag callbacks read."""

    type: str
    position: tuple
    dims_displayed: tuple = (1, 2)
    view_direction: tuple = None
    is_dragging: bool = False
    modifiers: list = field(default_factory=list)
    button: int = 1
    pos: tuple = (0, 0)
    handled: bool = False


def _event(**kw):
    # napari hands drag generators later events through this proxy.
    return ReadOnlyWrapper(_Event(**kw), exceptions=("handled",))


def _click(viewer, world, *, dims_displayed=(1, 2), view_direction=None, drag_to=None):
    """A press (and a drag) and release through the viewer's mouse callbacks, at world positions."""
    common = {"dims_displayed": dims_displayed, "view_direction": view_direction}
    mouse_press_callbacks(viewer, _event(type="mouse_press", position=world, **common))
    if drag_to is not None:
        mouse_move_callbacks(viewer, _event(type="mouse_move", position=drag_to, is_dragging=True,
                                            **common))
    mouse_release_callbacks(viewer, _event(type="mouse_release", position=drag_to or world, **common))


def test_pair_annotated_by_clicks(pair_viewer, tmp_path):
    from cellpol_app.napari._annotate import PairWidget

    viewer = pair_viewer
    widget = PairWidget(viewer)
    assert widget.start_combo.currentText() == "nucleus"
    assert widget.end_combo.currentText() == "golgi"
    _click(viewer, (2.0, 2.5, 2.5))
    assert widget.vectors_layer is None, "clicks do nothing until Annotate is on"
    widget.annotate_button.setChecked(True)
    # World (µm) positions: voxel (z, y, x) = world / scale.
    _click(viewer, (2.0, 2.5, 2.5))
    assert "golgi" in widget.status.text()
    np.testing.assert_allclose(widget.pending_layer.data, [[4, 10, 10]])
    _click(viewer, (2.0, 2.5, 2.5), drag_to=(2.0, 5.0, 5.0))  # a pan, not a click
    _click(viewer, (2.5, 3.0, 4.0))
    vectors = widget.vectors_layer
    np.testing.assert_allclose(vectors.data, [[[4, 10, 10], [1, 2, 6]]])
    np.testing.assert_allclose(vectors.scale, (0.5, 0.25, 0.25))
    assert list(vectors.features["pair_id"]) == [1]
    np.testing.assert_allclose(vectors.features["length_um"], [np.sqrt(0.5**2 + 0.5**2 + 1.5**2)])
    assert len(widget.pending_layer.data) == 0
    # A second pair, then undo its end, then redo it differently.
    _click(viewer, (5.0, 5.0, 5.0))
    _click(viewer, (5.0, 6.0, 5.0))
    assert len(vectors.data) == 2
    widget.undo()
    assert len(vectors.data) == 1 and widget.pending is not None
    _click(viewer, (5.0, 5.0, 7.0))
    np.testing.assert_allclose(vectors.data[1], [[10, 20, 20], [0, 0, 8]])
    # Clicks outside the image are refused.
    assert not widget.click((5.0, 50.0, 5.0))
    # Delete the first pair from the list.
    widget.pair_list.item(0).setSelected(True)
    widget.delete_selected()
    assert list(vectors.features["pair_id"]) == [2]
    widget.undo()
    assert list(vectors.features["pair_id"]) == [1, 2]
    out = tmp_path / "pairs.csv"
    widget.save(out)
    back = read_vectors(out)
    assert back.names == ("nucleus", "golgi")
    np.testing.assert_allclose(back.start, [[4, 10, 10], [10, 20, 20]])
    np.testing.assert_allclose(back.end, [[5, 12, 16], [10, 20, 28]])
    np.testing.assert_allclose(back.extra["golgi_x_um"], [4.0, 7.0])
    # The Vectors layer saves to the same table through the plugin's writer.
    out2 = tmp_path / "layer.csv"
    _save(viewer, out2, [vectors])
    np.testing.assert_allclose(read_vectors(out2).end, back.end)
    widget.annotate_button.setChecked(False)
    assert widget._on_mouse not in viewer.mouse_drag_callbacks


def test_pair_in_3d_view_picks_brightest_voxel_on_ray(pair_viewer):
    from cellpol_app.napari._annotate import PairWidget

    viewer = pair_viewer
    viewer.layers["nucleus"].data[7, 12, 13] = 100.0
    viewer.layers["golgi"].data[15, 30, 31] = 100.0
    viewer.dims.ndisplay = 3
    widget = PairWidget(viewer)
    widget.annotate_button.setChecked(True)
    # Rays along z through (y, x) = (12, 13) then (30, 31) voxels.
    _click(viewer, (0.0, 3.0, 3.25), dims_displayed=(0, 1, 2), view_direction=(1, 0, 0))
    _click(viewer, (0.0, 7.5, 7.75), dims_displayed=(0, 1, 2), view_direction=(1, 0, 0))
    np.testing.assert_allclose(widget.vectors_layer.data, [[[7, 12, 13], [8, 18, 18]]])


def test_pair_by_real_canvas_clicks(pair_viewer, qtbot):
    from qtpy.QtCore import QPoint, Qt

    from cellpol_app.napari._annotate import PairWidget

    viewer = pair_viewer
    viewer.window._qt_window.show()
    qtbot.waitExposed(viewer.window._qt_window)
    widget = PairWidget(viewer)
    widget.annotate_button.setChecked(True)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.wait(50)
    seen = []
    for pos in (QPoint(canvas.width() // 2, canvas.height() // 2),
                QPoint(canvas.width() // 2 + 30, canvas.height() // 2 + 20)):
        qtbot.mouseMove(canvas, pos)
        qtbot.mouseClick(canvas, Qt.LeftButton, pos=pos)
        qtbot.wait(20)
        seen.append(viewer.layers["nucleus"].world_to_data(viewer.cursor.position))
    data = widget.vectors_layer.data
    assert data.shape == (1, 2, 3)
    np.testing.assert_allclose(data[0, 0], seen[0], atol=1e-6)
    np.testing.assert_allclose(data[0, 0] + data[0, 1], seen[1], atol=1e-6)
    # 30 and 20 screen pixels apart: the end is right of and below the start.
    assert data[0, 1][2] > 0 and data[0, 1][1] > 0


def test_deleted_widgets_let_go_of_the_viewer(pair_viewer):
    from qtpy.QtCore import QCoreApplication, QEvent

    from cellpol_app.napari._annotate import PairWidget
    from cellpol_app.napari._predict import PredictWidget

    viewer = pair_viewer
    pairs = PairWidget(viewer)
    predict = PredictWidget(viewer)
    pairs.annotate_button.setChecked(True)
    assert pairs._on_mouse in viewer.mouse_drag_callbacks
    pairs.deleteLater()
    predict.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert not viewer.mouse_drag_callbacks or all(
        getattr(cb, "__self__", None) is not pairs for cb in viewer.mouse_drag_callbacks)
    viewer.add_image(np.zeros((20, 40, 50)), name="after")  # no call into deleted widgets
    assert "after" in viewer.layers
