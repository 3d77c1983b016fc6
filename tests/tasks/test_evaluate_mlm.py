"""evaluate-mlm: fixed masks (the same for every call and every model), exact scoring, clear errors."""

import json

import pytest
import torch
import torch.nn as nn

from nanobert.cli import main
from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForMaskedLM
from nanobert.tasks.evaluate_mlm import MLMEvalConfig, evaluate_mlm, masked_batches, score_batches, sequences_from
from nanobert.tokenizers import WordPieceTokenizer

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in "
        "want of a wife. However little known the feelings or views of such a man may be on his first entering a "
        "neighbourhood, this truth is so well fixed in the minds of the surrounding families. She was the "
        "youngest of the two daughters of a most affectionate, indulgent father. I do not wish to see you, but I "
        "must speak.")


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.train([TEXT] * 3, vocab_size=150)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlm") / "held_out.txt"
    path.write_text("\n".join([TEXT] * 8), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("mlm") / "model"
    BertForMaskedLM(cfg).save_pretrained(path, tokenizer=tokenizer)
    return path


class Oracle(nn.Module):
    """Predicts the original token at every scored position: one-hot logits from the labels themselves."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, labels=None):
        target = labels[labels != -100]  # (M,)
        return torch.nn.functional.one_hot(target, self.vocab_size).float() * 30.0, None  # (M, V)


class Constant(Oracle):
    """Always predicts token `k`."""

    def __init__(self, vocab_size: int, k: int):
        super().__init__(vocab_size)
        self.k = k

    def forward(self, input_ids, attention_mask=None, labels=None):
        m = int((labels != -100).sum())
        logits = torch.zeros(m, self.vocab_size)
        logits[:, self.k] = 1.0
        return logits, None


def _sequences(tokenizer, text_file, **kw):
    return sequences_from(text_file, tokenizer, MLMEvalConfig(seq_len=24, **kw), max_positions=64)


def test_the_masks_are_the_same_for_every_call_and_follow_the_seed(tokenizer, text_file):
    seqs = _sequences(tokenizer, text_file)
    cfg = MLMEvalConfig(batch_size=4)
    a, b = list(masked_batches(seqs, tokenizer, cfg)), list(masked_batches(seqs, tokenizer, cfg))
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    other = list(masked_batches(seqs, tokenizer, MLMEvalConfig(batch_size=4, seed=1)))
    assert any(not torch.equal(x["labels"], y["labels"]) for x, y in zip(a, other))
    # the standard draw: about 15% of the real non-special tokens chosen, never [CLS]/[SEP]/padding
    labels = torch.cat([x["labels"].flatten() for x in a])
    ids = torch.cat([x["input_ids"].flatten() for x in a])
    real = sum(len(s) - 2 for s in seqs)
    assert 0.08 < int((labels != -100).sum()) / real < 0.22
    special = torch.tensor(sorted(tokenizer.special_ids))
    assert not torch.isin(labels[labels != -100], special).any()
    assert (ids[labels != -100] == tokenizer.mask_token_id).float().mean() > 0.6


def test_an_oracle_scores_100_percent_and_a_constant_its_token_share(tokenizer, text_file):
    seqs = _sequences(tokenizer, text_file)
    cfg = MLMEvalConfig(batch_size=4)
    perfect = score_batches(Oracle(tokenizer.vocab_size), masked_batches(seqs, tokenizer, cfg))
    assert perfect["accuracy"] == 1.0 and perfect["loss"] < 1e-3 and perfect["perplexity"] < 1.001
    assert perfect["sequences"] == len(seqs)
    k = tokenizer.token_to_id("a")
    const = score_batches(Constant(tokenizer.vocab_size, k), masked_batches(seqs, tokenizer, cfg))
    targets = torch.cat([b["labels"][b["labels"] != -100] for b in masked_batches(seqs, tokenizer, cfg)])
    assert const["masked_tokens"] == perfect["masked_tokens"] == targets.numel()
    assert const["accuracy"] == pytest.approx(float((targets == k).float().mean()))
    assert 0 < const["accuracy"] < 0.5


def test_a_saved_model_scores_the_same_twice_from_the_command_line(model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "m.json"
    args = ["evaluate-mlm", "--model", str(model_dir), "--data", str(text_file), "--seq-len", "24", "--out", str(out)]
    assert main(args) == 0
    first = json.loads(out.read_text())
    assert "MLM accuracy" in capsys.readouterr().out
    assert main(args) == 0
    assert json.loads(out.read_text()) == first
    assert first["loss"] == pytest.approx(torch.log(torch.tensor(first["perplexity"])).item(), rel=1e-6)
    assert 0 <= first["accuracy"] < 0.5  # an untrained model guesses
    again = evaluate_mlm(model_dir, text_file, MLMEvalConfig(seq_len=24, max_sequences=3))
    assert again["sequences"] == 3


def test_prepared_shards_are_read_and_must_match_the_tokenizer(model_dir, text_file, tokenizer, tmp_path):
    from nanobert.data.prepare import PrepareConfig, prepare

    prepared = tmp_path / "data"
    prepare(PrepareConfig(inputs=[str(text_file)], out_dir=str(prepared), seq_len=24, val_fraction=0.2,
                          test_fraction=0.3, num_workers=1), tokenizer=tokenizer, progress=False)
    m = evaluate_mlm(model_dir, prepared)
    meta = json.loads((prepared / "meta.json").read_text())
    assert m["sequences"] == meta["splits"]["test"]["sequences"]
    other = WordPieceTokenizer.train([TEXT + " zebra quagga okapi"] * 3, vocab_size=160)
    other_data = tmp_path / "other"
    prepare(PrepareConfig(inputs=[str(text_file)], out_dir=str(other_data), seq_len=24, test_fraction=0.3,
                          num_workers=1), tokenizer=other, progress=False)
    with pytest.raises(NanobertError, match="another tokenizer"):
        evaluate_mlm(model_dir, other_data)


def test_missing_inputs_are_one_line_errors(model_dir, text_file, tmp_path, capsys):
    assert main(["evaluate-mlm", "--model", str(tmp_path / "nope"), "--data", str(text_file)]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert main(["evaluate-mlm", "--model", str(model_dir), "--data", str(tmp_path / "none.txt")]) == 2
    assert "evaluation data not found" in capsys.readouterr().err
    with pytest.raises(NanobertError, match="max_sequences must be >= 1, got 0"):
        MLMEvalConfig(seq_len=24, max_sequences=0)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(NanobertError, match="no sequences"):
        evaluate_mlm(model_dir, empty, MLMEvalConfig(seq_len=24))
