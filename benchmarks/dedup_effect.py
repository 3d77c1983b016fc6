"""Does deduplication pay? The same pretraining on a clean corpus, on it with near copies injected, and on that
dirty corpus deduplicated, each for the same wall time, scored on the same held-out masks.

    python benchmarks/dedup_effect.py --tokenizer data/tok-enwiki-8k --articles 1500 --minutes 4 --out runs/dedup

Corpora, from the first --articles articles of ../shared/data/enwiki (the next 300 are the held-out text):

- `clean`          the articles, prepared with `--dedup none`;
- `dirty`          the articles plus near copies of --dup-share of them (each copy with 1% of its words
                   replaced, placed at random), `--dedup none`: what a scraped corpus with mirrors looks like;
- `dirty+near`     the dirty corpus prepared with `--dedup near` (MinHash LSH, Jaccard >= 0.8).

Each is pretrained from the same seed with the one-hour recipe's settings (configs/mlm-cpu-1h.toml: the
small model, 64-token sequences, 30% masks) on a time budget of --minutes (`train.budget = "time"`), then
`evaluate-mlm` scores it on the held-out articles (standard 15% masks, seed 0). Prints one Markdown table
and the CPU; --out keeps the runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

from nanobert.config import load_config
from nanobert.data.prepare import PrepareConfig, prepare
from nanobert.data.sources import read_documents
from nanobert.tasks.evaluate_mlm import MLMEvalConfig, evaluate_mlm
from nanobert.tasks.pretrain import PretrainConfig, pretrain
from nanobert.train.precision import cpu_name

ROOT = Path(__file__).resolve().parents[1]
ENWIKI = ROOT.parent / "shared" / "data" / "enwiki" / "enwiki_clean.txt.gz"


def near_copy(doc: str, rng: random.Random, share: float = 0.01) -> str:
    """`doc` with `share` of its words replaced by other words of it (a mirror with small edits)."""
    words = doc.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(share * len(words)))):
        words[i] = rng.choice(words)
    return " ".join(words)


def write_corpus(path: Path, docs: list[str]) -> None:
    """Articles as WikiText (` = Title = ` headers), which `prepare` reads one document per article."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(f" = Article {i} = \n\n{doc}\n\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, required=True, help="a WordPiece tokenizer directory")
    p.add_argument("--articles", type=int, default=1500, help="clean articles (the next 300 are held out)")
    p.add_argument("--dup-share", type=float, default=0.3, help="share of the articles copied into the dirty corpus")
    p.add_argument("--minutes", type=float, default=4.0, help="pretraining time budget of each run")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "mlm-cpu-1h.toml")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/dedup-effect"))
    args = p.parse_args()

    docs = []
    for doc in read_documents([ENWIKI]):
        docs.append(doc)
        if len(docs) == args.articles + 300:
            break
    clean, held_out = docs[:args.articles], docs[args.articles:]
    rng = random.Random(args.seed)
    copies = [near_copy(d, rng) for d in rng.sample(clean, int(args.dup_share * len(clean)))]
    dirty = clean + copies
    rng.shuffle(dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "held_out.txt").write_text("\n\n".join(held_out) + "\n", encoding="utf-8")
    write_corpus(args.out / "clean.txt.gz", clean)
    write_corpus(args.out / "dirty.txt.gz", dirty)

    rows = []
    for name, corpus, dedup in (("clean", "clean", "none"), ("dirty", "dirty", "none"), ("dirty+near", "dirty", "near")):
        data = args.out / f"data-{name}"
        meta = prepare(PrepareConfig(inputs=[str(args.out / f"{corpus}.txt.gz")], tokenizer=str(args.tokenizer),
                                     out_dir=str(data), seq_len=64, dedup=dedup, seed=args.seed), progress=False)
        cfg = load_config(PretrainConfig, args.config)
        cfg.out_dir, cfg.seed, cfg.samples = str(args.out / f"run-{name}"), args.seed, []
        cfg.data.dir = str(data)
        cfg.train.time_limit_min, cfg.train.budget, cfg.train.max_steps = args.minutes, "time", 100_000
        cfg.train.eval_every, cfg.train.checkpoint_every, cfg.train.progress = 100_000, 0, False
        state = pretrain(cfg)
        score = evaluate_mlm(Path(cfg.out_dir) / "model", args.out / "held_out.txt", MLMEvalConfig(seq_len=64))
        removed = (meta.get("filters") or {}).get("removed", {})
        rows.append({"run": name, "documents": meta["documents"], "removed": removed,
                     "train_tokens": meta["splits"]["train"]["tokens"], "steps": state.step,
                     "accuracy": score["accuracy"], "loss": score["loss"]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nCPU: {cpu_name()}; {args.minutes:g} min of pretraining each, held-out: {len(held_out)} articles\n")
    print("| corpus | documents kept | copies removed | train tokens | steps | held-out MLM accuracy | loss |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        copies = r["removed"].get("near_duplicate", 0) + r["removed"].get("exact_duplicate", 0)
        print(f"| {r['run']} | {r['documents']:,} | {copies:,} | {r['train_tokens']:,} | {r['steps']:,} "
              f"| {r['accuracy']:.2%} | {r['loss']:.4f} |")


if __name__ == "__main__":
    main()
