"""`torchrun --nproc-per-node 2` (gloo, CPU) trains the same model as one process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from nanobert.config import load_config
from nanobert.tasks.pretrain import PretrainConfig, pretrain


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tiny_recipe, tmp_path):
    recipe = tiny_recipe(dropout=0.0)  # dropout draws differ between processes by design
    short = ["--train.max_steps", "12", "--train.checkpoint_every", "6", "--train.eval_every", "6"]
    single = tmp_path / "single"
    pretrain(load_config(PretrainConfig, recipe, ["--out_dir", str(single), "--data.batch_size", "8", *short]))

    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nanobert", "pretrain", "--config", str(recipe), "--out_dir", str(ddp), "--data.batch_size", "4",
           *short]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = load_file(single / "model" / "model.safetensors"), load_file(ddp / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    start = load_file(single / "step-00000006" / "model.safetensors")
    assert any(not torch.equal(start[k], a[k]) for k in a)  # it did train
    # only rank 0 wrote, and the validation metrics (summed over both processes) agree
    last = lambda p: [r for r in (p / "metrics.csv").read_text().splitlines() if ",val," in r][-1]  # noqa: E731
    loss_a, loss_b = float(last(single).split(",")[2]), float(last(ddp).split(",")[2])
    assert abs(loss_a - loss_b) < 1e-4
    assert sorted(p.name for p in ddp.iterdir() if p.name.startswith("step-")) == ["step-00000006", "step-00000012"]
