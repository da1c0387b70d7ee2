"""Jobs → Predict all images: one job over every image of a project.

:func:`predict_project` is a generator job (no Qt) that runs
:func:`cellpol_core.detection.predict.predict_files` image by image, each with its own
channel map and voxel size from the manifest, writing the CSVs into the
project's ``predictions/`` folder. :func:`choose_predictor` asks which model.
"""

from __future__ import annotations

from typing import Optional

from cellpol_core.jobs import CancelToken, ProgressEvent

__all__ = ["predict_project", "choose_predictor", "OTSU"]

OTSU = "Otsu (classical)"


def predict_project(project, *, model=None, cancel: Optional[CancelToken] = None, **options):
    """Predict vectors for every image of ``project``.

    A generator job: yields :class:`~cellpol_core.jobs.ProgressEvent` (stage
    ``"project"`` per image, then the events of each image's prediction) and
    returns a list of ``(image path, csv path)``.

    Parameters
    ----------
    project : cellpol_app.project.Project
    model : str or Path, optional
        Model folder or bundled model name; the Otsu baseline when None.
    cancel : CancelToken, optional
    **options
        More options of :func:`~cellpol_core.detection.predict.predict_files` (``device``,
        ``precision``, ...).
    """
    from pathlib import Path

    from cellpol_core.detection.predict import predict_files

    if model is not None:  # loaded once for the whole batch, not once per image
        from cellpol_core.defaults import DEFAULT_DEVICE
        from cellpol_core.detection.model import load_model
        from cellpol_core.detection.network import select_device

        model = load_model(model, device=select_device(options.get("device", DEFAULT_DEVICE)))
    entries = list(project.images)
    outdir = project.root / "predictions"
    done = []
    for k, entry in enumerate(entries):
        if cancel is not None:
            cancel.check()
        path = project.image_path(entry)
        yield ProgressEvent("project", k, len(entries),
                            message=f"image {k + 1}/{len(entries)}: {path.name}",
                            data={"image": str(path)})
        written = yield from predict_files(
            [path], outdir=outdir, method="otsu" if model is None else "model", model=model,
            channels=tuple(entry.channels), voxel_size=entry.voxel_size, cancel=cancel,
            **options)
        done.extend((path, Path(csv)) for csv in written)
    yield ProgressEvent("project", len(entries), len(entries), message="done")
    return done


def choose_predictor(parent, project):
    """Ask for Otsu or one of the project's models.

    Returns
    -------
    (ok, model) : (bool, str or None)
        ``model`` is a model folder path, or None for Otsu.
    """
    from PySide6.QtWidgets import QInputDialog

    names = [OTSU] + [m.name for m in project.models]
    choice, ok = QInputDialog.getItem(parent, "Predict all images", "Predict with:", names,
                                      len(names) - 1, False)
    if not ok:
        return False, None
    if choice == OTSU:
        return True, None
    entry = next(m for m in project.models if m.name == choice)
    return True, str(project.resolve(entry.path))
