"""Score texts with a classifier or a reward model: the labeller, the judge and PPO's reward all come through here.

    score = load_scorer("runs/labeller")      # a BERT classifier directory -> log-odds of its positive label
    score = load_scorer("runs/reward")        # a reward model (num_labels = 1, BERT or GPT) -> its scalar
    score = load_scorer(lambda texts: [t.count("good") for t in texts])   # or any Python function
    score(["a fine film", "a dull film"])     # -> float32 array (N,)

For a classifier the score is log p(positive) - log p(not positive): the positive label is the one
named 1 / positive / pos (case-insensitive), else the last label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nanobert.align.reward import GPTRewardModel
from nanobert.errors import NanobertError
from nanobert.infer.pipelines import ClassifyPipeline

Scorer = Callable[[Sequence[str]], np.ndarray]
POSITIVE_NAMES = ("1", "positive", "pos")


def _config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise NanobertError(f"{model_dir} is not a model directory (no config.json); pass a classifier made by "
                            "`nanobert finetune` or a reward model made by `nanobert reward`")
    return json.loads(path.read_text(encoding="utf-8"))


def positive_index(id2label: dict) -> int:
    """Index of the positive label. Example: {0: "negative", 1: "positive"} -> 1; {0: "1", 1: "0"} -> 0."""
    names = {int(k): str(v).lower() for k, v in (id2label or {}).items()}
    for i, name in sorted(names.items()):
        if name in POSITIVE_NAMES:
            return i
    return max(names) if names else 1


def logits_to_score(logits: np.ndarray, pos: int) -> np.ndarray:
    """(N, L) logits -> (N,): the logit itself when L = 1, else log-odds of label `pos`."""
    if logits.shape[1] == 1:
        return logits[:, 0].astype(np.float32)
    others = np.delete(logits, pos, axis=1)
    m = others.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(others - m).sum(axis=1, keepdims=True)))[:, 0]
    return (logits[:, pos] - lse).astype(np.float32)


def is_scorer_dir(model_dir: str | Path) -> bool:
    """True for a directory whose config.json names a sequence-classification architecture."""
    archs = " ".join(_config(Path(model_dir)).get("architectures") or [])
    return "SequenceClassification" in archs


def load_scorer(source: str | Path | Scorer, batch_size: int = 64) -> Scorer:
    """A function texts -> scores (N,) from a classifier / reward-model directory or a Python callable."""
    if callable(source):
        return lambda texts: np.asarray(source(list(texts)), dtype=np.float32)
    model_dir = Path(source)
    config = _config(model_dir)
    archs = " ".join(config.get("architectures") or ["BertModel"])
    if "SequenceClassification" not in archs:
        raise NanobertError(f"{model_dir} is a {archs} model, not a classifier; pass a directory made by "
                            "`nanobert finetune` (a sentiment classifier) or `nanobert reward`")
    if archs.startswith("GPT2"):
        return GPTRewardModel.load(model_dir).scorer(batch_size)

    pipe = ClassifyPipeline(model_dir, batch_size=batch_size)
    pos = positive_index(config.get("id2label") or {})

    def score(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return logits_to_score(np.stack(pipe.run_ids(pipe.encode(texts))), pos)

    return score
