"""Supervised fine-tuning of a GPT on prompt -> completion rows: the loss covers completion tokens only.

    result = sft("runs/base/model", "demos.jsonl", "runs/sft", SFTConfig(loop=LoopConfig(max_steps=300)))
    # runs/sft/model is a GPT directory like any other (generate, compare, ppo, dpo read it)

Rows are TRL's prompt-completion format `{"prompt", "completion"}` (or `{"text"}`: a completion
with an empty prompt). Each row is `prompt + completion (+ end-of-text, when the tokenizer has
one)`, batched with others of similar length (length bucketing, `data.causal.ExampleBatches`),
labels -100 on the prompt and the padding; only the completion positions go through the LM head
(`CompletionLM`). A row longer than the context is cut at the end; a
prompt that fills the context is an error. Training is `train.loop.train`: checkpoints, exact
resume, metrics.csv and plots in `out_dir`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanobert.align.policy import Policy, labelled_logits
from nanobert.align.records import read_sft_rows
from nanobert.data.causal import ExampleBatches, in_order, pad_examples
from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.model.gpt import GPT
from nanobert.train.loop import LoopConfig, evaluate, train
from nanobert.train.metrics import perplexity

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    batch_size: int = 32  # rows per micro-batch
    val_fraction: float = 0.02  # rows held out for the validation loss (0: none)
    add_eos: bool = True  # end each completion with end-of-text so the policy learns to stop (if the tokenizer has one)
    seed: int = 0  # split, order and initialisation
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_steps=300, lr=3e-4, min_lr=3e-5, warmup_steps=20, eval_every=100, checkpoint_every=100))


class CompletionLM(nn.Module):
    """The policy as SFT trains it: logits (M, V) and mean cross-entropy at the M completion positions only.

    Same loss as `GPT.forward(**batch)`, but the prompt and padding positions never reach the
    (C, V) LM head; the loop reads sparse (M, V) logits as it does for masked LM.
    """

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, labels=None, **_):
        h = self.model.hidden_states(input_ids, attention_mask=attention_mask)  # (B, T, C)
        logits, keep = labelled_logits(self.model, h, labels)  # (M, V)
        return logits, F.cross_entropy(logits.float(), labels[keep])


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (train, val) split of range(n); val gets round(n * val_fraction) rows, train at least one."""
    order = np.random.default_rng(seed).permutation(n)
    k = min(int(round(n * val_fraction)), n - 1)
    return np.sort(order[k:]), np.sort(order[:k])


def encode_rows(policy: Policy, rows, add_eos: bool) -> tuple[list[list[int]], list[int]]:
    """Token ids of each row and where its completion starts; rows longer than the context are cut."""
    ctx = policy.model.config.n_positions + 1  # n inputs + the last target
    eos = [policy.eos_token_id] if add_eos and policy.eos_token_id is not None else []
    seqs, starts, cut = [], [], 0
    for i, (prompt, completion) in enumerate(rows):
        p = policy.encode(prompt) if prompt else []
        c = policy.encode(completion) + eos
        if len(p) >= ctx - 1:
            raise NanobertError(f"row {i + 1}: the prompt is {len(p)} tokens, too long for the context of "
                                f"{ctx - 1}; shorten it")
        if not c:
            raise NanobertError(f"row {i + 1}: the completion encodes to no tokens")
        cut += len(p) + len(c) > ctx
        seqs.append((p + c)[:ctx])
        starts.append(len(p))
    if cut:
        log.warning("%d of %d rows were longer than the context and were cut", cut, len(rows))
    return seqs, starts


def sft(model_dir: str | Path, data: str | Path, out_dir: str | Path, cfg: SFTConfig | None = None,
        resume: bool = False, callbacks=()) -> dict:
    """Fine-tune the GPT in `model_dir` on `data`; save `out_dir/model`; return (and write) results.json."""
    cfg = cfg or SFTConfig()
    torch.manual_seed(cfg.seed)
    rows = read_sft_rows(data)
    policy = Policy.load(model_dir)
    seqs, starts = encode_rows(policy, rows, cfg.add_eos)
    train_idx, val_idx = split_indices(len(seqs), cfg.val_fraction, cfg.seed)

    def collate(idx):
        return pad_examples([seqs[i] for i in idx], [starts[i] for i in idx])

    batches = ExampleBatches([len(seqs[i]) for i in train_idx], cfg.batch_size,
                             lambda idx: collate(train_idx[idx]), seed=cfg.seed)
    eval_data = (lambda: in_order(len(val_idx), cfg.batch_size, lambda idx: collate(val_idx[idx]))) \
        if len(val_idx) else None
    out_dir = Path(out_dir)
    start = time.perf_counter()
    model = CompletionLM(policy.model)
    state = train(model, batches, cfg.loop, out_dir, eval_data=eval_data, resume=resume,
                  callbacks=callbacks, run_config=dataclasses.asdict(cfg))
    result = {"steps": state.step, "train_rows": len(train_idx), "val_rows": len(val_idx),
              "train_seconds": round(time.perf_counter() - start, 1), "train_loss": state.loss}
    if eval_data is not None:
        final = evaluate(model, eval_data(), state.info.device)
        result.update(val_loss=final["loss"], val_perplexity=perplexity(final["loss"]))
    policy.model.save_pretrained(out_dir / "model", tokenizer=policy.tokenizer)
    write_json(out_dir / "results.json", result)
    return result
