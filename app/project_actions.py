"""The window's project actions: new/open project, predict, predict all, train and tune models.

:class:`ProjectActions` holds what the File and Jobs menus do with the open
project. Its jobs run through the window's
:class:`~cellpol_app.job_controller.JobController`, each with its own result
handler: a prediction is shown and recorded in the project, a trained model
joins the project's models, a tuning report goes to the Evaluation dock. It
uses the window's public members only: the shown image, ``start_job``,
``show_error``, ``show_message``, ``last_dir`` and the docks it fills.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from cellpol_core.errors import InputError

from .docks import raise_dock
from .job_controller import eta_text

__all__ = ["ProjectActions", "prediction_name", "OTHER_MODEL"]

#: The model list's entry that opens a folder picker.
OTHER_MODEL = "Another model folder…"
#: ``predict(model=BUNDLED_MODEL)``: the bundled model chosen for the image's dimensions.
BUNDLED_MODEL = ":bundled:"
#: Suffix of the prediction CSVs the app writes (annotations end in ``_annotations.csv``).
PREDICTED_SUFFIX = "_predicted.csv"


def prediction_name(path) -> Path:
    """Rename a freshly written ``<stem>_vectors.csv`` prediction to ``<stem>_predicted.csv``.

    Predictions are then never confused with annotations or a ground-truth
    ``_vectors.csv`` of the same image. An existing file of that name (an
    older prediction) is replaced. Returns the path the CSV has now.
    """
    import os

    path = Path(path)
    if not path.name.endswith("_vectors.csv"):
        return path
    target = path.with_name(path.name[: -len("_vectors.csv")] + PREDICTED_SUFFIX)
    try:
        os.replace(path, target)  # same folder: atomic
    except OSError:
        return path  # keep the written name rather than lose the result
    return target


class ProjectActions:
    """What the File and Jobs menus do with the project (see the module docstring).

    Parameters
    ----------
    window : AnnotatorWindow
    """

    def __init__(self, window):
        self.window = window

    @property
    def project(self):
        return self.window.project

    # ------------------------------------------------------------------ projects
    def set_project(self, project):
        """Use ``project`` (a :class:`~cellpol_app.project.Project`); None closes it."""
        w = self.window
        w.project = project
        w.project_entry = None
        if project is not None:
            w.remember_dir(project.root)

    def open_project(self, folder) -> bool:
        """Open the project in ``folder`` and its first image; errors go to a dialog."""
        from .project import Project

        w = self.window
        try:
            project = Project.load(folder)
        except InputError as exc:
            w.show_error(str(exc))
            return False
        self.set_project(project)
        if project.images:
            return w.load_image(project.image_path(project.images[0]), background=False)
        if w.image_path is not None and w.loaded is not None:
            w.set_loaded(w.loaded, path=w.image_path, choice=self._shown_choice())
        return True

    def _shown_choice(self):
        # The channels, colours and voxel size on screen: the image joins a project as shown,
        # without asking the channel dialog again.
        from .dialogs import ChannelChoice

        w = self.window
        return ChannelChoice(tuple(w._channel_pair()), tuple(w.channel_colors), w.voxel_size)

    def new_project(self, folder) -> bool:
        """Create a project in ``folder``; the open image and its pairs join it."""
        from .project import Project

        w = self.window
        try:
            project = Project.create(folder)
        except (InputError, OSError) as exc:
            w.show_error(str(exc))
            return False
        self.set_project(project)
        if w.loaded is not None and w.image_path is not None:
            pairs = w.annotations.to_table()
            shown, shown_path = w.vectors, w.vectors_path
            w.set_loaded(w.loaded, path=w.image_path, choice=self._shown_choice())
            if shown is not None and w.vectors is None:  # the vectors on screen stay
                w.set_vectors(shown, path=shown_path)
            if len(pairs) and len(w.annotations) == 0:
                w.annotations.replace_all(pairs)
                w.annotations.save(w.annotations.autosave_path)
        return True

    def new_project_dialog(self):
        folder = QFileDialog.getExistingDirectory(self.window, "New project folder",
                                                  self.window.last_dir)
        if folder:
            self.new_project(folder)

    def open_project_dialog(self):
        folder = QFileDialog.getExistingDirectory(self.window, "Open project folder",
                                                  self.window.last_dir)
        if folder:
            self.open_project(folder)

    def training_data(self):
        """(image paths, annotation CSVs) of the project images that have pairs."""
        from cellpol_core.io.vectors import read_vectors

        images, tables = [], []
        project = self.project
        if project is None:
            return images, tables
        for entry in project.images:
            if not entry.annotations:
                continue
            csv = project.resolve(entry.annotations)
            try:
                if csv.is_file() and len(read_vectors(csv)):
                    images.append(project.image_path(entry))
                    tables.append(csv)
            except InputError:
                continue
        return images, tables

    # ------------------------------------------------------------------ predict
    def predict(self, *, model=None) -> bool:
        """Predict vectors of the current image in a worker thread.

        The CSV goes to the project's ``predictions/`` folder (a temporary
        folder without a project) and is shown as the vectors layer when done.

        Parameters
        ----------
        model : str or Path, optional
            Model folder or bundled model name; the Otsu baseline when None.
        """
        import tempfile

        from cellpol_core.detection.predict import predict_files

        w = self.window
        if w.image_path is None or w.loaded is None:
            w.show_message("Open an image first", 4000)
            return False
        if self.project is not None:
            outdir = self.project.root / "predictions"
        else:
            outdir = Path(tempfile.mkdtemp(prefix="cellpol_predictions_"))
        channels = w.loaded.channels if len(w.loaded.channels) == 2 else None
        image = w.image_path
        if model == BUNDLED_MODEL:
            model = self._bundled_model()
            if model is None:
                return False
        return w.start_job(
            "Predict", predict_files, [image], outdir=outdir,
            method="otsu" if model is None else "model", model=model, channels=channels,
            voxel_size=w.voxel_size, on_result=lambda written: self._predicted(image, written))

    def _bundled_model(self):
        """Name of the bundled model for the shown image (as `cellpol predict` picks it)."""
        from cellpol_core.io.resources import default_model_name

        w = self.window
        names = [str(n).casefold() for n in w.loaded.image.channel_names]
        structures = ("cytoplasm", "nucleus") if "cytoplasm" in names else ("nucleus", "golgi")
        try:
            name = default_model_name(w.loaded.image.ndim, structures)
        except InputError as exc:
            w.show_error(str(exc))
            return None
        w.show_message(f"Using the bundled model {name}", 4000)
        return name

    def _predicted(self, image, written):
        w = self.window
        paths = [prediction_name(p) for p in (written or [])]
        if not paths or image != w.image_path:
            return  # nothing written, or the user opened another image meanwhile
        if self.project is not None and w.project_entry is not None:
            self.project.add_prediction(w.project_entry, paths[0])
        w.load_vectors(paths[0])
        n = 0 if w.vectors is None else len(w.vectors)
        w.show_message(f"Predicted {n} vectors → {paths[0].name}")

    def choose_model(self, title, *, label="Model:"):
        """Ask for one of the project's models, or another model folder.

        Returns
        -------
        str or None
            The model folder; None when cancelled.
        """
        from PySide6.QtWidgets import QInputDialog

        w = self.window
        models = list(self.project.models) if self.project is not None else []
        if models:
            names = [f"{m.name} (project model)" for m in models] + [OTHER_MODEL]
            choice, ok = QInputDialog.getItem(w, title, label, names, len(models) - 1, False)
            if not ok:
                return None
            if choice != OTHER_MODEL:
                return str(self.project.resolve(models[names.index(choice)].path))
        start = str(self.project.root / "models") if self.project is not None and \
            (self.project.root / "models").is_dir() else w.last_dir
        folder = QFileDialog.getExistingDirectory(w, title, start)
        return folder or None

    def predict_model_dialog(self):
        folder = self.choose_model("Predict with a model")
        if folder:
            self.predict(model=folder)

    def predict_all(self, *, model=None) -> bool:
        """Predict every project image in one worker job (Otsu when ``model`` is None).

        Each CSV goes to ``<project>/predictions/`` and is recorded in the manifest.
        """
        from .batch_predict import predict_project

        if self.project is None or not self.project.images:
            self.window.show_error("Predicting all images needs a project with images")
            return False
        return self.window.start_job("Predict all", predict_project, self.project, model=model,
                                     on_result=self._predicted_all)

    def predict_all_dialog(self):
        from .batch_predict import choose_predictor

        if self.project is None:
            self.window.show_error("Predicting all images needs a project with images")
            return
        ok, model = choose_predictor(self.window, self.project)
        if ok:
            self.predict_all(model=model)

    def _predicted_all(self, result):
        w, project = self.window, self.project
        result = [(image, prediction_name(csv)) for image, csv in result]
        for image, csv in result:
            entry = project.find_image(image)
            if entry is not None:
                project.add_prediction(entry, csv, save=False)
        project.save()
        here = None if w.image_path is None else Path(w.image_path).absolute()
        current = [csv for image, csv in result if Path(image).absolute() == here]
        if current:
            w.load_vectors(current[0])
        w.show_message(f"Predicted {len(result)} images")

    # ------------------------------------------------------------------ train
    def train(self, *, name=None, init=None, on_progress=None, on_finished=None,
              **options) -> bool:
        """Train a model on the project's annotated images in a worker thread.

        The model folder is ``<project>/models/<name>`` and is added to the
        project when training ends. ``options`` go to
        :func:`cellpol_core.detection.train.train`: ``config`` (a
        :class:`~cellpol_core.detection.config.TrainConfig`, default 20
        epochs) and its fields as keywords overriding it (``epochs``,
        ``patch_size``, ``device``...), ``val_images``, ``resume``. With ``synthetic=<folder>`` (the Synthetic data dock) the job is
        :func:`cellpol_core.synthetic.pretrain.train_with_synthetic`. The
        training's events also go to ``on_progress``, and ``on_finished``
        runs when it has ended.
        """
        import time

        from cellpol_core.detection.config import TrainConfig
        from cellpol_core.detection.train import train

        w = self.window
        if self.project is None:
            w.show_error("Training needs a project: File → New project")
            return False
        images, tables = self.training_data()
        if not images:
            w.show_error("No annotated image in the project: annotate some pairs first")
            return False
        chosen = {Path(p).absolute() for p in options.pop("val_images", ())}
        if chosen:  # validation images are left out of training
            pairs = list(zip(images, tables))
            options["val_images"] = [p for p, _ in pairs if Path(p).absolute() in chosen]
            options["val_vectors"] = [t for p, t in pairs if Path(p).absolute() in chosen]
            images = [p for p, _ in pairs if Path(p).absolute() not in chosen]
            tables = [t for p, t in pairs if Path(p).absolute() not in chosen]
            if not images:
                w.show_error("Keep at least one annotated image for training")
                return False
        name = name or time.strftime("model_%Y%m%d_%H%M%S")
        outdir = self.project.root / "models" / name
        entry = self.project.find_image(images[0])
        channels = entry.channels if entry is not None else None
        if options.get("synthetic"):  # pre-train on synthetic images, then fine-tune
            from cellpol_core.synthetic.pretrain import train_with_synthetic as job
        else:
            job = train

        def progress(event):
            self._training_progress(event)
            if on_progress is not None:
                on_progress(event)

        options.setdefault("config", TrainConfig(epochs=20))  # the app's default run
        config = TrainConfig.from_options(options)  # takes the config's fields out of options
        outcome = {}

        def result(folder):
            outcome["done"] = True
            self._trained(name, folder)

        def error(message):
            outcome["error"] = message

        def finished():
            self._training_ended(name, outcome)
            if on_finished is not None:
                on_finished()

        started = w.start_job("Train", job, images, tables, outdir=outdir, config=config,
                              init=init, channels=channels, **options,
                              on_progress=progress, on_finished=finished, on_error=error,
                              on_result=result)
        if started:
            w.loss_history = {"epoch": [], "train": [], "val": []}
            w.train_curve.setData([], [])
            w.val_curve.setData([], [])
            w.loss_waiting.setText("Waiting for the first epoch…")
            self._show_loss_plot(False)
            w.training_status.setText(f"Training {name}: starting (reading the images)…")
            raise_dock(w.loss_dock)
        return started

    def _show_loss_plot(self, on):
        # Until an epoch has ended there is nothing to plot: say so instead of an empty axis.
        self.window.loss_plot.setVisible(on)
        self.window.loss_waiting.setVisible(not on)

    def _training_progress(self, event):
        # The loss curves, and what the training does in words (with its ETA).
        w = self.window
        text = event.message or "training"
        text = text[:1].upper() + text[1:]
        eta = event.data.get("eta_s")
        if eta is not None:
            text += f" · {eta_text(eta)} left"
        w.training_status.setText(text)
        if event.data.get("epoch_end"):
            h = w.loss_history
            h["epoch"].append(event.data.get("epoch", len(h["epoch"]) + 1))
            h["train"].append(float(event.data.get("train_loss", np.nan)))
            h["val"].append(float(event.data.get("val_loss", np.nan)))
            w.train_curve.setData(h["epoch"], h["train"])  # updated in place
            w.val_curve.setData(h["epoch"], h["val"])
            self._show_loss_plot(True)

    def _training_ended(self, name, outcome):
        # No stale ETA once the job is over: say how it ended.
        w = self.window
        epochs = len(w.loss_history["epoch"])
        done = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        if outcome.get("done"):
            text = f"{name}: finished ({done}); the model is in the project's models/."
        elif "error" in outcome:
            text = f"{name}: failed after {done}: {outcome['error']}"
        else:
            text = (f"{name}: cancelled after {done}. Train again with the same name and "
                    "“Resume” to continue.")
        w.training_status.setText(text)
        if not epochs:
            w.loss_waiting.setText("No epoch finished.")

    def _trained(self, name, folder):
        entry = self.project.add_model(name, Path(folder))
        self.window.show_message(f"Model saved: {entry.path}")

    def make_train_dialog(self):
        """The Train / fine-tune dialog for the project (None without a project)."""
        from .train_dialog import TrainDialog

        w = self.window
        if self.project is None:
            w.show_error("Training needs a project: File → New project")
            return None
        ndim = w.loaded.image.ndim if w.loaded is not None else 3
        use_shown = None
        if w.loaded is not None and w.vectors is not None and len(w.vectors) and \
                len(w.annotations) == 0 and w.image_path is not None:

            def accept():  # one undo step; autosaved into the project
                w.accept_predictions()
                return self.training_data()[0]

            use_shown = (w.image_path.name, len(w.vectors), accept)
        return TrainDialog(self.project, self.training_data()[0], ndim=ndim,
                           use_shown=use_shown, parent=w)

    def train_dialog(self):
        dialog = self.window.make_train_dialog()
        if dialog is not None and dialog.exec():
            self.window.train(**dialog.kwargs())

    # ------------------------------------------------------------------ tune
    def tune(self, model, **options) -> bool:
        """Tune the decoding thresholds of ``model`` on the project's annotated images.

        Runs :func:`cellpol_core.detection.tune.tune` in a worker thread; it
        writes ``thresholds.json`` into the model folder. The report is shown
        in the Evaluation dock. ``options`` go to ``tune`` (``border_um``,
        ``rounds``, ``device``...).
        """
        from cellpol_core.detection.tune import tune

        w = self.window
        if self.project is None:
            w.show_error("Tuning needs a project: File → New project")
            return False
        images, tables = self.training_data()
        if not images:
            w.show_error("No annotated image in the project: annotate some pairs first")
            return False
        entry = self.project.find_image(images[0])
        channels = entry.channels if entry is not None else None
        return w.start_job("Tune", tune, model, images, tables, channels=channels, **options,
                           on_result=lambda result: w.show_tune_report(result[1]))

    def tune_dialog(self):
        folder = self.choose_model("Tune the thresholds of a model")
        if folder:
            self.tune(folder)
