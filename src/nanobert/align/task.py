"""The files of the SST-2 alignment task, made from the SST-2 TSVs beside the project.

    write_task_files("../shared/data/sst2", "runs/align/data")

writes into the output directory:
- corpus.txt: every training sentence, one a line (the base GPT's pretraining text; text only);
- sft.jsonl: every training sentence of >= 6 words cut into {"prompt": first 2-5 words,
  "completion": " " + the rest} (the demonstrations: the task's form, not its preference);
- train_prompts.txt: prompts of the same kind for comparisons and PPO; dev_prompts.txt: prompts from
  SST-2 dev sentences (held out: never seen in training);
- labeller.tsv / judge.tsv: the two halves of SST-2 train (sentence, label), so the labeller that
  ranks comparisons and the judge that evaluates are different classifiers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from nanobert.errors import NanobertError
from nanobert.fileio import write_text

MIN_WORDS = 6  # a prompt of up to 5 words leaves at least one word to complete


def read_sst2(path: str | Path) -> list[tuple[str, str]]:
    """(sentence, label) rows of an SST-2 TSV (header: sentence, label)."""
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"SST-2 file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or "sentence" not in rows[0]:
        raise NanobertError(f"{path} is not an SST-2 TSV (expected the columns sentence and label)")
    return [(r["sentence"].strip(), r.get("label", "")) for r in rows if r["sentence"].strip()]


def cut_prompt(sentence: str, rng: np.random.Generator) -> tuple[str, str]:
    """(first 2-5 words, " " + the rest). Example: "a b c d e f g", 3 words -> ("a b c", " d e f g")."""
    words = sentence.split()
    k = int(rng.integers(2, min(5, len(words) - 1) + 1))
    return " ".join(words[:k]), " " + " ".join(words[k:])


def write_task_files(sst2_dir: str | Path, out_dir: str | Path, seed: int = 0) -> dict:
    """Write the task's files (see the module docstring); return their row counts."""
    sst2_dir, out_dir = Path(sst2_dir), Path(out_dir)
    train, dev = read_sst2(sst2_dir / "train.tsv"), read_sst2(sst2_dir / "dev.tsv")
    rng = np.random.default_rng(seed)
    long_train = [s for s, _ in train if len(s.split()) >= MIN_WORDS]
    cuts = [cut_prompt(s, rng) for s in long_train]
    dev_prompts = [cut_prompt(s, rng)[0] for s, _ in dev if len(s.split()) >= MIN_WORDS]
    order = rng.permutation(len(train))
    halves = {"labeller.tsv": order[: len(order) // 2], "judge.tsv": order[len(order) // 2:]}
    write_text(out_dir / "corpus.txt", "".join(s + "\n" for s, _ in train))
    write_text(out_dir / "sft.jsonl", "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in cuts))
    write_text(out_dir / "train_prompts.txt", "".join(p + "\n" for p, _ in cuts))
    write_text(out_dir / "dev_prompts.txt", "".join(p + "\n" for p in dev_prompts))
    for name, idx in halves.items():
        write_text(out_dir / name, "sentence\tlabel\n" + "".join(f"{train[i][0]}\t{train[i][1]}\n" for i in idx))
    return {"corpus": len(train), "sft": len(cuts), "train_prompts": len(cuts), "dev_prompts": len(dev_prompts),
            "labeller": len(halves["labeller.tsv"]), "judge": len(halves["judge.tsv"])}
