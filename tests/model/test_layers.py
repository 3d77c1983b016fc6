"""The encoder layer: its inference options ([CLS]-only output, export-friendly attention) and `attend`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanobert.model.bert import BertConfig, BertModel
from nanobert.model.layers import SelfAttention, additive_mask, attend, export_friendly_attention

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


def _qkv(B=3, nh=2, Tq=7, Tk=7, hs=8):
    torch.manual_seed(0)
    return torch.randn(B, nh, Tq, hs), torch.randn(B, nh, Tk, hs), torch.randn(B, nh, Tk, hs)


MASKS = {
    "none": lambda: None,
    "padding bias": lambda: additive_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 6 + [0]]), torch.float32),
    "bool": lambda: torch.rand(3, 1, 7, 7, generator=torch.Generator().manual_seed(1)) > 0.4,
}


@pytest.mark.parametrize("mask_kind, is_causal", [(m, False) for m in MASKS] + [("none", True)])
def test_attend_in_bf16_on_cpu_matches_fp32_sdpa_forward_and_backward(mask_kind, is_causal):
    """bf16 on a CPU takes the written-out path: same values and gradients as fp32 SDPA, to bf16's precision."""
    mask = MASKS[mask_kind]()
    if mask is not None and mask.dtype == torch.bool:
        mask = mask | torch.eye(7, dtype=torch.bool)  # every query keeps one key, as real masks do
    q, k, v = _qkv()
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_in, attn_mask=mask, is_causal=is_causal)
    ref.square().sum().backward()
    ours_in = [t.bfloat16().requires_grad_() for t in (q, k, v)]
    out = attend(*ours_in, mask, 0.0, is_causal)
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    for a, b in zip(ours_in, ref_in):
        torch.testing.assert_close(a.grad.float(), b.grad, atol=8e-2, rtol=5e-2)


def test_attend_causal_hides_the_future_and_a_fully_masked_row_stays_finite():
    q, k, v = (t.bfloat16() for t in _qkv())
    out = attend(q, k, v, is_causal=True)
    v2 = v.clone()
    v2[:, :, 4:] = 100.0  # changing keys/values after position 3 must not move outputs 0..3
    torch.testing.assert_close(attend(q, k, v2, is_causal=True)[:, :, :4], out[:, :, :4])
    nothing = torch.zeros(3, 1, 7, 7, dtype=torch.bool)
    assert torch.isfinite(attend(q, k, v, nothing).float()).all()


def test_attend_dropout_only_when_asked():
    q, k, v = (t.bfloat16() for t in _qkv())
    torch.testing.assert_close(attend(q, k, v, None, 0.0), attend(q, k, v, None, 0.0))
    torch.manual_seed(0)
    assert not torch.equal(attend(q, k, v, None, 0.5), attend(q, k, v, None, 0.0))


def test_bert_under_bf16_autocast_on_cpu_stays_close_to_fp32():
    model = BertModel(BertConfig(**TINY)).eval()
    ids, mask = _batch()
    with torch.no_grad():
        ref, _ = model(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = model(ids, mask)
    keep = mask.bool()
    assert (low.float()[keep] - ref[keep]).abs().max() < 0.1
