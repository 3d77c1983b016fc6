"""Text generation with a GPT (or the bigram baseline): greedy or sampled, with a KV cache, in batches.

    ids = generate(model, [[10, 11, 12], [7]], max_new_tokens=50, top_k=40)   # token ids in, new ids out
    texts = generate_text(model, tokenizer, ["It is a truth", "Emma"], max_new_tokens=200, temperature=0.8)

Prompts of different lengths are left-padded and masked, with positions counted from each prompt's
first real token, so a prompt gives the same tokens in a batch as alone. The KV cache keeps each
layer's keys and values so that a step feeds only the newest token; it gives the same tokens as
recomputing everything. Once a sequence outgrows the context (`n_positions`), both ways keep only
the last `n_positions` tokens and recompute them each step (the cache cannot slide: positions are
absolute), as nanoGPT does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from nanobert.errors import NanobertError
from nanobert.model.gpt import GPT, KVCache

log = logging.getLogger(__name__)


@dataclass
class GenerationConfig:
    """How to pick each next token."""

    max_new_tokens: int = 200  # stop after this many new tokens (or earlier at end-of-text)
    greedy: bool = False  # True: always the most likely token (temperature/top_k/top_p are ignored)
    temperature: float = 1.0  # < 1 sharpens the distribution, > 1 flattens it; must be > 0
    top_k: int | None = None  # sample only among the k most likely tokens (None: all)
    top_p: float | None = None  # sample only among the most likely tokens whose probabilities sum to p
    eos_token_id: int | None = None  # stop a sequence when it produces this token (None: never)
    use_cache: bool = True  # False recomputes the whole sequence at each step (slower, same tokens)
    seed: int | None = None  # fixes the sampling; None draws from torch's global generator

    def check(self) -> None:
        """Raise NanobertError for settings that cannot be honoured."""
        if self.max_new_tokens < 0:
            raise NanobertError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.greedy and not self.temperature > 0:
            raise NanobertError(f"temperature must be > 0, got {self.temperature}; use greedy decoding "
                                "(--greedy) for the most likely tokens")
        if self.top_k is not None and self.top_k < 1:
            raise NanobertError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise NanobertError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf the logits outside the top k and outside the nucleus of probability `top_p`.

    logits: (B, V). The most likely token always survives.
    Example: probs [0.5, 0.3, 0.15, 0.05], top_p=0.7 -> keeps tokens 0 and 1 (0.5 < 0.7 <= 0.8);
             top_k=3 -> drops token 3.
    """
    logits = logits.clone()
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass of strictly more likely tokens
        drop_sorted = before >= top_p  # the first token has before = 0 and always stays
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits[drop] = float("-inf")
    return logits


def next_token(logits: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row from last-position logits (B, V) -> (B,)."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def context_length(model) -> int | None:
    """The longest sequence `model` accepts (None: unlimited, as for the bigram model)."""
    config = getattr(model, "config", None)
    return getattr(config, "n_positions", None)


@torch.no_grad()
def generate(model, prompts: list[list[int]], cfg: GenerationConfig | None = None, **overrides) -> list[list[int]]:
    """Continue each prompt (a list of token ids) and return only the new ids of each.

    A sequence stops at `eos_token_id` (which is not returned) or after `max_new_tokens`.
    Keyword overrides set fields of `cfg`: `generate(model, [[1, 2]], max_new_tokens=5, greedy=True)`.
    """
    cfg = GenerationConfig(**{**(cfg.__dict__ if cfg else {}), **overrides})
    cfg.check()
    if not prompts or any(len(p) == 0 for p in prompts):
        raise NanobertError("every prompt needs at least one token; an empty prompt has nothing to continue")
    ctx = context_length(model)
    longest = max(len(p) for p in prompts)
    if ctx is not None and longest > ctx:
        raise NanobertError(f"prompt of {longest} tokens is longer than the model's context of {ctx} tokens; "
                            "shorten the prompt")
    device = next(model.parameters()).device
    generator = None
    if cfg.seed is not None and not cfg.greedy:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)

    B = len(prompts)
    seq = torch.zeros(B, longest, dtype=torch.long, device=device)  # (B, T) left-padded with id 0
    mask = torch.zeros(B, longest, dtype=torch.long, device=device)  # (B, T) 1 = real token
    for i, p in enumerate(prompts):
        seq[i, longest - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, longest - len(p):] = 1
    padded = bool((mask == 0).any())
    is_gpt = isinstance(model, GPT)
    use_cache = cfg.use_cache and is_gpt
    cache = None
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    new: list[list[int]] = [[] for _ in range(B)]

    was_training = model.training
    model.eval()
    try:
        for _ in range(cfg.max_new_tokens):
            T = seq.size(1)
            if not is_gpt:
                logits, _ = model(seq)  # the bigram model looks at the last token only
            elif use_cache and T <= ctx:
                if cache is None:  # prefill: the whole prompt at once
                    p = next(model.parameters())
                    cache = KVCache(model.config, B, ctx, device=device, dtype=p.dtype)
                    inp = seq
                else:  # one new token after the cached ones
                    inp = seq[:, -1:]
                logits, _ = model(inp, cache=cache, attention_mask=mask if padded else None, last_only=True)
            else:  # no cache, or past the context: recompute the last `ctx` tokens
                window = slice(-ctx, None) if ctx is not None else slice(None)
                logits, _ = model(seq[:, window], attention_mask=mask[:, window] if padded else None,
                                  last_only=True)
            tok = next_token(logits[:, -1, :], cfg, generator)  # (B,)
            tok = torch.where(finished, torch.zeros_like(tok), tok)
            for i in (~finished).nonzero().flatten().tolist():
                if cfg.eos_token_id is not None and tok[i].item() == cfg.eos_token_id:
                    finished[i] = True
                else:
                    new[i].append(tok[i].item())
            if bool(finished.all()):
                break
            seq = torch.cat([seq, tok[:, None]], dim=1)  # (B, T+1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, T+1)
    finally:
        model.train(was_training)
    return new


def generate_text(model, tokenizer, prompts: str | list[str], cfg: GenerationConfig | None = None,
                  **overrides) -> list[str]:
    """Encode `prompts` with `tokenizer`, generate, and return each prompt's continuation as text.

    End-of-text defaults to the tokenizer's `eot_token_id` (byte-level BPE) or the model's
    `eos_token_id` when that id is inside the tokenizer's vocabulary.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    cfg = GenerationConfig(**{**(cfg.__dict__ if cfg else {}), **overrides})
    if cfg.eos_token_id is None:
        cfg.eos_token_id = getattr(tokenizer, "eot_token_id", None)
    if cfg.eos_token_id is None:
        eos = getattr(getattr(model, "config", None), "eos_token_id", None)
        if eos is not None and eos < tokenizer.vocab_size:
            cfg.eos_token_id = eos
    out = generate(model, ids, cfg)
    return [tokenizer.decode(o) for o in out]
