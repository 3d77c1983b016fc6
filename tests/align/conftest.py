"""Tiny models for the alignment tests: a character GPT and small BERTs on the real BERT vocabulary."""

from __future__ import annotations

import pytest
import torch

TEXT = ("the film is a delight . the film is dull . a good movie . a bad movie . great acting , good story . "
        "a boring mess . i loved it . i hated it . ")
TINY_BERT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=30522)


@pytest.fixture
def good_count():
    """A labeller as a Python function: how often "good" or "great" appears."""
    return lambda texts: [t.count("good") + t.count("great") for t in texts]


@pytest.fixture(scope="session")
def gpt_dir(tmp_path_factory):
    """A 1-layer character GPT (context 48) over TEXT's characters, untrained but seeded."""
    from nanobert.model.gpt import GPT, GPTConfig
    from nanobert.tokenizers import CharTokenizer

    tok = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=48, n_embd=16, n_layer=1, n_head=2,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None))
    path = tmp_path_factory.mktemp("align") / "gpt"
    model.save_pretrained(path, tokenizer=tok)
    return path


def _save_bert(model_cls, path, minilm_dir, **extra):
    from nanobert.model.bert import BertConfig
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    torch.manual_seed(0)
    model = model_cls(BertConfig.from_dict({**TINY_BERT, **extra}))
    model.save_pretrained(path, tokenizer=WordPieceTokenizer.load(minilm_dir))
    return path


@pytest.fixture(scope="session")
def bert_cls_dir(tmp_path_factory, minilm_dir):
    from nanobert.model.bert import BertForSequenceClassification

    return _save_bert(BertForSequenceClassification, tmp_path_factory.mktemp("align") / "cls", minilm_dir,
                      num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})


@pytest.fixture(scope="session")
def bert_mlm_dir(tmp_path_factory, minilm_dir):
    from nanobert.model.bert import BertForMaskedLM

    return _save_bert(BertForMaskedLM, tmp_path_factory.mktemp("align") / "mlm", minilm_dir)


@pytest.fixture
def pairs_file(tmp_path):
    import json

    rows = [{"prompt": "the film is", "chosen": " a good movie .", "rejected": " a bad movie ."},
            {"prompt": "i", "chosen": " loved it , great .", "rejected": " hated it ."},
            {"prompt": "a", "chosen": " good story .", "rejected": " boring mess ."},
            {"prompt": "the", "chosen": " great acting .", "rejected": " dull film ."}] * 4
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
