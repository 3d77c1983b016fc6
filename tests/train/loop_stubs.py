"""A stand-in model and batch stream for loop tests: anything returning (logits, loss) trains."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

V = 64


class TinyMLM(nn.Module):
    """Predict each masked token from its neighbours; sparse logits (M, V) like BertForMaskedLM."""

    def __init__(self, hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        self.emb = nn.Embedding(V, hidden)
        self.mix = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, V)
        self.poison = False  # tests set it to make the loss NaN

    def forward(self, input_ids, attention_mask=None, labels=None):
        h = self.emb(input_ids)  # (B, T, H)
        h = self.mix(h.transpose(1, 2)).transpose(1, 2)  # (B, T, H)
        logits = self.out(self.drop(torch.tanh(self.norm(h))))  # (B, T, V)
        if labels is None:
            return logits, None
        keep = labels != -100
        logits = logits[keep]  # (M, V)
        loss = F.cross_entropy(logits, labels[keep])
        return logits, loss * float("nan") if self.poison else loss


class Batches:
    """Global batch k is a pure function of k; micro-batch j of it has rows [j*size, (j+1)*size)."""

    def __init__(self, size: int = 8, micro: int = 1, T: int = 12, seed: int = 0):
        self.size, self.micro, self.T, self.seed = size, micro, T, seed
        self.k = 0  # micro-batches served

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.k // self.micro)
        start = torch.randint(0, V, (self.size * self.micro, 1), generator=g)
        ids = (start + 3 * torch.arange(self.T)) % V  # (B, T) progressions: a masked token follows from its neighbours
        keep = torch.rand(ids.shape, generator=g) < 0.2 + 0.3 * torch.rand(ids.shape[0], 1, generator=g)
        keep[:, 0] = True
        j = self.k % self.micro
        rows = slice(j * self.size, (j + 1) * self.size)
        self.k += 1
        masked = torch.where(keep, torch.ones_like(ids), ids)
        return {"input_ids": masked[rows], "labels": torch.where(keep, ids, -100)[rows]}

    def state_dict(self) -> dict:
        return {"k": self.k}

    def load_state_dict(self, state: dict) -> None:
        self.k = state["k"]
