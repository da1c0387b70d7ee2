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

A run may instead have a wall-time budget (``budget_s``): epochs go on until
the time is up, a step is started only when it is expected to end (with the
epoch's closing validation) within the budget, and the last, shortened epoch
is closed like any other. The learning rate follows
:func:`budget_lr_factor` of the fraction of the budget spent, so the schedule
ends when the budget does, however fast the machine is. The checkpoint then
also holds ``elapsed_s``, so a resumed run spends only what is left. The
clock is injectable (``clock=``) for tests.
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
           "check_run", "seed_everything", "write_training_log", "read_training_log",
           "budget_lr_factor"]

#: Fewest batches of an epoch whose length is not given.
MIN_STEPS_PER_EPOCH = 4
#: Share of a time budget spent warming the learning rate up (linearly from 0).
BUDGET_WARMUP = 0.05
#: Learning rate at the end of a time budget, as a share of the initial one.
BUDGET_FINAL_LR = 0.01


def budget_lr_factor(progress: float) -> float:
    """Learning-rate factor at ``progress`` (share of the time budget spent, 0 to 1).

    A linear warm-up over :data:`BUDGET_WARMUP` of the budget (Adam's moments
    start empty, also when fine-tuning), then a cosine decay that reaches
    :data:`BUDGET_FINAL_LR` exactly when the budget ends.
    """
    p = min(max(float(progress), 0.0), 1.0)
    if p < BUDGET_WARMUP:
        return max(p / BUDGET_WARMUP, 1e-3)
    q = (p - BUDGET_WARMUP) / (1.0 - BUDGET_WARMUP)
    return BUDGET_FINAL_LR + (1.0 - BUDGET_FINAL_LR) * 0.5 * (1.0 + math.cos(math.pi * q))


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

    def set_lr_factor(self, factor: float):
        """Scale the learning rate to ``factor`` times the initial one (time-budget runs).

        Trainers without a schedule of their own ignore it.
        """
        return None

    def step_message(self, epoch: int, epochs: int, values: dict, means: dict) -> str:
        """Message of a step event (``means``: the epoch's running means)."""
        return f"epoch {epoch}/{epochs}"

    def epoch_message(self, epoch: int, epochs: int, row: dict) -> str:
        """Message of an epoch-end event (the CLI prints it)."""
        return f"epoch {epoch}/{epochs}"


def _save_checkpoint(trainer: Trainer, rng, *, epoch, step=0, sums=None, elapsed_s=None):
    import torch

    from .model import save_state

    extra = {} if elapsed_s is None else {"elapsed_s": float(elapsed_s)}
    save_state(Path(trainer.outdir) / trainer.checkpoint_file, {
        **trainer.state_dict(), "epoch": int(epoch), "step": int(step),
        "sums": {k: float(v) for k, v in (sums or {}).items()},
        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "run_id": str(trainer.run_id or ""), **extra})


