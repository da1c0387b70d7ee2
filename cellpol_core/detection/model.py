"""Model folders: a trained CellPol model is a folder.

Layout::

    MODEL_DIR/
        config.json         schema_version, architecture, structures, channels,
                            voxel size, normalisation, patch size, target radii,
                            and under "training" the TrainConfig it was trained with
        thresholds.json     decoding thresholds (tau, d_min, d_max, delta)
        weights_best.pt     state_dict with the best validation loss
        weights_last.pt     state_dict after the last epoch
        checkpoint_last.pt  the resume state: weights, optimiser, scheduler, epoch
                            and step reached, random states (see
                            :mod:`cellpol_core.detection.loop`)
        training_log.csv    one row per epoch
        metrics.json        evaluation on the validation images
        checksums.json      SHA-256 of each weights and checkpoint file, checked
                            on load (folders without it load unchecked)

Weights are plain ``state_dict`` tensors, loaded with
``torch.load(weights_only=True)``, so opening a model never runs code.
:func:`save_state` records each file's SHA-256 in ``checksums.json``, and
:func:`load_state` refuses a file that no longer matches it (one line), so a
corrupted weights file is never used. The values of ``config.json`` and
``thresholds.json`` are checked on load too (finite, in range, a network of
sane size). A training run writes the folder whole (see
:mod:`cellpol_core.detection.runfolder`); ``run_id`` in ``config.json`` and
in the checkpoint ties them to one run.
``--model NAME`` also finds the models bundled in ``resources/models/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..io.atomic import atomic_path, write_text_atomic
from ..defaults import EMBED_MARGIN, FLIP_CHOICES, PAIR_DISTANCE_UM, PEAK_D_MIN_UM, PEAK_TAU
from ..errors import InputError
from .config import TrainConfig

SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
THRESHOLDS_FILE = "thresholds.json"
WEIGHTS_BEST = "weights_best.pt"
WEIGHTS_LAST = "weights_last.pt"
TRAINING_LOG = "training_log.csv"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint_last.pt"
CHECKSUMS_FILE = "checksums.json"

#: Largest network a config.json may ask for: first-level filters, pooling
#: levels, filters of the deepest level, head filters.
MAX_BASE_FILTERS = 256
MAX_DEPTH = 8
MAX_DEEPEST_FILTERS = 4096
MAX_HEAD_FILTERS = 1024


@dataclass
class Thresholds:
    """Decoding parameters, per structure where it applies (start, end).

    Attributes
    ----------
    tau : (float, float)
        Heatmap peak thresholds.
    d_min_um : (float, float)
        Smallest distance between two peaks of one structure, in µm (pixels
        for uncalibrated 2D models).
    d_max_um : float
        Longest start-end pair.
    delta : float
        Largest embedding difference of a pair.
    embed_weight : float or None
        How embedding models pair peaks: None for the 3DCellPol greedy rule
        (closest embeddings first); a number λ for one optimal assignment
        minimising ``distance / d_max + λ · |Δembedding| / delta`` (see
        :func:`~cellpol_core.detection.decode.pair_by_embedding`). ``cellpol tune``
        chooses it.
    offset_weight : float
        Weight μ of the offset term of the joint assignment: the distance
        from a start peak's predicted end (peak + offset head) to the end
        peak, / d_max. 0 (files without it) ignores the offset head.
    distance_weight : float
        Weight of the plain start-end distance term of the joint assignment
        (1 in files without it).
    flips : int
        Test-time flips: the maps are the mean over this many mirrored copies
        of each tile (one of :data:`~cellpol_core.defaults.FLIP_CHOICES`; 8
        mirrors z too, so 3D only). Averaging over mirrors steadies peaks on
        images unlike the training data, at ``flips`` times the network time.
        1 in files without it.
    source : str
        ``"default"`` or ``"tuned"``.
    """

    tau: tuple = PEAK_TAU
    d_min_um: tuple = PEAK_D_MIN_UM
    d_max_um: float = PAIR_DISTANCE_UM
    delta: float = EMBED_MARGIN
    embed_weight: Optional[float] = None
    offset_weight: float = 0.0
    distance_weight: float = 1.0
    flips: int = 1
    source: str = "default"

    def to_dict(self) -> dict:
        return {"tau": list(map(float, self.tau)), "d_min_um": list(map(float, self.d_min_um)),
                "d_max_um": float(self.d_max_um), "delta": float(self.delta),
                "embed_weight": None if self.embed_weight is None else float(self.embed_weight),
                "offset_weight": float(self.offset_weight),
                "distance_weight": float(self.distance_weight), "flips": int(self.flips),
                "source": self.source}

    @classmethod
    def from_dict(cls, d: dict, *, path=None) -> "Thresholds":
        try:
            out = cls(tau=tuple(float(v) for v in d["tau"]),
                      d_min_um=tuple(float(v) for v in d["d_min_um"]),
                      d_max_um=float(d["d_max_um"]), delta=float(d.get("delta", EMBED_MARGIN)),
                      embed_weight=(None if d.get("embed_weight") is None
                                    else float(d["embed_weight"])),
                      offset_weight=float(d.get("offset_weight", 0.0)),
                      distance_weight=float(d.get("distance_weight", 1.0)),
                      flips=d.get("flips", 1),
                      source=str(d.get("source", "default")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"broken thresholds ({type(exc).__name__}: {exc})", path) from None
        out.validate(path=path)
        return out

    def validate(self, *, path=None):
        """Raise :class:`InputError` for a value a decoder cannot use (non-finite, out of range)."""
        def bad(name, value, rule):
            raise InputError(f"{name} must be {rule}, got {value!r}", path)

        if len(self.tau) != 2 or not all(math.isfinite(t) and 0 < t <= 1 for t in self.tau):
            bad("tau", list(self.tau), "two numbers in (0, 1]")
        if len(self.d_min_um) != 2 or not all(math.isfinite(v) and v >= 0
                                              for v in self.d_min_um):
            bad("d_min_um", list(self.d_min_um), "two finite numbers of at least 0")
        if not (math.isfinite(self.d_max_um) and self.d_max_um > 0):
            bad("d_max_um", self.d_max_um, "a finite number above 0")
        if not (math.isfinite(self.delta) and self.delta > 0):
            bad("delta", self.delta, "a finite number above 0")
        if self.embed_weight is not None and not (math.isfinite(self.embed_weight)
                                                  and self.embed_weight >= 0):
            bad("embed_weight", self.embed_weight, "null or a finite number of at least 0")
        for name in ("offset_weight", "distance_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                bad(name, value, "a finite number of at least 0")
        if isinstance(self.flips, bool) or self.flips not in FLIP_CHOICES:
            bad("flips", self.flips, f"one of {', '.join(map(str, FLIP_CHOICES))}")


@dataclass
class ModelConfig:
    """What a model needs besides its weights (``config.json``).

    Attributes
    ----------
    network : dict
        Constructor arguments of :class:`~cellpol_core.detection.network.CellPolNet`.
    arch : str
        Architecture preset name the network was built from.
    structures : (str, str)
        Start and end structure names.
    channel_names : (str, str)
        Names of the training images' start and end channels, for information
        and for picking channels by name.
    voxel_size : (float, float, float)
        Training voxel size (z, y, x) in µm; (1, 1, 1) for pixel-unit 2D models.
    spatial_dims : int
        2 or 3.
    patch_size : tuple of int
        Training patch (Z, Y, X) or (Y, X).
    radii : (float, float)
        Target Gaussian radii of start and end structures (µm, or pixels).
    normalisation : dict
        ``{"method": "percentile", "low": 0.05, "high": 99.95}``.
    preset : str
        Structure-pair preset used for sizes (``"nucleus-golgi"``...).
    training : TrainConfig or None
        How the model was trained (``"training"`` in ``config.json``); None
        for folders written before CellPol recorded it.
    """

    network: dict
    arch: str = "light"
    structures: tuple = ("nucleus", "golgi")
    channel_names: tuple = ("nucleus", "golgi")
    voxel_size: tuple = (0.27, 0.666, 0.666)
    spatial_dims: int = 3
    patch_size: tuple = (64, 128, 128)
    radii: tuple = (6.1, 3.2)
    normalisation: dict = field(default_factory=lambda: {"method": "percentile", "low": 0.05,
                                                         "high": 99.95})
    preset: str = "nucleus-golgi"
    schema_version: int = SCHEMA_VERSION
    cellpol_version: str = ""
    extra: dict = field(default_factory=dict)
    training: Optional[TrainConfig] = None
    run_id: str = ""

    @property
    def embedding(self) -> bool:
        """False for CtrDet models, which pair by distance."""
        return bool(self.network.get("embedding", True))

    def to_dict(self) -> dict:
        from .. import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "cellpol_version": self.cellpol_version or __version__,
            "arch": self.arch,
            "network": self.network,
            "structures": list(self.structures),
            "channel_names": list(self.channel_names),
            "voxel_size_zyx_um": list(map(float, self.voxel_size)),
            "spatial_dims": int(self.spatial_dims),
            "patch_size_zyx": list(map(int, self.patch_size)),
            "radii": list(map(float, self.radii)),
            "normalisation": self.normalisation,
            "preset": self.preset,
            "extra": self.extra,
            **({"training": self.training.to_dict()} if self.training is not None else {}),
            **({"run_id": self.run_id} if self.run_id else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, *, path=None) -> "ModelConfig":
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise InputError("config.json has no integer schema_version", path)
        if version > SCHEMA_VERSION:
            raise InputError(f"model schema version {version} is newer than this CellPol "
                             f"supports ({SCHEMA_VERSION}); update CellPol", path)
        try:
            out = cls(
                network=dict(d["network"]), arch=str(d.get("arch", "custom")),
                structures=tuple(d["structures"]),
                channel_names=tuple(d.get("channel_names", d["structures"])),
                voxel_size=tuple(float(v) for v in d["voxel_size_zyx_um"]),
                spatial_dims=int(d["spatial_dims"]),
                patch_size=tuple(int(v) for v in d["patch_size_zyx"]),
                radii=tuple(float(v) for v in d["radii"]),
                normalisation=dict(d.get("normalisation", {})),
                preset=str(d.get("preset", "")), schema_version=version,
                cellpol_version=str(d.get("cellpol_version", "")), extra=dict(d.get("extra", {})),
                training=(TrainConfig.from_dict(d["training"]) if d.get("training") is not None
                          else None),
                run_id=str(d.get("run_id") or ""),
            )
        except InputError as exc:
            raise InputError(f"broken training configuration ({exc})", path) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"broken config.json ({type(exc).__name__}: {exc})", path) from None
        out.validate(path=path)
        return out

    def validate(self, *, path=None):
        """Raise :class:`InputError` for values no model can have (one line naming the key).

        Checks the voxel size and radii (finite, above 0), the spatial
        dimensions and patch, and caps the network's size, so that a broken
        or hostile ``config.json`` cannot ask for gigabytes.
        """
        def finite_positive(values):
            return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                       for v in values)

        if len(self.voxel_size) != 3 or not finite_positive(self.voxel_size):
            raise InputError(f"voxel_size_zyx_um must be 3 finite sizes above 0 µm, got "
                             f"{list(self.voxel_size)}", path)
        if len(self.radii) != 2 or not finite_positive(self.radii):
            raise InputError(f"radii must be 2 finite numbers above 0, got {list(self.radii)}",
                             path)
        if self.spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}", path)
        if not all(1 <= p <= 65536 for p in self.patch_size):
            raise InputError(f"patch_size_zyx must hold sizes from 1 to 65536, got "
                             f"{list(self.patch_size)}", path)
        _check_network_size(self.network, path)


def _check_network_size(network: dict, path):
    def whole(name, default, low, high):
        value = network.get(name, default)
        if value is None and name == "head_filters":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(f"network {name} must be a whole number from {low} to {high}, "
                             f"got {value!r}", path)
        return value

    base = whole("base_filters", 32, 1, MAX_BASE_FILTERS)
    depth = whole("depth", 5, 1, MAX_DEPTH)
    whole("head_filters", None, 1, MAX_HEAD_FILTERS)
    if base * 2 ** depth > MAX_DEEPEST_FILTERS:
        raise InputError(f"network too large: base_filters {base} at depth {depth} gives "
                         f"{base * 2 ** depth} filters at the deepest level (at most "
                         f"{MAX_DEEPEST_FILTERS})", path)


def find_model(name_or_path) -> Path:
    """Resolve ``--model``: a model folder, or the name of a bundled model."""
    from ..io.resources import bundled_model_dir, bundled_model_names, bundled_models_dir

    p = Path(name_or_path)
    if p.is_dir():
        return p
    if p.exists():
        raise InputError("is a file; a model is a folder holding config.json", p)
    if len(p.parts) == 1:
        bundled = bundled_models_dir() / str(name_or_path)
        if bundled.is_dir():
            return bundled
        aliased = bundled_model_dir(str(name_or_path))  # e.g. nucleus-golgi-3d -> demo
        if aliased is not None:
            return aliased
        names = bundled_model_names()
        raise InputError(f"no model folder or bundled model of that name (bundled: "
                         f"{', '.join(names) or 'none'})", name_or_path)
    raise InputError("model folder not found", p)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"missing {path.name}; not a CellPol model folder", path.parent) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    return data


def read_config(model_dir) -> ModelConfig:
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_FILE
    return ModelConfig.from_dict(_read_json(path), path=path)


def read_thresholds(model_dir) -> Thresholds:
    """``thresholds.json``, or defaults when the model was never tuned."""
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.exists():
        return Thresholds()
    return Thresholds.from_dict(_read_json(path), path=path)


def write_config(model_dir, config: ModelConfig):
    write_text_atomic(Path(model_dir) / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def write_thresholds(model_dir, thresholds: Thresholds):
    write_text_atomic(Path(model_dir) / THRESHOLDS_FILE,
                      json.dumps(thresholds.to_dict(), indent=2) + "\n")


def write_json(path, data: dict):
    write_text_atomic(path, json.dumps(data, indent=2, default=float) + "\n")


def read_checksums(folder) -> dict:
    """``checksums.json`` of ``folder``: file name -> list of accepted SHA-256; {} when absent."""
    path = Path(folder) / CHECKSUMS_FILE
    if not path.exists():
        return {}
    files = _read_json(path).get("sha256")
    if not isinstance(files, dict):
        raise InputError("broken checksums file (no \"sha256\" object)", path)
    out = {}
    for name, digest in files.items():
        digests = [digest] if isinstance(digest, str) else digest
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            raise InputError(f"broken checksums file (entry {name!r})", path)
        out[str(name)] = digests
    return out


def _write_checksums(folder, sums: dict):
    files = {k: (v[0] if len(v) == 1 else v) for k, v in sorted(sums.items())}
    write_json(Path(folder) / CHECKSUMS_FILE, {"sha256": files})


def record_checksum(path, digest: str, *, keep_old=False):
    """Set the SHA-256 of ``path`` in its folder's ``checksums.json``.

    ``keep_old`` keeps the digests recorded so far as well: the state while
    the file is being replaced, so that a kill between the two writes leaves
    a folder that still verifies.
    """
    path = Path(path)
    sums = read_checksums(path.parent)
    old = sums.get(path.name, []) if keep_old else []
    sums[path.name] = [d for d in old if d != digest] + [digest]
    _write_checksums(path.parent, sums)


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path, data: bytes):
    """Raise :class:`InputError` when ``data`` (the bytes of ``path``) does not match the
    SHA-256 recorded for it; files without a recorded checksum pass."""
    path = Path(path)
    expected = read_checksums(path.parent).get(path.name)
    if expected is not None and hashlib.sha256(data).hexdigest() not in expected:
        raise InputError(f"does not match its SHA-256 in {CHECKSUMS_FILE}: the file is "
                         "corrupted or was changed; restore it or train the model again", path)


def save_state(path, state: dict):
    """Save a dict of tensors (and plain values) atomically with ``torch.save``.

    The file's SHA-256 goes into the folder's ``checksums.json``: first
    beside the old one, then alone once the file is in place.
    """
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = file_sha256(tmp)
        record_checksum(path, digest, keep_old=True)
    record_checksum(path, digest)


def load_state(path) -> dict:
    """Load tensors saved by :func:`save_state`, never executing pickled code.

    Raises
    ------
    InputError
        The file is missing, does not match its checksum, or is not a
        dictionary of tensors.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"missing {path.name}", path.parent)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})", path) from None
    verify_checksum(path, data)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise InputError(f"cannot load weights ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})", path) from None
    if not isinstance(state, dict):
        raise InputError(f"not a weights file: it holds a {type(state).__name__}, not a "
                         "dictionary of tensors", path)
    return state


