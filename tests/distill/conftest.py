"""A tiny teacher made with fine-tuning on real SST-2 rows, shared by the distillation tests."""

from __future__ import annotations

import collections
import gzip

import pytest
import torch

from nanobert.model.bert import BertConfig, BertModel
from nanobert.resources import ASSETS
from nanobert.tasks.finetune import FinetuneConfig, finetune
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


@pytest.fixture(scope="session")
def splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst2")
    return write_tsv(d / "train.tsv", sst2_rows("train", 300)), write_tsv(d / "dev.tsv", sst2_rows("dev", 64))


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, splits):
    """A 2-layer, 32-wide classifier fine-tuned for two epochs on 300 SST-2 sentences."""
    tok = word_tokenizer(sst2_rows("train", 300))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    root = tmp_path_factory.mktemp("teacher")
    BertModel(cfg).save_pretrained(root / "base", tokenizer=tok)
    train, dev = splits
    finetune(root / "base", train, dev, root / "teacher",
             FinetuneConfig(epochs=2, batch_size=16, lr=3e-3, progress=False, threads=1))
    return root / "teacher"
