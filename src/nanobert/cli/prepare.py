"""`nanobert prepare`: tokenize a corpus into memory-mapped train/val/test shards (nanobert.data.prepare)."""

from __future__ import annotations

import argparse
import logging

from nanobert.data.prepare import PrepareConfig, prepare

ORDER = 20
log = logging.getLogger("nanobert.cli")


def register(subparsers) -> None:
    d = PrepareConfig()
    p = subparsers.add_parser(
        "prepare", help="tokenize a corpus into token shards for pretraining",
        description="Tokenize text into fixed-length training sequences, split them into train/val/test by a seed "
        "and write memory-mapped uint16/uint32 shards plus meta.json and the tokenizer to OUT. Inputs: .txt and "
        ".txt.gz files (one document per file, or one per ' = Title = ' article), .jsonl and .parquet with a text "
        "column, .tsv/.csv tables (the text column only, a row a paragraph: a labelled task's training sentences "
        "as in-domain text), or directories of them.",
        epilog="example: nanobert prepare ../shared/data/enwiki/enwiki_clean.txt.gz --tokenizer tok/ --out data/enwiki",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", help="text files or directories")
    p.add_argument("--tokenizer", required=True, help="directory of a saved tokenizer (e.g. with vocab.txt)")
    p.add_argument("--out", required=True, help="output directory (written whole, atomically; a new or empty "
                   "directory, or a previous output of prepare with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it holds a previous output of prepare")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per sequence, special tokens included")
    p.add_argument("--mode", choices=("segment", "split"), default=d.mode,
                   help="segment: pack whole sentences; split: cut the token stream into fixed blocks")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of sequences for validation")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="share of sequences for test")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the train/val/test split")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="sequences per shard file")
    p.add_argument("--min-tokens", type=int, default=d.min_tokens, help="drop shorter sequences")
    p.add_argument("--text-column", default=d.text_column, help="text field of JSONL / parquet / TSV / CSV inputs "
                   "(tables fall back to a 'sentence' column)")
    p.add_argument("--workers", type=int, default=d.num_workers, help="tokenizing processes (0: one per core)")
    p.add_argument("--dedup", choices=("none", "exact", "near"), default=d.dedup,
                   help="drop duplicate documents first: exact copies (and lines copied from earlier documents), or "
                   "also near copies (MinHash); either also drops very short or mostly non-letter documents")
    p.add_argument("--near-threshold", type=float, default=d.near_threshold,
                   help="near: estimated Jaccard similarity of 5-word shingles at which a document is a copy")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = PrepareConfig(inputs=args.inputs, tokenizer=args.tokenizer, out_dir=args.out, seq_len=args.seq_len,
                        mode=args.mode, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                        seed=args.seed, shard_size=args.shard_size, min_tokens=args.min_tokens,
                        text_column=args.text_column, num_workers=args.workers, dedup=args.dedup,
                        near_threshold=args.near_threshold)
    meta = prepare(cfg, progress=not args.no_progress, overwrite=args.overwrite)
    if meta["filters"] is not None:
        f = meta["filters"]
        removed = ", ".join(f"{k} {v:,}" for k, v in f["removed"].items() if v)
        log.info("filters: %s of %s documents kept (%s; %s copied lines cut)", f"{f['documents_out']:,}",
                 f"{f['documents_in']:,}", removed or "none removed", f"{f['duplicate_lines']:,}")
    for split, m in meta["splits"].items():
        log.info("%-5s %10s sequences %12s tokens in %d shard(s)", split, f"{m['sequences']:,}",
                 f"{m['tokens']:,}", len(m["shards"]))
    return 0
