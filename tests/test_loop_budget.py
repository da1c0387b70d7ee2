"""Time-budget training in the epoch loop, driven by a fake clock."""

import math

import numpy as np
import pytest

from cellpol_core.detection.loop import (BUDGET_FINAL_LR, BUDGET_WARMUP, Trainer,
                                         budget_lr_factor, epoch_loop, read_checkpoint)
from cellpol_core.jobs import run_job


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class TickTrainer(Trainer):
    """Each step costs ``step_s`` fake seconds, each epoch end ``close_s``."""

    stage = "train"
    checkpoint_file = "checkpoint.pt"
    log_file = "log.csv"
    log_columns = ["epoch", "loss", "seconds", "device"]
    device = "fake"

    def __init__(self, outdir, clock, *, step_s, close_s):
        self.outdir = outdir
        self.clock = clock
        self.step_s, self.close_s = step_s, close_s
        self.factors, self.step_times, self.epochs_closed = [], [], []
        self.steps = 0

    def step(self, rng):
        self.step_times.append(self.clock.now)
        self.clock.now += self.step_s
        self.steps += 1
        return {"loss": 1.0 / self.steps}

    def start_epoch(self):
        pass

    def end_epoch(self, epoch, means):
        self.clock.now += self.close_s
        self.epochs_closed.append(epoch)
        return {"loss": means["loss"]}, {}

    def set_lr_factor(self, factor):
        self.factors.append(factor)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def _run(tmp_path, *, budget_s, step_s, close_s, steps_per_epoch=7, epochs=3, clock=None,
         checkpoint=None):
    clock = clock or FakeClock()
    trainer = TickTrainer(tmp_path, clock, step_s=step_s, close_s=close_s)
    t0 = clock.now
    events = []
    run_job(epoch_loop(trainer, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       rng=np.random.default_rng(0), budget_s=budget_s, clock=clock,
                       checkpoint=checkpoint), events.append)
    return trainer, clock.now - t0, events


@pytest.mark.parametrize("step_s,close_s", [(1.0, 0.5), (2.5, 4.0), (0.3, 0.0)])
def test_budget_stops_on_time(tmp_path, step_s, close_s):
    budget = 60.0
    trainer, spent, events = _run(tmp_path, budget_s=budget, step_s=step_s, close_s=close_s,
                                  epochs=2)
    assert spent <= budget + 1e-9
    # It uses the budget: less than one step and one epoch closing is left over.
    assert spent > budget - (step_s + close_s) - 1e-9
    # More epochs than the 2 asked for: the budget replaces the epoch count.
    assert len(trainer.epochs_closed) > 2
    # The last, shortened epoch was closed and checkpointed.
    assert events[-1].data["epoch_end"] and events[-1].data["eta_s"] == 0.0
    assert events[-1].step == events[-1].total == int(budget)
    state = read_checkpoint(tmp_path / "checkpoint.pt", resume=True)
    assert state["epoch"] == trainer.epochs_closed[-1] and state["step"] == 0
    assert state["elapsed_s"] == pytest.approx(spent)


def test_schedule_ends_with_the_budget(tmp_path):
    budget = 100.0
    trainer, spent, _ = _run(tmp_path, budget_s=budget, step_s=1.0, close_s=0.0)
    factors = np.array(trainer.factors)
    # One factor per step, set from the share of the budget spent before it.
    assert len(factors) == trainer.steps == 100
    expected = [budget_lr_factor((t - 1000.0) / budget) for t in trainer.step_times]
    assert np.allclose(factors, expected)
    assert factors[0] < 0.05  # warm-up starts low
    assert factors.max() == pytest.approx(1.0, abs=0.01)
    assert np.all(np.diff(factors[int(BUDGET_WARMUP * 100) + 1:]) <= 1e-12)  # then only decays
    # The last step runs at the end of the schedule.
    assert factors[-1] == pytest.approx(budget_lr_factor(0.99))
    assert factors[-1] < 0.02


def test_budget_lr_factor_shape():
    assert budget_lr_factor(0.0) < 0.01
    assert budget_lr_factor(BUDGET_WARMUP) == pytest.approx(1.0)
    assert budget_lr_factor(1.0) == pytest.approx(BUDGET_FINAL_LR)
    mid = BUDGET_WARMUP + (1 - BUDGET_WARMUP) / 2
    assert budget_lr_factor(mid) == pytest.approx(BUDGET_FINAL_LR + (1 - BUDGET_FINAL_LR) / 2)
    assert budget_lr_factor(2.0) == budget_lr_factor(1.0)
    assert math.isfinite(budget_lr_factor(-1.0))


def test_resumed_budget_spends_only_what_is_left(tmp_path):
    trainer, spent, _ = _run(tmp_path, budget_s=30.0, step_s=1.0, close_s=0.0)
    state = read_checkpoint(tmp_path / "checkpoint.pt", resume=True)
    # As if the run had been stopped at 20 s: 10 s are left.
    state["elapsed_s"] = 20.0
    again, spent2, _ = _run(tmp_path, budget_s=30.0, step_s=1.0, close_s=0.0,
                            checkpoint=state)
    assert again.steps - trainer.steps == 10
    assert 9.0 < spent2 <= 10.0 + 1e-9


def test_without_budget_runs_the_epochs(tmp_path):
    trainer, _, events = _run(tmp_path, budget_s=None, step_s=1.0, close_s=0.0, epochs=3)
    assert trainer.epochs_closed == [1, 2, 3]
    assert trainer.steps == 21 and trainer.factors == []
    assert events[-1].step == events[-1].total == 21
