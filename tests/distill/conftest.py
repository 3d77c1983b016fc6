"""A tiny teacher made with fine-tuning on real SST-2 rows, shared by the distillation tests."""

from __future__ import annotations

import pytest
import torch
from sst2_sample import sst2_rows, word_tokenizer, write_tsv

from nanobert.model.bert import BertConfig, BertModel
from nanobert.tasks.finetune import FinetuneConfig, finetune


@pytest.fixture(scope="session")
def splits(tmp_path_factory):
    d = tmp_path_factory.mktemp("sst2")
    return write_tsv(d / "train.tsv", sst2_rows("train", 300)), write_tsv(d / "dev.tsv", sst2_rows("dev", 64))


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, splits):
    """A 2-layer, 32-wide classifier fine-tuned for six epochs on 300 SST-2 sentences (83% of them right)."""
    tok = word_tokenizer(sst2_rows("train", 300))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    root = tmp_path_factory.mktemp("teacher")
    BertModel(cfg).save_pretrained(root / "base", tokenizer=tok)
    train, dev = splits
    finetune(root / "base", train, dev, root / "teacher",
             FinetuneConfig(epochs=6, batch_size=16, lr=5e-3, keep="last", progress=False, threads=1))
    return root / "teacher"
