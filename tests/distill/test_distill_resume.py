"""A distillation killed with SIGKILL after its first checkpoint and resumed with --resume ends with the same
student, bit for bit, as a run that was never interrupted (it trains through the shared loop)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from nanobert.distill import DistillConfig, DistillLossConfig, distill
from nanobert.train.checkpoints import list_checkpoints

# Distils with the same settings as the test and kills its own process after optimizer step N.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from nanobert.distill import DistillConfig, DistillLossConfig, distill

    teacher, train, dev, out, n = sys.argv[1:6]

    class KillAfterStep:
        def on_step_end(self, state):
            if state.step == int(n):
                os.kill(os.getpid(), signal.SIGKILL)

    cfg = DistillConfig(student="mini", loss=DistillLossConfig(hidden=1.0), max_train_examples=64, epochs=2,
                        batch_size=16, lr=2e-3, progress=False, threads=1)
    distill(teacher, train, dev, out, cfg, callbacks=[KillAfterStep()])
""")


def _run(args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(teacher_dir, splits, tmp_path):
    train, dev = splits
    full = tmp_path / "full"
    cfg = DistillConfig(student="mini", loss=DistillLossConfig(hidden=1.0), max_train_examples=64, epochs=2,
                        batch_size=16, lr=2e-3, progress=False, threads=1)  # dropout 0.1: the RNG must resume too
    distill(teacher_dir, train, dev, full, cfg)

    cut = tmp_path / "cut"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    first = _run([str(driver), str(teacher_dir), str(train), str(dev), str(cut), "6"])
    assert first.returncode == -9, first.stderr[-2000:]
    assert [p.name for p in list_checkpoints(cut / "run")] == ["step-00000004"]  # one epoch = 4 steps
    assert not (cut / "model.safetensors").exists()
    second = _run(["-m", "nanobert", "distill", "--teacher", str(teacher_dir), "--student", "mini", "--hidden-loss", "1",
                   "--max-train-examples", "64", "--epochs", "2", "--batch-size", "16", "--lr", "2e-3",
                   "--threads", "1", "--no-progress", "--train", str(train), "--validation", str(dev),
                   "--out", str(cut), "--resume"])
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming from" in second.stderr and "step 4" in second.stderr

    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    proj = [load_file(p / "run" / "step-00000008" / "model.safetensors")["proj.weight"] for p in (full, cut)]
    assert torch.equal(*proj)  # the projection, trained beside the student, resumed exactly too
    rows = lambda p: [r.split(",")[:5] for r in (p / "run" / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(cut)
