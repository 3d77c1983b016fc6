"""The building blocks of a BERT encoder layer: norms, positions, attention, feed-forward.

Module and attribute names mirror Hugging Face's `modeling_bert.py` (`attention.self.query`,
`attention.output.LayerNorm`, `intermediate.dense`, `output.dense`, ...) so that a state dict
from `transformers` loads without a rename. The maths is the plain one:

    post-LN (BERT):  h = LN(x + Attn(x));      y = LN(h + MLP(h))
    pre-LN:          h = x + Attn(LN(x));      y = h + MLP(LN(h))

Attention goes through `attend`: `F.scaled_dot_product_attention` everywhere except bf16 on a CPU, where
the three ops written out run several times faster. Query, key and value stay three `nn.Linear` modules
(three checkpoint keys, as in BERT) but are computed as one matrix product.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from nanobert.errors import NanobertError

# Activation names as they appear in Hugging Face's config.json ("hidden_act").
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact erf GELU, what BERT uses
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def tracing() -> bool:
    """True while torch.jit / torch.export / torch.compile trace the model (no data-dependent Python branches then)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def make_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """LayerNorm (BERT) or RMSNorm (weight only, no centring)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise NanobertError(f"unknown norm_type {kind!r}; use 'layernorm' or 'rmsnorm'")


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine table of "Attention is all you need": (num_positions, dim).

    Row p holds sin(p / 10000^(2i/dim)) in column 2i and cos(...) in column 2i+1.
    Example: sinusoidal_positions(2, 2) -> [[0, 1], [sin 1, cos 1]].
    """
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (ceil(dim/2),)
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def additive_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) mask of 1 = token, 0 = padding -> (B, 1, 1, T) additive bias for SDPA, or None if nothing is padded.

    Padding keys get the most negative finite value rather than -inf, so a row with every key
    masked still gives finite numbers. When not tracing, an all-ones mask is dropped (SDPA then
    runs its unmasked kernel).
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2:
        raise NanobertError(f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}")
    if not tracing() and bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (1.0 - keep) * torch.finfo(dtype).min


def packed_mask(position_ids: torch.Tensor, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) positions within each packed sequence (a 0 starts the next one) and (B, T) padding mask ->
    (B, 1, T, T) additive bias that lets each token attend only to the real tokens of its own sequence.
    Example: positions [[0, 1, 2, 0, 1]] -> tokens 0-2 see 0-2, tokens 3-4 see 3-4."""
    seq = torch.cumsum(position_ids == 0, dim=1)  # (B, T) which sequence of its row each token is in
    keep = seq[:, :, None] == seq[:, None, :]  # (B, T, T) query and key in the same sequence
    if attention_mask is not None:
        keep = keep & attention_mask.bool()[:, None, :]  # padding keys dropped
    return (~keep[:, None]).to(dtype) * torch.finfo(dtype).min  # (B, 1, T, T)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """softmax(q kᵀ / √hs + mask) v: q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> (B, nh, Tq, hs).

    `mask` is what SDPA takes: an additive float bias or a bool (True = may attend), broadcast to
    (B, nh, Tq, Tk). On a CPU in bf16 (autocast), PyTorch's fused SDPA kernel is 3-4x slower forward and
    backward than matmul -> softmax -> matmul at BERT's sequence lengths (`python benchmarks/attention_cpu.py`),
    so there the three ops run written out, the softmax in fp32 as autocast does on a GPU. Elsewhere SDPA.
    """
    if q.device.type != "cpu" or q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, Tq, Tk)
    lowest = torch.finfo(scores.dtype).min  # finite, as the additive masks: a row with every key masked stays a number
    if is_causal:  # SDPA's convention: query i sees keys 0..i (aligned top-left)
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1), lowest)
    if mask is not None:
        scores = scores.masked_fill(~mask, lowest) if mask.dtype == torch.bool else scores + mask
    probs = scores.softmax(dim=-1).to(v.dtype)
    if dropout_p:
        probs = F.dropout(probs, dropout_p)
    return torch.matmul(probs, v)  # (B, nh, Tq, hs)


class SelfAttention(nn.Module):
    """Multi-head self-attention: (B, T, H) -> (B, T, H) context, before the output projection.

    Two options of the layer, for inference:
    - `forward(..., first_only=True)`: queries at position 0 ([CLS]) alone, (B, 1, H); keys and
      values still come from every position. What a classifier reading [CLS] needs of the last layer.
    - `export_friendly = True` (see `export_friendly_attention`): the attention is written out op by
      op (matmul, softmax, matmul; the same numbers as SDPA) with three separate projections, the
      pattern ONNX Runtime's graph optimizer recognises and fuses into one Attention operator.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, bias: bool = True):
        super().__init__()
        if hidden_size % num_heads:
            raise NanobertError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.export_friendly = False
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, is_causal: bool = False, first_only: bool = False
    ) -> torch.Tensor:
        if first_only and is_causal:
            raise ValueError("first_only is for encoders; under a causal mask position 0 sees only itself")
        if first_only or (self.export_friendly and not is_causal):
            return self._separate_projections(x, mask, first_only)
        B, T, H = x.shape
        if all(type(m) is nn.Linear for m in (self.query, self.key, self.value)):
            # One GEMM for q, k and v: the three weights stacked as (3H, H). Same numbers as three Linears.
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3H, H)
            bias = None if self.query.bias is None else torch.cat([self.query.bias, self.key.bias, self.value.bias])
            qkv = F.linear(x, weight, bias)  # (B, T, 3H)
        else:  # a wrapped projection (e.g. LoRA) runs its own forward
            qkv = torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1)  # (B, T, 3H)
        qkv = qkv.view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        q, k, v = qkv.unbind(0)  # each (B, nh, T, hs)
        p = self.dropout if self.training else 0.0
        y = attend(q, k, v, mask, p, is_causal)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)

    def _separate_projections(self, x, mask, first_only: bool) -> torch.Tensor:
        """The two options above: q, k, v from three projections; (B, T, H) -> (B, Tq, H), Tq = 1 if first_only."""
        B, T, H = x.shape
        Tq = 1 if first_only else T

        def heads(t: torch.Tensor, n: int) -> torch.Tensor:
            return t.view(B, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, n, H) -> (B, nh, n, hs)

        q = heads(self.query(x[:, :1] if first_only else x), Tq)  # (B, nh, Tq, hs)
        k, v = heads(self.key(x), T), heads(self.value(x), T)  # (B, nh, T, hs)
        p = self.dropout if self.training else 0.0
        if self.export_friendly:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, nh, Tq, T)
            if mask is not None:
                scores = scores + mask  # (B, 1, 1, T) additive padding mask
            probs = scores.softmax(dim=-1)
            y = torch.matmul(F.dropout(probs, p) if p else probs, v)  # (B, nh, Tq, hs)
        else:
            y = attend(q, k, v, mask, p)  # (B, nh, Tq, hs)
        return y.transpose(1, 2).reshape(B, Tq, H)  # (B, Tq, H)


