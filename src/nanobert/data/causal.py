"""Batches for causal language models: next-token pairs from token blocks, and padded example batches.

Every batch is a dict that `GPT.forward(**batch)` and the training loop read directly:
`input_ids` (B, T), `attention_mask` (B, T) and `labels` (B, T), where `labels[:, t]` is the token
that follows `input_ids[:, t]` (already shifted) and -100 marks positions without a loss
(padding, and in supervised fine-tuning the prompt).

    batches = CausalLMBatches(BatchStream(TokenShards(data_dir, "train"), 32))   # pretraining blocks
    batch = pad_examples([prompt + completion], [len(prompt)], pad_id=0)         # one SFT batch
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from nanobert.data.loaders import BatchStream, EpochBatches, TokenShards, collate
from nanobert.data.labelled import bucketed_batches


def to_causal(batch: dict) -> dict:
    """{"input_ids", "attention_mask"} (B, T+1) -> {"input_ids", "attention_mask", "labels"} (B, T).

    Example: block [5, 6, 7] -> input_ids [5, 6], labels [6, 7]; padding in labels becomes -100.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T) the next token, -100 past the end
    return {"input_ids": ids[:, :-1], "attention_mask": mask[:, :-1], "labels": labels}


class CausalLMBatches:
    """Turns BatchStream's (B, T+1) blocks into next-token batches; its position is the stream's."""

    def __init__(self, stream: BatchStream):
        self.stream = stream

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return to_causal(next(self.stream))

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


def val_batches(data: TokenShards, batch_size: int, limit: int = 0) -> Iterator[dict]:
    """The val split in order, as causal batches; `limit` > 0 stops after that many batches."""
    n = 0
    for shard, size in enumerate(data.shard_sizes()):
        for start in range(0, size, batch_size):
            if limit and n >= limit:
                return
            seqs = [data.seq(shard, i) for i in range(start, min(start + batch_size, size))]
            yield to_causal(collate(seqs, 0))
            n += 1


def pad_examples(seqs: Sequence[Sequence[int]], loss_from: Sequence[int], pad_id: int = 0) -> dict:
    """Right-pad whole sequences into one causal batch whose loss starts at token `loss_from[i]` of row i.

    The labels of row i are its tokens shifted by one, -100 before `loss_from[i]` (the prompt)
    and over the padding, so the loss covers only what follows the prompt.
    Example: seqs [[5, 6, 7, 8]], loss_from [2] -> input_ids [[5, 6, 7]], labels [[-100, 7, 8]].
    """
    full = collate([np.asarray(s, dtype=np.int64) for s in seqs], pad_id)  # (B, T+1)
    batch = to_causal(full)
    T = batch["labels"].size(1)
    start = torch.as_tensor(list(loss_from), dtype=torch.long).view(-1, 1)  # (B, 1)
    target_pos = torch.arange(1, T + 1).view(1, T)  # (1, T) the position of each label in the sequence
    batch["labels"] = batch["labels"].masked_fill(target_pos < start, -100)
    return batch


class ExampleBatches(EpochBatches):
    """Endless, seeded, resumable batches over in-memory examples, similar lengths together.

    `collate_fn(indices) -> dict` builds one batch; each epoch draws a new length-bucketed order
    from (seed, epoch), so the position `(epoch, index)` is all that a checkpoint needs.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, collate_fn: Callable[[np.ndarray], dict],
                 seed: int = 0):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.collate_fn, self.seed = batch_size, collate_fn, seed
        super().__init__()

    def plan(self, epoch: int) -> list[np.ndarray]:
        return bucketed_batches(self.lengths, self.batch_size, np.random.default_rng([self.seed, epoch]))

    def make_batch(self, item: np.ndarray) -> dict:
        return self.collate_fn(item)


def in_order(n: int, batch_size: int, collate_fn: Callable[[np.ndarray], dict]) -> Iterator[dict]:
    """Batches of examples 0..n-1 in order (evaluation)."""
    for start in range(0, n, batch_size):
        yield collate_fn(np.arange(start, min(start + batch_size, n)))
