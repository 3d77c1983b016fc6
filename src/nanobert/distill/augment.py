"""More in-domain text for the teacher to label: training sentences with words swapped for similar words.

    table = neighbour_table(tokenizer.vocab, teacher_word_embeddings, words_of(texts), k=15)
    more = augment_texts(texts, table, AugmentConfig(n=4, p=0.4), seed=0)   # up to 4 variants a sentence

TinyBERT's data augmentation (Jiao et al., 2020) in a form that needs no masked-language-model
head: each whole word of a sentence that is one token of the vocabulary is replaced, with
probability `p`, by one of its `k` nearest neighbours (cosine) in an input word-embedding matrix
(the teacher's own: the words it already sees as alike). Subword pieces (`##ing`), special tokens
(`[CLS]`), and words that are not purely alphabetic (numbers, punctuation) are never replaced nor
offered. A variant equal to its sentence, or to an earlier variant of it, is dropped. The variants
carry no label: the teacher labels them like any unlabelled row (the soft loss alone), so a swap
that flips the sentiment ("good" -> "bad") teaches, rather than mislabels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from nanobert.errors import NanobertError

log = logging.getLogger(__name__)


@dataclass
class AugmentConfig:
    n: int = 0  # variants per training sentence; 0: off (TinyBERT made 20 per sentence of the small GLUE sets)
    p: float = 0.4  # chance that each replaceable word is swapped (TinyBERT: 0.4)
    k: int = 15  # a word's candidates: its k nearest neighbours (TinyBERT: 15)
    min_words: int = 3  # augment sentences of at least this many words: a 1-2 word phrase has little to vary

    def check(self) -> None:
        if self.n < 0 or not 0.0 < self.p <= 1.0 or self.k < 1 or self.min_words < 1:
            raise NanobertError(f"augment needs n >= 0, 0 < p <= 1, k >= 1 and min_words >= 1 (got n={self.n}, "
                                f"p={self.p}, k={self.k}, min_words={self.min_words})")


def is_whole_word(token: str) -> bool:
    """Whether a vocabulary entry may be swapped or offered: alphabetic, not a ## piece nor a [special]."""
    return token.isalpha()


def words_of(texts: list[str], lowercase: bool = True) -> set[str]:
    """The whitespace-separated words of `texts` (lowercased when the tokenizer lowercases)."""
    return {w.lower() if lowercase else w for t in texts for w in t.split()}


def neighbour_table(vocab: dict[str, int], embeddings: torch.Tensor, words: set[str], k: int = 15,
                    chunk: int = 1024) -> dict[str, list[str]]:
    """{word: its k nearest whole-word tokens by cosine of `embeddings` rows (V, H)} for each whole word in `words`.

    Example: with rows good=[1, 0], great=[0.9, 0.1], bad=[0, 1] and k=1: {"good": ["great"], "great": ["good"], ...}.
    """
    if embeddings.shape[0] < len(vocab):
        raise NanobertError(f"{embeddings.shape[0]} embedding rows for a vocabulary of {len(vocab)} tokens")
    pool = sorted((i, t) for t, i in vocab.items() if is_whole_word(t))
    if len(pool) <= k:
        raise NanobertError(f"the vocabulary has {len(pool)} whole words; k={k} neighbours needs more")
    pool_ids = torch.tensor([i for i, _ in pool])
    pool_tokens = [t for _, t in pool]
    unit = torch.nn.functional.normalize(embeddings.detach().float()[pool_ids], dim=-1)  # (P, H)
    where = {t: j for j, t in enumerate(pool_tokens)}
    queries = sorted(w for w in words if w in where)
    table = {}
    for start in range(0, len(queries), chunk):
        part = queries[start:start + chunk]
        rows = torch.tensor([where[w] for w in part])
        sims = unit[rows] @ unit.T  # (C, P)
        sims[torch.arange(len(part)), rows] = -2.0  # never the word itself
        top = sims.topk(k, dim=-1).indices  # (C, k)
        for w, idx in zip(part, top.tolist()):
            table[w] = [pool_tokens[j] for j in idx]
    return table


def augment_sentence(text: str, table: dict[str, list[str]], cfg: AugmentConfig, rng: np.random.Generator,
                     lowercase: bool = True) -> list[str]:
    """Up to `cfg.n` distinct variants of `text` (none equal to it), each word swapped with probability `cfg.p`."""
    words = text.split()
    if len(words) < cfg.min_words:
        return []
    keys = [w.lower() if lowercase else w for w in words]
    seen, out = {" ".join(words)}, []
    for _ in range(cfg.n):
        swap = rng.random(len(words)) < cfg.p
        picks = rng.integers(0, cfg.k, len(words))
        new = [table[key][pick] if s and key in table else w for w, key, s, pick in zip(words, keys, swap, picks)]
        variant = " ".join(new)
        if variant not in seen:
            seen.add(variant)
            out.append(variant)
    return out


def augment_texts(texts: list[str], table: dict[str, list[str]], cfg: AugmentConfig, seed: int = 0,
                  lowercase: bool = True, progress: bool = False) -> list[str]:
    """The variants of every sentence of `texts`, in order; the same list for the same seed."""
    cfg.check()
    if any(len(v) < cfg.k for v in table.values()):
        raise NanobertError(f"the neighbour table holds fewer than k={cfg.k} neighbours a word; rebuild it with k")
    rng = np.random.default_rng(seed)
    out = []
    for text in tqdm(texts, desc="augment", unit="sent", disable=not progress, mininterval=2.0):
        out.extend(augment_sentence(text, table, cfg, rng, lowercase))
    log.info("augmentation: %d variants of %d sentences (n=%d, p=%.2f, k=%d)", len(out), len(texts), cfg.n, cfg.p,
             cfg.k)
    return out
