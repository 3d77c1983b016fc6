"""The encoder layer's inference options: [CLS]-only output and the export-friendly attention."""

from __future__ import annotations

import pytest
import torch

from nanobert.model.bert import BertConfig, BertModel
from nanobert.model.layers import SelfAttention, additive_mask, export_friendly_attention

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
            max_position_embeddings=32)


def _batch():
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_first_only_equals_the_first_position_of_the_full_layer(pre_layer_norm):
    model = BertModel(BertConfig(**TINY, pre_layer_norm=pre_layer_norm)).eval()
    ids, mask = _batch()
    x = model.embeddings(ids)  # (B, T, H)
    bias = additive_mask(mask, x.dtype)
    layer = model.encoder.layer[0]
    with torch.no_grad():
        full, first = layer(x, bias), layer(x, bias, first_only=True)
        hidden, pooled = model(ids, mask)
        cls_hidden, cls_pooled = model(ids, mask, cls_only=True)
    assert first.shape == (3, 1, 16)
    torch.testing.assert_close(first, full[:, :1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cls_hidden, hidden[:, :1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cls_pooled, pooled, atol=1e-6, rtol=1e-5)


def test_export_friendly_attention_computes_the_same_and_is_restored():
    model = BertModel(BertConfig(**TINY)).eval()
    ids, mask = _batch()
    with torch.no_grad():
        expected = model(ids, mask)[0]
        with export_friendly_attention(model):
            assert all(m.export_friendly for m in model.modules() if isinstance(m, SelfAttention))
            got = model(ids, mask)[0]
    assert not any(m.export_friendly for m in model.modules() if isinstance(m, SelfAttention))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_export_friendly_attention_traces_without_sdpa():
    attention = SelfAttention(16, 4, dropout=0.0).eval()
    x = torch.randn(2, 5, 16)
    with export_friendly_attention(attention):
        graph = str(torch.jit.trace(attention, (x,)).graph)
    assert "scaled_dot_product_attention" not in graph and "softmax" in graph
    assert "scaled_dot_product_attention" in str(torch.jit.trace(attention, (x,)).graph)
