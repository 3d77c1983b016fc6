"""Which precision `precision = "auto"` trains in: bf16 autocast where the hardware does bf16 matmuls, else fp32.

    use_bf16("auto", torch.device("cpu"))   # True on a CPU with AVX-512 BF16 or AMX, False elsewhere

On CUDA: bf16 when torch says the GPU supports it (Ampere and later). On a CPU: bf16 only when
/proc/cpuinfo lists `avx512_bf16` or `amx_bf16` *and* torch's oneDNN says it can use bf16
(`torch.ops.mkldnn._is_mkldnn_bf16_supported`); without those instructions a bf16 matmul is
emulated and slower than fp32. Detected, never assumed: no cpuinfo (macOS, Windows) means fp32.

On CPUs the rule is off for now (`AUTO_BF16_ON_CPU`): on a 2-core Xeon with AMX, a 1024 x 1024 bf16
matmul ran 13x faster than fp32 (345 vs 27 GFLOP/s), but a whole MLM training step of the mini BERT
ran 0.70x as fast under bf16 autocast (benchmarks/precision.py: the casts and the non-matmul work
outweigh the faster matmuls at this size), with losses equal to 4 decimals over 12 steps. Turn it
on when benchmarks/precision.py shows a gain on the CPUs that matter; `precision = "bf16"` forces it.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from nanobert.errors import NanobertError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("auto", "fp32", "bf16")
AUTO_BF16_ON_CPU = False  # "auto" picks bf16 on CPUs with bf16 instructions; off: not faster where measured


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
    """Whether to train under bf16 autocast: `precision` is auto | fp32 | bf16."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and AUTO_BF16_ON_CPU and cpu_has_bf16()
    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    raise NanobertError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
