"""The Pair annotation widget: click a start, then its end; pairs go into a Vectors layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                            QListWidget, QPushButton, QVBoxLayout, QWidget)

from cellpol_core.errors import InputError
from cellpol_core.io.vectors import DEFAULT_STRUCTURES, VectorTable, vector_geometry, write_vectors

from ._convert import END_COLOR, POINT_SIZE, START_COLOR, VECTOR_COLOR, table_features
from ._predict import _layer_voxel_size, fill_channel_combos, follow_layers, layer_array

if TYPE_CHECKING:  # pragma: no cover
    import napari

# Vectors and pending-start layers are found again by this metadata key.
ROLE_KEY = "cellpol_pairs"


class PairWidget(QWidget):
    """Annotate start → end pairs by clicking on the image.

    With Annotate on, a click (a press and release without dragging) sets the
    start of a pair, the next click its end. In a 2D view the click's
    position, including the current slice, is used; in a 3D view the brightest
    voxel of the start (then end) channel along the ray under the cursor.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        Injected by napari.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.pairs: list = []  # dicts: pair_id, start, end (data coordinates of the image layer)
        self.pending: Optional[np.ndarray] = None
        self.next_id = 1
        self._history: list = []
        self.vectors_layer = None
        self.pending_layer = None
        self._press = None

        form = QFormLayout()
        self.start_combo = QComboBox()
        self.end_combo = QComboBox()
        form.addRow("Start channel", self.start_combo)
        form.addRow("End channel", self.end_combo)
        self.start_name = QLineEdit(DEFAULT_STRUCTURES[0])
        self.end_name = QLineEdit(DEFAULT_STRUCTURES[1])
        names = QHBoxLayout()
        names.addWidget(self.start_name)
        names.addWidget(QLabel("→"))
        names.addWidget(self.end_name)
        form.addRow("Structures", names)

        self.annotate_button = QPushButton("Annotate")
        self.annotate_button.setCheckable(True)
        self.undo_button = QPushButton("Undo")
        self.delete_button = QPushButton("Delete selected")
        self.save_button = QPushButton("Save CSV…")
        row = QHBoxLayout()
        for b in (self.annotate_button, self.undo_button, self.delete_button, self.save_button):
            row.addWidget(b)
        self.pair_list = QListWidget()
        self.pair_list.setSelectionMode(QListWidget.ExtendedSelection)
        self.status = QLabel("Press Annotate, then click a start and its end on the image.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.pair_list)

        self.annotate_button.toggled.connect(self._toggle)
        self.undo_button.clicked.connect(self.undo)
        self.delete_button.clicked.connect(self.delete_selected)
        self.save_button.clicked.connect(self._save_dialog)
        follow_layers(self, self.viewer, self._refresh_layers)
        # A deleted widget must not receive the viewer's clicks.
        callbacks, on_mouse = self.viewer.mouse_drag_callbacks, self._on_mouse
        self.destroyed.connect(lambda *_: on_mouse in callbacks and callbacks.remove(on_mouse))
        self._refresh_layers()
        self._update()

    # ----------------------------------------------------------------- layers

    def _image_layers(self) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]

    def _refresh_layers(self, *_):
        fill_channel_combos(self.start_combo, self.end_combo,
                            [layer.name for layer in self._image_layers()],
                            (self.start_name.text(), self.end_name.text()))
        for attr in ("vectors_layer", "pending_layer"):
            layer = getattr(self, attr)
            if layer is not None and layer not in self.viewer.layers:
                setattr(self, attr, None)

    def _layer(self, combo):
        for layer in self._image_layers():
            if layer.name == combo.currentText():
                return layer
        return None

    def reference_layer(self):
        """The image layer whose data coordinates the pairs are stored in (the start channel)."""
        return self._layer(self.start_combo)

    def names(self) -> tuple:
        s = self.start_name.text().strip() or DEFAULT_STRUCTURES[0]
        e = self.end_name.text().strip() or DEFAULT_STRUCTURES[1]
        return s.replace(" ", "_"), e.replace(" ", "_")

    # ----------------------------------------------------------------- clicks

    def _toggle(self, on: bool):
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_mouse not in callbacks:
            if self.reference_layer() is None:
                self.annotate_button.setChecked(False)
                self.status.setText("Open an image first: pairs are placed on an image layer.")
                return
            callbacks.append(self._on_mouse)
        elif not on and self._on_mouse in callbacks:
            callbacks.remove(self._on_mouse)
        self._update()

    def _on_mouse(self, viewer, event):
        """A press and release without a drag is a click; a drag still pans and rotates."""
        if getattr(event, "button", 1) not in (1, None):
            return
        position = tuple(event.position)
        dims_displayed = tuple(event.dims_displayed)
        view_direction = getattr(event, "view_direction", None)
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.click(position, dims_displayed=dims_displayed, view_direction=view_direction)

    def click(self, world_position, *, dims_displayed=None, view_direction=None) -> bool:
        """Use a click at ``world_position``: set the pending start, or finish the pair.

        Returns False when the click is outside the image.
        """
        role = "start" if self.pending is None else "end"
        layer = self.reference_layer()
        if layer is None:
            return False
        if dims_displayed is not None and len(dims_displayed) == 3 and view_direction is not None:
            point = self._ray_pick(role, world_position, view_direction, dims_displayed)
        else:
            point = np.asarray(layer.world_to_data(world_position), float)[-layer.ndim:]
        if point is None or not _inside(point, layer_array(layer).shape):
            self.status.setText("That click is outside the image.")
            return False
        self._remember()
        if role == "start":
            self.pending = point
        else:
            self.pairs.append({"pair_id": self.next_id, "start": self.pending, "end": point})
            self.next_id += 1
            self.pending = None
        self._update()
        return True

    def _ray_pick(self, role, world_position, view_direction, dims_displayed):
        """The brightest voxel of the role's channel along the viewing ray (3D view)."""
        layer = self._layer(self.start_combo if role == "start" else self.end_combo)
        ref = self.reference_layer()
        if layer is None:
            return None
        p0, p1 = layer.get_ray_intersections(world_position, view_direction, list(dims_displayed),
                                             world=True)
        if p0 is None or p1 is None:
            return None
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        n = int(np.ceil(np.linalg.norm(p1 - p0))) + 1
        samples = p0[None] + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0)[None]
        data = layer_array(layer)
        idx = np.clip(np.round(samples).astype(int), 0, np.asarray(data.shape) - 1)
        values = np.asarray([float(np.asarray(data[tuple(i)])) for i in idx])
        best = samples[int(np.argmax(values))]
        # From the channel layer's data coordinates to the reference layer's.
        return np.asarray(ref.world_to_data(layer.data_to_world(best)), float)

    # ----------------------------------------------------------------- editing

    def _remember(self):
        self._history.append(([dict(p) for p in self.pairs], self.pending, self.next_id))

    def undo(self):
        """Undo the last click or deletion."""
        if not self._history:
            self.status.setText("Nothing to undo.")
            return
        self.pairs, self.pending, self.next_id = self._history.pop()
        self._update()

    def delete_selected(self):
        """Delete the pairs selected in the list."""
        rows = sorted({self.pair_list.row(item) for item in self.pair_list.selectedItems()})
        if not rows:
            self.status.setText("Select pairs in the list to delete them.")
            return
        self._remember()
        self.pairs = [p for i, p in enumerate(self.pairs) if i not in rows]
        self._update()

    def table(self) -> VectorTable:
        """The pairs as a table in the reference layer's voxels."""
        layer = self.reference_layer()
        dims = layer.ndim if layer is not None else 3
        if not self.pairs:
            return VectorTable.empty(names=self.names(), ndim=dims)
        start = np.stack([p["start"] for p in self.pairs])
        end = np.stack([p["end"] for p in self.pairs])
        ids = np.asarray([p["pair_id"] for p in self.pairs], dtype=np.int64)
        return VectorTable(start, end, names=self.names(), ndim=dims, extra={"pair_id": ids})

    def voxel_size(self):
        layer = self.reference_layer()
        return None if layer is None else _layer_voxel_size(layer)

    def save(self, path):
        """Write the pairs to a CellPol CSV (atomically)."""
        write_vectors(path, self.table(), voxel_size=self.voxel_size())
        self.status.setText(f"Saved {len(self.pairs)} pairs to {path}.")

    def _save_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save pairs", "pairs.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            self.save(path)
        except (InputError, OSError) as exc:
            from napari.utils.notifications import show_error

            show_error(f"Cannot save the pairs: {exc}")

    # ----------------------------------------------------------------- display

    def _ensure_layers(self):
        layer = self.reference_layer()
        if layer is None:
            return False
        geometry = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
        dims = layer.ndim
        if self.vectors_layer is None:
            self.vectors_layer = self.viewer.add_vectors(
                np.zeros((0, 2, dims)), name="pairs", edge_color=VECTOR_COLOR, edge_width=1.5,
                vector_style="arrow", projection_mode="all",
                metadata={ROLE_KEY: "vectors"}, **geometry)
        if self.pending_layer is None:
            self.pending_layer = self.viewer.add_points(
                np.zeros((0, dims)), name="pending start", face_color=START_COLOR,
                border_color=END_COLOR, border_width=0.2, size=POINT_SIZE,
                metadata={ROLE_KEY: "pending"}, **geometry)
            # Keep the image layer selected, so that clicks do not edit our layers.
            self.viewer.layers.selection.active = layer
        return True

    def _update(self):
        table = self.table()
        vs = self.voxel_size()
        if self.pairs or self.pending is not None:
            self._ensure_layers()
        if self.vectors_layer is not None:
            dims = self.vectors_layer.ndim
            data = (np.stack([table.start[:, -dims:], (table.end - table.start)[:, -dims:]], 1)
                    if len(table) else np.zeros((0, 2, dims)))
            self.vectors_layer.data = data
            self.vectors_layer.features = table_features(table, vs)
            self.vectors_layer.metadata["cellpol"] = {"structures": list(table.names),
                                                      "voxel_size": None if vs is None else list(vs)}
        if self.pending_layer is not None:
            dims = self.pending_layer.ndim
            self.pending_layer.data = (self.pending[None, -dims:] if self.pending is not None
                                       else np.zeros((0, dims)))
        self.pair_list.clear()
        geo = vector_geometry(table.start, table.end, vs if vs is not None else (1, 1, 1))
        unit = "µm" if vs is not None else "px"
        for p, length, az in zip(self.pairs, geo["length_um"], geo["azimuth_deg"]):
            self.pair_list.addItem(f"#{p['pair_id']}: {length:.2f} {unit}, {az:.0f}°")
        s, e = self.names()
        if not self.annotate_button.isChecked():
            text = f"{len(self.pairs)} pairs. Press Annotate to add pairs."
        elif self.pending is None:
            text = f"{len(self.pairs)} pairs. Click a {s}."
        else:
            text = f"{len(self.pairs)} pairs. Click the {e} of this {s}."
        self.status.setText(text)


def _inside(point, shape) -> bool:
    p = np.asarray(point, float)
    s = np.asarray(shape, float)[-len(p):]
    return bool(np.all(p > -0.5) & np.all(p < s - 0.5))
