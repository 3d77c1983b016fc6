"""Tiny models on the real bert-base-uncased vocabulary, saved once per test session."""

from __future__ import annotations

import pytest
import torch

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=30522)


@pytest.fixture(scope="session")
def vocab_tokenizer(minilm_dir):
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    return WordPieceTokenizer.load(minilm_dir)


def _save(model_cls, path, tokenizer, **extra):
    from nanobert.model.bert import BertConfig

    torch.manual_seed(0)
    model = model_cls(BertConfig.from_dict({**TINY, **extra}))
    with torch.no_grad():  # larger output weights than the init's, so probabilities are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    model.save_pretrained(path, tokenizer=tokenizer)
    return path


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory, vocab_tokenizer):
    from nanobert.model.bert import BertForMaskedLM

    return _save(BertForMaskedLM, tmp_path_factory.mktemp("models") / "mlm", vocab_tokenizer)


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory, vocab_tokenizer):
    from nanobert.model.bert import BertForSequenceClassification

    return _save(
        BertForSequenceClassification,
        tmp_path_factory.mktemp("models") / "cls",
        vocab_tokenizer,
        num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )


@pytest.fixture(scope="session")
def sst2_sentences(shared_data) -> list[str]:
    lines = (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines]
