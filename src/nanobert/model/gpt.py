"""GPT-style decoders: a bigram baseline and a GPT-2-compatible transformer decoder.

Reads top to bottom: `GPTConfig → BigramLanguageModel → KVCache → CausalSelfAttention → MLP →
Block → GPT`. Parameter names mirror Hugging Face's `GPT2LMHeadModel` exactly, so a checkpoint
saved by either loads in the other; the only difference in layout is that GPT-2 stores its
projections as `Conv1D` (in_features, out_features) while we use `nn.Linear`
(out_features, in_features): `checkpoint_io.GPT2_KEYS` lists the four weights transposed on the way
in and out.

    model = GPT(GPTConfig(vocab_size=65, n_positions=256, n_embd=384, n_layer=6, n_head=6))
    logits, loss = model(input_ids, labels)     # (B, T) token ids; labels[t] = the token after input_ids[t]
    model.save_pretrained("out/gpt")            # config.json + model.safetensors
    GPT.from_pretrained("out/gpt")              # also reads transformers' GPT-2 checkpoints
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_dir, write_json
from nanobert.model import checkpoint_io
from nanobert.model.layers import attend


@dataclass
class GPTConfig:
    """GPT-2's hyperparameters under the names of its config.json (so the file is shared with transformers)."""

    vocab_size: int = 50257  # GPT-2's byte-level BPE; a character vocabulary is ~100
    n_positions: int = 1024  # context length: the longest sequence the model can see
    n_embd: int = 768  # width of the residual stream
    n_layer: int = 12
    n_head: int = 12  # n_embd must divide by n_head; head size = n_embd // n_head
    n_inner: int | None = None  # MLP width; None means 4 * n_embd, as in GPT-2
    activation_function: str = "gelu_new"  # GPT-2's tanh approximation of GELU
    resid_pdrop: float = 0.1  # dropout on the residual branches; 0.0 for long pretraining, 0.1-0.2 for a small corpus
    embd_pdrop: float = 0.1  # dropout after token + position embeddings
    attn_pdrop: float = 0.1  # dropout on attention probabilities
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of the normal init; residual projections get / sqrt(2 * n_layer)
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256  # generation stops here; <|endoftext|> for GPT-2, None for a char model
    tie_word_embeddings: bool = True  # the output projection is the token embedding (fewer parameters)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise NanobertError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if self.activation_function not in _ACTIVATIONS:
            raise NanobertError(f"activation_function {self.activation_function!r} is not supported; "
                                f"use one of {', '.join(_ACTIVATIONS)}")
        if not self.tie_word_embeddings:
            raise NanobertError("only tied word embeddings are supported (tie_word_embeddings = true), as in GPT-2")

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "GPTConfig":
        """Read `model_dir/config.json` (ours or transformers'), ignoring keys that do not change the model."""
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise NanobertError(f"no config.json in {model_dir}; point --model at a directory saved by save_pretrained")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("model_type", "gpt2") != "gpt2":
            raise NanobertError(f"{path} describes a {data['model_type']!r} model, not GPT-2")
        for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                        ("add_cross_attention", False)):
            if data.get(key, ok) != ok:
                raise NanobertError(f"{path}: {key}={data[key]} is not supported (only GPT-2's default {ok})")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        """What config.json holds: our fields plus what transformers needs to pick the class."""
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **dataclasses.asdict(self)}


_ACTIVATIONS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # same formula as GPT-2's, one fused kernel
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


