"""Held-out masked-LM accuracy, loss and perplexity on fixed masks, so any two models compare on the same blanks.

    metrics = evaluate_mlm("runs/mlm/model", "data/enwiki-8k-32")          # the prepared test split
    metrics = evaluate_mlm("runs/mlm/model", "held_out.txt", max_sequences=2000)

The masks are BERT's standard ones whatever the model was trained with: 15% of the non-special tokens
chosen, of those 80% become [MASK], 10% a random token and 10% stay unchanged, and every chosen
position is scored (accuracy = the original token is the top prediction). The draw for batch `i`
comes from a generator seeded by (seed, i), and batches are cut in file order at a fixed size, so two
models with the same tokenizer see exactly the same masked inputs.

Data: a directory written by `nanobert prepare` (its `test` split by default; its tokenizer must be
the model's), or text files (.txt, .txt.gz, .jsonl, ...): paragraphs are cut into sentences and whole
sentences packed into sequences of at most `seq_len` tokens, as `nanobert prepare` does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from nanobert.config import check_fields
from nanobert.data.loaders import TokenShards, collate
from nanobert.data.masking import mask_tokens, special_table
from nanobert.data.prepare import pack_sentences, split_sentences
from nanobert.data.sources import expand_inputs, read_documents
from nanobert.errors import NanobertError
from nanobert.model.bert import BertForMaskedLM, load_model
from nanobert.tokenizers import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class MLMEvalConfig:
    seed: int = 0  # seeds the masks: same seed, same data, same tokenizer -> the same blanks for every model
    mask_rate: float = 0.15  # BERT's rate, whatever the model was trained with, so scores stay comparable
    batch_size: int = 64  # part of what fixes the masks (batch i is drawn from seed (seed, i)); keep it
    max_sequences: int | None = None  # None: all of them
    split: str = "test"  # which split of a prepared directory
    seq_len: int = 128  # text input only: tokens per sequence, special tokens included (capped by the model)
    text_column: str = "text"  # text input only: the field of JSONL / parquet files

    def __post_init__(self):
        check_fields(self, {"mask_rate": "(0, 1)", "batch_size": ">= 1", "max_sequences": ">= 1", "seq_len": ">= 3"},
                     {"split": ("train", "val", "test")})


def _shard_sequences(data_dir: Path, split: str, tokenizer) -> Iterator[np.ndarray]:
    data = TokenShards(data_dir, split)
    theirs = load_tokenizer(data_dir / data.meta["tokenizer"]["dir"])
    if theirs.vocab_size != tokenizer.vocab_size or any(
            theirs.id_to_token(i) != tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)):
        raise NanobertError(f"{data_dir} was prepared with another tokenizer than the model's "
                            f"({theirs.vocab_size} vs {tokenizer.vocab_size} tokens); give a text file instead, "
                            "or prepare the text with the model's tokenizer")
    for shard, n in enumerate(data.shard_sizes()):
        for i in range(n):
            yield data.seq(shard, i)


def _text_sequences(path: Path, tokenizer, seq_len: int, text_column: str) -> Iterator[np.ndarray]:
    body_len = seq_len - 2
    if body_len < 1:
        raise NanobertError(f"seq-len {seq_len} leaves no room for text; use at least 3")
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for doc in read_documents(expand_inputs([path]), text_column):
        sentences = [s for para in doc.split("\n") for s in split_sentences(para)]
        ids = tokenizer.encode_batch(sentences, add_special_tokens=False)
        for body in pack_sentences(ids, body_len):
            if len(body) >= 3:  # a stray heading has nothing to predict from
                yield np.asarray([cls, *body, sep], dtype=np.int64)


def sequences_from(data: str | Path, tokenizer, cfg: MLMEvalConfig, max_positions: int) -> list[np.ndarray]:
    """The evaluation sequences (token id arrays), in file order, at most `cfg.max_sequences` of them."""
    path = Path(data)
    if not path.exists():
        raise NanobertError(f"evaluation data not found: {path} (give a prepared directory or a text file)")
    if path.is_dir() and (path / "meta.json").is_file():
        source = _shard_sequences(path, cfg.split, tokenizer)
    else:
        source = _text_sequences(path, tokenizer, min(cfg.seq_len, max_positions), cfg.text_column)
    out = []
    for seq in source:
        if cfg.max_sequences is not None and len(out) >= cfg.max_sequences:
            break
        if len(seq) > max_positions:
            raise NanobertError(f"{path} has sequences of {len(seq)} tokens but the model has only "
                                f"{max_positions} positions; prepare the text with a shorter --seq-len")
        out.append(np.asarray(seq, dtype=np.int64))
    if not out:
        raise NanobertError(f"no sequences to evaluate in {path}")
    return out


def masked_batches(sequences: list[np.ndarray], tokenizer, cfg: MLMEvalConfig) -> Iterator[dict]:
    """Batches {"input_ids" (B, T) masked, "attention_mask" (B, T), "labels" (B, T)}, the same for every call.

    Batch i is masked with a generator seeded by (cfg.seed, i); its noise table is (batch_size, longest
    sequence of all), so a batch's masks do not depend on how long its neighbours are.
    """
    special = special_table(tokenizer.special_ids | {tokenizer.pad_token_id}, tokenizer.vocab_size)
    width = max(len(s) for s in sequences)
    for i, start in enumerate(range(0, len(sequences), cfg.batch_size)):
        batch = collate(sequences[start:start + cfg.batch_size], tokenizer.pad_token_id)
        seed = int(np.random.SeedSequence([cfg.seed, i]).generate_state(1, np.uint64)[0] >> 1)
        gen = torch.Generator().manual_seed(seed)
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], mask_id=tokenizer.mask_token_id, special=special, rate=cfg.mask_rate,
            attention_mask=batch["attention_mask"], generator=gen, rows_total=cfg.batch_size, width=width)
        yield batch


@torch.no_grad()
def score_batches(model, batches) -> dict:
    """Accuracy, mean loss and perplexity of a masked LM over every labelled position of `batches`.

    `model(input_ids, attention_mask, labels=labels)` must return (logits (M, V), loss) with the M rows
    in row-major order of the positions whose label is not -100 (BertForMaskedLM's sparse prediction).
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    correct, total, loss_sum, sequences = 0, 0, 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch["labels"]
        logits, _ = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        target = labels[labels != -100]  # (M,) row-major, as the model's rows
        loss_sum += float(F.cross_entropy(logits.float(), target, reduction="sum"))
        correct += int((logits.argmax(-1) == target).sum())
        total += target.numel()
        sequences += labels.shape[0]
    if hasattr(model, "train"):
        model.train(was_training)
    if total == 0:
        raise NanobertError("nothing was masked: the sequences hold no maskable tokens")
    loss = loss_sum / total
    return {"accuracy": correct / total, "loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "masked_tokens": total, "sequences": sequences}


def evaluate_mlm(model_dir: str | Path, data: str | Path, cfg: MLMEvalConfig | None = None) -> dict:
    """Score the masked LM saved in `model_dir` on `data` (see the module docstring).

    Returns {"accuracy", "loss", "perplexity", "masked_tokens", "sequences", "seed", "mask_rate", "data"}.
    """
    cfg = cfg or MLMEvalConfig()
    if not 0 < cfg.mask_rate < 1:
        raise NanobertError(f"mask rate must be between 0 and 1, got {cfg.mask_rate}")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NanobertError(f"model directory not found: {model_dir}")
    model = load_model(model_dir)
    if not isinstance(model, BertForMaskedLM):
        raise NanobertError(f"{model_dir} holds a {type(model).__name__}, not a masked LM (no cls.predictions "
                            "weights); give the directory pretraining saved (e.g. runs/mlm/model)")
    tokenizer = load_tokenizer(model_dir)
    if getattr(tokenizer, "mask_token_id", None) is None:
        raise NanobertError(f"the tokenizer in {model_dir} has no [MASK] token")
    seqs = sequences_from(data, tokenizer, cfg, model.config.max_position_embeddings)
    log.info("scoring %s sequences from %s", f"{len(seqs):,}", data)
    metrics = score_batches(model, masked_batches(seqs, tokenizer, cfg))
    return {**metrics, "seed": cfg.seed, "mask_rate": cfg.mask_rate, "data": str(data)}
