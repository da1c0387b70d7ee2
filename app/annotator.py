"""The main window: orthogonal slice views, pair annotation, a pairs table, projects.

It extends :class:`~cellpol_app.viewer.ViewerWindow` (opening images, drag and
drop, status bar, device label) with :class:`~cellpol_app.slices.OrthoViews`
in place of the single XY view, an undoable annotation layer autosaved to the
open project, and a sortable table of pairs.

Two helpers do the rest: :class:`~cellpol_app.job_controller.JobController`
runs the jobs (progress bar, Cancel, job actions locked while one runs) and
:class:`~cellpol_app.project_actions.ProjectActions` holds what the project
menus do (new/open project, predict, predict all, train, tune). The window
offers the docks and dialogs the :class:`~cellpol_app.host.WindowServices`
interface, and keeps ``predict``, ``train``, ``open_project``... as its
scripting API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMenu,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cellpol_core.defaults import BORDER_UM
from cellpol_core.errors import InputError

from . import safekeeping
from .annotations import AnnotationModel
from .commands import SwapEnds, accept_predictions
from .dialogs import ChannelChoice, ChannelDialog, evaluation_summary
from .docks import arrange_docks, raise_dock, scrollable, side_width
from .job_controller import JobController
from .project import DEFAULT_COLORS
from .project_actions import BUNDLED_MODEL, ProjectActions
from .slices import LayerPanel, OrthoViews
from .viewer import CSV_FILTER, LoadedImage, ViewerWindow, load_channels

__all__ = ["PairsTableModel", "AnnotatorWindow", "apply_channel_choice"]

#: Smallest width and height of the XY slice view, pixels.
MIN_XY_PX = 300
#: Version of the saved dock layout (bump when the docks change).
LAYOUT_VERSION = 2


def apply_channel_choice(loaded: LoadedImage, choice: ChannelChoice) -> LoadedImage:
    """``loaded`` showing the chosen (start, end) channels with the chosen voxel size."""
    import dataclasses

    image = loaded.image
    vs = None if choice.voxel_size is None else tuple(float(v) for v in choice.voxel_size)
    if vs != (None if image.voxel_size is None else tuple(float(v) for v in image.voxel_size)):
        image = dataclasses.replace(image, voxel_size=vs)
    channels = tuple(int(c) for c in choice.channels)
    if image.n_channels < 2 or channels == tuple(loaded.channels) or \
            max(channels) >= image.n_channels or channels[0] == channels[1]:
        return dataclasses.replace(loaded, image=image)
    return load_channels(image, channels)


class PairsTableModel(QAbstractTableModel):
    """Rows of an :class:`AnnotationModel`: id, start and end (x, y, z), length in µm."""

    HEADERS = ("#", "start x", "start y", "start z", "end x", "end y", "end z", "length µm")

    def __init__(self, model: AnnotationModel, parent=None):
        super().__init__(parent)
        self.model = model
        model.add_listener(self.refresh)

    def refresh(self):
        self.beginResetModel()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.model)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def value(self, row: int, column: int) -> float:
        pair = list(self.model)[row]
        if column == 0:
            return pair.id
        if column == 7:
            vs = self.model.voxel_size or (1.0, 1.0, 1.0)
            return float(np.linalg.norm((pair.end - pair.start) * np.asarray(vs)))
        point = pair.start if column <= 3 else pair.end
        return float(point[(2, 1, 0)[(column - 1) % 3]])

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.UserRole:
            return self.value(index.row(), index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            v = self.value(index.row(), index.column())
            return str(v) if index.column() == 0 else f"{v:.2f}" if index.column() == 7 \
                else f"{v:.1f}"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def pair_id(self, row: int) -> int:
        return list(self.model)[row].id

    def row_of(self, pair_id: int) -> int:
        return self.model.index_of(pair_id)


class AnnotatorWindow(ViewerWindow):
    """CellPol main window (see the module docstring).

    Keyboard: A annotation mode, S snap, Del delete the selected pair, R re-pair
    the two pairs selected in the table, Esc drop a half-placed pair,
    Ctrl+Z / Ctrl+Shift+Z undo / redo, F fit, M projection, V vectors.
    """

    def __init__(self, *, detect_device: bool = True, ask_channels: bool = False,
                 settings=None, parent=None):
        #: QSettings for File → Open Recent (None: the list lives in memory only).
        self.settings = settings
        #: Show the channel dialog for images new to the window's project (not in scripts).
        self.ask_channels = bool(ask_channels)
        self.channel_colors = DEFAULT_COLORS
        self.channel_dialog = None
        self.project = None
        self.project_entry = None
        self.annotations = AnnotationModel()
        self.undo_stack = QUndoStack()  # parented below, once the QMainWindow exists
        super().__init__(detect_device=detect_device, parent=parent)
        self.undo_stack.setParent(self)  # deleted with the window, not by the GC at exit
        self.ortho.set_model(self.annotations, self.undo_stack)
        self.pairs_model = PairsTableModel(self.annotations, self)
        self.pairs_proxy = QSortFilterProxyModel(self)
        self.pairs_proxy.setSourceModel(self.pairs_model)
        self.pairs_proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.pairs_table.setModel(self.pairs_proxy)
        self.pairs_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.pairs_table.clicked.connect(self._row_clicked)
        self.annotations.add_listener(self._annotations_changed)
        self.save_watcher = safekeeping.SaveWatcher(self, self.annotations)  # failed autosaves
        self.ortho.cursor_changed.connect(self._cursor_changed)
        self.ortho.hovered.connect(self._hovered)
        self.ortho.selection_changed.connect(self._selection_changed)
        self.project_actions = ProjectActions(self)
        self._build_annotation_ui()
        self._build_jobs_ui()
        self._build_3d()
        self._build_recent()
        from .analysis_panel import install_analysis_panel
        self.analysis_panel = install_analysis_panel(self)  # View → Analysis, Jobs → statistics
        from .synthetic_panel import install_synthetic_panel
        self.synthetic_panel = install_synthetic_panel(self)  # View/Jobs → Synthetic data
        from .contrast import install_contrast_panel
        self.contrast_panel = install_contrast_panel(self)  # per-channel contrast, saved
        self.ortho.annotate_requested.connect(self.set_annotate)  # the views' context menu
        self.ortho.export_requested.connect(self.export_views_dialog)
        # The bar's Vectors box and the layer panel's are one setting.
        self.layer_panel.boxes["vectors"].toggled.connect(self.vectors_box.setChecked)
        self.vectors_box.toggled.connect(self.layer_panel.boxes["vectors"].setChecked)
        from .help import install_help
        install_help(self)  # Help → quick start, shortcuts, README; tooltips
        self._build_layout()
        self._annotations_changed()

    # ------------------------------------------------------------------ building
    def _build_view(self):
        self.ortho = OrthoViews()
        xy = self.ortho.views["xy"]
        # Names the base class uses for the XY view.
        self.view_box, self.image_item = xy.view_box, xy.image_item
        self.pairs_table = QTableView()
        self.pairs_table.setSortingEnabled(True)
        self.pairs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.pairs_table.verticalHeader().setVisible(False)
        self.pairs_table.verticalHeader().setDefaultSectionSize(
            self.pairs_table.fontMetrics().height() + 6)
        self.pairs_title = QLabel("Pairs")
        # A longer title must not resize the views: it is clipped (full text in the tooltip).
        self.pairs_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.pairs_title.setMinimumWidth(1)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        self.layer_panel = LayerPanel(self.ortho)
        side_layout.addWidget(self.layer_panel)
        side_layout.addWidget(self.pairs_title)
        side_layout.addWidget(self.pairs_table, 1)
        # The XY view never gets too small to annotate in (docks go to the side instead).
        xy.setMinimumSize(MIN_XY_PX, MIN_XY_PX)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.ortho)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([900, 280])
        self.graphics = self.splitter  # what the base layout puts in the middle

    def _build_annotation_ui(self):
        self.annotate_box = QCheckBox("Annotate (A)")
        self.annotate_box.setToolTip("Click the start structure, then the end structure")
        self.annotate_box.toggled.connect(self.set_annotate)
        self.snap_box = QCheckBox("Snap (S)")
        self.snap_box.setToolTip(f"Clicks go to the brightest voxel within "
                                 f"{self.ortho.snap_radius_um:g} µm, in 3D")
        self.snap_box.toggled.connect(self.set_snap)
        bar = self.centralWidget().layout().itemAt(1).layout()
        bar.addSpacing(12)
        bar.addWidget(self.annotate_box)
        bar.addWidget(self.snap_box)

        menu = QMenu("&Annotate", self)
        self.menuBar().insertMenu(self.menuBar().actions()[1], menu)
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        menu.addAction(self.undo_action)
        menu.addAction(self.redo_action)
        menu.addSeparator()
        specs = [("annotate_action", "&Annotation mode", "A",
                  lambda: self.annotate_box.toggle()),
                 ("snap_action", "&Snap to maximum", "S", lambda: self.snap_box.toggle()),
                 ("delete_action", "&Delete pair", QKeySequence.StandardKey.Delete,
                  self.delete_selected),
                 ("repair_action", "&Re-pair two selected pairs", "R", self.repair_selected),
                 ("cancel_action", "&Cancel half-placed pair", "Esc", self.ortho.cancel_pending),
                 ("accept_action", "Accept &predictions…", "Ctrl+Shift+A",
                  self.accept_predictions_dialog)]
        for attr, text, key, slot in specs:
            action = QAction(text, self)
            action.setShortcut(key)
            action.triggered.connect(slot)
            menu.addAction(action)
            setattr(self, attr, action)
        for action in (self.undo_action, self.redo_action):
            self.addAction(action)

        file_menu = self.menuBar().actions()[0].menu()
        first = file_menu.actions()[2]  # before the separator ahead of Quit
        for text, slot in (("&New project…", self.project_actions.new_project_dialog),
                           ("Open &project…", self.project_actions.open_project_dialog),
                           ("&Import annotations CSV…", self.import_annotations_dialog),
                           ("&Export annotations CSV…", self.export_annotations_dialog),
                           ("Export &views as PNG…", self.export_views_dialog),
                           ("Export &3D view as PNG…", self.export_3d_dialog)):
            action = QAction(text, self)
            action.triggered.connect(slot)
            file_menu.insertAction(first, action)

    def _build_jobs_ui(self):
        self.job_controller = JobController(self)
        self.jobs = self.job_controller.runner  # its signals report every job
        self.job_bar = self.job_controller.bar
        self.job_cancel = self.job_controller.cancel_button
        actions = self.project_actions
        menu = QMenu("&Jobs", self)
        self.menuBar().insertMenu(self.menuBar().actions()[3], menu)
        self.predict_otsu_action = QAction("Predict with &Otsu (classical)", self)
        self.predict_otsu_action.triggered.connect(lambda: self.predict())
        self.predict_model_action = QAction("Predict with a &model folder…", self)
        self.predict_model_action.triggered.connect(actions.predict_model_dialog)
        self.train_action = QAction("&Train / fine-tune…", self)
        self.train_action.triggered.connect(actions.train_dialog)
        self.predict_demo_action = QAction("Predict with the &bundled model for this image", self)
        self.predict_demo_action.triggered.connect(lambda: self.predict(model=BUNDLED_MODEL))
        menu.addAction(self.predict_otsu_action)
        menu.addAction(self.predict_demo_action)
        menu.addAction(self.predict_model_action)
        self.predict_all_action = QAction("Predict &all project images…", self)
        self.predict_all_action.triggered.connect(actions.predict_all_dialog)
        menu.addAction(self.predict_all_action)
        menu.addSeparator()
        menu.addAction(self.train_action)
        self.tune_action = QAction("T&une thresholds of a model folder…", self)
        self.tune_action.triggered.connect(actions.tune_dialog)
        menu.addAction(self.tune_action)
        menu.addSeparator()
        self.evaluate_action = QAction("&Evaluate predictions against annotations", self)
        self.evaluate_action.setShortcut("Ctrl+E")
        self.evaluate_action.triggered.connect(lambda: self.evaluate())
        menu.addAction(self.evaluate_action)
        self.job_controller.lock_while_running(
            self.predict_otsu_action, self.predict_model_action, self.predict_all_action,
            self.train_action, self.tune_action)
        self._build_loss_plot()
        self._build_metrics()

    def _build_3d(self):
        from PySide6.QtWidgets import QDockWidget

        from .view3d import View3D

        self.view3d = View3D()
        self.view3d_dock = QDockWidget("3D view", self)
        self.view3d_dock.setObjectName("view3d")
        self.view3d_dock.setWidget(self.view3d)
        # Floating moves the OpenGL view to a new top-level window, whose new GL context the
        # vispy scene does not survive (GL_INVALID_VALUE, a black view): it stays docked.
        self.view3d_dock.setFeatures(self.view3d_dock.features()
                                     & ~QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.view3d_dock)
        self.resizeDocks([self.view3d_dock], [420], Qt.Orientation.Horizontal)
        view_menu = self.menuBar().actions()[2].menu()
        toggle = self.view3d_dock.toggleViewAction()
        toggle.setText("&3D view")
        toggle.setShortcut("Ctrl+3")
        view_menu.addAction(toggle)
        # The layer panel drives the 3D view too.
        panel = self.layer_panel
        for key, index in (("start", 0), ("end", 1)):
            panel.boxes[key].toggled.connect(
                lambda on, i=index: self.view3d.set_channel(i, visible=on))
        for layer in ("pairs", "vectors"):
            panel.boxes[layer].toggled.connect(
                lambda on, name=layer: self.view3d.set_layer(name, visible=on))
        panel.score_slider.valueChanged.connect(lambda v: self.view3d.set_min_score(v / 100))
        self.ortho.color_by_changed.connect(self.view3d.set_color_by)  # one arrow colouring
        self.view3d.color_by_changed.connect(self.ortho.set_color_by)
        self.annotations.add_listener(self._pairs_to_3d)

    def _build_recent(self):
        from .recent import RecentFiles

        file_menu = self.menuBar().actions()[0].menu()
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.insertMenu(self.open_vectors_action, self.recent_menu)
        self.recent = RecentFiles(self.recent_menu, self.load_image, settings=self.settings,
                                  parent=self)
        self.recent_menu.aboutToShow.connect(self.recent.paths)  # prunes deleted files
        self.image_loaded.connect(lambda path: self.recent.add(path) if path else None)

    def _pairs_to_3d(self):
        pairs = list(self.annotations)
        self.view3d.set_pairs([p.start for p in pairs], [p.end for p in pairs])

    def _build_metrics(self):
        from PySide6.QtWidgets import QDockWidget

        from .dialogs import MetricsPanel

        self.metrics_panel = MetricsPanel()
        self.metrics_dock = QDockWidget("Evaluation", self)
        self.metrics_dock.setObjectName("evaluation")
        self.metrics_dock.setWidget(scrollable(self.metrics_panel))
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.metrics_dock)
        self.metrics_dock.setVisible(False)
        self.metrics_panel.evaluate_button.clicked.connect(lambda: self.evaluate())
        self.evaluation = None
        self.tune_report = None

    def evaluate(self, *, border_um: float = BORDER_UM, levels: str = "nucleus-golgi",
                 region=None, margin_um: float = None):
        """Evaluate the shown predictions against the annotations of the current image.

        Shows TPR and FDR vs level and the metrics table in the Evaluation dock,
        with a line saying what was assumed.

        Parameters
        ----------
        border_um : float
            Vectors with an endpoint this close to the x/y edge are left out.
        levels : str
            Threshold preset.
        region : {"annotated", "image"}, optional
            ``"annotated"``: only inside the annotations' bounding box grown by
            ``margin_um`` (for partial annotations); ``"image"``: the
            annotations are taken as complete. By default the Evaluation
            dock's choice.
        margin_um : float, optional
            By default the dock's margin.

        Returns
        -------
        EvalResult or None
            None (with a message) when there are no annotations or predictions.
        """
        from cellpol_core.detection.evaluate import annotated_region, evaluate_vectors

        if self.loaded is None:
            self.statusBar().showMessage("Open an image first", 4000)
            return None
        if self.vectors is None or len(self.annotations) == 0:
            self.show_error("Evaluate needs annotations (ground truth) and predictions "
                            "(run Jobs → Predict or open a vectors CSV) for this image")
            return None
        panel = self.metrics_panel
        region = panel.region_mode() if region is None else region
        margin_um = panel.margin_spin.value() if margin_um is None else float(margin_um)
        if region not in ("annotated", "image"):
            raise ValueError(f"region must be 'annotated' or 'image', got {region!r}")
        gt = self.annotations.to_table()
        shape = self.ortho.shape if self.is_3d else self.ortho.shape[1:]
        box = annotated_region(gt, margin_um=margin_um, voxel_size=self.voxel_size,
                               shape=shape) if region == "annotated" else None
        result = evaluate_vectors(gt, self.vectors, voxel_size=self.voxel_size, shape=shape,
                                  border_um=border_um, levels=levels, region=box)
        self.evaluation = result
        name = self.image_path.name if self.image_path else "image"
        summary = evaluation_summary(result, border_um=border_um, margin_um=margin_um)
        panel.set_result(result, title=f"<b>{name}</b>: {summary}")
        self.metrics_dock.setWindowTitle("Evaluation")
        raise_dock(self.metrics_dock)
        return result

    def show_tune_report(self, report):
        """Show a :func:`cellpol_core.detection.tune.tune` report in the Evaluation dock."""
        from .dialogs import tune_report_html

        self.tune_report = report
        self.metrics_panel.set_rows(report["table"], title=tune_report_html(report))
        self.metrics_panel.set_tuning(True)
        self.metrics_dock.setWindowTitle("Tuning report")
        raise_dock(self.metrics_dock)
        self.show_message(f"Tuned: F1 {report['f1_before']:.3f} → {report['f1_after']:.3f}")

    def _build_loss_plot(self):
        import pyqtgraph as pg
        from PySide6.QtWidgets import QDockWidget

        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(4, 4, 4, 4)
        #: What the training is doing (epoch, loss, ETA), in words; wraps in a narrow dock.
        self.training_status = QLabel("No training yet: Jobs → Train / fine-tune…")
        self.training_status.setWordWrap(True)
        layout.addWidget(self.training_status)
        self.loss_plot = pg.PlotWidget(background="#101010")
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.addLegend(offset=(-10, 10))
        self.train_curve = self.loss_plot.plot([], [], pen=pg.mkPen(80, 200, 255, width=2),
                                               symbol="o", symbolSize=5, name="train")
        self.val_curve = self.loss_plot.plot([], [], pen=pg.mkPen(255, 170, 40, width=2),
                                             symbol="o", symbolSize=5, name="validation")
        # Shown instead of an empty 0–1 axis until the first epoch has ended.
        self.loss_waiting = QLabel("Waiting for the first epoch…")
        self.loss_waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.loss_waiting.setStyleSheet("background: #101010; color: #b0b0b0;")
        self.loss_waiting.setVisible(False)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.loss_waiting, 1)
        self.loss_dock = QDockWidget("Training", self)
        self.loss_dock.setObjectName("training")
        self.loss_dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.loss_dock)
        self.loss_dock.setVisible(False)
        self.loss_history = {"epoch": [], "train": [], "val": []}

    def _build_layout(self):
        """Docks in their default places, then the user's saved layout (View → Reset layout)."""
        from PySide6.QtWidgets import QTabWidget

        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        layer_tips = {"start": "Show or hide the start channel", "end": "Show or hide the end "
                      "channel", "pairs": "Show or hide your annotated pairs (white arrows)",
                      "vectors": "Show or hide the predicted vectors (blue arrows)"}
        for key, box in self.layer_panel.boxes.items():
            if not box.toolTip() and key in layer_tips:
                box.setToolTip(layer_tips[key])
        if not self.vectors_box.toolTip():
            self.vectors_box.setToolTip("Show or hide the predicted (or loaded) vectors (V)")
        # Long texts are clipped rather than widening the window past a laptop screen.
        self.position_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                          QSizePolicy.Policy.Preferred)
        self.position_label.setMinimumWidth(40)
        self.legend.setMinimumWidth(40)  # its full width when there is room, clipped when not
        self.device_label.setMaximumWidth(300)
        self.device_label.setToolTip("Where the models run (predict, train)")
        arrange_docks(self)
        self._layout_restored = self._side_sized = False
        self.reset_layout_action = QAction("&Reset layout", self)
        self.reset_layout_action.setStatusTip("Put the panels back where they were at first")
        self.reset_layout_action.triggered.connect(self.reset_layout)
        view_menu = self.menuBar().actions()[2].menu()
        for dock, text in ((self.loss_dock, "&Training"), (self.metrics_dock, "&Evaluation")):
            toggle = dock.toggleViewAction()
            toggle.setText(text)
            toggle.setStatusTip(f"Show or hide the {dock.windowTitle()} panel")
            view_menu.addAction(toggle)
        view_menu.addSeparator()
        view_menu.addAction(self.reset_layout_action)
        if self.settings is not None:
            state = self.settings.value("windowState")
            if state is not None:  # False (ignored) for an older layout version
                self._layout_restored = bool(self.restoreState(state, LAYOUT_VERSION))
            last = self.settings.value("lastDir")
            if last and Path(str(last)).is_dir():
                ViewerWindow.remember_dir(self, str(last))

    def showEvent(self, event):
        super().showEvent(event)
        if self._side_sized:
            return
        self._side_sized = True
        if not self._layout_restored:  # the side column's width once the window has its size
            self.resizeDocks([self.view3d_dock], [side_width(self.width())],
                             Qt.Orientation.Horizontal)

    def reset_layout(self):
        """The docks back in their default places (job docks hidden)."""
        from .docks import TABBED_DOCKS

        arrange_docks(self)
        for name in TABBED_DOCKS:
            getattr(self, name).setVisible(False)
        self.view3d_dock.setVisible(self.is_3d)
        self.contrast_dock.setVisible(True)
        self.resizeDocks([self.view3d_dock], [side_width(self.width())],
                         Qt.Orientation.Horizontal)

    def save_layout(self):
        """Keep the dock layout and the window's geometry in the settings."""
        if self.settings is not None:
            self.settings.setValue("windowState", self.saveState(LAYOUT_VERSION))
            self.settings.setValue("windowGeometry", self.saveGeometry())
            self.settings.sync()

    # ------------------------------------------------------------------ jobs (cellpol_app.host)
    def start_job(self, name, factory, *args, **kwargs) -> bool:
        """Run a job with its own handlers (:meth:`cellpol_app.jobs.JobRunner.start`).

        Progress, Cancel, failures and cancellation are shown by the window.
        Returns False (and starts nothing) when a job is already running.
        """
        return self.job_controller.start(name, factory, *args, **kwargs)

    def cancel_job(self):
        self.job_controller.cancel()

    @property
    def job_running(self) -> bool:
        return self.job_controller.running

    @property
    def job_name(self) -> str:
        return self.job_controller.name

    @property
    def job_busy_changed(self):
        """Signal(bool): a job started (True) or has ended (False)."""
        return self.job_controller.busy_changed

    # The scripting API of the project actions (see cellpol_app.project_actions).
    def set_project(self, project):
        self.project_actions.set_project(project)
        self.update_title()

    def open_project(self, folder) -> bool:
        return self.project_actions.open_project(folder)

    def new_project(self, folder) -> bool:
        return self.project_actions.new_project(folder)

    def training_data(self):
        return self.project_actions.training_data()

    def predict(self, *, model=None) -> bool:
        return self.project_actions.predict(model=model)

    def predict_all(self, *, model=None) -> bool:
        return self.project_actions.predict_all(model=model)

    def train(self, **options) -> bool:
        return self.project_actions.train(**options)

    def make_train_dialog(self):
        return self.project_actions.make_train_dialog()

    def tune(self, model, **options) -> bool:
        return self.project_actions.tune(model, **options)

    def closeEvent(self, event):
        # A running job or unsaved pairs: asked without blocking; answering closes again.
        if not (self.job_controller.confirm_close() and self.save_watcher.confirm_quit()):
            event.ignore()
            return
        self.save_layout()
        super().closeEvent(event)

    def remember_dir(self, path):
        """Start the next file dialogs in ``path``, unless it is inside the app's own files.

        The bundled demo lives in the app's resources: a project or an image
        of the user's must not be suggested there. Kept in the settings.
        """
        from cellpol_core.io.resources import resources_dir

        path = Path(path)
        try:
            if path.resolve().is_relative_to(resources_dir().resolve()):
                return
        except OSError:
            pass
        super().remember_dir(path)
        if self.settings is not None:
            self.settings.setValue("lastDir", str(path))

    def update_title(self):
        """``image — project``; the system adds the application's name once."""
        parts = []
        if self.image_path is not None:
            parts.append(self.image_path.name)
        if self.project is not None:
            parts.append(f"project {self.project.root.name}")
        self.setWindowTitle(" — ".join(parts) or "CellPol")

    # ------------------------------------------------------------------ modes
    def set_annotate(self, on: bool):
        self.ortho.annotate = bool(on)
        if not on:
            self.ortho.cancel_pending()
        if self.annotate_box.isChecked() != bool(on):
            self.annotate_box.setChecked(bool(on))
        self._annotations_changed()

    def set_snap(self, on: bool):
        self.ortho.snap = bool(on)
        if self.snap_box.isChecked() != bool(on):
            self.snap_box.setChecked(bool(on))

    def delete_selected(self):
        self.ortho.delete_selected()

    def selected_rows_ids(self) -> list:
        rows = self.pairs_table.selectionModel().selectedRows() \
            if self.pairs_table.selectionModel() else []
        return [self.pairs_model.pair_id(self.pairs_proxy.mapToSource(r).row()) for r in rows]

    def repair_selected(self) -> bool:
        """Swap the ends of the two pairs selected in the table."""
        ids = self.selected_rows_ids()
        if len(ids) != 2:
            self.statusBar().showMessage("Re-pair: select two pairs in the table "
                                         "(Ctrl+click)", 4000)
            return False
        self.undo_stack.push(SwapEnds(self.annotations, *ids))
        return True

    def accept_predictions(self, *, min_score=None) -> int:
        """Copy the shown vectors (with score >= ``min_score``) into the annotations.

        One undo step. Returns the number of pairs added.
        """
        if self.vectors is None:
            return 0
        command = accept_predictions(self.annotations, self.vectors, min_score=min_score)
        if command is None:
            return 0
        self.undo_stack.push(command)
        return len(command.ids)

    def accept_predictions_dialog(self):
        if self.vectors is None or len(self.vectors) == 0:
            self.statusBar().showMessage("No predictions shown: open a vectors CSV first", 4000)
            return
        min_score = None
        if self.vectors.score is not None:
            min_score, ok = QInputDialog.getDouble(
                self, "Accept predictions", "Accept vectors with a score of at least:",
                0.5, 0.0, 1.0, 2)
            if not ok:
                return
        n = self.accept_predictions(min_score=min_score)
        self.statusBar().showMessage(f"Accepted {n} predictions into the annotations", 4000)

    # ------------------------------------------------------------------ image
    def ask_channel_choice(self, loaded) -> "ChannelChoice | None":
        """Show the channel dialog for ``loaded``; None when cancelled."""
        dialog = ChannelDialog(loaded.image, channels=loaded.channels
                               if len(loaded.channels) == 2 else None, parent=self)
        self.channel_dialog = dialog
        try:
            accepted = dialog.exec() == ChannelDialog.DialogCode.Accepted
            return dialog.choice() if accepted else None
        finally:
            self.channel_dialog = None
            dialog.deleteLater()

    def set_loaded(self, loaded, *, path=None, choice=None):
        """Show a prepared image with its annotations and predictions.

        Parameters
        ----------
        loaded : LoadedImage
        path : Path, optional
        choice : ChannelChoice, optional
            Channels, colours and voxel size. By default those of the project's
            entry for ``path``; for an image new to the project, the channel
            dialog's when :attr:`ask_channels` is set (cancelling keeps the
            current image), else the file's.

        Pairs that are in no file (or whose autosave failed) are not replaced
        without asking.
        """
        if (path is None or Path(path) != self.image_path) and \
                not safekeeping.confirm_discard(self, "Open the image"):
            return
        entry = None
        if self.project is not None and path is not None:
            entry = self.project.find_image(path)
        if choice is None and entry is not None:
            choice = ChannelChoice(entry.channels, entry.colors,
                                   entry.voxel_size if entry.voxel_size is not None
                                   else loaded.image.voxel_size)
        elif choice is None and self.ask_channels:
            choice = self.ask_channel_choice(loaded)
            if choice is None:
                return
        if choice is not None:
            loaded = apply_channel_choice(loaded, choice)
        self.channel_colors = tuple(choice.colors) if choice is not None else DEFAULT_COLORS
        if self.ortho.colors is not None or self.channel_colors != DEFAULT_COLORS:
            self.ortho.set_colors(self.channel_colors)
        self.ortho.set_volume(loaded.planes, loaded.limits, voxel_size=loaded.image.voxel_size,
                              mip=loaded.mip, mip_limits=loaded.mip_limits)
        super().set_loaded(loaded, path=path)
        self.view3d.set_volume(loaded.planes, loaded.limits, voxel_size=self.voxel_size,
                               colors=self.channel_colors)
        self.view3d_dock.setVisible(self.is_3d)
        self.undo_stack.clear()
        names = list(loaded.image.channel_names)
        label = [names[c] if c < len(names) else f"C{c}" for c in loaded.channels]
        self.layer_panel.set_channel_names(label[0], label[-1])
        self.layer_panel.boxes["end"].setEnabled(len(loaded.channels) == 2)
        self.layer_panel.sliders["end"].setEnabled(len(loaded.channels) == 2)
        vs = self.voxel_size
        table = None
        autosave = None
        if self.project is not None and self.image_path is not None:
            try:
                self.project_entry = self.project.find_image(self.image_path) or \
                    self.project.add_image(self.image_path, channels=self._channel_pair(),
                                           colors=self.channel_colors, voxel_size=vs)
                autosave = self.project.annotations_path(self.project_entry)
                if self.project_entry.annotations is None:  # where autosave will write
                    self.project_entry.annotations = self.project.relative(autosave)
                    self.project.save()
                table = self.project.load_annotations(self.project_entry)
                self._show_prediction()
            except (InputError, OSError) as exc:
                self.show_error(str(exc))
        elif self.image_path is not None:  # no project: a scratch copy keeps the pairs
            table, autosave = safekeeping.scratch_annotations(self, self.image_path)
        self.annotations.voxel_size = vs
        self.annotations.ndim = 3 if self.is_3d else 2
        for column in (3, 6):  # start z, end z: none in 2D
            self.pairs_table.setColumnHidden(column, not self.is_3d)
        self.annotations.autosave_path = None
        self.annotations.replace_all(table)
        self.annotations.autosave_path = autosave
        self._annotations_changed()
        from .contrast import show_image_contrast
        show_image_contrast(self, loaded, entry)  # the entry's saved contrast, if any
        self.update_title()

    def _legend_html(self) -> str:
        # The base legend with the chosen colours in place of green and red.
        from PySide6.QtGui import QColor

        from .viewer import END_RGB, START_RGB

        html = super()._legend_html()
        for default, color in zip((START_RGB, END_RGB), self.channel_colors):
            r, g, b = QColor(color).getRgb()[:3]
            html = html.replace("rgb({},{},{})".format(*default), f"rgb({r},{g},{b})")
        return html

    def _channel_pair(self):
        ch = self.loaded.channels
        return ch if len(ch) == 2 else (0, 1)

    def _show_prediction(self):
        entry = self.project_entry
        if entry is None or not entry.predictions:
            return
        path = self.project.resolve(entry.predictions[-1])
        if path.is_file():
            self.load_vectors(path)

    def set_vectors(self, table, *, path=None):
        super().set_vectors(table, path=path)
        if not self.vectors_box.toolTip():
            self.vectors_box.setToolTip("Show or hide the predicted (or loaded) vectors (V)")
        self.ortho.set_vectors(table)
        if hasattr(self, "view3d"):
            self.view3d.set_vectors(table)
        # New predictions change what the analysis dock summarises.
        panel = getattr(self, "analysis_panel", None)
        if panel is not None and self.analysis_dock.isVisible():
            panel.refresh()

    def set_slice(self, z: int):
        super().set_slice(z)
        if self.loaded is not None and self.ortho.cursor[0] != self._z:
            c = self.ortho.cursor.copy()
            c[0] = self._z
            self.ortho.set_cursor(c)

    def set_mip(self, on: bool):
        super().set_mip(on)
        self.ortho.set_mip(self._mip)
        self.displayed_rgb = self.ortho.views["xy"].rgb

    def fit_view(self):
        self.ortho.fit()

    def _render(self):
        if self.loaded is None:
            return
        self.ortho.set_mip(self._mip)
        self.displayed_rgb = self.ortho.views["xy"].rgb

    def _update_overlay(self):
        if hasattr(self, "ortho"):
            self.ortho.show_vectors = self.vectors_box.isChecked()
            self.ortho.update_overlays()

    def _cursor_changed(self, cursor):
        if cursor[0] != self._z:
            ViewerWindow.set_slice(self, cursor[0])
        self.displayed_rgb = self.ortho.views["xy"].rgb

    def _hovered(self, point, name):
        self.position_label.setText(self.point_text(point))

    def point_text(self, point) -> str:
        """Status text for a 3D point (z, y, x) in voxels."""
        if self.loaded is None:
            return ""
        shape = self.ortho.shape
        idx = np.floor(np.asarray(point, float) + 0.5).astype(int)
        if not all(0 <= i < n for i, n in zip(idx, shape)):
            return self._describe_image()
        z, y, x = (int(i) for i in idx)
        parts = [f"x {x}  y {y}  z {z} (voxels)" if self.is_3d else f"x {x}  y {y} (pixels)"]
        vs = self.voxel_size
        if vs:
            um = f"{x * vs[2]:.2f}, {y * vs[1]:.2f}" + (f", {z * vs[0]:.2f}" if self.is_3d else "")
            parts.append(f"{um} µm")
        else:
            parts.append("no calibration (µm unknown)")
        names = list(self.loaded.image.channel_names)
        for k, c in enumerate(self.loaded.channels):
            label = names[c] if c < len(names) else f"C{c}"
            value = self.loaded.planes[k, z, y, x]
            text = f"{value:.4g}" if np.issubdtype(self.loaded.planes.dtype, np.floating) \
                else str(int(value))
            parts.append(f"{label} {text}")
        return "   ·   ".join(parts)

    def eventFilter(self, obj, event):
        return QWidget.eventFilter(self, obj, event)

    # ------------------------------------------------------------------ table
    def _annotations_changed(self):
        n = len(self.annotations)
        where, tip = "", ""
        if self.annotations.autosave_path is not None:
            where, tip = " · autosaved", f"Saved to {self.annotations.autosave_path}"
            if self.annotations.save_error is not None:
                where, tip = " · NOT saved", self.annotations.save_error
            elif self.project is None:
                where = " · kept (no project)"
                tip += " (File → New project keeps them with the image)"
        elif self.loaded is not None:
            where, tip = " · not saved", "Not saved: File → New project or Open project"
        mode = " · annotating" if self.ortho.annotate else ""
        self.pairs_title.setText(f"Pairs: {n}{where}{mode}")
        self.pairs_title.setToolTip(tip)

    def _row_clicked(self, proxy_index):
        row = self.pairs_proxy.mapToSource(proxy_index).row()
        pair_id = self.pairs_model.pair_id(row)
        pair = self.annotations.get(pair_id)
        self.ortho.select(pair_id)
        self.ortho.centre_on((pair.start + pair.end) / 2)

    def _selection_changed(self, pair_id):
        if pair_id is None or pair_id not in self.annotations.ids:
            return
        source = self.pairs_model.index(self.pairs_model.row_of(pair_id), 0)
        index = self.pairs_proxy.mapFromSource(source)
        if index.isValid():
            self.pairs_table.scrollTo(index)

    # ------------------------------------------------------------------ files
    def import_annotations(self, path, *, mode=None) -> bool:
        """Import the pairs of a CellPol or VAT CSV, as one undoable (autosaved) step.

        Parameters
        ----------
        path : path
        mode : {"replace", "merge"}, optional
            Replace the pairs, or add the imported ones (leaving out those
            already there). By default asked when there are pairs already.

        Returns
        -------
        bool
            False when the file cannot be read or the user cancelled.
        """
        from cellpol_core.io.vectors import read_vectors

        from .annotations import pairs_of
        from .commands import AddPairs, ReplacePairs

        try:
            table = read_vectors(path)
        except InputError as exc:
            self.show_error(str(exc))
            return False
        name = Path(path).name
        if mode is None and len(self.annotations):
            choices = ["Replace", "Merge", "Cancel"]
            answer = safekeeping.ask_choice(
                self, "Import annotations",
                f"There are {len(self.annotations)} pairs already; {name} has {len(table)}."
                f"\n\nReplace them, or merge (add the new pairs)? Either can be undone.",
                choices, default=1, escape=2)
            mode = {"Replace": "replace", "Merge": "merge"}.get(answer)
            if mode is None:
                return False
        if mode in (None, "replace"):
            self.undo_stack.push(ReplacePairs(self.annotations, pairs_of(table),
                                              names=table.names, text=f"Import {name}"))
            return True
        if mode != "merge":
            raise ValueError(f"mode must be 'replace' or 'merge', got {mode!r}")
        have = {(tuple(p.start), tuple(p.end)) for p in self.annotations}
        new = [p for p in pairs_of(table) if (tuple(p.start), tuple(p.end)) not in have]
        if new:
            self.undo_stack.push(AddPairs(self.annotations, [p.start for p in new],
                                          [p.end for p in new], text=f"Merge {name}"))
        self.show_message(f"Merged {len(new)} pairs from {name}"
                          + (f" ({len(table) - len(new)} already there)" if len(new) < len(table)
                             else ""))
        return True

    def export_annotations(self, path) -> bool:
        try:
            self.annotations.save(path)
        except OSError as exc:
            self.show_error(f"{path}: cannot write ({exc.strerror})")
            return False
        return True

    def export_views(self, path) -> bool:
        """Save the slice views (as on screen) to a PNG."""
        if not self.ortho.grab().save(str(path)):
            self.show_error(f"{path}: cannot write the PNG")
            return False
        return True

    def export_3d(self, path) -> bool:
        """Save the 3D view (its framebuffer) to a PNG."""
        if not self.view3d.save_png(path):
            self.show_error(f"{path}: cannot write the PNG")
            return False
        return True

    def export_3d_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export 3D view", self.last_dir,
                                              "PNG images (*.png)")
        if path:
            self.export_3d(path if path.lower().endswith(".png") else path + ".png")

    def export_views_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export views", self.last_dir,
                                              "PNG images (*.png)")
        if path:
            self.export_views(path if path.lower().endswith(".png") else path + ".png")

    def import_annotations_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import annotations", self.last_dir,
                                              CSV_FILTER)
        if path:
            self.import_annotations(path)

    def export_annotations_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", self.last_dir,
                                              CSV_FILTER)
        if path:
            self.export_annotations(Path(path))
