"""Checkpoints move both ways between nanobert and transformers, in every layout transformers has used."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, load_model
from nanobert.model.checkpoint_io import canonical_key, read_state_dict

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=40, type_vocab_size=2)


@pytest.fixture
def batch():
    ids = torch.randint(1, 99, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return ids, mask, types


def hf_config(**kw):
    return transformers.BertConfig(**{**SMALL, **kw})


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize(
    "hf_cls, ours_cls",
    [
        ("BertForMaskedLM", BertForMaskedLM),
        ("BertForSequenceClassification", BertForSequenceClassification),
        ("BertModel", BertModel),
    ],
)
def test_transformers_to_nanobert_to_transformers(tmp_path, batch, hf_cls, ours_cls):
    ids, mask, types = batch
    theirs = getattr(transformers, hf_cls)(hf_config(num_labels=3)).eval()
    theirs.save_pretrained(tmp_path / "hf")
    ours = ours_cls.from_pretrained(tmp_path / "hf")
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    with torch.no_grad():
        out_ours = ours(ids, mask, types)[0]
        out = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ref = out[0]
    assert out_ours.shape == ref.shape
    assert max_diff(out_ours, ref) <= 1e-5

    ours.save_pretrained(tmp_path / "ours")
    auto = {
        "BertForMaskedLM": transformers.AutoModelForMaskedLM,
        "BertForSequenceClassification": transformers.AutoModelForSequenceClassification,
        "BertModel": transformers.AutoModel,
    }[hf_cls]
    back, info = auto.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert type(back).__name__ == hf_cls
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        again = back.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types)[0]
    assert max_diff(again, out_ours) <= 1e-5


def test_labels_and_config_fields_survive_the_round_trip(tmp_path):
    cfg = BertConfig(**SMALL, id2label={0: "negative", 1: "positive"}, hidden_dropout_prob=0.05)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "bert" and written["architectures"] == ["BertForSequenceClassification"]
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert theirs.id2label == {0: "negative", 1: "positive"} and theirs.hidden_dropout_prob == 0.05
    assert theirs.intermediate_size == 37
    assert BertConfig.from_pretrained(tmp_path) == cfg


def test_mlm_sparse_loss_matches_transformers_full_loss(tmp_path, batch):
    ids, mask, types = batch
    theirs = transformers.BertForMaskedLM(hf_config()).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertForMaskedLM.from_pretrained(tmp_path)
    labels = torch.full_like(ids, -100)
    labels[0, [1, 4]] = ids[0, [1, 4]]
    labels[2, 2] = 5
    with torch.no_grad():
        logits, loss = ours(ids, mask, types, labels=labels)
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    assert logits.shape == (3, 99)  # only the 3 labelled positions, row-major
    assert max_diff(logits, ref.logits[labels != -100]) <= 1e-5
    assert loss.item() == pytest.approx(ref.loss.item(), abs=1e-5)


def test_legacy_gamma_beta_and_bin_file(tmp_path, batch):
    ids, mask, types = batch
    theirs = transformers.BertForMaskedLM(hf_config()).eval()
    sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
          for k, v in theirs.state_dict().items()}
    assert any(k.endswith("LayerNorm.gamma") for k in sd)
    theirs.config.save_pretrained(tmp_path)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    ours = BertForMaskedLM.from_pretrained(tmp_path)
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        assert max_diff(ours(ids, mask, types)[0], ref) <= 1e-5
    assert canonical_key("embeddings.LayerNorm.gamma") == "bert.embeddings.LayerNorm.weight"


def test_pretraining_checkpoint_drops_nsp_head_and_pooler(tmp_path, batch):
    ids, mask, types = batch
    theirs = transformers.BertForPreTraining(hf_config()).eval()
    theirs.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    ours = load_model(tmp_path)
    assert isinstance(ours, BertForMaskedLM)
    assert any(k.startswith("cls.seq_relationship") for k in ours.load_report.dropped)
    assert "bert.pooler.dense.weight" in ours.load_report.dropped
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).prediction_logits
        assert max_diff(ours(ids, mask, types)[0], ref) <= 1e-5


def test_unprefixed_base_checkpoint_into_task_model_and_back(tmp_path, batch):
    ids, mask, types = batch
    base = transformers.BertModel(hf_config()).eval()
    base.save_pretrained(tmp_path / "base")
    assert not any(k.startswith("bert.") for k in load_file(tmp_path / "base" / "model.safetensors"))
    with pytest.raises(NanobertError, match=r"missing: .* \(2 keys\)"):
        BertForSequenceClassification.from_pretrained(tmp_path / "base")
    clf = BertForSequenceClassification.from_pretrained(tmp_path / "base", expected_missing=["classifier.*"])
    with torch.no_grad():
        assert max_diff(clf.bert(ids, mask, types)[1], base(input_ids=ids, attention_mask=mask,
                                                              token_type_ids=types).pooler_output) <= 1e-5
    # A task checkpoint into the bare encoder: the head is dropped, the encoder is identical.
    clf.save_pretrained(tmp_path / "clf")
    enc = BertModel.from_pretrained(tmp_path / "clf")
    assert sorted(enc.load_report.dropped) == ["classifier.bias", "classifier.weight"]
    with torch.no_grad():
        assert torch.equal(enc(ids, mask)[0], clf.bert(ids, mask)[0])


def test_mlm_checkpoint_into_classifier_for_fine_tuning(tmp_path):
    BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path)
    with pytest.raises(NanobertError, match="bert.pooler.dense.weight"):
        BertForSequenceClassification.from_pretrained(tmp_path, expected_missing=["classifier.*"])
    clf = BertForSequenceClassification.from_pretrained(
        tmp_path, expected_missing=BertForSequenceClassification.new_head_keys, num_labels=5
    )
    assert clf.classifier.out_features == 5 and clf.config.labels[4] == "LABEL_4"
    assert any(k.startswith("cls.predictions") for k in clf.load_report.dropped)


def test_strict_loading_names_missing_unexpected_and_mismatched(tmp_path):
    BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    sd = load_file(weights)

    del sd["bert.encoder.layer.1.output.dense.bias"]
    sd["bert.encoder.layer.1.attention.self.rotary.weight"] = torch.zeros(2)
    save_file(sd, weights, metadata={"format": "pt"})
    with pytest.raises(NanobertError) as err:
        BertForMaskedLM.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing: bert.encoder.layer.1.output.dense.bias (1 key)" in msg
    assert "unexpected: bert.encoder.layer.1.attention.self.rotary.weight (1 key)" in msg


def test_config_that_does_not_match_the_weights(tmp_path):
    BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NanobertError, match=r"shape mismatches: .*bert.encoder.layer.0.intermediate.dense.weight: "
                                            r"file \[37, 32\] vs model \[64, 32\].* \(6\)"):
        BertForMaskedLM.from_pretrained(tmp_path)
    cfg["intermediate_size"], cfg["num_hidden_layers"] = 37, 1
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NanobertError, match=r"unexpected: bert.encoder.layer.1..* \(16 keys\)"):
        BertForMaskedLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_weights_give_one_clear_error(tmp_path, damage):
    BertModel(BertConfig(**SMALL)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 64)
    with pytest.raises(NanobertError, match="cannot read weights from .*model.safetensors"):
        BertModel.from_pretrained(tmp_path)


def test_truncated_bin_file(tmp_path):
    model = BertModel(BertConfig(**SMALL))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    data = (tmp_path / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[:1000])
    with pytest.raises(NanobertError, match="cannot read weights from .*pytorch_model.bin"):
        read_state_dict(tmp_path)


def test_vocab_larger_than_embedding_table(tmp_path):
    BertModel(BertConfig(**SMALL)).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(120)))
    with pytest.raises(NanobertError, match="vocab.txt has 120 tokens but config.json says vocab_size=99"):
        BertModel.from_pretrained(tmp_path)


def test_missing_files_are_clear(tmp_path):
    with pytest.raises(NanobertError, match="model directory not found"):
        BertModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(NanobertError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)
    BertConfig(**SMALL).save_pretrained(tmp_path)
    with pytest.raises(NanobertError, match="no model.safetensors or pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)


def test_save_with_tokenizer_writes_vocab_transformers_reads(tmp_path, minilm_dir):
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    tok = WordPieceTokenizer.load(minilm_dir)
    model = BertForMaskedLM(BertConfig(**{**SMALL, "vocab_size": tok.vocab_size}))
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    assert (tmp_path / "m" / "vocab.txt").is_file()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
    assert hf_tok("Hello world")["input_ids"] == tok.encode("Hello world")
    with pytest.raises(NanobertError, match="tokenizer has 30522 tokens"):
        BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path / "bad", tokenizer=tok)
    assert not (tmp_path / "bad").exists()


def test_sharded_and_half_precision_checkpoints(tmp_path, batch):
    ids, mask, types = batch
    theirs = transformers.BertForMaskedLM(hf_config()).eval()
    theirs.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ours = BertForMaskedLM.from_pretrained(tmp_path / "sharded")
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        assert max_diff(ours(ids, mask, types)[0], ref) <= 1e-5
    theirs.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    half = BertForMaskedLM.from_pretrained(tmp_path / "bf16")
    word = half.bert.embeddings.word_embeddings.weight
    assert word.dtype == torch.float32  # stored bf16, computed in fp32
    assert torch.equal(word, theirs.bert.embeddings.word_embeddings.weight.float())
