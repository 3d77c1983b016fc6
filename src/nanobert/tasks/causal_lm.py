"""Causal language-model pretraining: predict every next token, with a GPT or the bigram baseline.

    cfg = load_config(CausalLMConfig, "configs/gpt-austen-char.toml")
    result = train_causal_lm(cfg)              # cfg.out_dir gets checkpoints, metrics, model/, results.json
    result["val_loss"], result["val_perplexity"]

Built from the shared pieces: the corpus is cut into token shards by `data.prepare` ("split" mode:
the documents' token stream cut into blocks of `n_positions + 1` tokens, each block sent to
train / val / test by a seeded draw), read back by `data.loaders.BatchStream`, turned into
next-token batches by `data.causal.CausalLMBatches`, and trained by
`train.loop.train` (checkpoints, exact resume, metrics, plots). A block of T + 1 tokens gives T
inputs and T targets (the same tokens shifted by one). The tokenizer is a character vocabulary
learnt from the corpus (`tokenizer = "char"`) or any saved tokenizer directory (e.g. GPT-2's
byte-level BPE: vocab.json + merges.txt). Perplexity is exp(mean loss per token); for a character
model that is per character.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
import torch
import torch.nn as nn

from nanobert.config import check_fields
from nanobert.data.causal import CausalLMBatches, val_batches
from nanobert.data.loaders import BatchStream, TokenShards
from nanobert.data.prepare import PrepareConfig, prepare
from nanobert.data.sources import read_documents
from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.model.gpt import GPT, BigramLanguageModel, GPTConfig
from nanobert.resources import ASSETS
from nanobert.tokenizers import CharTokenizer, load_tokenizer
from nanobert.train.loop import LoopConfig, evaluate, train
from nanobert.train.metrics import perplexity

log = logging.getLogger(__name__)


@dataclass
class CausalLMConfig:
    """A causal-LM recipe: data, tokenizer, model, loop. Defaults: a small character GPT on Jane Austen."""

    inputs: list[str] = field(default_factory=list)  # text files / directories; empty: the shipped Austen novels
    data_dir: str = ""  # an already prepared shard directory (skips inputs/tokenizer); empty: prepare into out_dir
    tokenizer: str = "char"  # "char": learn the characters of the corpus; else a saved tokenizer directory
    val_fraction: float = 0.05  # share of blocks held out for validation (Austen, T=128: ~1,400 blocks)
    out_dir: str = "runs/gpt"
    model_type: str = "gpt"  # gpt | bigram (the baseline: next token from the current one only)
    batch_size: int = 32  # sequences per micro-batch
    eval_batches: int = 0  # validation batches per evaluation during training; 0: the whole val split
    seed: int = 0  # data order, split and initialization
    num_workers: int = 0  # tokenizing processes when preparing the data; 0: one per CPU core
    model: GPTConfig = field(default_factory=lambda: GPTConfig(
        n_positions=128, n_embd=128, n_layer=4, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None))  # vocab_size and eos_token_id are set from the tokenizer
    loop: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self):
        check_fields(self, {"val_fraction": "[0, 1)", "batch_size": ">= 1", "eval_batches": ">= 0",
                            "num_workers": ">= 0"}, {"model_type": ("gpt", "bigram")})


def prepare_data(cfg: CausalLMConfig) -> Path:
    """The shard directory to train on: `cfg.data_dir`, or `out_dir/data` (prepared once, then reused)."""
    if cfg.data_dir:
        return Path(cfg.data_dir)
    data_dir = Path(cfg.out_dir) / "data"
    if (data_dir / "meta.json").is_file():
        log.info("reusing prepared data in %s", data_dir)
        return data_dir
    inputs = cfg.inputs or [str(ASSETS / "janeausten")]
    tokenizer = None
    if cfg.tokenizer == "char":
        tokenizer = CharTokenizer.train(read_documents(inputs))
        log.info("character vocabulary: %d characters", tokenizer.vocab_size)
    pcfg = PrepareConfig(inputs=inputs, tokenizer="" if tokenizer else cfg.tokenizer, out_dir=str(data_dir),
                         seq_len=cfg.model.n_positions + 1, mode="split", val_fraction=cfg.val_fraction,
                         test_fraction=0.0, seed=cfg.seed, min_tokens=2, num_workers=cfg.num_workers)
    prepare(pcfg, tokenizer=tokenizer, progress=cfg.loop.progress)
    return data_dir


def build_model(cfg: CausalLMConfig, tokenizer) -> nn.Module:
    """A GPT (vocab and end-of-text from the tokenizer) or the bigram baseline."""
    if cfg.model_type == "bigram":
        return BigramLanguageModel(tokenizer.vocab_size)
    if cfg.model_type != "gpt":
        raise NanobertError(f"unknown model_type {cfg.model_type!r}; use gpt or bigram")
    eot = getattr(tokenizer, "eot_token_id", None)
    return GPT(dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size, bos_token_id=eot, eos_token_id=eot))


def train_causal_lm(cfg: CausalLMConfig, resume: bool = False, callbacks=()) -> dict:
    """Prepare the data if needed, train, evaluate on the whole val split, save `out_dir/model`.

    Training ends at `loop.max_steps` or after `loop.time_limit_min`, whichever comes first; the
    learning rate follows `loop.max_steps`, so set both for a time-boxed run.

    Returns (and writes to `out_dir/results.json`) val loss, perplexity, steps, tokens, seconds.
    """
    if cfg.model_type not in ("gpt", "bigram"):
        raise NanobertError(f"unknown model_type {cfg.model_type!r}; use gpt or bigram")
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    data_dir = prepare_data(cfg)
    train_data, val_data = TokenShards(data_dir, "train"), TokenShards(data_dir, "val")
    if train_data.seq_len != cfg.model.n_positions + 1:
        raise NanobertError(f"{data_dir} holds blocks of {train_data.seq_len} tokens but n_positions is "
                            f"{cfg.model.n_positions}; prepare with seq_len = n_positions + 1")
    tokenizer = load_tokenizer(data_dir / "tokenizer")
    model = build_model(cfg, tokenizer)
    log.info("%s: %.2fM parameters", type(model).__name__, sum(p.numel() for p in model.parameters()) / 1e6)
    batches = CausalLMBatches(BatchStream(train_data, cfg.batch_size, seed=cfg.seed))
    start = time.perf_counter()
    state = train(model, batches, cfg.loop, out_dir,
                  eval_data=lambda: val_batches(val_data, cfg.batch_size, cfg.eval_batches),
                  resume=resume, callbacks=callbacks, run_config=dataclasses.asdict(cfg))
    seconds = time.perf_counter() - start
    final = evaluate(model, val_batches(val_data, cfg.batch_size), state.info.device)
    result = {"model_type": cfg.model_type, "steps": state.step, "tokens": state.tokens,
              "train_seconds": round(seconds, 1), "val_loss": final["loss"],
              "val_perplexity": perplexity(final["loss"]), "val_accuracy": final["accuracy"],
              "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": tokenizer.vocab_size}
    if isinstance(model, GPT):
        model.save_pretrained(out_dir / "model", tokenizer=tokenizer)
    write_json(out_dir / "results.json", result)
    log.info("val loss %.4f, perplexity %.2f after %d steps (%.0f s)", result["val_loss"],
             result["val_perplexity"], state.step, seconds)
    return result

