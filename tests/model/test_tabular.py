"""Text + tabular classifier: feature statistics by hand, forward shapes, save and load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.model.config import BertConfig
from nanobert.model.tabular import BertForTabularClassification, TabularStats


def test_stats_fit_and_transform_by_hand():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    stats = TabularStats.fit(x, ["a", "b"])
    assert stats.mean == [2.0, 5.0] and stats.std == [1.0, 1.0]  # a: nanstd of [1, 3] = 1; b constant -> 1
    assert stats.transform(x).tolist() == [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]  # NaN -> 0 (the mean)
    with pytest.raises(NanobertError, match="column 'b' has no numbers"):
        TabularStats.fit(np.array([[1.0, np.nan]]), ["a", "b"])


def test_forward_save_load(tmp_path):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=16, num_labels=3)
    stats = TabularStats(["a", "b"], [0.0, 0.0], [1.0, 1.0], hidden=4)
    model = BertForTabularClassification(cfg, stats).eval()
    ids = torch.randint(5, 30, (2, 7))  # (B, T)
    tab = torch.randn(2, 2)  # (B, F)
    logits, loss = model(ids, tabular=tab, labels=torch.tensor([0, 2]))
    assert logits.shape == (2, 3) and loss.ndim == 0
    with pytest.raises(NanobertError, match="needs the tabular columns a, b"):
        model(ids)
    model.save_pretrained(tmp_path)
    again = BertForTabularClassification.from_pretrained(tmp_path)
    assert again.stats == stats
    torch.testing.assert_close(again(ids, tabular=tab)[0], logits)


def test_stats_ranges():
    with pytest.raises(NanobertError, match="tabular.hidden must be >= 1, got 0"):
        TabularStats(["a"], [0.0], [1.0], hidden=0)
    with pytest.raises(NanobertError, match="one mean and one std > 0 per column"):
        TabularStats(["a", "b"], [0.0], [1.0])
    with pytest.raises(NanobertError, match="one mean and one std > 0 per column"):
        TabularStats(["a"], [0.0], [0.0])
