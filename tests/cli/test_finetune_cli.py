"""`nanobert finetune` / `evaluate` from the command line: reports, resume after SIGKILL, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanobert.cli import main
from nanobert.infer.pipelines import ClassifyPipeline
from nanobert.train.metrics import classification_metrics

from sst2_data import sst2_rows, write_tsv

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--no-progress", "--threads", "1", "--seed", "0"]


def _cmd(tiny_bert, sst2, out, *extra) -> list[str]:
    train, dev = sst2
    return ["finetune", "--model", str(tiny_bert), "--train", str(train), "--validation", str(dev),
            "--out", str(out), *QUIET, *extra]


def test_finetune_and_evaluate(tiny_bert, sst2, tmp_path, capsys):
    train, dev = sst2
    out = tmp_path / "cli"
    code = main(_cmd(tiny_bert, sst2, out, "--test", str(dev), "--epochs", "1", "--lr", "2e-3", "--lora-r", "2",
                     "--lora-targets", "query,key,value"))
    assert code == 0
    printed = capsys.readouterr().out
    assert "precision    recall  f1-score   support" in printed and "weighted avg" in printed
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    # the loop's records: learning curves beside the model, checkpoints out of its way
    assert (out / "metrics.csv").is_file() and (out / "loss.png").is_file()
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-00000019"]  # 600 / 32 = 19 steps
    assert main(["evaluate", "--model", str(out), "--data", str(dev), "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["support"] == 120
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(dev)]) == 2
    assert "nanobert: error:" in capsys.readouterr().err


def test_lora_default_lr_follows_the_method():
    from nanobert.cli import build_parser
    from nanobert.cli.finetune import _config

    def cfg(*flags):
        args, extra = build_parser().parse_known_args(["finetune", "--model", "m", "--train", "t", "--validation",
                                                       "v", "--out", "o", *flags])
        args.overrides = extra
        return _config(args)

    assert cfg().learning_rate == 5e-5 and cfg("--lora-r", "8").learning_rate == 1e-3
    assert cfg("--lora-r", "8", "--lr", "3e-4").learning_rate == 3e-4
    c = cfg("--lora-r", "4", "--lora-alpha", "8", "--lora-modules-to-save", "classifier,pooler", "--lora.dropout", "0.1")
    assert (c.lora.r, c.lora.alpha, c.lora.modules_to_save, c.lora.dropout) == (4, 8.0, ["classifier", "pooler"], 0.1)


def test_evaluate_predicts_like_classify_on_long_texts(tiny_bert, sst2, tmp_path):
    """A classifier fine-tuned on 16-token inputs: evaluate reads long texts as classify does (to the model's limit)."""
    out = tmp_path / "short"
    assert main(_cmd(tiny_bert, sst2, out, "--epochs", "1", "--lr", "3e-3", "--max-length", "16")) == 0
    long_rows = [(s, y) for s, y in sst2_rows("dev", 872) if len(s.split()) > 25][:80]
    data = write_tsv(tmp_path / "long.tsv", long_rows)
    metrics_file = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--out", str(metrics_file)]) == 0
    evaluated = json.loads(metrics_file.read_text())
    pipe = ClassifyPipeline(out)
    preds = [int(r["label"]) for r in pipe([s for s, _ in long_rows])]
    assert max(len(ids) for ids in pipe.encode([s for s, _ in long_rows])) > 16  # they are longer than max_length
    expected = classification_metrics([y for _, y in long_rows], preds, ["0", "1"])
    assert evaluated["confusion_matrix"] == expected["confusion_matrix"]


def _run_and_kill(cmd, ckpt_dir: Path, env) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "nanobert", *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(ckpt_dir.glob("step-*")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    return proc.wait()


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(tiny_bert, sst2, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    args = ["--epochs", "4", "--batch-size", "8", "--lr", "2e-3", "--checkpoint_every", "20", "--keep", "accuracy"]
    whole = tmp_path / "whole"
    assert main(_cmd(tiny_bert, sst2, whole, *args)) == 0
    killed = tmp_path / "killed"
    assert _run_and_kill(_cmd(tiny_bert, sst2, killed, *args), killed / "checkpoints", env) == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()  # it was killed mid-run
    assert main(_cmd(tiny_bert, sst2, killed, *args, "--resume")) == 0
    assert (killed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    a, b = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    assert ha["best_epoch"] == hb["best_epoch"] and ha["accuracy"] == hb["accuracy"]
    assert [h["val_loss"] for h in ha["history"]] == [h["val_loss"] for h in hb["history"]]


def test_corrupt_checkpoint_on_resume_is_one_clear_error(tiny_bert, sst2, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_cmd(tiny_bert, sst2, out, "--epochs", "1", "--max_steps", "4", "--checkpoint_every", "2")) == 0
    newest = sorted((out / "checkpoints").glob("step-*"))[-1]
    (newest / "optimizer.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(_cmd(tiny_bert, sst2, out, "--epochs", "1", "--max_steps", "4", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer.pt is damaged" in err[0] and "Traceback" not in err[0]


def test_grad_accum_equals_one_big_batch(tiny_bert, sst2, tmp_path):
    for name, extra in (("one", []), ("accum", ["--grad-accum", "4"])):
        assert main(_cmd(tiny_bert, sst2, tmp_path / name, "--epochs", "1", "--max_steps", "6", "--batch-size", "16",
                         *extra)) == 0
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("one", "accum"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)


def test_init_random_reinitialises_the_encoder(tiny_bert, sst2, tmp_path):
    from nanobert.data.tables import LabelMap
    from nanobert.tasks.finetune import FinetuneConfig, build_classifier

    base = load_file(tiny_bert / "model.safetensors")
    labels = LabelMap(["0", "1"])
    torch.manual_seed(0)
    pre = build_classifier(tiny_bert, labels, FinetuneConfig(), None).state_dict()
    torch.manual_seed(0)
    rnd = build_classifier(tiny_bert, labels, FinetuneConfig(init="random"), None).state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    base_key = next(k for k in base if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert torch.equal(pre[key], base[base_key]) and not torch.equal(rnd[key], base[base_key])
    assert rnd[key].shape == pre[key].shape
    assert main(_cmd(tiny_bert, sst2, tmp_path / "r", "--epochs", "1", "--max_steps", "3", "--init", "random")) == 0


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tiny_bert, sst2, tmp_path):
    extra = ["--epochs", "1", "--max_steps", "8", "--batch-size", "16", "--lr", "2e-3"]
    assert main(_cmd(tiny_bert, sst2, tmp_path / "single", *extra)) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "nanobert",
           *_cmd(tiny_bert, sst2, tmp_path / "ddp", *extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("single", "ddp"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    ma, mb = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("single", "ddp"))
    assert abs(ma["loss"] - mb["loss"]) < 1e-4


FINETUNE_BAD = [(["--batch-size", "0"], "batch_size must be >= 1"), (["--batch-size", "-3"], "batch_size must be >= 1"),
                (["--epochs", "0"], "epochs must be >= 1"), (["--lr", "-1"], "lr must be > 0"),
                (["--threads", "-2"], "threads must be >= 1"),
                (["--max-train-examples", "-5"], "max_train_examples must be >= 1"),
                (["--grad-accum", "0"], "grad_accum must be >= 1"), (["--lora-r", "-1"], "lora.r must be >= 0")]


@pytest.mark.parametrize("flags, message", FINETUNE_BAD)
def test_finetune_rejects_bad_numbers(tiny_bert, sst2, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert main(_cmd(tiny_bert, sst2, out, *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("nanobert: error:")
    assert not out.exists()


PRETRAIN_BAD = [(["--train.grad_accum", "0"], "train.grad_accum must be >= 1"),
                (["--train.max_steps", "0"], "train.max_steps must be >= 1"),
                (["--train.max_steps", "-5"], "train.max_steps must be >= 1"),
                (["--data.batch_size", "0"], "data.batch_size must be >= 1"),
                (["--train.eval_every", "0"], "train.eval_every must be >= 1"),
                (["--train.lr", "-1"], "train.lr must be > 0"),
                (["--train.schedule", "wavy"], "train.schedule must be one of cosine, linear, constant")]
if not torch.cuda.is_available():
    PRETRAIN_BAD.append((["--train.device", "cuda"], "no CUDA device"))


@pytest.mark.parametrize("flags, message", PRETRAIN_BAD)
def test_pretrain_rejects_bad_numbers_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["pretrain", "--out_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (out / "metrics.csv").exists() and not (out / "train.log").exists()


def test_evaluate_rejects_batch_size_zero(tiny_bert, sst2, capsys):
    assert main(["evaluate", "--model", str(tiny_bert), "--data", str(sst2[1]), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size must be >= 1" in err[0]


TRAIN_GPT_BAD = [(["--batch_size", "0"], "batch_size must be >= 1"),
                 (["--val_fraction", "1.5"], "val_fraction must be [0, 1)"),
                 (["--model_type", "lstm"], "model_type must be one of gpt, bigram"),
                 (["--loop.max_steps", "0"], "max_steps must be >= 1")]


@pytest.mark.parametrize("flags, message", TRAIN_GPT_BAD)
def test_train_gpt_rejects_bad_settings_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train-gpt", "--out_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
