"""PPMI word vectors: counts, PMI against a hand computation, and vectors that put co-occurring words together."""

import math

import numpy as np
import pytest
import torch

from nanobert.data.ppmi import cooccurrence_counts, ppmi, ppmi_vectors


def test_counts_look_both_ways_within_the_window():
    c = cooccurrence_counts([np.array([5, 6, 5])], 8, window=1)
    assert c[5, 6] == 2 and c[6, 5] == 2 and c.sum() == 4
    c = cooccurrence_counts([np.array([1, 2, 3]), np.array([4])], 5, window=2)
    assert c[1, 3] == 1 and c[3, 1] == 1 and c[1, 2] == 1 and c[3, 4] == 0  # streams are not joined
    assert cooccurrence_counts([np.array([1, 2, 3])], 5, window=2, max_tokens=2).sum() == 2  # only [1, 2] read


def test_ppmi_equals_a_hand_computation():
    counts = np.array([[0.0, 4.0, 1.0], [4.0, 0.0, 2.0], [1.0, 2.0, 6.0]])
    got = ppmi(counts, context_power=0.75)
    rows = counts.sum(1)
    ctx = rows ** 0.75
    for a in range(3):
        for b in range(3):
            want = 0.0 if counts[a, b] == 0 else max(0.0, math.log((counts[a, b] / counts.sum())
                                                                   / (rows[a] / counts.sum() * ctx[b] / ctx.sum())))
            assert got[a, b].item() == pytest.approx(want, rel=1e-5, abs=1e-6)


class _Shards:
    """Stands in for TokenShards: `shards` is a list of (tokens, offsets)."""

    def __init__(self, tokens):
        self.shards = [(tokens, np.array([0, len(tokens)]))]

    def token_counts(self, vocab_size, max_tokens):
        return np.bincount(self.shards[0][0][:max_tokens], minlength=vocab_size)[:vocab_size]


def test_words_that_share_contexts_get_close_vectors():
    rng = np.random.default_rng(0)
    # two topics: sentences of ids 10-19 and sentences of ids 20-29, with 2 (a special token) between them
    rows = [np.append(rng.integers(10, 20, 12) if rng.random() < 0.5 else rng.integers(20, 30, 12), 2)
            for _ in range(3000)]
    vectors, has = ppmi_vectors(_Shards(np.concatenate(rows)), vocab_size=40, dim=8, window=3, skip_ids={2})
    assert vectors.shape == (40, 8)
    assert has[10:30].all() and not has[2] and not has[:10].any() and not has[30:].any()
    assert vectors[2].abs().sum() == 0 and vectors[30:].abs().sum() == 0
    unit = torch.nn.functional.normalize(vectors[10:30], dim=1)
    cos = unit @ unit.T  # (20, 20)
    same = torch.cat([cos[:10, :10].flatten(), cos[10:, 10:].flatten()])
    across = cos[:10, 10:].flatten()
    assert same.mean() > 0.5 and across.mean() < 0.1
    assert vectors[10:30].norm(dim=1).mean().item() == pytest.approx(1.0, rel=1e-5)
    again, _ = ppmi_vectors(_Shards(np.concatenate(rows)), vocab_size=40, dim=8, window=3, skip_ids={2})
    assert torch.equal(vectors, again)  # the SVD's random projection is seeded
