"""Causal-LM pretraining on real text: next-token batches, learning, exact resume, bigram, BPE, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from nanobert.config import load_config
from nanobert.errors import NanobertError
from nanobert.model.gpt import GPT, GPTConfig
from nanobert.data.causal import pad_examples, to_causal
from nanobert.tasks.causal_lm import CausalLMConfig, train_causal_lm
from nanobert.train.loop import LoopConfig


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """The first 40,000 characters of Persuasion (real text, small enough for a test)."""
    text = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8")[:40_000]
    path = tmp_path_factory.mktemp("corpus") / "persuasion.txt"
    path.write_text(text, encoding="utf-8")
    return path


def _cfg(corpus, out_dir, **kw) -> CausalLMConfig:
    loop = LoopConfig(max_steps=kw.pop("max_steps", 30), lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_every=10,
                      checkpoint_every=kw.pop("checkpoint_every", 0), progress=False, tensorboard=False,
                      plots=False, device="cpu", weight_decay=0.1)
    model = GPTConfig(n_positions=32, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    return CausalLMConfig(inputs=[str(corpus)], out_dir=str(out_dir), batch_size=16, val_fraction=0.1, num_workers=1,
                          model=model, loop=loop, **kw)


def _first_val_loss(run_dir) -> float:
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    return float(next(r for r in rows if ",val," in r).split(",")[2])


def test_blocks_become_shifted_next_token_pairs():
    batch = {"input_ids": torch.tensor([[5, 6, 7], [8, 9, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    out = to_causal(batch)
    assert out["input_ids"].tolist() == [[5, 6], [8, 9]]
    assert out["labels"].tolist() == [[6, 7], [9, -100]]
    assert out["attention_mask"].tolist() == [[1, 1], [1, 1]]


def test_padded_examples_start_their_loss_after_the_prompt():
    out = pad_examples([[5, 6, 7, 8], [1, 2, 3]], loss_from=[2, 1], pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [1, 2, 3]]
    assert out["labels"].tolist() == [[-100, 7, 8], [2, 3, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_char_gpt_learns_saves_and_samples(corpus, tmp_path):
    from nanobert.infer.generate import generate_text
    from nanobert.tokenizers import load_tokenizer

    result = train_causal_lm(_cfg(corpus, tmp_path / "run"))
    first_val = _first_val_loss(tmp_path / "run")
    assert first_val > math.log(result["vocab_size"]) - 0.5  # starts near uniform guessing
    assert result["val_loss"] < first_val - 1.0  # and learns the character statistics
    assert result["val_perplexity"] == pytest.approx(math.exp(result["val_loss"]))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["val_loss"] == result["val_loss"]
    model = GPT.from_pretrained(tmp_path / "run" / "model")
    tok = load_tokenizer(tmp_path / "run" / "model")
    assert tok.vocab_size == model.config.vocab_size == result["vocab_size"]
    text = generate_text(model, tok, "Anne", max_new_tokens=20, seed=0)[0]
    assert len(text) == 20 and set(text) <= set(tok.vocab)


def test_resume_after_a_kill_ends_with_the_same_weights(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path / "run", max_steps=8, checkpoint_every=4)
    train_causal_lm(cfg)
    uninterrupted = GPT.from_pretrained(tmp_path / "run" / "model").state_dict()
    shutil.rmtree(tmp_path / "run" / "step-00000008")  # as if killed between step 4 and step 8
    shutil.rmtree(tmp_path / "run" / "model")
    with pytest.raises(NanobertError, match="already holds checkpoints"):
        train_causal_lm(cfg)
    train_causal_lm(cfg, resume=True)
    resumed = GPT.from_pretrained(tmp_path / "run" / "model").state_dict()
    for name, t in uninterrupted.items():
        assert torch.equal(t, resumed[name]), name


def test_bigram_baseline_trains_on_the_same_data(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path / "bigram", model_type="bigram")
    cfg.loop.lr = 0.1  # a (V, V) table from N(0, 1) needs large steps
    result = train_causal_lm(cfg)
    assert result["model_type"] == "bigram" and result["parameters"] == result["vocab_size"] ** 2
    assert result["val_loss"] < _first_val_loss(tmp_path / "bigram") - 1.0
    assert not (tmp_path / "bigram" / "model").exists()


def test_byte_level_bpe_gpt_trains_with_end_of_text(corpus, shared_data, tmp_path):
    cfg = _cfg(corpus, tmp_path / "bpe", max_steps=4, tokenizer=str(shared_data / "gpt2"))
    cfg.model.n_embd, cfg.model.n_layer = 16, 1
    result = train_causal_lm(cfg)
    assert result["vocab_size"] == 50257 and math.isfinite(result["val_loss"])
    config = json.loads((tmp_path / "bpe" / "model" / "config.json").read_text())
    assert config["eos_token_id"] == 50256  # <|endoftext|> stops generation


def test_cli_train_gpt_overrides_and_errors(corpus, tmp_path, capsys):
    from nanobert.cli import main

    out = tmp_path / "cli"
    args = ["train-gpt", "--inputs", str(corpus), "--out_dir", str(out), "--model.n_positions", "16",
            "--model.n_embd", "16", "--model.n_layer", "1", "--model.n_head", "2", "--loop.max_steps", "3",
            "--loop.progress", "false", "--loop.plots", "false", "--loop.tensorboard", "false"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert main(["train-gpt", "--loop.max_stepz", "3"]) == 2
    assert "unknown config key 'loop.max_stepz'" in capsys.readouterr().err
    assert main(["train-gpt", "--out_dir", str(tmp_path / "x"), "--model_type", "lstm", "--inputs", str(corpus),
                 "--loop.progress", "false"]) == 2
    assert "model_type must be one of gpt, bigram, got 'lstm'" in capsys.readouterr().err


GPT_RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs").glob("align-*.toml"))


@pytest.mark.parametrize("path", GPT_RECIPES, ids=lambda p: p.name)
def test_every_gpt_recipe_loads(path):
    """Each shipped train-gpt recipe is a valid CausalLMConfig whose context holds a prompt and a completion."""
    cfg = load_config(CausalLMConfig, path)
    assert cfg.inputs and cfg.loop.max_steps >= 1 and cfg.model.n_positions >= 64


def test_the_gpt_recipes_are_found():
    assert len(GPT_RECIPES) >= 2
