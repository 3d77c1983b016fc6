"""Word vectors from co-occurrence counts (PPMI + SVD): a starting point for a fresh model's word embeddings.

A short masked-LM run barely moves its word embeddings past frequency (docs/pretraining.md: SST-2's common
tokens end at a mean cosine of 0.14 to each other, one shared direction), while the classical count-based
recipe learns which words are alike from the same text in seconds:

    counts[a, b]  = how often token b is within `window` tokens of token a (both directions)
    ppmi[a, b]    = max(0, log( P(a, b) / (P(a) P_c(b)) ))     P_c: context counts ** 0.75 (Levy et al. 2015)
    vectors       = U sqrt(S) of the rank-`dim` SVD of ppmi     (V, dim)

    vectors = ppmi_vectors(TokenShards("data/enwiki-8k-64"), vocab_size=8192, dim=256, skip_ids={0, 1, 2, 3})

The counts are a dense (V, V) table: `max_vocab` caps V (the commonest 8,192 tokens get vectors, the rest keep
their random rows), which keeps the memory near 1.5 GB at the cap (float64 counts, one float32 PMI table).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def cooccurrence_counts(streams, vocab_size: int, window: int = 5, max_tokens: int = 20_000_000) -> np.ndarray:
    """(V, V) float64: for each token pair (a, b), how often b is 1..`window` tokens before or after a, over the
    first `max_tokens` tokens of `streams` (1-D integer arrays, each read as running text).

    Example: the stream [5, 6, 5] with window 1 counts (5, 6) twice, (6, 5) twice, nothing else.
    """
    counts = np.zeros(vocab_size * vocab_size, dtype=np.float64)
    budget = max_tokens
    for stream in streams:
        tokens = np.asarray(stream[:budget], dtype=np.int64)
        budget -= len(tokens)
        for d in range(1, window + 1):
            if len(tokens) <= d:
                break
            pair = tokens[:-d] * vocab_size + tokens[d:]  # (N - d,) flat index of (left, right)
            counts += np.bincount(pair, minlength=vocab_size * vocab_size)
        if budget <= 0:
            break
    counts = counts.reshape(vocab_size, vocab_size)  # (V, V) left -> right
    return counts + counts.T  # both directions


def ppmi(counts: np.ndarray, context_power: float = 0.75) -> torch.Tensor:
    """(V, V) float32 positive pointwise mutual information of a symmetric count table (rows and columns of
    zero count stay 0). `context_power` < 1 smooths the context distribution, lifting rare contexts' PMI less.
    Computed in place on one float32 copy: a (V, V) table is the memory it takes."""
    rows = torch.from_numpy(counts.sum(1))  # (V,) float64
    context = rows ** context_power
    # log P(a, b) / (P(a) P_c(b)) = log counts[a, b] + log sum(context) - log rows[a] - log context[b]
    pmi = torch.from_numpy(counts).float().log_()  # (V, V); -inf where a pair never occurs
    pmi.add_(float(context.sum().log())).sub_(rows.log().float()[:, None]).sub_(context.log().float()[None, :])
    return pmi.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0).clamp_(min=0.0)


def ppmi_vectors(data, vocab_size: int, dim: int, window: int = 5, max_tokens: int = 20_000_000,
                 skip_ids=(), max_vocab: int = 8192, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors (V, dim), has_vector (V,) bool) for the tokens of `data` (a TokenShards): rows of tokens that
    never occur, of `skip_ids` (special tokens) and of ids beyond the `max_vocab` commonest stay zero and
    False. Rows are scaled to unit mean norm over the tokens that have one (the caller scales them on)."""
    streams = (tokens for tokens, _ in data.shards)
    frequency = data.token_counts(vocab_size, max_tokens)
    frequency[list(skip_ids)] = 0
    keep = np.argsort(-frequency, kind="stable")[:min(max_vocab, vocab_size)]
    keep = keep[frequency[keep] > 0]  # (K,) the ids that get a vector, commonest first
    remap = np.full(vocab_size, len(keep), dtype=np.int64)  # every other id -> one spare slot, dropped below
    remap[keep] = np.arange(len(keep))
    counts = cooccurrence_counts((remap[np.asarray(s[:max_tokens])] for s in streams), len(keep) + 1, window,
                                 max_tokens)[:-1, :-1]  # (K, K)
    matrix = ppmi(counts)  # (K, K)
    rank = min(dim, len(keep))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank's random projection: the same vectors every run
    u, s, _ = torch.svd_lowrank(matrix, q=min(rank + 10, len(keep)), niter=4)
    torch.random.set_rng_state(generator_state)
    vectors = u[:, :rank] * s[:rank].sqrt()  # (K, rank)
    vectors = vectors / vectors.norm(dim=1).mean().clamp(min=1e-12)
    out = torch.zeros(vocab_size, dim)
    out[torch.from_numpy(keep), :rank] = vectors
    has = torch.zeros(vocab_size, dtype=torch.bool)
    has[torch.from_numpy(keep)] = True
    log.info("ppmi word vectors: %d tokens, window %d, rank %d (top singular values %s)", len(keep), window, rank,
             ", ".join(f"{v:.0f}" for v in s[:3].tolist()))
    return out, has
