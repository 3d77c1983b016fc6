"""Reward models: a scalar head on a BERT or GPT backbone, trained on preference pairs with the Bradley–Terry loss.

    result = train_reward("runs/minilm", "pairs.jsonl", "runs/reward")   # result["val_pairwise_accuracy"]
    score = load_scorer("runs/reward/model"); score(["the film is a delight ."])

A BERT backbone becomes `BertForSequenceClassification` with `num_labels = 1` (what TRL's
RewardTrainer trains, and what transformers loads); a GPT backbone gets a bias-free `score`
projection read at the last real token, saved as GPT-2's `GPT2ForSequenceClassification`
layout. The text scored is `prompt + completion`.

Each training batch holds B pairs as 2B rows, chosen first: the model's "logits" are
(B, 2) = [r_rejected, r_chosen] and its "labels" are all 1, so the training loop's accuracy is
exactly the pairwise accuracy (chosen scored above rejected).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from nanobert.align.losses import bradley_terry_loss
from nanobert.align.pairwise import split_pairs, train_pairwise
from nanobert.data.causal import ExampleBatches, in_order
from nanobert.data.loaders import collate
from nanobert.errors import NanobertError
from nanobert.fileio import atomic_dir, write_json
from nanobert.infer.pipelines import load_tokenizer_dir
from nanobert.model.bert import BertForSequenceClassification
from nanobert.model.gpt import GPT, GPTConfig
from nanobert.tokenizers import load_tokenizer
from nanobert.train.loop import LoopConfig

log = logging.getLogger(__name__)


@dataclass
class RewardConfig:
    batch_size: int = 16  # pairs per micro-batch (2x rows)
    max_length: int = 128  # tokens per text; longer ones are cut at the end
    val_fraction: float = 0.1  # pairs held out for the pairwise accuracy
    label_smoothing: float = 0.0  # > 0 trusts each pair with probability 1 - ε (against noisy labels)
    center_rewards_coefficient: float = 0.0  # TRL's: pulls the mean reward to 0 (+ c * mean((r_c + r_r)^2))
    flip_fraction: float = 0.0  # data-quality study: swap chosen/rejected in this share of training pairs
    max_pairs: int = 0  # > 0: train on a seeded sample of this many pairs
    min_margin: float | None = None  # drop pairs whose labeller margin is smaller (needs chosen_score/rejected_score)
    seed: int = 0
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_steps=300, lr=5e-5, min_lr=5e-6, warmup_steps=20, eval_every=100, checkpoint_every=100))


class GPTRewardModel(nn.Module):
    """A GPT trunk + `score` (n_embd -> 1, no bias) at the last real token: forward -> (B,) rewards."""

    def __init__(self, config: GPTConfig, tokenizer=None):
        super().__init__()
        self.gpt = GPT(config)
        self.score = nn.Linear(config.n_embd, 1, bias=False)
        nn.init.normal_(self.score.weight, std=1.0 / (config.n_embd + 1) ** 0.5)
        self.tokenizer = tokenizer

    def rewards(self, input_ids, attention_mask=None, **_) -> torch.Tensor:
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        h = self.gpt.hidden_states(input_ids, attention_mask=mask)  # (B, T, C)
        last = mask.long().sum(-1) - 1  # (B,) index of the last real token (right padding)
        return self.score(h[torch.arange(h.size(0)), last]).squeeze(-1)  # (B,)

    def encode(self, texts, max_length: int) -> list[list[int]]:
        return [self.tokenizer.encode(t, add_special_tokens=False)[:min(max_length, self.gpt.config.n_positions)]
                or [0] for t in texts]

    def save_pretrained(self, model_dir) -> None:
        from safetensors.torch import save_file

        tensors = {**self.gpt.hf_state_dict(), "score.weight": self.score.weight.detach().contiguous()}
        config = {**self.gpt.config.to_dict(), "architectures": ["GPT2ForSequenceClassification"],
                  "num_labels": 1, "id2label": {"0": "reward"}, "label2id": {"reward": 0},
                  "pad_token_id": self.gpt.config.eos_token_id or 0}
        with atomic_dir(model_dir) as tmp:
            write_json(tmp / "config.json", config)
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            if self.tokenizer is not None:
                self.tokenizer.save(tmp)

    @classmethod
    def from_gpt(cls, model_dir) -> "GPTRewardModel":
        model = cls(GPTConfig.from_pretrained(model_dir), load_tokenizer(model_dir))
        model.gpt = GPT.from_pretrained(model_dir)
        return model

    @classmethod
    def load(cls, model_dir) -> "GPTRewardModel":
        from safetensors.torch import load_file

        tensors = load_file(str(Path(model_dir) / "model.safetensors"))
        if "score.weight" not in tensors:
            raise NanobertError(f"{model_dir} has no score.weight: it is not a GPT reward model")
        model = cls(GPTConfig.from_pretrained(model_dir), load_tokenizer(model_dir))
        with torch.no_grad():
            model.score.weight.copy_(tensors.pop("score.weight"))
        model.gpt.load_hf_state_dict(tensors)
        return model.eval()

    def scorer(self, batch_size: int = 64, max_length: int = 1024):
        @torch.no_grad()
        def score(texts):
            ids = self.encode(list(texts), max_length)
            out = [self.rewards(**collate([np.asarray(s) for s in ids[i:i + batch_size]], 0)).numpy()
                   for i in range(0, len(ids), batch_size)]
            return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
        return score


class BertReward(nn.Module):
    """BertForSequenceClassification (num_labels = 1) seen as a reward model: forward -> (B,) rewards."""

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def from_bert(cls, model_dir) -> "BertReward":
        model = BertForSequenceClassification.from_pretrained(
            model_dir, BertForSequenceClassification.new_head_keys, num_labels=1, id2label={0: "reward"},
            label2id={"reward": 0}, problem_type="regression")
        return cls(model.train(), load_tokenizer_dir(Path(model_dir)))

    def rewards(self, input_ids, attention_mask=None, token_type_ids=None, **_) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids)[0].squeeze(-1)  # (B,)

    def encode(self, texts, max_length: int) -> list[list[int]]:
        n = min(max_length, self.model.config.max_position_embeddings)
        return [ids[:n - 1] + ids[-1:] if len(ids) > n else ids for ids in self.tokenizer.encode_batch(texts)]

    def save_pretrained(self, model_dir) -> None:
        self.model.save_pretrained(model_dir, tokenizer=self.tokenizer)


class PairwiseReward(nn.Module):
    """Wraps a reward model for the loop: 2B rows (chosen, then rejected) -> ((B, 2) [r_rej, r_cho], BT loss)."""

    def __init__(self, reward: nn.Module, label_smoothing: float = 0.0, center: float = 0.0):
        super().__init__()
        self.reward, self.label_smoothing, self.center = reward, label_smoothing, center

    def forward(self, input_ids, attention_mask, labels=None, **_):
        r = self.reward.rewards(input_ids, attention_mask).float()  # (2B,)
        chosen, rejected = r.chunk(2)
        loss = bradley_terry_loss(chosen, rejected, label_smoothing=self.label_smoothing)
        if self.center:
            loss = loss + self.center * ((chosen + rejected) ** 2).mean()
        return torch.stack([rejected, chosen], dim=-1), loss  # (B, 2)


def load_backbone(model_dir) -> nn.Module:
    """A BertReward or GPTRewardModel with a new scalar head on the backbone saved in `model_dir`."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise NanobertError(f"{model_dir} is not a model directory (no config.json)")
    if json.loads(path.read_text(encoding="utf-8")).get("model_type") == "gpt2":
        return GPTRewardModel.from_gpt(model_dir)
    return BertReward.from_bert(model_dir)


