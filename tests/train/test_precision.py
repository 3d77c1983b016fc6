"""precision = "auto": bf16 on a CPU only when its cpuinfo flags and torch's oneDNN both say so, and a timed
step of the model says it is faster."""

from __future__ import annotations

import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.train import precision
from nanobert.train.precision import (PutBack, choose_by_timing, cpu_bf16_flags, cpu_has_bf16, needs_timing,
                                      time_precisions, timed_choice, use_bf16)

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
    assert not use_bf16("auto", cpu)  # untimed, "auto" is fp32 on a CPU ...
    assert needs_timing("auto", cpu) and not needs_timing("fp32", cpu) and not needs_timing("bf16", cpu)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert not needs_timing("auto", cpu)  # ... and is timed only where bf16 instructions exist
    with pytest.raises(NanobertError, match="unknown precision 'fp16'"):
        use_bf16("fp16", cpu)


def test_timed_choice_needs_a_clear_gain():
    assert timed_choice(1.0, 0.5) == "bf16"
    assert timed_choice(1.0, 0.89) == "bf16"
    assert timed_choice(1.0, 0.95) == "fp32"  # within the margin: timing noise, not a gain
    assert timed_choice(1.0, 1.4) == "fp32"


def test_time_precisions_warms_up_and_interleaves():
    calls = []
    fp32_s, bf16_s = time_precisions(calls.append, repeats=2)
    assert calls == [False, True, False, True, False, True]
    assert fp32_s >= 0 and bf16_s >= 0


def test_choose_by_timing_leaves_model_rng_and_data_as_they_were(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    model.train()
    seen = []

    def forward(x):
        seen.append(torch.is_autocast_enabled("cpu"))
        out = model[1](model[0](x))
        return out, out.square().mean()

    wrapper = type("W", (torch.nn.Module,), {})()
    wrapper.inner = model
    wrapper.forward = forward
    weights = [p.detach().clone() for p in model.parameters()]
    batches = iter([{"x": torch.ones(2, 4)}, {"x": torch.zeros(2, 4)}])
    rng = torch.get_rng_state()
    monkeypatch.setattr(precision, "time_precisions", lambda step, repeats=3: (step(False), step(True), (1.0, 0.5))[-1])
    choice, rest = choose_by_timing(wrapper, batches, torch.device("cpu"))
    assert choice == "bf16" and seen == [False, True]  # one pass in each precision (timing stubbed)
    assert torch.equal(torch.get_rng_state(), rng)  # the run's dropout masks are not shifted
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert wrapper.training  # back in the mode it was in
    assert torch.equal(next(rest)["x"], torch.ones(2, 4))  # the timed batch is still the first to train on
    assert torch.equal(next(rest)["x"], torch.zeros(2, 4))


def test_put_back_passes_the_iterators_state_through():
    class Counting:
        def __init__(self):
            self.k = 0

        def __next__(self):
            self.k += 1
            return self.k

        def state_dict(self):
            return {"k": self.k}

    it = Counting()
    first = next(it)
    back = PutBack(first, it)
    assert [next(back), next(back)] == [1, 2]
    assert back.state_dict() == {"k": 2}
    assert not hasattr(PutBack(0, iter([])), "state_dict")  # only where the iterator has one
