"""The alignment data files: reading prompts, SFT rows and preference pairs, writing JSON Lines, choosing pairs.

File formats (JSON Lines, one object a line; extra fields are kept and ignored):

    {"prompt": "the film is", "completion": " a delight ."}        supervised rows (SFT); or {"text": "..."}
    {"prompt": "the film is", "chosen": " a delight .", "rejected": " dull ."}   preference pairs
    prompts: a .txt file with one prompt a line, or .jsonl rows with a "prompt" field

Pairs written by `align.preferences.compare` carry two extra fields, `chosen_score` and `rejected_score`.
This module imports no other part of `nanobert.align`, so every trainer can read its data without cycles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.data.textio import read_json_lines
from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path

PAIR_FIELDS = ("prompt", "chosen", "rejected")


def _require(path, line: int, obj: dict, fields: Sequence[str], allow_empty: Sequence[str] = ()) -> list[str]:
    out = []
    for f in fields:
        if f not in obj:
            raise NanobertError(f"{path}:{line} has no field {f!r}; every row needs {', '.join(map(repr, fields))}")
        v = obj[f]
        if not isinstance(v, str):
            raise NanobertError(f"{path}:{line}: field {f!r} must be a string, got {type(v).__name__}")
        if not v.strip() and f not in allow_empty:
            raise NanobertError(f"{path}:{line}: field {f!r} is empty; remove the row or fill it in")
        out.append(v)
    return out


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a .txt file (one a line, blank lines skipped) or a .jsonl file with a "prompt" field."""
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"prompts file not found: {path}")
    if ".jsonl" in path.suffixes:
        prompts = [_require(path, i, obj, ("prompt",))[0] for i, obj in read_json_lines(path)]
    else:
        prompts = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise NanobertError(f"{path} holds no prompts")
    return prompts


def read_sft_rows(path: str | Path) -> list[tuple[str, str]]:
    """(prompt, completion) pairs from {"prompt", "completion"} rows, or ("", text) from {"text"} rows."""
    rows = []
    for i, obj in read_json_lines(path):
        if "text" in obj and "completion" not in obj:
            rows.append(("", _require(path, i, obj, ("text",))[0]))
        else:
            rows.append(tuple(_require(path, i, obj, ("prompt", "completion"), allow_empty=("prompt",))))
    if not rows:
        raise NanobertError(f"{path} holds no rows; expected {{\"prompt\", \"completion\"}} or {{\"text\"}} objects")
    return rows


def read_pairs(path: str | Path) -> list[dict]:
    """Preference rows {"prompt", "chosen", "rejected"} (+ any extra fields), every field a non-empty string."""
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"preference file not found: {path}")
    rows = []
    for i, obj in read_json_lines(path):
        _require(path, i, obj, PAIR_FIELDS)
        rows.append(obj)
    if not rows:
        raise NanobertError(f"{path} holds no preference pairs")
    return rows


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> None:
    """Write rows as JSON Lines, all at once or not at all."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def select_pairs(rows: list[dict], *, flip_fraction: float = 0.0, max_pairs: int = 0, min_margin: float | None = None,
                 seed: int = 0) -> list[dict]:
    """The pairs a reward model or DPO trains on: filtered by labeller margin, cut, some labels flipped.

    `min_margin` drops pairs whose `chosen_score - rejected_score` is smaller (those fields are
    needed); `max_pairs` > 0 keeps a seeded sample of that many; `flip_fraction` swaps chosen and
    rejected in a seeded share of the rest (the data-quality study: simulated rater noise).
    Example: 10 pairs, flip_fraction 0.2 -> the same 10 pairs, 2 of them reversed.
    """
    if not 0.0 <= flip_fraction <= 1.0:
        raise NanobertError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
    rng = np.random.default_rng(seed)
    if min_margin is not None:
        if not all("chosen_score" in r and "rejected_score" in r for r in rows):
            raise NanobertError("min_margin needs chosen_score and rejected_score in every row (as compare writes)")
        rows = [r for r in rows if r["chosen_score"] - r["rejected_score"] >= min_margin]
    if max_pairs and max_pairs < len(rows):
        rows = [rows[i] for i in np.sort(rng.choice(len(rows), max_pairs, replace=False))]
    flip = set(rng.choice(len(rows), int(round(flip_fraction * len(rows))), replace=False).tolist())
    out = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} if i in flip else r for i, r in enumerate(rows)]
    if len(out) < 2:
        raise NanobertError(f"only {len(out)} pairs left after filtering; lower min_margin or add pairs")
    return out
