"""Speed of nanobert's tokenizers against Hugging Face's `tokenizers`, side by side on the same text.

Single thread on both sides (RAYON_NUM_THREADS=1, set before `tokenizers` is imported):
- wordpiece: encode every enwiki line with the bert-base-uncased vocab ([CLS]/[SEP] added on both
  sides; theirs `encode_batch`, ours `encode_batch` from a cold word cache); ids must be identical.
  The two take turns on twenty slices of the corpus, so that load from other processes hits both alike;
- train: learn a WordPiece vocabulary (default 30,522) from the enwiki lines in memory
  (theirs `BertWordPieceTokenizer.train_from_iterator`, ours `WordPieceTokenizer.train`);
- bpe: encode the same lines with GPT-2's byte-level BPE; ids must be identical;
- workers: ours `encode_batch(num_workers=N, progress=True)` against ours with one process.

    RAYON_NUM_THREADS=1 python benchmarks/tokenizer_speed.py [--lines N] [--only wordpiece,train,bpe,workers]

Prints tokens/s (or seconds) for both and the ratio ours/theirs (> 1: ours is faster).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import gzip  # noqa: E402
import time  # noqa: E402

from nanobert.resources import find_minilm  # noqa: E402
from nanobert.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def enwiki(limit: int | None) -> list[str]:
    with gzip.open(DATA / "enwiki" / "enwiki_clean.txt.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for _, line in zip(range(limit or 10**12), f)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def show(what: str, n_tokens: int, ours_s: float, theirs_s: float, same: bool | None = None) -> None:
    print(f"{what}: {n_tokens:,} tokens | tokenizers {n_tokens / theirs_s:,.0f} tokens/s ({theirs_s:.2f} s) | "
          f"nanobert {n_tokens / ours_s:,.0f} tokens/s ({ours_s:.2f} s) | ratio {theirs_s / ours_s:.2f}x"
          + ("" if same is None else f" | ids identical: {same}"), flush=True)


def alternate(theirs, ours, lines: list[str], parts: int = 20):
    """Run both on the same slices of `lines`, taking turns, so that a busy machine slows both alike.
    -> (their outputs, our outputs, their seconds, our seconds)."""
    size = -(-len(lines) // parts)
    hf, mine, hf_s, my_s = [], [], 0.0, 0.0
    for i in range(0, len(lines), size):
        chunk = lines[i:i + size]
        out, s = timed(lambda: theirs(chunk))
        hf += out
        hf_s += s
        out, s = timed(lambda: ours(chunk))
        mine += out
        my_s += s
    return hf, mine, hf_s, my_s


def bench_wordpiece(lines: list[str]) -> None:
    from tokenizers import BertWordPieceTokenizer

    vocab = str(find_minilm() / "vocab.txt")
    theirs = BertWordPieceTokenizer(vocab, lowercase=True)
    ours = WordPieceTokenizer.from_vocab_file(vocab)  # its word cache starts empty, and fills as it goes
    hf, mine, hf_s, my_s = alternate(lambda c: [e.ids for e in theirs.encode_batch(c, add_special_tokens=True)],
                                     lambda c: ours.encode_batch(c, add_special_tokens=True), lines)
    show("WordPiece encode (bert-base-uncased, enwiki)", sum(map(len, hf)), my_s, hf_s, mine == hf)


def bench_train(lines: list[str], vocab_size: int) -> None:
    from tokenizers import BertWordPieceTokenizer

    theirs = BertWordPieceTokenizer(lowercase=True)
    _, hf_s = timed(lambda: theirs.train_from_iterator(lines, vocab_size=vocab_size, show_progress=False))
    ours, my_s = timed(lambda: WordPieceTokenizer.train(lines, vocab_size=vocab_size))
    print(f"WordPiece training (vocab {vocab_size:,}, {len(lines):,} lines): tokenizers {hf_s:.1f} s "
          f"(vocab {theirs.get_vocab_size():,}) | nanobert {my_s:.1f} s (vocab {ours.vocab_size:,}) | "
          f"ours/theirs time {my_s / hf_s:.2f}x", flush=True)


def bench_bpe(lines: list[str]) -> None:
    from tokenizers import ByteLevelBPETokenizer as HFByteLevel

    vocab, merges = str(DATA / "gpt2" / "vocab.json"), str(DATA / "gpt2" / "merges.txt")
    theirs = HFByteLevel(vocab, merges)
    ours = ByteLevelBPETokenizer.from_files(vocab, merges)
    hf, mine, hf_s, my_s = alternate(lambda c: [e.ids for e in theirs.encode_batch(c)], ours.encode_batch, lines)
    show("Byte-level BPE encode (GPT-2, enwiki)", sum(map(len, hf)), my_s, hf_s, mine == hf)


def bench_workers(lines: list[str], workers: int) -> None:
    vocab = str(find_minilm() / "vocab.txt")
    one, one_s = timed(lambda: WordPieceTokenizer.from_vocab_file(vocab).encode_batch(lines))
    many, many_s = timed(lambda: WordPieceTokenizer.from_vocab_file(vocab).encode_batch(
        lines, num_workers=workers, progress=True))
    n = sum(map(len, one))
    print(f"nanobert WordPiece encode_batch: 1 process {n / one_s:,.0f} tokens/s | {workers} processes "
          f"{n / many_s:,.0f} tokens/s | speed-up {one_s / many_s:.2f}x | same ids: {one == many} "
          f"({os.cpu_count()} CPUs)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=None, help="first N enwiki lines (default: all)")
    parser.add_argument("--only", default="wordpiece,train,bpe,workers")
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    lines = enwiki(args.lines)
    print(f"enwiki: {len(lines):,} lines, {sum(map(len, lines)):,} characters; RAYON_NUM_THREADS=1", flush=True)
    only = args.only.split(",")
    if "wordpiece" in only:
        bench_wordpiece(lines)
    if "bpe" in only:
        bench_bpe(lines)
    if "workers" in only:
        bench_workers(lines, args.workers)
    if "train" in only:
        bench_train(lines, args.vocab_size)


if __name__ == "__main__":
    main()
