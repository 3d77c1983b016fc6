"""Read prepared token shards (see prepare.py) as an endless, resumable stream of padded batches.

    data = TokenShards("data/wiki", "train")
    stream = BatchStream(data, batch_size=32, seed=0, pad_id=0)   # rank 0 of 1
    batch = next(stream)   # {"input_ids": (32, T) long, "attention_mask": (32, T) long}
    packed = BatchStream(data, batch_size=32, packed=True)   # the same sequences, several to a row (`pack`)

Each epoch every shard is shuffled with a seed derived from (seed, epoch, shard), cut into global
batches (`batch_size` x `world_size` sequences) and the shards take turns: batch 0 from shard 0,
batch 1 from shard 1, ... (round-robin). Process `rank` keeps its own `batch_size` rows of every
global batch. The position is two integers (epoch, batch index): `state_dict()` saves it,
`load_state_dict()` jumps back to it without replaying anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nanobert.errors import NanobertError
from nanobert.data.prepare import load_shard, read_meta  # noqa: F401  (read_meta: also imported from here)


class TokenShards:
    """One split of a prepared directory: memory-mapped shards; `seq(shard, i)` is a uint16/uint32 array."""

    def __init__(self, data_dir: str | Path, split: str = "train"):
        self.dir = Path(data_dir)
        self.meta = read_meta(data_dir)
        if split not in self.meta["splits"]:
            raise NanobertError(f"{data_dir} has no split {split!r}; it has {', '.join(self.meta['splits'])}")
        self.split = split
        self.shards = [load_shard(self.dir, self.meta, shard) for shard in self.meta["splits"][split]["shards"]]

    @property
    def seq_len(self) -> int:
        return int(self.meta["seq_len"])

    def shard_sizes(self) -> list[int]:
        return [len(off) - 1 for _, off in self.shards]

    def __len__(self) -> int:
        return sum(self.shard_sizes())

    def seq(self, shard: int, i: int) -> np.ndarray:
        tokens, offsets = self.shards[shard]
        return tokens[offsets[i]:offsets[i + 1]]

    def token_counts(self, vocab_size: int, max_tokens: int) -> np.ndarray:
        """(V,) int64: how often each id occurs among the split's first `max_tokens` tokens (shard order)."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        budget = max_tokens
        for tokens, _ in self.shards:
            chunk = np.asarray(tokens[:budget])
            counts += np.bincount(chunk, minlength=vocab_size)[:vocab_size]
            budget -= len(chunk)
            if budget <= 0:
                break
        return counts


def collate(seqs: list[np.ndarray], pad_id: int) -> dict:
    """Pad to the longest sequence: {"input_ids": (B, T) long, "attention_mask": (B, T) long (1 = real token)}.

    Example: [[5, 6, 7], [8]], pad 0 -> input_ids [[5, 6, 7], [8, 0, 0]], attention_mask [[1, 1, 1], [1, 0, 0]].
    """
    T = max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(seqs), T), dtype=np.int64)  # (B, T)
    for row, s in enumerate(seqs):
        ids[row, :len(s)] = s
        mask[row, :len(s)] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def pack(seqs: list[np.ndarray], seq_len: int, pad_id: int) -> dict:
    """Several sequences to a row, no padding between them: `collate`'s dict for rows of at most `seq_len`
    tokens filled first-fit, longest sequence first, plus "position_ids" (R, T): each token's position in its
    own sequence, 0 where one starts (and at padding). The model keeps attention within each sequence
    (`model.layers.packed_mask`), so a row of three sequences costs one row, not three mostly padded ones.

    Example: lengths [3, 2, 4], seq_len 5 -> rows [seq 2 (4 tokens)], [seq 0 (3), seq 1 (2)];
    position_ids [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]], attention_mask [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]].
    """
    rows: list[list[np.ndarray]] = []
    room: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):  # stable: ties keep their order
        n = len(seqs[i])
        r = next((r for r, free in enumerate(room) if free >= n), None)
        if r is None:
            rows.append([]), room.append(seq_len)
            r = len(rows) - 1
        rows[r].append(seqs[i])
        room[r] -= n
    batch = collate([np.concatenate(row) for row in rows], pad_id)
    positions = np.zeros(batch["input_ids"].shape, dtype=np.int64)  # (R, T)
    for r, row in enumerate(rows):
        positions[r, :sum(map(len, row))] = np.concatenate([np.arange(len(s)) for s in row])
    batch["position_ids"] = torch.from_numpy(positions)
    return batch


class EpochBatches:
    """Endless batches, epoch after epoch: `plan(epoch)` lists an epoch's batches, `make_batch(item)` builds one.

    A plan is drawn from the seed and the epoch alone, so the position (epoch, index) is the whole state:
    `load_state_dict` jumps back to it without replaying anything. Subclasses call `super().__init__()`
    last, once `plan` can run.
    """

    def __init__(self):
        self.epoch, self.index = 0, 0
        self._plan = self.plan(0)

    def plan(self, epoch: int) -> list:
        raise NotImplementedError

    def make_batch(self, item) -> dict:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._plan)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.index >= len(self._plan):
            self.epoch, self.index = self.epoch + 1, 0
            self._plan = self.plan(self.epoch)
        batch = self.make_batch(self._plan[self.index])
        self.index += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._plan = self.plan(self.epoch)


class BatchStream(EpochBatches):
    """Endless iterator of this process's batches: shuffled per epoch, round-robin over shards, resumable.
    `packed`: each batch's sequences packed several to a row (`pack`): the same tokens in fewer rows."""

    def __init__(self, data: TokenShards, batch_size: int, seed: int = 0, pad_id: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True, packed: bool = False):
        self.data, self.batch_size, self.seed, self.pad_id = data, batch_size, seed, pad_id
        self.rank, self.world_size, self.shuffle, self.packed = rank, world_size, shuffle, packed
        self.global_batch = batch_size * world_size
        if max(data.shard_sizes(), default=0) < self.global_batch:
            raise NanobertError(f"the {data.split} split has {len(data)} sequences in shards of "
                                f"{data.shard_sizes()}; a global batch of {self.global_batch} does not fit in one "
                                f"shard: lower batch-size or prepare with a larger shard-size")
        super().__init__()

    def plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """[(shard, row indices of one global batch), ...] for `epoch`, shards taking turns."""
        per_shard = []
        for s, n in enumerate(self.data.shard_sizes()):
            order = np.random.default_rng([self.seed, epoch, s]).permutation(n) if self.shuffle else np.arange(n)
            k = n // self.global_batch  # the last partial batch is dropped
            per_shard.append([(s, order[b * self.global_batch:(b + 1) * self.global_batch]) for b in range(k)])
        plan = []
        for b in range(max(len(p) for p in per_shard)):
            plan.extend(p[b] for p in per_shard if b < len(p))
        return plan

    def make_batch(self, item: tuple[int, np.ndarray]) -> dict:
        shard, rows = item
        mine = rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        seqs = [self.data.seq(shard, int(i)) for i in mine]
        batch = pack(seqs, self.data.seq_len, self.pad_id) if self.packed else collate(seqs, self.pad_id)
        batch["position"] = (self.epoch, self.index)  # read by masking to seed this batch's draw
        return batch
