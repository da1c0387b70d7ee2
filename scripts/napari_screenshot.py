"""Screenshot of the CellPol napari plugin for the README (docs/napari.png).

Opens the demo sample, predicts it with the Predict widget and saves the
whole napari window. Run it under a display, e.g.::

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_screenshot.py
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(Path(__file__).resolve().parents[1] / "docs" /
                                                      "napari.png"))
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from cellpol_app.napari._annotate import PairWidget
    from cellpol_app.napari._predict import PredictWidget

    viewer = napari.Viewer(title="CellPol in napari", show=True)
    viewer.window._qt_window.resize(1500, 920)
    viewer.open_sample("cellpol", "demo_3d")
    for layer in list(viewer.layers):
        if layer.name.startswith("demo ground truth"):
            layer.visible = False
    predict = PredictWidget(viewer)
    pairs = PairWidget(viewer)
    viewer.window.add_dock_widget(pairs, name="CellPol: Annotate pairs", area="right")
    dock = viewer.window.add_dock_widget(predict, name="CellPol: Predict vectors", area="right",
                                         tabify=True)
    dock.raise_()
    predict.device_combo.setCurrentText("cpu")

    loop = QEventLoop()
    predict.run_finished.connect(loop.quit)
    QTimer.singleShot(0, predict.run)
    QTimer.singleShot(300_000, loop.quit)  # never hang
    loop.exec_()
    print(predict.status.text())
    # A thick slice over the whole depth: a maximum projection with every vector.
    depth = viewer.layers[0].data.shape[0] * viewer.layers[0].scale[0]
    viewer.dims.set_point(0, depth / 2)
    viewer.dims.margin_left = (depth / 2, 0, 0)
    viewer.dims.margin_right = (depth / 2, 0, 0)
    for layer in viewer.layers:
        if layer._type_string == "image":
            layer.projection_mode = "max"
    viewer.reset_view()
    for _ in range(20):
        napari.qt.get_qapp().processEvents()
    viewer.screenshot(args.output, canvas_only=False)
    print(f"wrote {args.output}")
    viewer.close()


if __name__ == "__main__":
    main()
