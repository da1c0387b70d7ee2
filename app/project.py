"""A CellPol project: a folder with a JSON manifest, its annotations and predictions.

Layout::

    project/
        cellpol_project.json        the manifest (written atomically)
        annotations/<stem>_annotations.csv   (older projects: whatever path the manifest names)
        predictions/<stem>_predicted.csv   the app's predictions (older: <stem>_vectors.csv)
        predictions/...             prediction CSVs (any path inside or outside)
        models/...                  model folders

Paths in the manifest are relative to the project folder (POSIX separators),
so a project can be moved or copied with its images. Images outside the folder
are stored as ``../...`` paths. This module does not import Qt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
from cellpol_core.io.atomic import write_text_atomic
from cellpol_core.errors import InputError
from cellpol_core.io.paths import image_stem

MANIFEST_NAME = "cellpol_project.json"
FORMAT = "cellpol-project"
VERSION = 1
DEFAULT_COLORS = ("#3ce63c", "#ff3c3c")  # start green, end red

__all__ = ["Project", "ImageEntry", "ModelEntry", "MANIFEST_NAME"]


@dataclass
class ImageEntry:
    """One image of a project.

    Attributes
    ----------
    path : str
        Image file, relative to the project folder (POSIX separators).
    channels : (int, int)
        0-based (start, end) channels.
    colors : (str, str)
        Display colours of the start and end channels, ``#rrggbb``.
    voxel_size : (float, float, float) or None
        (z, y, x) µm; None when unknown.
    annotations : str or None
        Annotation CSV, relative to the project folder.
    predictions : list of str
        Prediction CSVs, relative to the project folder.
    display : list of dict or None
        How each shown channel (start, end) is displayed: ``{"limits": [low,
        high] or None (automatic), "gamma": float, "visible": bool}``; None
        until the user changes it (projects written before had none).
    """

    path: str
    channels: tuple = (0, 1)
    colors: tuple = DEFAULT_COLORS
    voxel_size: Optional[tuple] = None
    annotations: Optional[str] = None
    predictions: list = field(default_factory=list)
    display: Optional[list] = None


@dataclass
class ModelEntry:
    """A model folder of the project (``path`` relative to the project folder)."""

    name: str
    path: str


def _relative(root: Path, path) -> str:
    path = Path(path)
    if not path.is_absolute():
        path = Path.cwd() / path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return PurePosixPath(*Path(rel).parts).as_posix()


def _display_from_dict(display, where, path):
    # Optional per-channel display settings (see ImageEntry.display).
    if display is None:
        return None
    bad = InputError(f"{where}: display must be a list of {{limits, gamma, visible}} per "
                     f"channel", path)
    if not isinstance(display, list) or len(display) > 2:
        raise bad
    out = []
    for c in display:
        if not isinstance(c, dict):
            raise bad
        limits, gamma = c.get("limits"), c.get("gamma", 1.0)
        try:
            if limits is not None:
                limits = [float(v) for v in limits]
                if len(limits) != 2 or not limits[0] < limits[1] or \
                        not np.all(np.isfinite(limits)):
                    raise ValueError
            gamma = float(gamma)
            if not gamma > 0 or not np.isfinite(gamma):
                raise ValueError
        except (TypeError, ValueError):
            raise bad from None
        out.append({"limits": limits, "gamma": gamma, "visible": bool(c.get("visible", True))})
    return out


class Project:
    """A project folder and its manifest.

    Parameters
    ----------
    root : str or Path
        The project folder. Use :meth:`create` or :meth:`load` rather than
        the constructor.
    """

    def __init__(self, root):
        self.root = Path(root).absolute()
        self.images: list = []
        self.models: list = []

    # ------------------------------------------------------------------ files
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def resolve(self, relative: str) -> Path:
        """Absolute path of a manifest path."""
        return Path(os.path.normpath(self.root / Path(PurePosixPath(relative))))

    def relative(self, path) -> str:
        """Manifest form (relative, POSIX) of ``path``."""
        return _relative(self.root, path)

    @classmethod
    def create(cls, root) -> "Project":
        """Make a new project in ``root`` (created if needed) and save its manifest.

        Raises
        ------
        InputError
            When ``root`` already holds a project manifest, or is a file.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise InputError("not a folder", root)
        if (root / MANIFEST_NAME).exists():
            raise InputError("already holds a CellPol project", root)
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root)
        project.save()
        return project

    @classmethod
    def load(cls, root) -> "Project":
        """Read the project in ``root``.

        Raises
        ------
        InputError
            Missing, unreadable or malformed manifest.
        """
        root = Path(root)
        if root.name == MANIFEST_NAME and not root.is_dir():  # the manifest itself
            root = root.parent
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise InputError(f"no {MANIFEST_NAME} here (not a CellPol project)", root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise InputError("manifest is not UTF-8 text", path) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"manifest is not valid JSON (line {exc.lineno}: {exc.msg})",
                             path) from None
        except OSError as exc:
            raise InputError(f"cannot read manifest ({exc.strerror})", path) from None
        project = cls(root)
        project._from_dict(data, path)
        return project

    def _from_dict(self, data, path):
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"manifest is not a CellPol project (missing \"format\": "
                             f"\"{FORMAT}\")", path)
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise InputError(f"unsupported project version {version!r} (this CellPol reads "
                             f"up to {VERSION})", path)
        images, models = data.get("images", []), data.get("models", [])
        if not isinstance(images, list) or not isinstance(models, list):
            raise InputError("\"images\" and \"models\" must be lists", path)
        self.images = [self._image_from_dict(d, i, path) for i, d in enumerate(images)]
        self.models = []
        for i, d in enumerate(models):
            if not (isinstance(d, dict) and isinstance(d.get("name"), str)
                    and isinstance(d.get("path"), str)):
                raise InputError(f"models[{i}] needs string \"name\" and \"path\"", path)
            self.models.append(ModelEntry(d["name"], d["path"]))

    @staticmethod
    def _image_from_dict(d, i, path) -> ImageEntry:
        where = f"images[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"]:
            raise InputError(f"{where} needs a string \"path\"", path)
        try:
            channels = tuple(int(c) for c in d.get("channels", (0, 1)))
            colors = tuple(str(c) for c in d.get("colors", DEFAULT_COLORS))
            vs = d.get("voxel_size")
            vs = None if vs is None else tuple(float(v) for v in vs)
        except (TypeError, ValueError):
            raise InputError(f"{where}: channels, colors or voxel_size malformed", path) from None
        if len(channels) != 2 or min(channels) < 0 or channels[0] == channels[1]:
            raise InputError(f"{where}: channels must be two different indices >= 0", path)
        if len(colors) != 2:
            raise InputError(f"{where}: colors must be two colours", path)
        if vs is not None and (len(vs) != 3 or not all(v > 0 for v in vs)):
            raise InputError(f"{where}: voxel_size must be three positive numbers", path)
        ann = d.get("annotations")
        preds = d.get("predictions", [])
        if ann is not None and not isinstance(ann, str):
            raise InputError(f"{where}: annotations must be a path", path)
        if not isinstance(preds, list) or not all(isinstance(p, str) for p in preds):
            raise InputError(f"{where}: predictions must be a list of paths", path)
        return ImageEntry(d["path"], channels, colors, vs, ann, list(preds),
                          _display_from_dict(d.get("display"), where, path))

    def to_dict(self) -> dict:
        """The manifest as JSON-ready data."""
        images = []
        for e in self.images:
            d = {"path": e.path, "channels": list(e.channels), "colors": list(e.colors),
                 "voxel_size": None if e.voxel_size is None else list(e.voxel_size),
                 "annotations": e.annotations, "predictions": list(e.predictions)}
            if e.display is not None:
                d["display"] = [dict(c) for c in e.display]
            images.append(d)
        return {
            "format": FORMAT,
            "version": VERSION,
            "images": images,
            "models": [{"name": m.name, "path": m.path} for m in self.models],
        }

    def save(self):
        """Write the manifest atomically (the old one stays if writing fails)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        write_text_atomic(self.manifest_path, text)

    # ------------------------------------------------------------------ images
    def find_image(self, path) -> Optional[ImageEntry]:
        """The entry of image file ``path``, or None."""
        rel = self.relative(path)
        return next((e for e in self.images if e.path == rel), None)

    def add_image(self, path, *, channels=(0, 1), colors=DEFAULT_COLORS, voxel_size=None,
                  save=True) -> ImageEntry:
        """Add an image (or update the entry of an image already there) and save.

        Parameters
        ----------
        path : str or Path
            The image file (anywhere; stored relative to the project).
        channels : (int, int)
            (start, end) channels.
        colors : (str, str)
            Start and end colours.
        voxel_size : (z, y, x) floats, optional
            µm per voxel.
        save : bool
            Write the manifest.
        """
        entry = self.find_image(path)
        if entry is None:
            entry = ImageEntry(self.relative(path))
            self.images.append(entry)
        entry.channels = tuple(int(c) for c in channels)
        entry.colors = tuple(str(c) for c in colors)
        entry.voxel_size = None if voxel_size is None else tuple(float(v) for v in voxel_size)
        if save:
            self.save()
        return entry

    def image_path(self, entry: ImageEntry) -> Path:
        return self.resolve(entry.path)

    def annotations_path(self, entry: ImageEntry) -> Path:
        """Where the annotations of ``entry`` are (or will be) saved."""
        if entry.annotations:
            return self.resolve(entry.annotations)
        return self.root / "annotations" / f"{image_stem(entry.path)}_annotations.csv"

    def save_annotations(self, entry: ImageEntry, table):
        """Write ``table`` (a VectorTable) as the annotations of ``entry``, atomically.

        The manifest is updated (and saved) the first time.
        """
        from cellpol_core.io.vectors import write_vectors

        path = self.annotations_path(entry)
        write_vectors(path, table, voxel_size=entry.voxel_size)
        rel = self.relative(path)
        if entry.annotations != rel:
            entry.annotations = rel
            self.save()
        return path

    def load_annotations(self, entry: ImageEntry):
        """The annotations of ``entry`` as a VectorTable, or None when there are none.

        Raises
        ------
        InputError
            The CSV exists but is malformed.
        """
        from cellpol_core.io.vectors import read_vectors

        if not entry.annotations:
            return None
        path = self.resolve(entry.annotations)
        if not path.is_file():
            return None
        return read_vectors(path)

    def add_prediction(self, entry: ImageEntry, csv_path, *, save=True):
        """Record a prediction CSV of ``entry``."""
        rel = self.relative(csv_path)
        if rel not in entry.predictions:
            entry.predictions.append(rel)
        if save:
            self.save()

    # ------------------------------------------------------------------ models
    def add_model(self, name: str, path, *, save=True) -> ModelEntry:
        """Record a model folder (replacing a model of the same name)."""
        self.models = [m for m in self.models if m.name != name]
        entry = ModelEntry(str(name), self.relative(path))
        self.models.append(entry)
        if save:
            self.save()
        return entry