def epoch_loop(trainer: Trainer, *, epochs: int, steps_per_epoch: int,
               rng: np.random.Generator, checkpoint: Optional[dict] = None,
               start_data: Optional[dict] = None, cancel: Optional[CancelToken] = None,
               budget_s: Optional[float] = None, clock=time.perf_counter):
    """Run ``trainer`` up to ``epochs`` epochs, or for ``budget_s`` seconds (a generator job).

    Yields a first event (``data``: ``device``, ``epoch``,
    ``steps_per_epoch`` and ``start_data``), one event per step (``data``:
    the step's losses, ``epoch``, ``step``, ``device``, ``eta_s``) and one per
    epoch (``data``: the log row, ``extra`` of :meth:`Trainer.end_epoch`,
    ``epoch_end=True`` and ``eta_s``), all with the trainer's stage and a
    ``step``/``total`` counted in steps (in whole seconds of the budget when
    there is one).

    After every epoch the log is rewritten and the checkpoint saved; when
    ``cancel`` is set it is checked before each step, and the checkpoint is
    saved first, holding the unfinished epoch's progress.

    Parameters
    ----------
    trainer : Trainer
    epochs : int
        Total epochs; a resumed run continues up to it. Ignored with a budget.
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
    budget_s : float, optional
        Wall-time budget in seconds (see the module docstring); the learning
        rate is set through :meth:`Trainer.set_lr_factor` before every step.
    clock : callable
        Seconds, monotonic (tests pass a fake one).
    """
    import torch

    outdir = Path(trainer.outdir)
    start_epoch, start_step, start_sums, log_rows = 0, 0, {}, []
    spent = 0.0  # budget spent before this call (resumed runs)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        start_epoch = int(checkpoint["epoch"])
        # Checkpoints before the step count restart their unfinished epoch.
        start_step = int(checkpoint.get("step", 0))
        start_sums = dict(checkpoint.get("sums", {})) if start_step else {}
        spent = float(checkpoint.get("elapsed_s", 0.0))
        rng.bit_generator.state = checkpoint["numpy_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log_rows = read_training_log(outdir / trainer.log_file, trainer.log_columns)[:start_epoch]
    budget = None if budget_s is None else float(budget_s)
    t_start = clock()

    def elapsed():
        return spent + clock() - t_start

    def position(done):
        # Progress in steps, or in whole seconds of a budget.
        return min(int(elapsed()), int(budget)) if budget else done

    total = int(budget) if budget else epochs * steps_per_epoch
    first_done = start_epoch * steps_per_epoch + start_step
    yield ProgressEvent(trainer.stage, position(first_done), total,
                        message=f"training on {trainer.device}",
                        data={"device": trainer.device, "epoch": start_epoch,
                              "steps_per_epoch": steps_per_epoch, **(start_data or {})})
    shown_epochs = None if budget else epochs
    step_s, close_s = None, 0.0  # measured: mean step time, last epoch closing time
    n_timed = 0
    out_of_time = budget is not None and elapsed() >= budget
    epoch = start_epoch
    while not out_of_time and (budget is not None or epoch < epochs):
        t0 = clock()
        trainer.start_epoch()
        sums = dict(start_sums) if epoch == start_epoch else {}
        first = start_step if epoch == start_epoch else 0
        steps_done = first
        for step in range(first, steps_per_epoch):
            if budget is not None:
                # Start a step only if it and the epoch's closing fit in the budget.
                need = (step_s or 0.0) + close_s
                if elapsed() + need > budget and (n_timed or elapsed() >= budget):
                    out_of_time = True
                    break
                trainer.set_lr_factor(budget_lr_factor(elapsed() / budget))
            if cancel is not None and cancel.cancelled:
                _save_checkpoint(trainer, rng, epoch=epoch, step=step, sums=sums,
                                 elapsed_s=elapsed() if budget else None)
                cancel.check()
            t_step = clock()
            values = trainer.step(rng)
            n_timed += 1
            dt = clock() - t_step
            step_s = dt if step_s is None else step_s + (dt - step_s) / n_timed
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            steps_done = step + 1
            done = epoch * steps_per_epoch + step + 1
            per_step = (clock() - t_start) / max(done - first_done, 1)
            means = {k: v / (step + 1) for k, v in sums.items()}
            eta = (max(budget - elapsed(), 0.0) if budget
                   else per_step * (epochs * steps_per_epoch - done))
            yield ProgressEvent(trainer.stage, position(done), total,
                                message=trainer.step_message(epoch + 1, shown_epochs, values,
                                                             means),
                                data=dict(values, epoch=epoch + 1, step=step + 1,
                                          device=trainer.device, eta_s=eta))
        if steps_done == 0:  # the budget ended before this epoch's first step
            break
        t_close = clock()
        fields_, extra = trainer.end_epoch(epoch + 1, {k: v / steps_done
                                                       for k, v in sums.items()})
        row = {"epoch": epoch + 1, **fields_, "seconds": clock() - t0,
               "device": trainer.device}
        log_rows.append(row)
        write_training_log(outdir / trainer.log_file, log_rows, trainer.log_columns)
        _save_checkpoint(trainer, rng, epoch=epoch + 1,
                         elapsed_s=elapsed() if budget else None)
        close_s = clock() - t_close
        if budget:
            out_of_time = out_of_time or elapsed() >= budget
            eta = 0.0 if out_of_time else max(budget - elapsed(), 0.0)
            at = int(budget) if out_of_time else position(0)
        else:
            per_epoch = ((clock() - t_start)
                         / max((epoch + 1) * steps_per_epoch - first_done, 1) * steps_per_epoch)
            eta = per_epoch * (epochs - epoch - 1)
            at = (epoch + 1) * steps_per_epoch
        yield ProgressEvent(trainer.stage, at, total,
                            message=trainer.epoch_message(epoch + 1, shown_epochs, row),
                            data=dict(row, **extra, epoch_end=True, eta_s=eta))
        epoch += 1


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
        # Columns added later are empty in older rows.
        out.append({k: (r[k] if k == "device" else float(r[k])) for k in columns
                    if r.get(k) not in (None, "")})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out
