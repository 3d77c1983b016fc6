"""Preference data in TRL's formats, and `compare`: sampling K completions per prompt and ranking them.

File formats (JSON Lines, one object a line; extra fields are kept and ignored):

    {"prompt": "the film is", "completion": " a delight ."}        supervised rows (SFT); or {"text": "..."}
    {"prompt": "the film is", "chosen": " a delight .", "rejected": " dull ."}   preference pairs
    prompts: a .txt file with one prompt a line, or .jsonl rows with a "prompt" field

`compare` writes pairs with two extra fields, `chosen_score` and `rejected_score` (the labeller's
scores), so a pair's margin can be used to filter or weight it later; human-labelled files and
TRL datasets without them work the same.

    stats = compare("runs/sft/model", "runs/labeller", "prompts.txt", "pairs.jsonl", CompareConfig(samples=4))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from nanobert.align.policy import Policy
from nanobert.align.scoring import Scorer, load_scorer
from nanobert.data.sources import read_json_lines
from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.infer.generate import GenerationConfig

log = logging.getLogger(__name__)

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


@dataclass
class CompareConfig:
    samples: int = 4  # K completions per prompt; the best and the worst by the labeller make the pair
    max_new_tokens: int = 24  # completion length in tokens (characters for a character GPT)
    temperature: float = 1.0  # sample at the policy's own distribution: varied completions to compare
    top_k: int | None = None
    batch_size: int = 64  # prompts sampled together
    seed: int = 0
    progress: bool = True


def compare(policy: str | Path | Policy, labeller: str | Path | Scorer, prompts: str | Path | Sequence[str],
            out: str | Path, cfg: CompareConfig | None = None) -> dict:
    """Sample `cfg.samples` completions per prompt, score `prompt + completion` with the labeller, write pairs.

    The pair of a prompt is its highest- and lowest-scored non-empty completions; prompts with
    fewer than two distinct non-empty completions, or a tie, give no pair. Returns counts and the
    mean labeller margin.
    """
    cfg = cfg or CompareConfig()
    if cfg.samples < 2:
        raise NanobertError(f"samples must be at least 2 to make a pair, got {cfg.samples}")
    policy = policy if isinstance(policy, Policy) else Policy.load(policy)
    score = load_scorer(labeller)
    prompts = read_prompts(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    ids = policy.encode_prompts(prompts, cfg.max_new_tokens)
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k)
    rows, margins = [], []
    bar = tqdm(total=len(prompts), desc="compare", unit="prompt", disable=not cfg.progress)
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = list(range(start, min(start + cfg.batch_size, len(prompts))))
        # every prompt K times: (prompt 0 x K, prompt 1 x K, ...), one seeded draw per chunk
        flat = [ids[i] for i in chunk for _ in range(cfg.samples)]
        gen.seed = cfg.seed * 1_000_003 + start
        texts = [policy.decode(c) for c in policy.sample(flat, gen)]
        scores = score([prompts[chunk[j // cfg.samples]] + t for j, t in enumerate(texts)])
        for n, i in enumerate(chunk):
            cand = {}
            for k in range(cfg.samples):
                t, s = texts[n * cfg.samples + k], float(scores[n * cfg.samples + k])
                if t.strip():
                    cand[t] = s
            if len(cand) < 2:
                continue
            best, worst = max(cand, key=cand.get), min(cand, key=cand.get)
            if cand[best] == cand[worst]:
                continue
            rows.append({"prompt": prompts[i], "chosen": best, "rejected": worst,
                         "chosen_score": round(cand[best], 4), "rejected_score": round(cand[worst], 4)})
            margins.append(cand[best] - cand[worst])
        bar.update(len(chunk))
    bar.close()
    if not rows:
        raise NanobertError("no prompt gave two different non-empty completions; raise samples or max_new_tokens")
    write_jsonl(out, rows)
    stats = {"prompts": len(prompts), "pairs": len(rows), "skipped": len(prompts) - len(rows),
             "mean_margin": float(np.mean(margins))}
    log.info("wrote %d pairs to %s (%d prompts skipped)", len(rows), out, stats["skipped"])
    return stats


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