def pair_collate(chosen: list[list[int]], rejected: list[list[int]], pad_id: int):
    """Indices -> one batch of 2B rows: chosen rows first, then their rejected partners; labels (B,) = 1."""
    def fn(idx):
        batch = collate([np.asarray(chosen[i]) for i in idx] + [np.asarray(rejected[i]) for i in idx], pad_id)
        batch["labels"] = torch.ones(len(idx), dtype=torch.long)
        return batch
    return fn


def train_reward(model_dir, data, out_dir, cfg: RewardConfig | None = None, resume: bool = False,
                 callbacks=()) -> dict:
    """Train a reward model on the pairs in `data`; save `out_dir/model`; return (and write) results.json."""
    cfg = cfg or RewardConfig()
    torch.manual_seed(cfg.seed)
    train_rows, val_rows = split_pairs(data, cfg)
    reward = load_backbone(model_dir)
    pad = getattr(reward.tokenizer, "pad_token_id", None) or 0

    def encode(rs):
        return (reward.encode([r["prompt"] + r["chosen"] for r in rs], cfg.max_length),
                reward.encode([r["prompt"] + r["rejected"] for r in rs], cfg.max_length))

    tc, tr = encode(train_rows)
    batches = ExampleBatches([max(len(a), len(b)) for a, b in zip(tc, tr)], cfg.batch_size,
                             pair_collate(tc, tr, pad), seed=cfg.seed)
    eval_data = None
    if val_rows:
        vc, vr = encode(val_rows)
        eval_data = lambda: in_order(len(vc), cfg.batch_size, pair_collate(vc, vr, pad))  # noqa: E731
    model = PairwiseReward(reward, cfg.label_smoothing, cfg.center_rewards_coefficient)
    result = train_pairwise(model, batches, eval_data, cfg, out_dir, len(train_rows), len(val_rows),
                            "val_pairwise_accuracy", resume=resume, callbacks=callbacks)
    if val_rows:
        log.info("held-out pairwise accuracy %.4f on %d pairs", result["val_pairwise_accuracy"], len(val_rows))
    reward.eval()
    reward.save_pretrained(Path(out_dir) / "model")
    write_json(Path(out_dir) / "results.json", result)
    return result
