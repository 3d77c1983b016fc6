"""precision = "auto": bf16 on a CPU only when its cpuinfo flags and torch's oneDNN both say so."""

from __future__ import annotations

import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.train import precision
from nanobert.train.precision import cpu_bf16_flags, cpu_has_bf16, use_bf16

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
bogomips\t: 4000.00
"""
COOPER_LAKE = "model name\t: Intel(R) Xeon(R) 8380H\nflags\t\t: fpu avx512f avx512_bf16\n"
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx2 avx512f avx512bw\n"
# a flag name inside another line is not a flag
DECOY = "model name\t: avx512_bf16 amx_bf16 (not flags)\nflags\t\t: fpu avx2\nbugs\t\t: amx_bf16\n"


def test_flags_from_cpuinfo_text():
    assert cpu_bf16_flags(SAPPHIRE_RAPIDS) == ["avx512_bf16", "amx_bf16"]
    assert cpu_bf16_flags(COOPER_LAKE) == ["avx512_bf16"]
    assert cpu_bf16_flags(SKYLAKE) == []
    assert cpu_bf16_flags(DECOY) == []
    assert cpu_bf16_flags("") == []


@pytest.mark.parametrize("text, torch_ok, expected", [
    (SAPPHIRE_RAPIDS, True, True), (COOPER_LAKE, True, True), (SKYLAKE, True, False),
    (SAPPHIRE_RAPIDS, False, False),  # the flags alone are not enough: torch must be able to use them
])
def test_auto_rule_needs_flags_and_torch(tmp_path, monkeypatch, text, torch_ok, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    monkeypatch.setattr(precision, "_torch_cpu_bf16", lambda: torch_ok)
    cpu_has_bf16.cache_clear()
    try:
        assert cpu_has_bf16(str(path)) is expected
        assert cpu_has_bf16(str(tmp_path / "missing")) is False  # no cpuinfo (macOS, Windows): fp32
    finally:
        cpu_has_bf16.cache_clear()


def test_use_bf16(monkeypatch):
    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert use_bf16("auto", cpu) is precision.AUTO_BF16_ON_CPU  # the rule is switched off on CPUs for now
    monkeypatch.setattr(precision, "AUTO_BF16_ON_CPU", True)
    assert use_bf16("auto", cpu)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert not use_bf16("auto", cpu)
    with pytest.raises(NanobertError, match="unknown precision 'fp16'"):
        use_bf16("fp16", cpu)
