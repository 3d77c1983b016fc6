"""Labelled examples for classification: tokenize once, then length-bucketed, dynamically padded batches.

    enc = encode_labelled(read_labelled("train.tsv"), tokenizer, max_length=128, labels=label_map)
    batches = BucketedBatches(enc, batch_size=32, seed=0, pad_id=0)     # endless; state_dict() for resume
    next(batches)  # {"input_ids": (B, T), "attention_mask", "token_type_ids", "labels": (B,)}

Batches group examples of similar length (padded only to the longest in the batch), yet stay random.
`batch_size` is the global batch of one optimizer step: under several processes and gradient
accumulation each of the `world_size x grad_accum` micro-batches is a slice of it, so the steps (and
the model) do not depend on how the work is split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from nanobert.data.tables import LabelMap, LabelledData


@dataclass
class Encoded:
    """A tokenized split: per example token ids and segment ids, class ids, standardized features, and any
    further per-example arrays (`extra`, name -> (N, ...) array) that batches carry under their name."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray | None  # (N,) int64
    tabular: np.ndarray | None  # (N, F) float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. a teacher's (N, K) logits

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode_labelled(data: LabelledData, tokenizer, max_length: int, labels: LabelMap | None = None,
                    stats=None) -> Encoded:
    """Tokenize (no padding: batches pad themselves), map labels to ids, standardize features with `stats`."""
    enc = tokenizer(data.texts, data.text_pairs, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    y = None
    if labels is not None and data.labels is not None:
        y = np.asarray(labels.encode(data.labels, source=data.source), dtype=np.int64)
    x = stats.transform(data.tabular) if stats is not None and data.tabular is not None else None
    return Encoded(ids, types, y, x)


def collate_labelled(data: Encoded, idx, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples `idx` to their longest: input_ids, attention_mask, token_type_ids (B, T), labels (B,),
    tabular (B, F), and each `extra` array's rows (B, ...) under its name. Example: ids [[2, 7, 3], [2, 3]], pad 0 -> input_ids [[2, 7, 3], [2, 3, 0]]."""
    T = max(len(data.input_ids[i]) for i in idx)
    B = len(idx)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if data.labels is not None:
        batch["labels"] = torch.from_numpy(data.labels[np.asarray(idx)])
    if data.tabular is not None:
        batch["tabular"] = torch.from_numpy(data.tabular[np.asarray(idx)])
    for name, values in data.extra.items():
        batch[name] = torch.from_numpy(values[np.asarray(idx)])
    return batch


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort by length inside pools of `pool` batches, cut, shuffle the batches.

    Example: lengths [5, 1, 5, 1], batch_size 2, one pool -> batches {1, 3} and {0, 2} in random order.
    """
    order = rng.permutation(len(lengths))
    batches = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class BucketedBatches:
    """Endless length-bucketed micro-batches of `data` for this process; epoch after epoch, a new order each.

    Each global batch of `batch_size` examples is cut into `world_size x grad_accum` near-equal slices;
    this process yields slices `rank, rank + world_size, ...` (its `grad_accum` micro-batches of the step).
    A last batch too small to give every slice an example is dropped. The position (epoch, batch) is
    the whole state: `load_state_dict` replays the epochs' shuffles from the seed.
    """

    def __init__(self, data: Encoded, batch_size: int, seed: int, pad_id: int, pool: int = 50, rank: int = 0,
                 world_size: int = 1, grad_accum: int = 1):
        self.data, self.batch_size, self.seed, self.pad_id, self.pool = data, batch_size, seed, pad_id, pool
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.lengths = data.lengths
        self.slices = world_size * grad_accum
        self.load_state_dict({"epoch": 0, "batch": 0})

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(len(self.data), self.batch_size)
        return full + (rest >= self.slices)

    def _new_epoch(self) -> None:
        batches = bucketed_batches(self.lengths, self.batch_size, self._rng, self.pool)
        self._batches = [b for b in batches if len(b) >= self.slices]

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        if not self._micro:
            if self.batch >= len(self._batches):
                self.epoch, self.batch = self.epoch + 1, 0
                self._new_epoch()
            parts = np.array_split(self._batches[self.batch], self.slices)
            self._micro = [parts[a * self.world_size + self.rank] for a in range(self.grad_accum)]
            self.batch += 1
        return collate_labelled(self.data, self._micro.pop(0), self.pad_id)

    def state_dict(self) -> dict:
        """Where the next step starts: {"epoch", "batch"} (a step's micro-batches are never split by a checkpoint)."""
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self._rng = np.random.default_rng(self.seed)
        for _ in range(int(state["epoch"]) + 1):
            self._new_epoch()
        self.epoch, self.batch, self._micro = int(state["epoch"]), int(state["batch"]), []


def sorted_batches(data: Encoded, batch_size: int, pad_id: int, rank: int = 0, world_size: int = 1) -> list[dict]:
    """This process's share (every `world_size`-th) of `data` cut into batches sorted by length (little padding)."""
    order = np.argsort(data.lengths, kind="stable")
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [collate_labelled(data, idx, pad_id) for idx in chunks[rank::world_size]]
