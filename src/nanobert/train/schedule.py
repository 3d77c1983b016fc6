"""Learning-rate schedules as pure functions of the step: easy to test, nothing to save on resume."""

from __future__ import annotations

import math


def lr_at(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int,
          kind: str = "cosine") -> float:
    """Learning rate at optimizer step `step` (0-based).

    Linear warmup from 0 to `max_lr` over `warmup_steps`, then decay to `min_lr` over the next
    `decay_steps` ("cosine" or "linear"; "constant" keeps `max_lr`), then `min_lr` for ever.

    Example: lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=10, decay_steps=10) -> 0.1;
             lr_at(15, ..., kind="linear") -> 0.5; lr_at(25, ...) -> 0.0.
    """
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown schedule {kind!r}; use cosine, linear or constant")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if kind == "constant":
        return max_lr
    progress = (step - warmup_steps) / max(1, decay_steps)
    if progress >= 1.0:
        return min_lr
    if kind == "linear":
        return max_lr + (min_lr - max_lr) * progress
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