@dataclass
class LoadedModel:
    """A model ready for inference."""

    net: object
    config: ModelConfig
    thresholds: Thresholds
    path: Path


def build_net(config: ModelConfig):
    from .network import CellPolNet

    try:
        return CellPolNet(**config.network)
    except (TypeError, ValueError) as exc:
        raise InputError(f"config.json network arguments are invalid ({exc})") from None


def load_model(name_or_path, *, weights="best", device="cpu", for_inference=True) -> LoadedModel:
    """Open a model folder (or bundled model name) for inference.

    Parameters
    ----------
    name_or_path : str or Path
        A model folder or the name of a bundled model.
    weights : {"best", "last"}
        Which weights file to load.
    device : str or torch.device
        Where to put the network.
    for_inference : bool
        Fold BatchNorm into the convolutions and use the device's fastest
        memory layout (outputs unchanged). False keeps the trainable module,
        e.g. to fine-tune it.

    Raises
    ------
    InputError
        When the folder is missing, broken, or from a newer schema.
    """
    path = find_model(name_or_path)
    config = read_config(path)
    thresholds = read_thresholds(path)
    net = build_net(config)
    fname = WEIGHTS_BEST if weights == "best" else WEIGHTS_LAST
    if weights == "best" and not (path / fname).exists() and (path / WEIGHTS_LAST).exists():
        fname = WEIGHTS_LAST
    state = load_state(path / fname)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the network in config.json "
                         f"({str(exc).splitlines()[0]})", path / fname) from None
    net.eval()
    if for_inference:
        import torch

        from .network import prepare_for_device

        net = prepare_for_device(net.fuse_for_inference(), torch.device(device))
    else:
        net.to(device)
    return LoadedModel(net=net, config=config, thresholds=thresholds, path=path)
