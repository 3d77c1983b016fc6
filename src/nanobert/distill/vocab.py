"""A student with a smaller vocabulary: the teacher's tokens that the training rows use most.

    student, tokenizer = prune_vocabulary(student, teacher_tokenizer, rows, size=9000)

A 384-wide student with BERT's 30,522 tokens spends 11.7M parameters on its word embeddings alone;
a task's text uses a fraction of them. `prune_vocabulary` keeps the special tokens, every ASCII
character (alone and as a `##` piece, so that any English word still tokenizes, letter by letter at
worst) and then the tokens most frequent in `rows` (the teacher's tokenization of everything the
student will learn from) up to `size`, in the teacher's order. The student's word-embedding rows are
cut to those tokens (their trained values kept) and its tokenizer is the teacher's with that vocabulary:
a word whose token was dropped is split into the longest pieces that remain.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nanobert.data.labelled import Encoded
from nanobert.errors import NanobertError
from nanobert.tokenizers import load_tokenizer

log = logging.getLogger(__name__)


def _in_id_order(vocab: dict[str, int]) -> list[str]:
    """The tokens of a token -> id vocabulary, ordered by id."""
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def _always_kept(tokens: list[str], special_ids: set[int]) -> set[int]:
    """Special tokens and the ASCII characters, alone and as ## pieces: what lets any English text tokenize."""
    def char(t: str) -> bool:
        c = t[2:] if t.startswith("##") else t
        return len(c) == 1 and c.isascii() and not c.isspace()
    return special_ids | {i for i, t in enumerate(tokens) if char(t)}


def _all_ids(rows: Encoded) -> np.ndarray:
    """Every token id of every row, one flat array."""
    return np.concatenate([np.asarray(x, dtype=np.int64) for x in rows.input_ids])


def kept_token_ids(tokens: list[str], special_ids: set[int], rows: Encoded, size: int,
                   used: np.ndarray | None = None) -> list[int]:
    """The ids to keep, ascending: the always-kept ones, then the most frequent in `rows` (ties: lower id first).
    `used`: the rows' ids already flattened (`_all_ids`), when the caller has them."""
    must = _always_kept(tokens, special_ids)
    if size < len(must):
        raise NanobertError(f"--prune-vocab {size} is smaller than the {len(must)} special and character tokens every "
                            "vocabulary keeps; ask for more")
    counts = np.bincount(_all_ids(rows) if used is None else used, minlength=len(tokens))
    order = np.lexsort((np.arange(len(tokens)), -counts))  # most frequent first
    rest = [int(i) for i in order if counts[i] > 0 and int(i) not in must][:size - len(must)]
    return sorted(must | set(rest))


@torch.no_grad()
def prune_vocabulary(student: nn.Module, tokenizer, rows: Encoded, size: int):
    """(student with `size` word-embedding rows, the matching tokenizer); see the module docstring."""
    vocab = getattr(tokenizer, "vocab", None)
    if not isinstance(vocab, dict) or getattr(tokenizer, "kind", None) != "wordpiece":
        raise NanobertError("--prune-vocab needs a WordPiece tokenizer (a vocab.txt)")
    tokens = _in_id_order(vocab)
    if size >= len(tokens):
        return student, tokenizer
    used = _all_ids(rows)
    keep = kept_token_ids(tokens, set(tokenizer.special_ids), rows, size, used)
    with tempfile.TemporaryDirectory() as d:  # the teacher's tokenizer settings, with the shorter vocab.txt
        tokenizer.save(d)
        (Path(d) / "vocab.txt").write_text("".join(tokens[i] + "\n" for i in keep), encoding="utf-8")
        pruned = load_tokenizer(d)
    old = student.bert.embeddings.word_embeddings
    new = nn.Embedding(len(keep), old.embedding_dim, padding_idx=pruned.pad_token_id)
    new.weight.copy_(old.weight[torch.tensor(keep)])
    student.bert.embeddings.word_embeddings = new
    student.config.vocab_size, student.config.pad_token_id = len(keep), pruned.pad_token_id
    log.info("vocabulary pruned to %d of %d tokens, %.2f%% of the rows' tokens (%d parameters)", len(keep),
             len(tokens), 100 * np.isin(used, keep).mean(), sum(p.numel() for p in student.parameters()))
    return student, pruned


def teacher_ids(pruned, teacher_tokenizer) -> torch.Tensor:
    """(V_student,) the teacher's id of each pruned token: the teacher then reads the student's tokenization.

    That is what lets the intermediate-layer losses compare a pruned student with its teacher token by
    token: a word the student splits into pieces reaches the teacher as the same pieces.
    """
    return torch.tensor([teacher_tokenizer.vocab[t] for t in _in_id_order(pruned.vocab)])
