"""Tiny data for the distillation tests: real SST-2 rows and a word-level vocabulary of them."""

from __future__ import annotations

import collections
import gzip

from nanobert.resources import ASSETS
from nanobert.tokenizers import WordPieceTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sst2_rows(name: str, n: int, skip: int = 0) -> list[tuple[str, int]]:
    with gzip.open(ASSETS / "sst2" / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()[1 + skip:1 + skip + n]
    return [(s, int(y)) for s, y in (line.rsplit("\t", 1) for line in lines)]


def write_tsv(path, rows, header=("sentence", "label")):
    path.write_text("\t".join(header) + "\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return path


def word_tokenizer(rows, size: int = 400) -> WordPieceTokenizer:
    """A word-level WordPiece vocabulary of `rows` (characters as fallback): small, so models stay tiny."""
    counts = collections.Counter(w for s, _ in rows for w in s.lower().split())
    chars = sorted({c for s, _ in rows for c in s.lower() if not c.isspace()})
    tokens = SPECIALS + chars + [f"##{c}" for c in chars] + [w for w, _ in counts.most_common(size) if w not in chars]
    return WordPieceTokenizer({t: i for i, t in enumerate(dict.fromkeys(tokens))})
