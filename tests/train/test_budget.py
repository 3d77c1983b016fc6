import json

import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.train import budget as budget_mod
from nanobert.train import checkpoints
from nanobert.train.budget import Budget
from nanobert.train.loop import LoopConfig, train
from nanobert.train.schedule import lr_at

from loop_stubs import Batches, TinyMLM


class FakeClock:
    """time.monotonic for train.budget: `now` seconds, moved by the test (or by `per_call` at each reading)."""

    def __init__(self, per_call: float = 0.0):
        self.now, self.per_call = 1000.0, per_call

    def __call__(self) -> float:
        self.now += self.per_call
        return self.now


def test_time_budget_decays_by_the_share_of_time_after_warmup(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_mod.time, "monotonic", clock)
    b = Budget(by_time=True, limit_s=100.0, warmup_steps=10, decay_steps=990)
    clock.now += 1.0
    assert b.tick(5) == (5.0, False)  # warmup counts steps whatever the time
    clock.now += 1.0
    assert b.tick(10) == (10.0, False)  # warmup ends at 2 s: 98 s are left for the decay
    clock.now += 49.0
    pos, final = b.tick(20)  # half the remaining time, 10 of 990 decay steps: the time's share wins
    assert pos == pytest.approx(10 + 0.5 * 990) and not final
    assert lr_at(pos, max_lr=1.0, min_lr=0.0, warmup_steps=10, decay_steps=990) == pytest.approx(0.5)
    pos, _ = b.tick(800)  # more steps than time: the steps' share wins
    assert pos == pytest.approx(800)
    clock.now += 49.0
    pos, final = b.tick(30)
    assert final and lr_at(pos, max_lr=1.0, min_lr=0.1, warmup_steps=10, decay_steps=990) == pytest.approx(0.1)


def test_step_budget_only_stops_and_a_resumed_clock_keeps_its_time(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_mod.time, "monotonic", clock)
    steps = Budget(by_time=False, limit_s=60.0, warmup_steps=0, decay_steps=100)
    clock.now += 59.0
    assert steps.tick(7) == (7.0, False)
    clock.now += 1.0
    assert steps.tick(8) == (8.0, True)
    cfg = LoopConfig(max_steps=100, warmup_steps=0, time_limit_min=1.0, budget="time")
    resumed = Budget.start(cfg, 100, saved={"elapsed_s": 45.0, "warmup_end_s": 0.0})
    clock.now += 15.0
    assert resumed.tick(10) == (pytest.approx(100.0), True)  # 45 s before the kill + 15 s since: the minute is spent
    with pytest.raises(NanobertError, match="budget = time needs train.time_limit_min"):
        LoopConfig(budget="time")


def test_a_run_on_a_time_budget_ends_its_schedule_when_the_time_runs_out(tmp_path, monkeypatch):
    # each reading of the clock moves it 1.5 s: a 1-minute budget lasts ~40 steps of the 1,000 allowed
    monkeypatch.setattr(budget_mod.time, "monotonic", FakeClock(per_call=1.5))
    torch.manual_seed(0)
    lrs = []

    class Lrs:
        def on_step_end(self, state):
            lrs.append(state.lr)

    cfg = LoopConfig(max_steps=1000, time_limit_min=1.0, budget="time", lr=1e-2, min_lr=1e-4, warmup_steps=5,
                     eval_every=1000, checkpoint_every=0, progress=False, tensorboard=False, plots=False,
                     precision="fp32")
    state = train(TinyMLM(), Batches(), cfg, tmp_path, callbacks=[Lrs()])
    assert 30 <= state.step <= 45
    assert lrs[4] == pytest.approx(1e-2)  # warmup by steps
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # then a steady decay...
    assert lrs[-1] < 1.1e-4 * 1.5 and state.lr == pytest.approx(1e-4)  # ...to the floor as the time ends
    saved = json.loads((checkpoints.latest_checkpoint(tmp_path) / "state.json").read_text())
    assert saved["clock"]["elapsed_s"] >= 60.0 and saved["clock"]["warmup_end_s"] > 0
