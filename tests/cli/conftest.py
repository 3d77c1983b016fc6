"""A tiny BERT (no dropout: DDP and resume compare weights) and SST-2 splits for the fine-tuning command tests."""

from __future__ import annotations

import collections

import pytest
import torch

from nanobert.model.bert import BertConfig, BertModel
from nanobert.tokenizers import WordPieceTokenizer

from sst2_data import sst2_rows, write_tsv

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    rows = sst2_rows("train", 1000)
    counts = collections.Counter(w for s, _ in rows for w in s.lower().split())
    chars = sorted({c for s, _ in rows for c in s.lower() if not c.isspace()})
    tokens = SPECIALS + chars + [f"##{c}" for c in chars] + [w for w, _ in counts.most_common(400) if w not in chars]
    tok = WordPieceTokenizer({t: i for i, t in enumerate(dict.fromkeys(tokens))})
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    d = tmp_path_factory.mktemp("tiny") / "base"
    BertModel(cfg).save_pretrained(d, tokenizer=tok)
    return d


@pytest.fixture(scope="session")
def sst2(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst2")
    return write_tsv(d / "train.tsv", sst2_rows("train", 600)), write_tsv(d / "dev.tsv", sst2_rows("dev", 120))
