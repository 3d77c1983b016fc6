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


def _torchrun(recipe, out, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nanobert", "pretrain", "--config", str(recipe), "--out_dir", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_process_fsdp_equals_one_process_and_resumes(tiny_recipe, tmp_path):
    recipe = tiny_recipe(dropout=0.0)
    # decay_steps fixed: the first FSDP run stops at step 6 and the resumed one goes on to 12 on the same schedule
    common = ["--train.checkpoint_every", "6", "--train.eval_every", "6", "--train.decay_steps", "8"]
    single = tmp_path / "single"
    pretrain(load_config(PretrainConfig, recipe, ["--out_dir", str(single), "--data.batch_size", "8",
                                                  "--train.max_steps", "12", *common]))

    fsdp = tmp_path / "fsdp"
    sharded = ["--data.batch_size", "4", "--train.parallel", "fsdp", *common]
    _torchrun(recipe, fsdp, "--train.max_steps", "6", *sharded)
    first = load_file(fsdp / "step-00000006" / "model.safetensors")  # full weights, gathered by rank 0
    ref6 = load_file(single / "step-00000006" / "model.safetensors")
    assert first.keys() == ref6.keys()
    for k in ref6:
        torch.testing.assert_close(first[k], ref6[k], rtol=1e-4, atol=1e-5, msg=k)
    _torchrun(recipe, fsdp, "--train.max_steps", "12", "--resume", *sharded)

    a, b = load_file(single / "model" / "model.safetensors"), load_file(fsdp / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(ref6[k], a[k]) for k in a)  # steps 7-12 did train
    saved = torch.load(fsdp / "step-00000012" / "optimizer.pt", weights_only=True)
    assert all(isinstance(p, str) for g in saved["param_groups"] for p in g["params"])  # full state, by name
