"""Direct Preference Optimisation: the policy learns from preference pairs without a reward model.

    result = dpo("runs/sft/model", "pairs.jsonl", "runs/dpo", DPOConfig(beta=0.1))

The loss is `losses.dpo_loss` (TRL's default "sigmoid" DPO) on the summed log-probs of each
completion (plus end-of-text when the tokenizer has one) given its prompt. The reference is the
starting policy; its log-probs are computed once, before training, and travel with the pairs.
Each batch holds B pairs as 2B rows (chosen first); the loop's "accuracy" is the share of pairs
whose implicit reward β·(log π - log π_ref) is higher for the chosen completion (TRL's
rewards/accuracies).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from nanobert.align.losses import dpo_loss
from nanobert.align.policy import Policy, completion_batch, completion_logprobs, sequence_logprobs
from nanobert.align.pairwise import split_pairs, train_pairwise
from nanobert.data.causal import ExampleBatches, in_order
from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.train.loop import LoopConfig

log = logging.getLogger(__name__)


@dataclass
class DPOConfig:
    beta: float = 0.1  # strength of the pull towards the reference (TRL's default)
    label_smoothing: float = 0.0  # > 0: conservative DPO, for noisy preference labels
    batch_size: int = 16  # pairs per micro-batch
    val_fraction: float = 0.1
    flip_fraction: float = 0.0  # data-quality study, as in RewardConfig
    max_pairs: int = 0
    min_margin: float | None = None
    seed: int = 0
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_steps=200, lr=5e-5, min_lr=5e-6, warmup_steps=10, eval_every=50, checkpoint_every=100,
        schedule="linear"))


class DPOModel(nn.Module):
    """The policy seen by the loop: 2B rows (chosen, then rejected) -> ((B, 2) implicit rewards, DPO loss)."""

    def __init__(self, policy: nn.Module, beta: float, label_smoothing: float):
        super().__init__()
        self.policy, self.beta, self.label_smoothing = policy, beta, label_smoothing

    def forward(self, input_ids, attention_mask, completion_labels, ref_logps, labels=None, **_):
        logp, _ = sequence_logprobs(self.policy, {"input_ids": input_ids, "attention_mask": attention_mask,
                                                  "labels": completion_labels})
        chosen, rejected = logp.sum(-1).chunk(2)  # (B,) each
        ref_chosen, ref_rejected = ref_logps.chunk(2)
        loss, r_chosen, r_rejected = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta,
                                              self.label_smoothing)
        return torch.stack([r_rejected, r_chosen], dim=-1), loss  # (B, 2)


def encode_pairs(policy: Policy, rows: list[dict]):
    """(prompt ids, chosen ids, rejected ids) per row; a prompt + completion longer than the context is an error."""
    ctx = policy.model.config.n_positions + 1
    extra = 1 if policy.eos_token_id is not None else 0
    out = []
    for i, r in enumerate(rows):
        p, c, j = policy.encode(r["prompt"]), policy.encode(r["chosen"]), policy.encode(r["rejected"])
        longest = len(p) + max(len(c), len(j)) + extra
        if longest > ctx:
            raise NanobertError(f"pair {i + 1}: prompt + completion is {longest} tokens, more than the context "
                                f"of {ctx - 1} + 1; shorten the rows")
        out.append((p, c, j))
    return out


def dpo_collate(enc, ref: np.ndarray, eos: int | None):
    """Indices -> a batch of 2B rows: input_ids, attention_mask, completion_labels, ref_logps (2B,), labels (B,)."""
    def fn(idx):
        prompts = [enc[i][0] for i in idx] * 2
        completions = [enc[i][1] for i in idx] + [enc[i][2] for i in idx]
        b = completion_batch(prompts, completions, eos)
        return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
                "completion_labels": b["labels"],
                "ref_logps": torch.from_numpy(np.concatenate([ref[idx, 0], ref[idx, 1]])),
                "labels": torch.ones(len(idx), dtype=torch.long)}
    return fn


def reference_logps(policy: Policy, enc) -> np.ndarray:
    """(N, 2) summed log-probs of the chosen and rejected completions under the starting policy."""
    prompts = [e[0] for e in enc]
    chosen = completion_logprobs(policy.model, prompts, [e[1] for e in enc], policy.eos_token_id)
    rejected = completion_logprobs(policy.model, prompts, [e[2] for e in enc], policy.eos_token_id)
    return np.stack([chosen, rejected], axis=1).astype(np.float32)


def dpo(model_dir, data, out_dir, cfg: DPOConfig | None = None, resume: bool = False, callbacks=()) -> dict:
    """Train the GPT in `model_dir` with DPO on the pairs in `data`; save `out_dir/model`; return results.json."""
    cfg = cfg or DPOConfig()
    torch.manual_seed(cfg.seed)
    train_rows, val_rows = split_pairs(data, cfg)
    policy = Policy.load(model_dir, dropout=False)
    enc_train, enc_val = encode_pairs(policy, train_rows), encode_pairs(policy, val_rows)
    ref_train = reference_logps(policy, enc_train)
    ref_val = reference_logps(policy, enc_val) if enc_val else None
    eos = policy.eos_token_id
    batches = ExampleBatches([len(p) + max(len(c), len(j)) for p, c, j in enc_train], cfg.batch_size,
                             dpo_collate(enc_train, ref_train, eos), seed=cfg.seed)
    eval_data = (lambda: in_order(len(enc_val), cfg.batch_size, dpo_collate(enc_val, ref_val, eos))) \
        if enc_val else None
    model = DPOModel(policy.model, cfg.beta, cfg.label_smoothing)
    result = train_pairwise(model, batches, eval_data, cfg, out_dir, len(train_rows), len(val_rows),
                            "val_reward_accuracy", resume=resume, callbacks=callbacks)
    policy.model.save_pretrained(Path(out_dir) / "model", tokenizer=policy.tokenizer)
    write_json(Path(out_dir) / "results.json", result)
    return result
