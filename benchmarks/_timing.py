"""Timing shared by the benchmarks: ours and the reference measured alternately, so load hits both alike."""

from __future__ import annotations

import time

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: seconds of this process, all threads


def timed_pair(fn_a, fn_b, repeats: int, warmup: int = 1, clock: str = "wall") -> tuple[float, float]:
    """Median seconds of `fn_a()` and `fn_b()`, run alternately (after `warmup` untimed rounds)."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = now()
            fn()
            times.append(now() - t0)
    return sorted(times_a)[len(times_a) // 2], sorted(times_b)[len(times_b) // 2]