@contextlib.contextmanager
def export_friendly_attention(module: nn.Module):
    """Inside the block every SelfAttention of `module` runs its export-friendly form; the old settings come back after.

    Example: `with export_friendly_attention(head): torch.onnx.export(head, ...)`.
    """
    layers = [m for m in module.modules() if isinstance(m, SelfAttention)]
    before = [m.export_friendly for m in layers]
    for m in layers:
        m.export_friendly = True
    try:
        yield module
    finally:
        for m, flag in zip(layers, before):
            m.export_friendly = flag


class ResidualOutput(nn.Module):
    """Projection + dropout + residual, with the norm after (post-LN) or none here (pre-LN applies it first).

    HF calls this `BertSelfOutput` / `BertOutput`; the norm is named `LayerNorm` even when it is an
    RMSNorm, because checkpoint keys must read `...output.LayerNorm.weight`.
    """

    def __init__(self, d_in: int, d_out: int, dropout: float, norm: nn.Module, bias: bool = True):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out, bias=bias)
        self.LayerNorm = norm  # HF's name, kept for checkpoint keys
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor, post_norm: bool) -> torch.Tensor:
        y = residual + self.dropout(self.dense(h))
        return self.LayerNorm(y) if post_norm else y


class Attention(nn.Module):
    """HF's `BertAttention`: `.self` (q/k/v + SDPA) and `.output` (projection, dropout, residual, norm)."""

    def __init__(self, hidden_size, num_heads, attn_dropout, hidden_dropout, norm, bias=True):
        super().__init__()
        # An attribute called `self`: forced by the checkpoint key `attention.self.query.weight`.
        self.self = SelfAttention(hidden_size, num_heads, attn_dropout, bias)
        self.output = ResidualOutput(hidden_size, hidden_size, hidden_dropout, norm, bias)


class Intermediate(nn.Module):
    """The first half of the feed-forward block: (B, T, H) -> (B, T, I) with the activation."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, bias: bool = True):
        super().__init__()
        if act not in ACTIVATIONS:
            raise NanobertError(f"unknown hidden_act {act!r}; use one of {', '.join(ACTIVATIONS)}")
        self.dense = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class TransformerLayer(nn.Module):
    """One encoder layer (HF's `BertLayer`): attention then feed-forward, each with a residual and a norm."""

    def __init__(self, cfg):
        super().__init__()
        H, eps, bias = cfg.hidden_size, cfg.layer_norm_eps, cfg.use_bias
        self.pre_ln = cfg.pre_layer_norm
        self.attention = Attention(
            H,
            cfg.num_attention_heads,
            cfg.attention_probs_dropout_prob,
            cfg.hidden_dropout_prob,
            make_norm(cfg.norm_type, H, eps, bias),
            bias,
        )
        self.intermediate = Intermediate(H, cfg.intermediate_size, cfg.hidden_act, bias)
        self.output = ResidualOutput(
            cfg.intermediate_size, H, cfg.hidden_dropout_prob, make_norm(cfg.norm_type, H, eps, bias), bias
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, first_only: bool = False) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); first_only: the layer's output at position 0 alone, (B, 1, H), for a
        fraction of the work (keys and values still read every position; the same numbers as `[:, :1]`)."""
        att_out, ff_out = self.attention.output, self.output
        residual = x[:, :1] if first_only else x  # (B, Tq, H)
        if self.pre_ln:
            h = att_out(self.attention.self(att_out.LayerNorm(x), mask, first_only=first_only), residual, post_norm=False)
            return ff_out(self.intermediate(ff_out.LayerNorm(h)), h, post_norm=False)
        h = att_out(self.attention.self(x, mask, first_only=first_only), residual, post_norm=True)
        return ff_out(self.intermediate(h), h, post_norm=True)