class BigramLanguageModel(nn.Module):
    """The baseline: the next token depends only on the current one, through a (V, V) table of logits.

    Its validation loss is the number a transformer has to beat; it has no context limit.
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **_):
        """input_ids, labels: (B, T) -> logits (B, T, V), loss (see `lm_loss`) or None; other batch keys are ignored."""
        logits = self.token_embedding_table(input_ids)  # (B, T, V)
        return logits, lm_loss(logits, labels)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy of logits (B, T, V) against labels (B, T) over the positions where labels != -100.

    Labels are already shifted: `labels[:, t]` is the token that follows `input_ids[:, t]`
    (see `data.causal.to_causal`), so masking a prompt or padding is one -100 per position.
    """
    if labels is None:
        return None
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `max_len` positions.

    Layer i writes the new keys at positions [length, length + T) and attends over [0, length + T);
    `GPT.forward` advances `length` once all layers have written.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        hs = config.n_embd // config.n_head
        shape = (batch_size, config.n_head, max_len, hs)  # (B, nh, max_len, hs)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T, hs) after what is cached; return all keys and values so far (B, nh, L+T, hs)."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise NanobertError(f"the KV cache holds {self.max_len} positions; {end} were asked for")
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.n_head = config.n_head
        self.layer = layer
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_pdrop = config.attn_pdrop
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, mask: torch.Tensor | None = None):
        """x: (B, T, C); mask: None (plain causal) or bool (B, 1, T, L+T), True where attending is allowed."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer, k, v)  # (B, nh, L+T, hs)
        dropout = self.attn_pdrop if self.training else 0.0
        if mask is not None:
            y = attend(q, k, v, mask, dropout)
        else:
            # A single new query sees every cached key; otherwise the plain causal mask is exact only
            # when nothing is cached before these T queries.
            if past and T > 1:
                raise ValueError("several new tokens after a filled cache need an explicit mask")
            y = attend(q, k, v, dropout_p=dropout, is_causal=(T > 1))
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.act = _ACTIVATIONS[config.activation_function]
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, mask=None):
        x = x + self.attn(self.ln_1(x), cache, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT-2 decoder: token + position embeddings, `n_layer` pre-LN blocks, final LayerNorm, tied LM head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            drop=nn.Dropout(config.embd_pdrop),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one (V, C) matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=config.initializer_range / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (the token ones are the LM head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def hidden_states(self, input_ids: torch.Tensor, *, cache: KVCache | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final (LayerNormed) hidden states (B, T, C) that the LM head reads; value and reward heads read them too.

        input_ids: (B, T) token ids. cache: keys/values of earlier tokens; `input_ids` continue
        them and the cache is advanced by T. attention_mask: (B, L+T) 1 for real tokens, 0 for
        padding (left or right), over cached + new tokens; positions count only real tokens, so a
        left-padded prompt sees the same positions as alone. An all-ones mask without a cache is
        the plain causal case and takes the faster path.
        """
        B, T = input_ids.size()
        past = cache.length if cache is not None else 0
        if past + T > self.config.n_positions:
            raise NanobertError(f"sequence of {past + T} tokens is longer than the context of "
                                f"{self.config.n_positions} (n_positions)")
        if attention_mask is not None and cache is None and bool(attention_mask.all()):
            attention_mask = None
        mask = None
        if attention_mask is None:
            pos = torch.arange(past, past + T, device=input_ids.device).unsqueeze(0)  # (1, T)
            if past and T > 1:
                mask = _causal_mask(torch.ones(B, past + T, dtype=torch.bool, device=input_ids.device), T)
        else:
            keep = attention_mask.bool()  # (B, L+T)
            pos = (keep.long().cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, T)
            mask = _causal_mask(keep, T)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache, mask)
        if cache is not None:
            cache.length += T
        return self.transformer.ln_f(x)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, *,
                attention_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                last_only: bool = False, **_):
        """Next-token logits for every position, and the mean cross-entropy against `labels` if given.

        input_ids: (B, T) token ids; labels: (B, T) the token *following* each position (already
        shifted, -100 = no loss there), as `data.causal.to_causal` makes them; attention_mask and
        cache as in `hidden_states`. last_only: logits for the last position only, (B, 1, V) —
        what sampling needs. Other batch keys (token_type_ids...) are ignored, so the training
        loop's `model(**batch)` works as for the BERT models.
        Returns logits (B, T, V) and loss (scalar tensor or None).
        """
        x = self.hidden_states(input_ids, cache=cache, attention_mask=attention_mask)  # (B, T, C)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        logits = self.lm_head(x)  # (B, T, V)
        return logits, lm_loss(logits, labels)

    # ---- Hugging Face-compatible files -------------------------------------------------------------

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """Our weights under GPT-2's names and layouts (Conv1D transposed), without the tied lm_head."""
        return checkpoint_io.file_state_dict(self, checkpoint_io.GPT2_KEYS)

    def load_hf_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> checkpoint_io.LoadReport:
        """Load GPT-2-named tensors strictly (checkpoint_io.GPT2_KEYS): any missing, unexpected or mis-shaped key is an error."""
        return checkpoint_io.load_state_dict(self, tensors, source=source, keys=checkpoint_io.GPT2_KEYS)

    def save_pretrained(self, model_dir: str | Path, tokenizer=None) -> None:
        """Write config.json + model.safetensors (+ the tokenizer's files), all at once or not at all."""
        with atomic_dir(model_dir) as tmp:
            write_json(tmp / "config.json", self.config.to_dict())
            checkpoint_io.save_safetensors(self.hf_state_dict(), tmp / "model.safetensors")
            if tokenizer is not None:
                tokenizer.save(tmp)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **config_overrides) -> "GPT":
        """Build from a directory written by `save_pretrained` or by transformers' GPT2LMHeadModel."""
        config = GPTConfig.from_pretrained(model_dir)
        config = dataclasses.replace(config, **config_overrides)
        path = Path(model_dir) / "model.safetensors"
        if not path.is_file():
            raise NanobertError(f"no model.safetensors in {model_dir}")
        checkpoint_io.check_weights_fit(path, config, checkpoint_io.GPT2_KEYS, source=str(model_dir))
        model = cls(config)
        model.load_hf_state_dict(checkpoint_io.read_state_dict(path), source=str(model_dir))
        return model


def _causal_mask(keep: torch.Tensor, T: int) -> torch.Tensor:
    """Boolean attention mask (B, 1, T, L) for the last T of L positions: causal and skipping padding.

    keep: (B, L) True for real tokens. Each query may also see itself, so a padding query never
    has an empty row (which would make softmax NaN); its output is never used.
    Example: keep=[[0, 1, 1]], T=3 -> rows [1,0,0], [0,1,0], [0,1,1].
    """
    L = keep.size(1)
    q = torch.arange(L - T, L, device=keep.device).view(T, 1)  # (T, 1) absolute query positions
    k = torch.arange(L, device=keep.device).view(1, L)  # (1, L)
    causal = k <= q  # (T, L)
    allowed = causal & keep[:, None, :]  # (B, T, L)
    allowed = allowed | (k == q)  # each query sees itself
    return allowed.unsqueeze(1)  # (B, 1, T, L)
