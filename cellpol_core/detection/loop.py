"""The epoch loop shared by model training and GAN training.

:func:`epoch_loop` runs epochs of optimisation steps for any
:class:`Trainer`: it owns the random state, exact resuming, the checkpoint
(also written when the job is cancelled), the per-epoch training log and the
progress events with their ETA. A trainer supplies one optimisation step, what
happens at the end of an epoch (validation, weight files), and its own state
to save.

The checkpoint holds the trainer's state plus ``epoch`` (epochs done),
``step`` (steps done in the unfinished epoch, after a cancel), ``sums`` (that
epoch's running loss sums), the NumPy and torch random states and
``run_id``, the id of the run that wrote it (also in the folder's config),
so that resuming never mixes two runs. Resuming
from it continues the run as if it had never stopped: the same weights come
out, bit for bit.
"""

from __future__ import annotations

import csv
import io
import math
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..jobs import CancelToken, ProgressEvent

__all__ = ["Trainer", "epoch_loop", "default_steps_per_epoch", "read_checkpoint",
           "check_run", "seed_everything", "write_training_log", "read_training_log"]

#: Fewest batches of an epoch whose length is not given.
MIN_STEPS_PER_EPOCH = 4


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's global generator and return the NumPy generator of a run.

    Call it before any network is built: initial weights must repeat too.
    """
    import torch

    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def default_steps_per_epoch(shapes, patch_size, batch_size) -> int:
    """Batches that cover the training voxels about once (at least :data:`MIN_STEPS_PER_EPOCH`).

    Parameters
    ----------
    shapes : sequence of tuple of int
        Spatial shapes of the training images.
    patch_size : tuple of int
    batch_size : int
    """
    voxels = sum(np.prod(s) for s in shapes)
    return max(MIN_STEPS_PER_EPOCH, math.ceil(voxels / np.prod(patch_size) / batch_size))


def read_checkpoint(path, *, resume: bool) -> Optional[dict]:
    """The checkpoint to resume from, or None when not resuming.

    Raises
    ------
    InputError
        ``resume`` is set but ``path`` does not exist, or cannot be read.
    """
    from .model import load_state

    path = Path(path)
    if not resume:
        return None
    if not path.exists():
        raise InputError(f"nothing to resume: no {path.name}", path.parent)
    return load_state(path)


def check_run(checkpoint: dict, run_id, path):
    """Raise unless ``checkpoint`` was written by run ``run_id`` (the folder config's).

    Folders from before run ids have none in either and pass.

    Raises
    ------
    InputError
        The checkpoint belongs to another run: one line, naming both ids.
    """
    ours = str(checkpoint.get("run_id") or "")
    if ours != str(run_id or ""):
        raise InputError(f"belongs to another training run (run {ours or 'without id'}, "
                         f"config.json has run {run_id or 'without id'}); it cannot resume "
                         "this folder: start a new run with --overwrite", path)


class Trainer(ABC):
    """What :func:`epoch_loop` needs from a trainer.

    Attributes
    ----------
    stage : str
        Stage of the progress events (``"train"``, ``"gan"``).
    outdir : Path
        The folder that receives the checkpoint and the log.
    checkpoint_file, log_file : str
        File names in ``outdir``.
    log_columns : list of str
        Columns of the training log; the loop fills ``epoch``, ``seconds``
        and ``device``, :meth:`end_epoch` the others.
    device : str
        Description of the device, for events and log rows.
    run_id : str
        The run's id, saved in the checkpoint ("" for folders from before run ids).
    """

    run_id: str = ""
    stage: str
    outdir: Path
    checkpoint_file: str
    log_file: str
    log_columns: list
    device: str

    @abstractmethod
    def step(self, rng: np.random.Generator) -> dict:
        """One optimisation step; returns its losses (name -> float)."""

    @abstractmethod
    def start_epoch(self):
        """Called before the first step of every epoch (e.g. train mode)."""

    @abstractmethod
    def end_epoch(self, epoch: int, means: dict) -> tuple:
        """Finish epoch ``epoch`` (1-based) given the mean step losses.

        Returns ``(fields, extra)``: the log row's fields (besides
        ``epoch``, ``seconds``, ``device``) and more data for the epoch-end
        event only.
        """

    @abstractmethod
    def state_dict(self) -> dict:
        """The trainer's state to checkpoint (networks, optimisers...)."""

    @abstractmethod
    def load_state_dict(self, state: dict):
        """Restore :meth:`state_dict`'s output."""

    def step_message(self, epoch: int, epochs: int, values: dict, means: dict) -> str:
        """Message of a step event (``means``: the epoch's running means)."""
        return f"epoch {epoch}/{epochs}"

    def epoch_message(self, epoch: int, epochs: int, row: dict) -> str:
        """Message of an epoch-end event (the CLI prints it)."""
        return f"epoch {epoch}/{epochs}"


