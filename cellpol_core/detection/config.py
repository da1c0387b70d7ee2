"""Training configuration: every choice of a training run in one object.

:class:`TrainConfig` is what :func:`cellpol_core.detection.train.train`
takes instead of a long list of keyword arguments. The CLI, the desktop app
and the synthetic pre-training build it; a model folder's ``config.json``
records it under ``"training"``, so a model says how it was trained.
The module imports neither torch nor Qt.

Examples
--------
>>> from dataclasses import replace
>>> config = TrainConfig(epochs=20, patch_size=(16, 64, 64), seed=1)
>>> replace(config, epochs=5).epochs
5
>>> TrainConfig.from_dict(config.to_dict()) == config
True
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Optional

from ..defaults import DEFAULT_DEVICE, DEFAULT_PRECISION, EMBED_MARGIN, PRECISIONS
from ..errors import InputError

__all__ = ["TrainConfig", "FINETUNE_DEFAULTS", "FREEZE_CHOICES"]

WEIGHTINGS = ("balanced", "reference")
#: Parts of the network a run may keep fixed: none; the encoder (the first
#: convolutions and every down level); or the backbone (all but the offset
#: head, to add that head to a trained model without changing its other outputs).
FREEZE_CHOICES = ("none", "encoder", "backbone")
#: Fine-tuning defaults (``--init`` without these options), chosen by
#: benchmarks/bench_finetune.py (see the README, "Fine-tuning in minutes").
FINETUNE_DEFAULTS = {"lr": 3e-4, "freeze": "none", "pair_bias": 0.8, "minutes": 5.0}


@dataclass(frozen=True)
class TrainConfig:
    """The hyperparameters of one training run (validated on creation).

    Attributes
    ----------
    arch : str
        Network preset (see :data:`cellpol_core.detection.network.ARCHITECTURES`);
        ignored when fine-tuning or resuming, which keep their network.
    preset : str
        Structure-pair preset giving target radii and d_max
        (see :data:`cellpol_core.detection.targets.PRESETS`).
    structures : (str, str) or None
        Start and end structure names; default the preset's.
    model_voxel_size : (float, float, float) or None
        (z, y, x) µm the model works at; images are resampled to it, in
        training and at prediction. Default: the first training image's.
    epochs : int
        Total number of epochs (a resumed run continues up to it).
    steps_per_epoch : int or None
        Batches per epoch; default one coverage of the training voxels (see
        :func:`cellpol_core.detection.loop.default_steps_per_epoch`).
    patch_size : tuple of int or None
        (Z, Y, X) or (Y, X); default from the model, else (64, 128, 128) or
        (256, 256); always shrunk to the images.
    batch_size : int
        Patches per mini-batch.
    lr : float
        Adam learning rate.
    plateau_patience : int
        Epochs without a better validation loss before the learning rate is
        multiplied by 0.8.
    val_fraction : float
        Fraction of each training image (along x) held out for validation
        when no validation images are given; 0 validates on the training loss.
    augment_p : float
        Probability of each augmentation (0 turns augmentation off).
    pair_bias : float
        Probability of centring a patch near a vector's midpoint.
    weighting : {"balanced", "reference"}
        Heatmap loss weights.
    alpha, beta : float
        Weights of the heatmap losses and of the pull/push embedding losses.
    delta : float
        Embedding margin of the push loss; also the initial pairing delta.
    seed : int
        Makes runs repeatable.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    precision : {"auto", "fp32", "bf16"}
        Passed to :func:`cellpol_core.detection.network.autocast_context`.
    num_threads : int or None
        CPU threads for torch; default torch's own choice.
    minutes : float or None
        Wall-time budget of the run: it stops when the time is up (``epochs``
        is then ignored) and the learning rate follows a warm-up and cosine
        decay fitted to the budget (see
        :func:`cellpol_core.detection.loop.budget_lr_factor`). None trains
        ``epochs`` epochs with reduce-on-plateau.
    freeze : {"none", "encoder", "backbone"}
        Network parts kept fixed (their BatchNorm statistics and dropout too).
    offset_head : bool
        Give a new network the offset head (the displacement from each start
        voxel to its end structure, see
        :func:`cellpol_core.detection.targets.render_offsets`). Fine-tuning
        a model without the head adds it (the rest of the network is kept);
        resuming keeps the run's network.
    gamma : float
        Weight of the offset loss.

    Raises
    ------
    InputError
        A value is out of range (one line naming the field).
    """

    arch: str = "light"
    preset: str = "nucleus-golgi"
    structures: Optional[tuple] = None
    model_voxel_size: Optional[tuple] = None
    epochs: int = 50
    steps_per_epoch: Optional[int] = None
    patch_size: Optional[tuple] = None
    batch_size: int = 2
    lr: float = 1e-3
    plateau_patience: int = 10
    val_fraction: float = 0.1
    augment_p: float = 0.5
    pair_bias: float = 0.8
    weighting: str = "balanced"
    alpha: float = 1.0
    beta: float = 1.0
    delta: float = EMBED_MARGIN
    seed: int = 0
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    num_threads: Optional[int] = None
    minutes: Optional[float] = None
    freeze: str = "none"
    offset_head: bool = False
    gamma: float = 1.0

    def __post_init__(self):
        # Tuples, so that a config read back from JSON compares equal.
        for name in ("structures", "model_voxel_size", "patch_size"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self):
        """Raise :class:`~cellpol_core.errors.InputError` for the first out-of-range value."""
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("plateau_patience", self.plateau_patience, 0)
        _at_least("seed", self.seed, 0)
        if self.steps_per_epoch is not None:
            _at_least("steps_per_epoch", self.steps_per_epoch, 1)
        if self.num_threads is not None:
            _at_least("num_threads", self.num_threads, 1)
        if self.minutes is not None and (not _is_number(self.minutes)
                                         or not math.isfinite(self.minutes)
                                         or self.minutes <= 0):
            raise InputError(f"minutes must be a finite number above 0, got {self.minutes!r}")
        if self.freeze not in FREEZE_CHOICES:
            raise InputError(f"freeze must be one of {', '.join(FREEZE_CHOICES)}, "
                             f"got {self.freeze!r}")
        if not isinstance(self.offset_head, bool):
            raise InputError(f"offset_head must be true or false, got {self.offset_head!r}")
        for name in ("lr", "alpha", "beta", "delta", "gamma"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be a finite number above 0, got {value!r}")
        if not _is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name in ("augment_p", "pair_bias"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise InputError(f"{name} must be in [0, 1], got {value!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got {self.weighting!r}")
        if self.patch_size is not None and (
                len(self.patch_size) not in (2, 3)
                or not all(_is_whole(p) and p >= 1 for p in self.patch_size)):
            raise InputError(f"patch_size must be 2 or 3 sizes of at least 1, "
                             f"got {self.patch_size!r}")
        if self.model_voxel_size is not None and (
                len(self.model_voxel_size) != 3
                or not all(_is_number(v) and math.isfinite(v) and v > 0
                           for v in self.model_voxel_size)):
            raise InputError(f"model_voxel_size must be 3 sizes above 0 µm (z, y, x), "
                             f"got {self.model_voxel_size!r}")
        if self.structures is not None and len(self.structures) != 2:
            raise InputError(f"structures must be two names, got {self.structures!r}")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Read :meth:`to_dict`'s output; keys this version does not know are ignored.

        Raises
        ------
        InputError
            A value is out of range or of the wrong kind.
        """
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in dict(data).items() if k in known})
        except TypeError as exc:
            raise InputError(f"broken training configuration ({exc})") from None

    @classmethod
    def from_options(cls, options: dict) -> "TrainConfig":
        """Take a config out of keyword options, for callers that gather keywords.

        ``options["config"]`` (a TrainConfig) is the base, default
        ``TrainConfig()``; options named like a field override it. Both are
        removed from ``options``, which keeps the rest.
        """
        base = options.pop("config", None) or cls()
        names = [f.name for f in fields(cls) if f.name in options]
        return base.replace(**{k: options.pop(k) for k in names})

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (validated), like :func:`dataclasses.replace`."""
        from dataclasses import replace

        return replace(self, **changes)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _at_least(name, value, low):
    if not _is_whole(value) or value < low:
        raise InputError(f"{name} must be a whole number of at least {low}, got {value!r}")
