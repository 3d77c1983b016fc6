"""A policy is a GPT directory and its tokenizer: load it, encode prompts, sample completions, score log-probs.

    policy = Policy.load("runs/sft/model")
    prompts = policy.encode_prompts(["the film is", "a"], max_new_tokens=24)    # checked against the context
    completions = policy.sample(prompts, GenerationConfig(max_new_tokens=24, seed=0))
    logp, mask = completion_logprobs(policy.model, prompts, completions)          # (B, T) each

Every stage of the ladder (SFT, comparisons, reward, DPO, PPO, evaluation) goes through these, so
a prompt is tokenized the same way everywhere and a text is always `prompt + completion`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from nanobert.data.causal import pad_examples
from nanobert.errors import NanobertError
from nanobert.infer.generate import GenerationConfig, generate
from nanobert.model.gpt import GPT
from nanobert.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # PPO/DPO: ratios of 1 at the start


@dataclass
class Policy:
    model: GPT
    tokenizer: object
    path: Path

    @classmethod
    def load(cls, model_dir: str | Path, dropout: bool = True) -> "Policy":
        """A GPT directory (config.json, model.safetensors, tokenizer files); `dropout=False` zeroes its dropout."""
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise NanobertError(f"{model_dir} is not a GPT directory (no config.json); pass the model/ directory "
                                "that train-gpt or sft wrote")
        model = GPT.from_pretrained(model_dir, **({} if dropout else NO_DROPOUT))
        return cls(model, load_tokenizer(model_dir), model_dir)

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eot_token_id", None)
        if eos is None:
            eos = self.model.config.eos_token_id
        return eos if eos is not None and eos < self.tokenizer.vocab_size else None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def encode_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """Token ids of each prompt; a prompt that is empty or leaves no room for the completion is an error."""
        ctx = self.model.config.n_positions
        out = []
        for i, p in enumerate(prompts):
            ids = self.encode(p)
            if not ids:
                raise NanobertError(f"prompt {i + 1} is empty; every prompt needs at least one token")
            if len(ids) + max_new_tokens > ctx:
                raise NanobertError(f"prompt {i + 1} ({p[:40]!r}...) is {len(ids)} tokens; with {max_new_tokens} "
                                    f"new tokens it exceeds the context of {ctx}: shorten it or lower max_new_tokens")
            out.append(ids)
        return out

    def sample(self, prompts: list[list[int]], cfg: GenerationConfig) -> list[list[int]]:
        """New token ids for each prompt (end-of-text excluded), sampled with the KV cache."""
        if cfg.eos_token_id is None and self.eos_token_id is not None:
            cfg = dataclasses.replace(cfg, eos_token_id=self.eos_token_id)
        return generate(self.model, prompts, cfg)


def completion_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                     eos_token_id: int | None = None) -> dict:
    """One right-padded causal batch of `prompt + completion (+ eos)`, labels only on the completion.

    An empty completion followed by end-of-text still has one target (the eos), so every row
    has a log-probability.
    """
    tail = [eos_token_id] if eos_token_id is not None else []
    seqs = [list(p) + list(c) + tail for p, c in zip(prompts, completions)]
    return pad_examples(seqs, [len(p) for p in prompts])


def labelled_logits(model: GPT, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LM-head logits (M, V) of only the M positions whose label is not -100, and that mask (B, T).

    The prompt and the padding never go through the (C, V) projection or the softmax: for short
    completions that is most of a step's work (TRL's fused LM head skips them the same way).
    """
    keep = labels != -100  # (B, T)
    return model.lm_head(hidden[keep]), keep  # (M, C) -> (M, V)


def sequence_logprobs(model: GPT, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of the labelled tokens (B, T), 0 elsewhere, and their mask (B, T), under `model`."""
    h = model.hidden_states(batch["input_ids"], attention_mask=batch["attention_mask"])  # (B, T, C)
    logits, keep = labelled_logits(model, h, batch["labels"])
    logp = torch.zeros(keep.shape, dtype=torch.float32, device=h.device)
    logp[keep] = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["labels"][keep].unsqueeze(-1)).squeeze(-1)
    return logp, keep


@torch.no_grad()
def completion_logprobs(model: torch.nn.Module, prompts, completions, eos_token_id: int | None = None,
                        batch_size: int = 64) -> list[float]:
    """Summed log-prob of each completion given its prompt (no gradient), in batches."""
    was = model.training
    model.eval()
    out: list[float] = []
    try:
        for s in range(0, len(prompts), batch_size):
            batch = completion_batch(prompts[s:s + batch_size], completions[s:s + batch_size], eos_token_id)
            logp, _ = sequence_logprobs(model, {k: v.to(next(model.parameters()).device) for k, v in batch.items()})
            out += logp.sum(-1).tolist()
    finally:
        model.train(was)
    return out