def _save_checkpoint(trainer: Trainer, rng, *, epoch, step=0, sums=None):
    import torch

    from .model import save_state

    save_state(Path(trainer.outdir) / trainer.checkpoint_file, {
        **trainer.state_dict(), "epoch": int(epoch), "step": int(step),
        "sums": {k: float(v) for k, v in (sums or {}).items()},
        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "run_id": str(trainer.run_id or "")})


def epoch_loop(trainer: Trainer, *, epochs: int, steps_per_epoch: int,
               rng: np.random.Generator, checkpoint: Optional[dict] = None,
               start_data: Optional[dict] = None, cancel: Optional[CancelToken] = None):
    """Run ``trainer`` up to ``epochs`` epochs (a generator job; returns None).

    Yields a first event (``data``: ``device``, ``epoch``,
    ``steps_per_epoch`` and ``start_data``), one event per step (``data``:
    the step's losses, ``epoch``, ``step``, ``device``, ``eta_s``) and one per
    epoch (``data``: the log row, ``extra`` of :meth:`Trainer.end_epoch`,
    ``epoch_end=True`` and ``eta_s``), all with the trainer's stage and a
    ``step``/``total`` counted in steps.

    After every epoch the log is rewritten and the checkpoint saved; when
    ``cancel`` is set it is checked before each step, and the checkpoint is
    saved first, holding the unfinished epoch's progress.

    Parameters
    ----------
    trainer : Trainer
    epochs : int
        Total epochs; a resumed run continues up to it.
    steps_per_epoch : int
    rng : numpy.random.Generator
        The run's generator (from :func:`seed_everything`); the trainer draws
        from it in :meth:`Trainer.step`.
    checkpoint : dict, optional
        A checkpoint (:func:`read_checkpoint`) to continue from: the trainer's
        state, the random states, the epoch and step reached and the log rows
        written so far.
    start_data : dict, optional
        More data for the first event.
    cancel : CancelToken, optional
    """
    import torch

    outdir = Path(trainer.outdir)
    start_epoch, start_step, start_sums, log_rows = 0, 0, {}, []
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        start_epoch = int(checkpoint["epoch"])
        # Checkpoints before the step count restart their unfinished epoch.
        start_step = int(checkpoint.get("step", 0))
        start_sums = dict(checkpoint.get("sums", {})) if start_step else {}
        rng.bit_generator.state = checkpoint["numpy_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log_rows = read_training_log(outdir / trainer.log_file, trainer.log_columns)[:start_epoch]
    total = epochs * steps_per_epoch
    first_done = start_epoch * steps_per_epoch + start_step
    yield ProgressEvent(trainer.stage, first_done, total, message=f"training on {trainer.device}",
                        data={"device": trainer.device, "epoch": start_epoch,
                              "steps_per_epoch": steps_per_epoch, **(start_data or {})})
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        trainer.start_epoch()
        sums = dict(start_sums) if epoch == start_epoch else {}
        first = start_step if epoch == start_epoch else 0
        for step in range(first, steps_per_epoch):
            if cancel is not None and cancel.cancelled:
                _save_checkpoint(trainer, rng, epoch=epoch, step=step, sums=sums)
                cancel.check()
            values = trainer.step(rng)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            done = epoch * steps_per_epoch + step + 1
            per_step = (time.perf_counter() - t_start) / max(done - first_done, 1)
            means = {k: v / (step + 1) for k, v in sums.items()}
            yield ProgressEvent(trainer.stage, done, total,
                                message=trainer.step_message(epoch + 1, epochs, values, means),
                                data=dict(values, epoch=epoch + 1, step=step + 1,
                                          device=trainer.device,
                                          eta_s=per_step * (total - done)))
        fields_, extra = trainer.end_epoch(epoch + 1, {k: v / steps_per_epoch
                                                       for k, v in sums.items()})
        row = {"epoch": epoch + 1, **fields_, "seconds": time.perf_counter() - t0,
               "device": trainer.device}
        log_rows.append(row)
        write_training_log(outdir / trainer.log_file, log_rows, trainer.log_columns)
        _save_checkpoint(trainer, rng, epoch=epoch + 1)
        elapsed = time.perf_counter() - t_start
        per_epoch = elapsed / max((epoch + 1) * steps_per_epoch - first_done, 1) * steps_per_epoch
        yield ProgressEvent(trainer.stage, (epoch + 1) * steps_per_epoch, total,
                            message=trainer.epoch_message(epoch + 1, epochs, row),
                            data=dict(row, **extra, epoch_end=True,
                                      eta_s=per_epoch * (epochs - epoch - 1)))


def write_training_log(path, rows, columns):
    """Write per-epoch rows (dicts) as a CSV, atomically."""
    from ..io.atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def read_training_log(path, columns) -> list:
    """Rows written by :func:`write_training_log` (for resuming); [] when absent."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        out.append({k: (r[k] if k == "device" else float(r[k])) for k in columns if k in r})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out
