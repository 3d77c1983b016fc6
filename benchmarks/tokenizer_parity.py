"""Parity of nanobert's tokenizers with Hugging Face's on every line of the real data.

WordPiece (bert-base-uncased vocab): ids against `tokenizers.BertWordPieceTokenizer` and
`transformers.BertTokenizerFast` on every line of enwiki, the Jane Austen novels and SST-2
(train + dev), plus offset_mapping against BertTokenizerFast on Austen, SST-2 and the first
`--offset-lines` enwiki lines; with `--codepoints`, normalization on every code point. Byte-level BPE (GPT-2): ids against `GPT2TokenizerFast` and
`tokenizers.ByteLevelBPETokenizer` on the same lines, and the decode round-trip.

    python benchmarks/tokenizer_parity.py [--limit N] [--offset-lines N] [--skip-bpe] [--codepoints]

Prints lines compared and mismatches per corpus; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path


from nanobert.resources import find_minilm
from nanobert.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpora(limit: int | None) -> dict[str, list[str]]:
    """Every line of each corpus (newline removed), optionally the first `limit` of each."""
    with gzip.open(DATA / "enwiki" / "enwiki_clean.txt.gz", "rt", encoding="utf-8") as f:
        enwiki = [line.rstrip("\n") for _, line in zip(range(limit or 10**12), f)]
    austen = []
    for path in sorted((DATA / "janeausten").glob("*.txt")):
        austen += path.read_text(encoding="utf-8").split("\n")
    sst2 = []
    for split in ("train", "dev"):
        rows = (DATA / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").split("\n")[1:]
        sst2 += [r.split("\t")[0] for r in rows if r]
    return {"enwiki": enwiki, "janeausten": austen[:limit], "sst2": sst2[:limit]}


def report(name: str, ours, theirs, lines) -> int:
    bad = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    print(f"  {name}: {len(lines):,} lines compared, {len(bad)} mismatches", flush=True)
    for i in bad[:3]:
        print(f"    line {i}: {lines[i][:200]!r}\n      ours   {ours[i][:40]}\n      theirs {theirs[i][:40]}")
    return len(bad)


def wordpiece(data: dict[str, list[str]], offset_lines: int) -> int:
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = str(find_minilm() / "vocab.txt")
    ours = WordPieceTokenizer.from_vocab_file(vocab)
    hf_wp = BertWordPieceTokenizer(vocab, lowercase=True)
    hf_fast = BertTokenizerFast(vocab=vocab)
    bad = 0
    print("WordPiece ids (bert-base-uncased vocab)")
    for name, lines in data.items():
        t0 = time.perf_counter()
        mine = ours.encode_batch(lines)
        t1 = time.perf_counter()
        bad += report(f"{name} vs BertWordPieceTokenizer", mine, [e.ids for e in hf_wp.encode_batch(lines)], lines)
        bad += report(f"{name} vs BertTokenizerFast", mine, hf_fast(lines)["input_ids"], lines)
        print(f"    (ours {t1 - t0:.1f} s)")
    print("WordPiece offset_mapping and ids with offsets (vs BertTokenizerFast)")
    for name, lines in data.items():
        lines = lines[:offset_lines] if name == "enwiki" else lines
        theirs = hf_fast(lines, return_offsets_mapping=True)
        mine = ours(lines, return_offsets_mapping=True)
        bad += report(f"{name} ids", mine["input_ids"], theirs["input_ids"], lines)
        bad += report(f"{name} offsets", mine["offset_mapping"], [[tuple(o) for o in r]
                                                                  for r in theirs["offset_mapping"]], lines)
    return bad


def decode_quality(data: dict[str, list[str]]) -> None:
    """How often decode(encode(line)) gives back the line as BERT sees it (normalized, spaces collapsed),
    for ours and for BertTokenizerFast.decode, over lines without [UNK]. A measure, not a pass/fail."""
    from transformers import BertTokenizerFast

    vocab = str(find_minilm() / "vocab.txt")
    ours, theirs = WordPieceTokenizer.from_vocab_file(vocab), BertTokenizerFast(vocab=vocab)
    print("WordPiece decode: exact match with the normalized line (lines without [UNK])")
    for name, lines in data.items():
        n = mine = hf = 0
        for line in lines:
            ids = ours.encode(line)
            if ours.unk_token_id in ids:
                continue
            target = " ".join(ours.normalizer.normalize(line).split())
            n += 1
            mine += ours.decode(ids) == target
            hf += theirs.decode(ids, skip_special_tokens=True) == target
        print(f"  {name}: {n:,} lines | nanobert {mine / n:.1%} | BertTokenizerFast {hf / n:.1%}")


def codepoints() -> int:
    """BERT normalization and word split against Hugging Face's, on every code point but surrogates."""
    from tokenizers.normalizers import BertNormalizer as HFNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    from nanobert.tokenizers.normalize import BertNormalizer

    text = "".join("a" + chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000)
    n = len(text) // 2
    bad = 0
    print("BERT normalization, every code point (each after an 'a')")
    for lower, strip in ((True, None), (False, None), (True, False), (False, True)):
        ours = BertNormalizer(lowercase=lower, strip_accents=strip).normalize(text)
        theirs = HFNormalizer(lowercase=lower, strip_accents=strip).normalize_str(text)
        same = ours == theirs
        bad += not same
        print(f"  lowercase={lower} strip_accents={strip}: {n:,} code points, identical: {same}")
    ours = BertNormalizer(lowercase=False, strip_accents=False, clean_text=False, handle_chinese_chars=False)
    same = ours.words(text) == [w for w, _ in BertPreTokenizer().pre_tokenize_str(text)]
    print(f"  word split: {n:,} code points, identical: {same}")
    return bad + (not same)


def bpe(data: dict[str, list[str]]) -> int:
    from tokenizers import ByteLevelBPETokenizer as HFByteLevel
    from transformers import GPT2TokenizerFast

    vocab, merges = str(DATA / "gpt2" / "vocab.json"), str(DATA / "gpt2" / "merges.txt")
    ours = ByteLevelBPETokenizer.from_files(vocab, merges)
    hf_bl = HFByteLevel(vocab, merges)
    hf_fast = GPT2TokenizerFast(vocab=vocab, merges=merges)
    bad = 0
    print("Byte-level BPE ids (GPT-2 vocab) and decode round-trip")
    for name, lines in data.items():
        mine = ours.encode_batch(lines)
        bad += report(f"{name} vs ByteLevelBPETokenizer", mine, [e.ids for e in hf_bl.encode_batch(lines)], lines)
        bad += report(f"{name} vs GPT2TokenizerFast", mine, hf_fast(lines)["input_ids"], lines)
        bad += report(f"{name} decode(encode(line)) == line", [ours.decode(i) for i in mine], lines, lines)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N lines of each corpus (default: all)")
    parser.add_argument("--offset-lines", type=int, default=100_000, help="enwiki lines for the offsets check")
    parser.add_argument("--skip-bpe", action="store_true")
    parser.add_argument("--skip-wordpiece", action="store_true")
    parser.add_argument("--codepoints", action="store_true", help="also compare normalization on every code point")
    parser.add_argument("--decode", action="store_true", help="also measure how often decoding restores a line")
    args = parser.parse_args()
    bad = codepoints() if args.codepoints else 0
    data = corpora(args.limit)
    if args.decode:
        decode_quality(data)
    bad += 0 if args.skip_wordpiece else wordpiece(data, args.offset_lines)
    if not args.skip_bpe:
        bad += bpe(data)
    print("TOTAL mismatches:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
