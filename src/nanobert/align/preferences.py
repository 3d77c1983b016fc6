"""Preference data in TRL's formats, and `compare`: sampling K completions per prompt and ranking them.

The file formats, and the readers, are in `align.records`.

`compare` writes pairs with two extra fields, `chosen_score` and `rejected_score` (the labeller's
scores), so a pair's margin can be used to filter or weight it later; human-labelled files and
TRL datasets without them work the same.

    stats = compare("runs/sft/model", "runs/labeller", "prompts.txt", "pairs.jsonl", CompareConfig(samples=4))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from nanobert.align.policy import Policy
from nanobert.align.records import read_prompts, write_jsonl
from nanobert.align.scoring import Scorer, load_scorer
from nanobert.errors import NanobertError
from nanobert.infer.generate import GenerationConfig

log = logging.getLogger(__name__)


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
