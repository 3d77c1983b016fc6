"""Training commands and export never destroy what they are given: checked, locked outputs; a clear error instead."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nanobert.cli import main
from nanobert.fileio import MARKER, output_lock

QUIET = ["--no-progress", "--threads", "1", "--seed", "0", "--epochs", "1", "--max_train_examples", "64"]


def _finetune(tiny_bert, train, dev, out, *extra) -> int:
    return main(["finetune", "--model", str(tiny_bert), "--train", str(train), "--validation", str(dev),
                 "--out", str(out), *QUIET, *extra])


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_finetune_into_the_data_directory_is_refused_and_the_data_survives(tiny_bert, sst2, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    train, dev = (Path(shutil.copy(f, d)) for f in sst2)
    before = train.read_bytes(), dev.read_bytes()
    assert _finetune(tiny_bert, train, dev, d) == 2
    assert "would delete the input" in _one_error(capsys)
    assert (train.read_bytes(), dev.read_bytes()) == before and sorted(p.name for p in d.iterdir()) == ["dev.tsv",
                                                                                                         "train.tsv"]


def test_second_finetune_needs_overwrite(tiny_bert, sst2, tmp_path, capsys):
    out = tmp_path / "model"
    assert _finetune(tiny_bert, *sst2, out) == 0
    assert json.loads((out / MARKER).read_text())["command"] == "finetune"
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert _finetune(tiny_bert, *sst2, out) == 2
    assert "--overwrite" in _one_error(capsys)
    assert (out / "model.safetensors").read_bytes() == weights
    assert _finetune(tiny_bert, *sst2, out, "--overwrite", "--lr", "1e-2") == 0
    assert (out / "model.safetensors").read_bytes() != weights
    assert not list(out.glob(".final*"))  # the staging directory is gone


def test_finetune_into_a_foreign_directory_is_refused(tiny_bert, sst2, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert _finetune(tiny_bert, *sst2, out) == 2
    assert "not written by nanobert finetune" in _one_error(capsys)
    assert (out / "mine.txt").read_text() == "keep me"


# --- pretrain / train-gpt ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shards(tiny_bert, sst2, tmp_path_factory):
    """SST-2 sentences prepared with the tiny BERT's vocabulary into 32-token shards."""
    root = tmp_path_factory.mktemp("shards")
    text = root / "sst2.txt"
    text.write_text("\n".join(line.split("\t")[0] for line in sst2[0].read_text().splitlines()[1:]), encoding="utf-8")
    assert main(["prepare", str(text), "--tokenizer", str(tiny_bert), "--out", str(root / "data"), "--seq-len", "32",
                 "--val-fraction", "0.1", "--workers", "1", "--no-progress"]) == 0
    return root / "data"


def _pretrain(data, out, *extra) -> list[str]:
    return ["pretrain", "--out_dir", str(out), "--data.dir", str(data), "--data.batch_size", "8",
            "--data.eval_batches", "1", "--model.hidden_size", "32", "--model.num_hidden_layers", "1",
            "--model.num_attention_heads", "2", "--model.intermediate_size", "64",
            "--model.max_position_embeddings", "32", "--train.max_steps", "4", "--train.eval_every", "4",
            "--train.checkpoint_every", "2", "--train.progress", "false", "--samples", "[]", *extra]


def test_pretrain_refuses_an_output_another_run_writes(shards, tmp_path, capsys):
    out = tmp_path / "run"
    with output_lock(out, "pretrain"):
        assert main(_pretrain(shards, out)) == 2
        err = _one_error(capsys)
    assert f"pid {os.getpid()}" in err and "being written by another run" in err
    assert not out.exists()


def test_pretrain_twice_resume_and_old_unmarked_runs(shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_pretrain(shards, out)) == 0
    capsys.readouterr()
    assert main(_pretrain(shards, out)) == 2 and "--overwrite" in _one_error(capsys)
    assert main(_pretrain(shards, out, "--overwrite")) == 0
    (out / MARKER).unlink()  # a run from before outputs were marked: --resume still continues it
    assert main(_pretrain(shards, out, "--train.max_steps", "6", "--resume")) == 0
    assert (out / "step-00000006").is_dir() and json.loads((out / MARKER).read_text())["command"] == "pretrain"
    assert main(_pretrain(shards, shards)) == 2 and "would delete the input" in _one_error(capsys)


def test_pretrain_on_a_truncated_shard_is_one_clear_error(shards, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shards, data)
    shard = sorted(data.glob("train-*.tokens.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:len(shard.read_bytes()) // 2])
    assert main(_pretrain(data, tmp_path / "run")) == 2
    err = _one_error(capsys)
    assert shard.stem.removesuffix(".tokens") in err and "prepare the data again" in err


def test_train_gpt_refuses_an_output_another_run_writes(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    out = tmp_path / "gpt"
    args = ["train-gpt", "--inputs", str(corpus), "--out_dir", str(out), "--model.n_positions", "16",
            "--model.n_embd", "16", "--model.n_layer", "1", "--model.n_head", "2", "--loop.max_steps", "2",
            "--loop.progress", "false", "--loop.plots", "false", "--loop.tensorboard", "false"]
    with output_lock(out, "train-gpt"):
        assert main(args) == 2
        assert f"pid {os.getpid()}" in _one_error(capsys)
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2 and "--overwrite" in _one_error(capsys)
    assert main([*args, "--overwrite"]) == 0


# --- export -----------------------------------------------------------------------------------------------------------

def test_export_refuses_to_replace_a_file_that_is_not_an_export(tiny_bert, tmp_path, capsys):
    pytest.importorskip("onnx")
    target = tmp_path / "notes.onnx"
    target.write_text("my notes")
    assert main(["export", "onnx", "--model", str(tiny_bert), "--out", str(target)]) == 2
    assert "--overwrite" in _one_error(capsys)
    assert target.read_text() == "my notes"
    assert main(["export", "onnx", "--model", str(tiny_bert), "--out", str(target), "--overwrite"]) == 0
    assert target.read_bytes()[:2] != b"my"
    assert main(["export", "onnx", "--model", str(tiny_bert), "--out", str(target)]) == 0  # a previous export is replaced

