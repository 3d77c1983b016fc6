"""Dynamic masking for masked-language-model training: a fresh mask for every batch.

Of the positions that may be masked (never special tokens such as [CLS]/[SEP], never padding),
each is chosen with probability `rate` (default 15%); a chosen position becomes [MASK] 80% of the
time, a random token 10% and stays unchanged 10% (so the model cannot learn that only [MASK] needs
predicting). `labels` hold the original token at chosen positions and -100 elsewhere, which is what
the model's loss (and its sparse prediction head) reads. Whole-word masking chooses words instead of
pieces: a word's continuation pieces ("##ing") follow the choice made for its first piece.

The random numbers are drawn for a `(rows_total, width)` table and this batch uses rows
`row_offset...`: a global batch split across processes is masked exactly as it would be in one process.
`MaskedBatches` wraps a loader's batch stream and masks each batch with a seed drawn from its position,
so a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from nanobert.data.loaders import BatchStream


def continuation_table(tokenizer) -> torch.Tensor:
    """(V,) bool: True where the token is a WordPiece continuation ("##...") — for whole-word masking."""
    return torch.tensor([tokenizer.id_to_token(i).startswith("##") for i in range(tokenizer.vocab_size)])


def special_table(special_ids: Iterable[int], vocab_size: int) -> torch.Tensor:
    """(V,) bool: True for ids that are never masked. Example: special_table([0, 2], 4) -> [T, F, T, F]."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    table[torch.tensor(sorted(set(special_ids)), dtype=torch.long)] = True
    return table


def word_starts(input_ids: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """(B, T) long: for each position, the index of the first piece of its word.

    Example: pieces [CLS, "play", "##ing", "now"] -> [0, 1, 1, 3].
    """
    B, T = input_ids.shape
    pos = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
    is_start = ~continuation.to(input_ids.device)[input_ids]  # (B, T)
    return torch.where(is_start, pos, torch.zeros_like(pos)).cummax(dim=1).values  # (B, T)


def mask_tokens(input_ids: torch.Tensor, *, mask_id: int, special: torch.Tensor, rate: float = 0.15,
                attention_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                continuation: torch.Tensor | None = None, row_offset: int = 0, rows_total: int | None = None,
                width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask `input_ids` (B, T); return `(masked_ids (B, T), labels (B, T))` with labels -100 where not chosen.

    `special` is a (V,) bool table of ids never chosen (`special_table`); `attention_mask` 0 also
    excludes padding. `continuation` (V,) enables whole-word masking. Random numbers come from
    `generator`, drawn for `rows_total` x `width` (default: this batch's shape) and read at rows
    `row_offset:row_offset + B`, columns `:T`. At least one position is chosen when any can be, so
    the mean loss is always defined.
    """
    B, T = input_ids.shape
    rows_total = rows_total or B
    width = width or T
    if T > width or row_offset + B > rows_total:
        raise ValueError(f"batch {B}x{T} at row {row_offset} does not fit the noise table {rows_total}x{width}")
    vocab_size = special.numel()
    draw = dict(generator=generator, device="cpu")
    u_choose = torch.rand(rows_total, width, **draw)[row_offset:row_offset + B, :T]  # (B, T)
    u_kind = torch.rand(rows_total, width, **draw)[row_offset:row_offset + B, :T]  # (B, T)
    random_ids = torch.randint(vocab_size, (rows_total, width), **draw)[row_offset:row_offset + B, :T]  # (B, T)
    u_choose, u_kind, random_ids = (t.to(input_ids.device) for t in (u_choose, u_kind, random_ids))

    allowed = ~special.to(input_ids.device)[input_ids]  # (B, T)
    if attention_mask is not None:
        allowed &= attention_mask.bool()
    if continuation is not None:  # whole words: every piece uses its first piece's draw
        u_choose = u_choose.gather(1, word_starts(input_ids, continuation))  # (B, T)
    chosen = (u_choose < rate) & allowed
    if not chosen.any() and allowed.any():  # a tiny batch drew nothing: choose its lowest-draw position
        flat = torch.where(allowed, u_choose, torch.full_like(u_choose, 2.0)).flatten().argmin()
        chosen.view(-1)[flat] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    masked = input_ids.clone()
    masked[chosen & (u_kind < 0.8)] = mask_id
    swap = chosen & (u_kind >= 0.8) & (u_kind < 0.9)
    masked[swap] = random_ids[swap].to(masked.dtype)
    return masked, labels


def _batch_seed(seed: int, epoch: int, index: int) -> int:
    """A generator seed for the masks of batch `index` of `epoch`: a pure function of the data position."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class MaskedBatches:
    """Wraps a `BatchStream`: adds dynamic masks (`input_ids` masked, `labels`) seeded by the batch's position."""

    def __init__(self, stream: BatchStream, tokenizer, rate: float, seed: int, whole_word: bool = False):
        self.stream, self.rate, self.seed = stream, rate, seed
        self.mask_id = tokenizer.mask_token_id
        self.special = special_table(tokenizer.special_ids | {tokenizer.pad_token_id}, tokenizer.vocab_size)
        self.continuation = continuation_table(tokenizer) if whole_word else None

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self.stream)
        epoch, index = batch.pop("position")
        gen = torch.Generator().manual_seed(_batch_seed(self.seed, epoch, index))
        s = self.stream
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], mask_id=self.mask_id, special=self.special, rate=self.rate,
            attention_mask=batch["attention_mask"], generator=gen, continuation=self.continuation,
            row_offset=s.rank * s.batch_size, rows_total=s.global_batch, width=s.data.seq_len)
        return batch

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
