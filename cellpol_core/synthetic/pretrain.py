"""Training a CellPol model with synthetic images: pre-train on them, then fine-tune.

The synthetic folder is what :func:`cellpol_core.synthetic.gan.generate` (``cellpol gan
generate``) writes: ``synthetic_NNNN.ome.tif`` images with their
``synthetic_NNNN_vectors.csv``. A model is trained on it first (into
``<model dir>_synthetic``), and that model is then fine-tuned on the real
annotated images (docs/method.md §4). ``cellpol train --synthetic`` and the
desktop app's Synthetic data panel share these helpers.

Both phases share one :class:`~cellpol_core.detection.config.TrainConfig`
(the pre-training with its own number of epochs). Synthetic images name their
channels after the structures and carry their voxel size, so the arguments
that say how to read the *real* images (``channels``, ``axes``,
``voxel_size``) and the real validation images are not applied to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..detection.config import TrainConfig
from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent

__all__ = ["synthetic_pairs", "pretrain_dir", "train_with_synthetic"]


def synthetic_pairs(folder) -> tuple:
    """The images of a synthetic folder and their vector CSVs, sorted by name.

    Parameters
    ----------
    folder : path
        A folder written by :func:`cellpol_core.synthetic.gan.generate`.

    Returns
    -------
    (list of Path, list of Path)
        Images and, for each, ``<stem>_vectors.csv`` (or ``<stem>.csv``).

    Raises
    ------
    InputError
        The folder is missing or holds no image, or an image has no CSV.
    """
    from ..io.paths import expand_inputs, match_vectors

    folder = Path(folder)
    images = expand_inputs([folder]) if folder.is_dir() else []
    if not images:
        raise InputError("no synthetic images in this folder", folder)
    vectors = match_vectors(images, [folder])
    return images, vectors


def pretrain_dir(outdir) -> Path:
    """Where the synthetic pre-training of model folder ``outdir`` goes: ``<outdir>_synthetic``."""
    return Path(str(Path(outdir)) + "_synthetic")


def _tagged(job, *, phase, prefix, epoch_offset=0):
    """Forward ``job``'s events with ``data["phase"]``, a message prefix and shifted epochs."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        data = dict(event.data, phase=phase)
        if epoch_offset and "epoch" in data:
            data["epoch"] = int(data["epoch"]) + epoch_offset
        message = f"{prefix}{event.message}" if event.message else prefix.rstrip(": ")
        yield ProgressEvent(event.stage, event.step, event.total, message, data)


def train_with_synthetic(images, vectors, *, synthetic, outdir,
                         config: Optional[TrainConfig] = None, synthetic_epochs=None,
                         synthetic_only=False, val_images=(), val_vectors=(), channels=None,
                         axes=None, voxel_size=None, init=None, resume=False, overwrite=False,
                         prefixes=("synthetic: ", "fine-tuning: "),
                         cancel: Optional[CancelToken] = None):
    """Pre-train on a synthetic folder, then fine-tune on real images (a generator job).

    Yields the events of :func:`cellpol_core.detection.train.train` for both
    phases, with ``data["phase"]`` ``"synthetic"`` or ``"real"`` and the
    message prefixed by ``prefixes`` (``"synthetic: "`` or ``"fine-tuning: "``).
    ``data["epoch"]`` counts on across the phases (the fine-tuning's first
    epoch follows the last synthetic one), so one loss plot shows both; the
    messages keep each phase's own count. Returns the model folder.

    Parameters
    ----------
    images, vectors : sequences
        Real annotated images and their vector CSVs (unused with
        ``synthetic_only``).
    synthetic : path
        Folder of synthetic images with vector CSVs.
    outdir : path
        The final model folder; the pre-trained model goes to
        :func:`pretrain_dir` of it.
    config : TrainConfig, optional
        The hyperparameters of both phases; ``config.epochs`` are the
        fine-tuning's (the only training's with ``synthetic_only``).
    synthetic_epochs : int, optional
        Epochs of the pre-training; default ``config.epochs``.
    synthetic_only : bool
        Train on the synthetic images alone, into ``outdir`` (validation:
        ``config.val_fraction`` of each synthetic image; real validation
        images are ignored).
    val_images, val_vectors : sequences, optional
        Real validation images and CSVs, for the fine-tuning.
    channels, axes, voxel_size
        How to read the real images (see :func:`~cellpol_core.detection.train.train`).
    init, resume
        Refused: pre-training chooses the starting model, and resuming
        concerns one training run.
    overwrite : bool
        Let the runs replace the models in ``outdir`` and its pre-training folder.
    prefixes : (str, str)
        Message prefixes of the synthetic and the real phase.
    cancel : CancelToken, optional

    Raises
    ------
    InputError
        ``init`` or ``resume`` given, fewer than 1 synthetic epoch, or no
        synthetic images.
    """
    from ..detection.train import train

    config = TrainConfig() if config is None else config
    if init is not None:
        raise InputError("synthetic pre-training and an initial model both choose the starting "
                         "model; give one")
    if resume:
        raise InputError("resuming continues one training run; train without synthetic "
                         "pre-training to resume")
    n_syn = config.epochs if synthetic_epochs is None or synthetic_only else synthetic_epochs
    syn_config = config.replace(epochs=n_syn)
    syn_images, syn_vectors = synthetic_pairs(synthetic)
    if synthetic_only:
        job = train(syn_images, syn_vectors, outdir=outdir, config=syn_config,
                    overwrite=overwrite, cancel=cancel)
        return (yield from _tagged(job, phase="synthetic", prefix=prefixes[0]))
    from ..detection.runfolder import check_new_run

    check_new_run(outdir, overwrite=overwrite, checkpoint_file="checkpoint_last.pt")  # before work
    job = train(syn_images, syn_vectors, outdir=pretrain_dir(outdir), config=syn_config,
                overwrite=overwrite, cancel=cancel)
    pretrained = yield from _tagged(job, phase="synthetic", prefix=prefixes[0])
    job = train(images, vectors, outdir=outdir, config=config, val_images=val_images,
                val_vectors=val_vectors, channels=channels, axes=axes, voxel_size=voxel_size,
                init=str(pretrained), overwrite=overwrite, cancel=cancel)
    return (yield from _tagged(job, phase="real", prefix=prefixes[1], epoch_offset=n_syn))
