"""Which precision `precision = "auto"` trains in: bf16 autocast where it is faster, else fp32.

    use_bf16("auto", torch.device("cuda"))      # True on GPUs with bf16 (Ampere and later)
    timed_choice(lambda bf16: one_step(bf16))   # a CPU with bf16 instructions: "bf16" or "fp32", timed

On CUDA: bf16 when torch says the GPU supports it. On a CPU, bf16 is possible only when /proc/cpuinfo
lists `avx512_bf16` or `amx_bf16` *and* torch's oneDNN says it can use bf16
(`torch.ops.mkldnn._is_mkldnn_bf16_supported`); without those instructions a bf16 matmul is emulated
and slower than fp32. Detected, never assumed: no cpuinfo (macOS, Windows) means fp32.

Where it is possible, whether it pays depends on the model: on one 2-core Xeon with AMX a 2048 x 2048
bf16 matmul ran 5.7x faster than fp32, a training step of the small BERT (L4/H256) 1.3x faster under
bf16 autocast, and a step of the mini BERT (L2/H128) 0.7x as fast (the casts and the non-matmul work
outweigh the faster matmuls), with losses equal to 3-4 decimals either way (benchmarks/precision.py).
So the training loop times a few forward and backward passes of the real model on its first batch in
both precisions and keeps bf16 only when it is clearly faster (`timed_choice`); the choice is logged and
saved in checkpoints, so a resumed run keeps it. `precision = "bf16"` or `"fp32"` skips the timing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from nanobert.errors import NanobertError

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("auto", "fp32", "bf16")
BF16_MARGIN = 0.9  # timed "auto" keeps bf16 only when its step takes under 90% of fp32's: timing noise near a
# tie must not pick a precision whose losses differ in the last decimals for no gain


def cpu_name(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The processor's model name (/proc/cpuinfo), for benchmarks to print; the platform's word where there is none."""
    try:
        for line in Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_flags(cpuinfo: str) -> list[str]:
    """The bf16 instruction sets named in the `flags` lines of a /proc/cpuinfo text. Example:
    "flags\t\t: fpu avx512f avx512_bf16 amx_tile" -> ["avx512_bf16"]."""
    words = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            words.update(value.split())
    return [f for f in BF16_CPU_FLAGS if f in words]


@functools.lru_cache(maxsize=None)
def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU does bf16 matmuls natively: cpuinfo flags and torch's oneDNN agree."""
    try:
        flags = cpu_bf16_flags(Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    return bool(flags) and _torch_cpu_bf16()


def _torch_cpu_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: `precision` is auto | fp32 | bf16. Untimed, "auto" is fp32 on a CPU
    (the training loop times it instead: `needs_timing`)."""
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    raise NanobertError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")


def needs_timing(precision: str, device: torch.device) -> bool:
    """Whether "auto" on `device` is decided by timing: a CPU where bf16 is possible at all."""
    return precision == "auto" and device.type == "cpu" and cpu_has_bf16()


def time_precisions(step: Callable[[bool], None], repeats: int = 3) -> tuple[float, float]:
    """Median seconds of `step(bf16)` for bf16 = False and True, after one warm-up call each; the two are
    interleaved so a machine that gets busier half-way slows both alike."""
    step(False)
    step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            t0 = time.perf_counter()
            step(bf16)
            times[bf16].append(time.perf_counter() - t0)
    return statistics.median(times[False]), statistics.median(times[True])


def timed_choice(fp32_s: float, bf16_s: float) -> str:
    """"bf16" when its timed step is clearly faster (under BF16_MARGIN of fp32's), else "fp32"."""
    return "bf16" if bf16_s < BF16_MARGIN * fp32_s else "fp32"


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context a forward pass runs in: bf16 autocast or nothing."""
    if not use_bf16(precision, device):
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class PutBack:
    """An iterator with one item taken off the front and put back: it yields `first`, then the rest of `it`;
    anything else (state_dict, load_state_dict) is `it`'s, whose position already counts `first`."""

    def __init__(self, first, it: Iterator):
        self.first, self.it = [first], it

    def __iter__(self):
        return self

    def __next__(self):
        return self.first.pop() if self.first else next(self.it)

    def __getattr__(self, name):
        return getattr(self.it, name)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors moved to `device` (asynchronously where the copy allows); other values as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def choose_by_timing(model: torch.nn.Module, batches: Iterator[dict], device: torch.device,
                     reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> tuple[str, Iterator[dict]]:
    """`precision = "auto"` on a CPU with bf16 instructions: forward + backward of `model(**first batch)` timed
    in fp32 and under bf16 autocast; "bf16" when clearly faster (`timed_choice`), else "fp32". Returns the
    choice and `batches` with that batch put back. The passes run in eval mode (no dropout; a model that keeps
    statistics of its training forwards keeps none of these); weights, gradients and the random state are left
    as they were; `reduce` (a sum over processes) makes every process take the same choice."""
    first = next(batches)
    batch = to_device(first, device)
    was_training = model.training
    model.eval()

    def step(bf16: bool) -> None:
        with autocast_for("bf16" if bf16 else "fp32", device)():
            _, loss = model(**batch)
        loss.backward()

    with torch.random.fork_rng(devices=[]):
        fp32_s, bf16_s = reduce(torch.tensor(time_precisions(step), dtype=torch.float64)).tolist()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    choice = timed_choice(fp32_s, bf16_s)
    log.info("precision auto: a timed step of the model took %.1f ms in fp32 and %.1f ms in bf16 -> %s",
             1000 * fp32_s, 1000 * bf16_s, choice)
    return choice, PutBack(first, batches)
