"""`eval-gen`: how positive, how far from the reference and how fluent a policy's samples are, by a judge.

    report = evaluate_policies({"sft": "runs/sft/model", "ppo": "runs/ppo/model"}, judge="runs/judge",
                               prompts="heldout_prompts.txt", reference="runs/sft/model")
    print(format_table(report))

For each policy, one sampled completion per prompt (fixed seed), then:
- judge positive rate: share of `prompt + completion` the judge classifies positive (log-odds > 0);
- mean judge logit: the judge's mean log-odds of positive;
- KL to the reference: mean over samples of Σ_t (log π(y_t) - log π_ref(y_t)), a Monte-Carlo
  estimate of KL(π ‖ π_ref) per sequence, in nats;
- reference perplexity: exp of the reference's mean negative log-prob per completion token (fluency);
- with a reward model: its mean score, its Pearson correlation with the judge, and the reward-hacking
  count: samples in the top quarter of reward-model scores (over all policies) that the judge calls negative.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanobert.align.policy import Policy, completion_logprobs
from nanobert.align.records import read_prompts
from nanobert.align.scoring import is_scorer_dir, load_scorer
from nanobert.errors import NanobertError
from nanobert.infer.generate import GenerationConfig

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    max_new_tokens: int = 24
    temperature: float = 1.0  # the policy's own distribution: what KL to the reference measures
    seed: int = 0
    batch_size: int = 64
    show: int = 5  # samples kept per policy in the report


def _sample(policy: Policy, prompts, ids, cfg: EvalConfig):
    comps = []
    for s in range(0, len(ids), cfg.batch_size):
        gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed + s)
        comps += policy.sample(ids[s:s + cfg.batch_size], gen)
    return comps


def evaluate_policies(policies: dict[str, str | Path], judge, prompts, reference: str | Path,
                      reward=None, cfg: EvalConfig | None = None) -> dict:
    """{policy name: metrics + samples}, plus the reward-hacking summary when `reward` is given."""
    cfg = cfg or EvalConfig()
    if isinstance(judge, (str, Path)) and not is_scorer_dir(judge):
        raise NanobertError(f"judge {judge} is not a classifier (its config.json names no SequenceClassification "
                            "architecture); pass a directory made by `nanobert finetune`")
    judge_fn = load_scorer(judge)
    reward_fn = load_scorer(reward) if reward is not None else None
    texts = read_prompts(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    ref = Policy.load(reference, dropout=False)
    report: dict = {"policies": {}, "prompts": len(texts)}
    for name, path in policies.items():
        pol = Policy.load(path, dropout=False)
        if pol.tokenizer.vocab_size != ref.tokenizer.vocab_size:
            raise NanobertError(f"{name} and the reference have different vocabularies; KL needs the same tokenizer")
        ids = pol.encode_prompts(texts, cfg.max_new_tokens)
        comps = _sample(pol, texts, ids, cfg)
        eos = pol.eos_token_id
        ended = [c + ([eos] if eos is not None and len(c) < cfg.max_new_tokens else []) for c in comps]
        lp = np.asarray(completion_logprobs(pol.model, ids, ended))
        ref_lp = np.asarray(completion_logprobs(ref.model, ids, ended))
        n_tokens = max(1, sum(len(c) for c in ended))
        samples = [p + pol.decode(c) for p, c in zip(texts, comps)]
        judged = judge_fn(samples)
        m = {"judge_positive_rate": float((judged > 0).mean()), "mean_judge_logit": float(judged.mean()),
             "kl_to_reference": float((lp - ref_lp).mean()),
             "reference_perplexity": math.exp(min(50.0, -ref_lp.sum() / n_tokens)),
             "mean_length": float(np.mean([len(c) for c in comps])), "samples": samples[:cfg.show]}
        if reward_fn is not None:
            rewarded = reward_fn(samples)
            m["mean_reward"] = float(rewarded.mean())
            m["reward_judge_correlation"] = pearson(rewarded, judged)
            m["_scores"] = (rewarded, judged, samples)
        report["policies"][name] = m
    if reward_fn is not None:
        _hacking(report)
    return report


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (no linear relation to measure)."""
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _hacking(report: dict) -> None:
    """Count and show samples the reward model scores in its top quarter but the judge calls negative."""
    every = np.concatenate([m["_scores"][0] for m in report["policies"].values()])
    cut = float(np.quantile(every, 0.75))
    report["reward_hacking_threshold"] = cut
    for m in report["policies"].values():
        rewarded, judged, samples = m.pop("_scores")
        hacked = np.nonzero((rewarded >= cut) & (judged < 0))[0]
        m["reward_hacking_count"] = int(len(hacked))
        m["reward_hacking_samples"] = [{"text": samples[i], "reward": round(float(rewarded[i]), 3),
                                        "judge_logit": round(float(judged[i]), 3)} for i in hacked[:3]]


COLUMNS = [("judge_positive_rate", "judge +rate", "{:.1%}"), ("mean_judge_logit", "judge logit", "{:+.2f}"),
           ("kl_to_reference", "KL (nats)", "{:.2f}"), ("reference_perplexity", "ref ppl", "{:.2f}"),
           ("mean_length", "length", "{:.1f}"), ("mean_reward", "reward", "{:+.2f}"),
           ("reward_hacking_count", "hacked", "{:d}")]


def format_table(report: dict) -> str:
    """The metrics as an aligned text table, then a few samples per policy."""
    pols = report["policies"]
    cols = [c for c in COLUMNS if any(c[0] in m for m in pols.values())]
    head = ["policy"] + [c[1] for c in cols]
    body = [[name] + [fmt.format(m[key]) if key in m else "-" for key, _, fmt in cols] for name, m in pols.items()]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in [head] + body]
    for name, m in pols.items():
        lines += ["", f"{name} samples:"] + [f"  {s}" for s in m["samples"]]
        for h in m.get("reward_hacking_samples", []):
            lines.append(f"  [reward {h['reward']:+.2f}, judge {h['judge_logit']:+.2f}] {h['text']}")
    return "\n".join(lines) + "\n"
