"""The run's clock: when to stop, and where the learning-rate schedule stands.

    clock = Budget.start(cfg, decay_steps, saved=checkpoint_meta.get("clock"), agree=mean_over_processes)
    pos, final = clock.tick(step)      # each step: the schedule's step, and whether time is up

`cfg.budget = "steps"` (the default): the schedule is a function of the step alone and
`time_limit_min` only stops the run early (at whatever learning rate it reached). Runs resume bit
for bit.

`cfg.budget = "time"` (needs `time_limit_min`): the decay after warmup follows the larger of two
shares, the steps done out of `max_steps` and the time spent since warmup out of what the limit
leaves, so the rate reaches `min_lr` when the time runs out on a fast machine and on a slow one
alike (the budgeted schedule of Cramming: a fixed wall-clock budget, not a guessed step count).
Warmup still counts steps. `max_steps` then only caps the run: set it above what fits. The clock's
elapsed time is saved in checkpoints, so a resumed run continues the same budget; its learning rates
depend on wall time, so it is not bitwise the uninterrupted run.
"""

from __future__ import annotations

import time
from typing import Callable


class Budget:
    def __init__(self, *, by_time: bool, limit_s: float, warmup_steps: int, decay_steps: int,
                 elapsed_s: float = 0.0, warmup_end_s: float | None = None,
                 agree: Callable[[float], float] = lambda seconds: seconds):
        self.by_time, self.limit_s = by_time, limit_s
        self.warmup_steps, self.decay_steps = warmup_steps, max(1, decay_steps)
        self.t0 = time.monotonic() - elapsed_s  # so that a resumed run keeps the time it already spent
        self.warmup_end_s = warmup_end_s
        self.agree = agree  # every process must see the same elapsed time (and so the same learning rate)
        self.elapsed_s = elapsed_s

    @classmethod
    def start(cls, cfg, decay_steps: int, saved: dict | None = None,
              agree: Callable[[float], float] = lambda seconds: seconds) -> "Budget":
        """The clock of a run with LoopConfig `cfg`; `saved` is `state_dict()` from the checkpoint resumed."""
        saved = saved or {}
        return cls(by_time=cfg.budget == "time", limit_s=60.0 * cfg.time_limit_min, warmup_steps=cfg.warmup_steps,
                   decay_steps=decay_steps, elapsed_s=saved.get("elapsed_s", 0.0) if cfg.budget == "time" else 0.0,
                   warmup_end_s=saved.get("warmup_end_s"), agree=agree)

    def tick(self, step: int) -> tuple[float, bool]:
        """(the step to give the schedule, whether the time limit is reached) before step `step` runs."""
        if self.limit_s <= 0:
            return float(step), False
        self.elapsed_s = self.agree(time.monotonic() - self.t0)
        final = self.elapsed_s >= self.limit_s
        if not self.by_time or step < self.warmup_steps:
            return float(step), final
        if self.warmup_end_s is None:
            self.warmup_end_s = self.elapsed_s
        left = max(self.limit_s - self.warmup_end_s, 1e-9)
        time_share = min(1.0, (self.elapsed_s - self.warmup_end_s) / left)
        step_share = (step - self.warmup_steps) / self.decay_steps
        return self.warmup_steps + max(step_share, time_share) * self.decay_steps, final

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed_s, "warmup_end_s": self.warmup_end_s}
