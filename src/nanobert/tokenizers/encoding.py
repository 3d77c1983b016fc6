"""From token ids to model inputs: pairs, truncation, padding, masks, offsets, tensors.

`batch_encode(tokenizer, texts, pairs, ...)` is what `WordPieceTokenizer.__call__` runs. It follows
Hugging Face's conventions so that code written for `BertTokenizerFast` works unchanged:

    single:  [CLS] a [SEP]            token_type_ids 0 ... 0
    pair:    [CLS] a [SEP] b [SEP]    token_type_ids 0 ... 0 1 ... 1

Longest-first truncation (as Hugging Face's tokenizers): with a budget of m content tokens and
lengths a <= b, keep both if a + b <= m; else if a <= m / 2, cut the longer one to m - a; else
cut both, to m // 2 and m - m // 2 (the longer gets the odd token; on a tie, the second).
Example: lengths (10, 3) in 9 -> (6, 3); (7, 20) in 12 -> (6, 6); (20, 7) in 13 -> (7, 6).
"""

from __future__ import annotations

from nanobert.errors import NanobertError


def truncate_lengths(n1: int, n2: int | None, budget: int) -> tuple[int, int | None]:
    """Longest-first lengths for a pair (or a single sequence when `n2` is None) within `budget`."""
    if n2 is None:
        return min(n1, budget), None
    if n1 + n2 <= budget:
        return n1, n2
    short = min(n1, n2)
    if short <= budget - short:
        short_t, long_t = short, budget - short
    else:
        short_t, long_t = budget // 2, budget // 2 + budget % 2
    return (short_t, long_t) if n1 < n2 else (long_t, short_t) if n1 > n2 else (short_t, long_t)


def _row(tok, text: str, pair: str | None, add_special: bool, budget: int | None, offsets: bool) -> dict:
    if offsets:
        a, oa = tok.encode_with_offsets(text)
        b, ob = tok.encode_with_offsets(pair) if pair is not None else (None, None)
    else:
        a, oa = tok.encode(text, add_special_tokens=False), None
        b, ob = (tok.encode(pair, add_special_tokens=False), None) if pair is not None else (None, None)
    if budget is not None:
        n1, n2 = truncate_lengths(len(a), None if b is None else len(b), budget)
        a, oa = a[:n1], oa and oa[:n1]
        if b is not None:
            b, ob = b[:n2], ob and ob[:n2]
    if add_special:
        ids = tok._with_special(a, b)
        types = [0] * (len(a) + 2) + ([1] * (len(b) + 1) if b is not None else [])
        special = [1] + [0] * len(a) + [1] + ([0] * len(b) + [1] if b is not None else [])
        offs = [(0, 0), *(oa or []), (0, 0), *([*(ob or []), (0, 0)] if b is not None else [])]
    else:
        ids = a + (b or [])
        types = [0] * len(a) + [1] * len(b or [])
        special = [0] * len(ids)
        offs = (oa or []) + (ob or [])
    row = {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}
    if offsets:
        row["offset_mapping"] = offs
    row["special_tokens_mask"] = special
    return row


def _pad(row: dict, length: int, pad_id: int) -> dict:
    n = length - len(row["input_ids"])
    if n <= 0:
        return row
    fill = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0, "offset_mapping": (0, 0),
            "special_tokens_mask": 1}
    return {k: v + [fill[k]] * n for k, v in row.items()}


def batch_encode(tok, text, text_pair=None, *, add_special_tokens=True, max_length=None, truncation=False,
                 padding=False, return_tensors=None, return_offsets_mapping=False,
                 return_special_tokens_mask=False) -> dict:
    """Encode one text (lists out) or a batch (lists of lists, or tensors (B, T)); see the module docstring."""
    batched = not isinstance(text, str)
    texts = list(text) if batched else [text]
    if not all(isinstance(t, str) for t in texts):
        raise NanobertError("tokenizer input must be a str or a list of str")
    if text_pair is None:
        pairs = [None] * len(texts)
    else:
        pairs = list(text_pair) if batched else [text_pair]
        if isinstance(text_pair, str) == batched or len(pairs) != len(texts):
            raise NanobertError(f"text_pair must match text: {len(texts)} text(s) but {len(pairs)} pair(s)")
    if truncation not in (False, True, "longest_first", "do_not_truncate"):
        raise NanobertError(f"truncation={truncation!r} is not supported: use True / 'longest_first' or False")
    if padding not in (False, True, "longest", "max_length", "do_not_pad"):
        raise NanobertError(f"padding={padding!r} is not supported: use 'longest', 'max_length' or False")
    limit = max_length if max_length is not None else tok.model_max_length
    budget = None
    if truncation and truncation != "do_not_truncate":
        n_special = (2 if text_pair is None else 3) if add_special_tokens else 0
        budget = limit - n_special
        if budget < 0:
            raise NanobertError(f"max_length={limit} leaves no room for the {n_special} special tokens")
    rows = [_row(tok, t, p, add_special_tokens, budget, return_offsets_mapping) for t, p in zip(texts, pairs)]
    if padding in (True, "longest"):
        length = max((len(r["input_ids"]) for r in rows), default=0)
        rows = [_pad(r, length, tok.pad_token_id) for r in rows]
    elif padding == "max_length":
        rows = [_pad(r, limit, tok.pad_token_id) for r in rows]
    keys = ["input_ids", "token_type_ids", "attention_mask"]
    keys += ["offset_mapping"] * return_offsets_mapping + ["special_tokens_mask"] * return_special_tokens_mask
    out = {k: [r[k] for r in rows] for k in keys}
    if return_tensors is not None:
        return _to_tensors(out, return_tensors)
    return out if batched else {k: v[0] for k, v in out.items()}


def _to_tensors(out: dict, kind: str) -> dict:
    lengths = {len(r) for r in out["input_ids"]}
    if len(lengths) > 1:
        raise NanobertError("rows have different lengths: pass padding='longest' to get tensors")
    if kind == "np":
        import numpy as np

        return {k: np.array(v, dtype=np.int64) for k, v in out.items()}
    if kind == "pt":
        import torch

        return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
    raise NanobertError(f"return_tensors={kind!r} is not supported: use 'pt', 'np' or None")
