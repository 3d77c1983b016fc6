"""A pretraining run killed with SIGKILL (mid-step, and mid-checkpoint-write) and resumed ends with the
same weights, bit for bit, as a run that was never interrupted."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from nanobert.config import load_config
from nanobert.tasks.pretrain import PretrainConfig, pretrain
from nanobert.train.checkpoints import list_checkpoints

# Runs pretrain() and kills its own process with SIGKILL at a chosen point: after optimizer step
# N ("step:N"), or while the checkpoint of step N is being written ("ckpt:N", after the optimizer
# file and before the directory is renamed into place).
DRIVER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from nanobert.config import load_config
    from nanobert.tasks.pretrain import PretrainConfig, pretrain
    from nanobert.train import checkpoints

    recipe, out_dir, where, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
    kind, n = where.split(":")
    n = int(n)

    class KillAfterStep:
        def on_step_end(self, state):
            if kind == "step" and state.step == n:
                os.kill(os.getpid(), signal.SIGKILL)

    real_save = torch.save
    def save_then_die(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        if kind == "ckpt" and f"step-{n:08d}" in str(path):
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoints.torch.save = save_then_die

    cfg = load_config(PretrainConfig, recipe, ["--out_dir", out_dir])
    pretrain(cfg, resume=resume, callbacks=[KillAfterStep()])
""")


def _run(args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}, **kw)


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(tiny_recipe, tmp_path):
    recipe = tiny_recipe(dropout=0.1)  # dropout on: the RNG state must be restored too
    full = tmp_path / "full"
    pretrain(load_config(PretrainConfig, recipe, ["--out_dir", str(full)]))

    cut = tmp_path / "cut"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    first = _run([str(driver), str(recipe), str(cut), "step:11", "fresh"])
    assert first.returncode == -9, first.stderr[-2000:]
    assert [p.name for p in list_checkpoints(cut)] == ["step-00000008"] and not (cut / "model").exists()
    second = _run([str(driver), str(recipe), str(cut), "ckpt:16", "resume"])
    assert second.returncode == -9, second.stderr[-2000:]
    assert [p.name for p in list_checkpoints(cut)] == ["step-00000008"]  # the half-written final one does not count
    assert any(p.name.startswith(".step-00000016") for p in cut.iterdir())  # its temporary was left behind
    third = _run(["-m", "nanobert", "pretrain", "--config", str(recipe), "--out_dir", str(cut), "--resume"])
    assert third.returncode == 0, third.stderr[-2000:]
    assert "resuming from" in third.stderr and "step 8" in third.stderr
    assert not any(p.name.startswith(".step-") for p in cut.iterdir())  # the stale temporary was cleaned up

    a, b = load_file(full / "model" / "model.safetensors"), load_file(cut / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda p: [r.split(",")[:5] for r in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert rows(full) == rows(cut)  # same losses at every logged step, no duplicates
