"""classifier_pooling "mean": the masked mean of the last layer through the classifier, in PyTorch, ONNX and the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification
from nanobert.model.tabular import BertForTabularClassification, TabularStats

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=30522,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _mean_model(**extra) -> BertForSequenceClassification:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_dict({**TINY, "classifier_pooling": "mean", **extra}))
    with torch.no_grad():  # larger weights than the init's, so the logits differ clearly between inputs
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model.eval()


@pytest.fixture(scope="module")
def mean_dir(tmp_path_factory, minilm_dir):
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    path = tmp_path_factory.mktemp("pooling") / "mean-cls"
    _mean_model(num_labels=2, id2label={0: "negative", 1: "positive"}).save_pretrained(
        path, tokenizer=WordPieceTokenizer.load(minilm_dir))
    return path


def test_mean_pooling_is_the_masked_mean_through_the_classifier():
    model = _mean_model(num_labels=3)
    assert model.bert.pooler is None and not any(k.startswith("bert.pooler") for k in model.state_dict())
    ids = torch.tensor([[101, 2023, 2003, 1037, 102, 0], [101, 2204, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        logits, _ = model(ids, attention_mask=mask)
        hidden, _ = model.bert(ids, mask)  # (B, T, H)
        by_hand = torch.stack([hidden[0, :5].mean(0), hidden[1, :3].mean(0)])  # real tokens only
        expected = by_hand @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    cls = BertForSequenceClassification(BertConfig.from_dict({**TINY, "num_labels": 3})).eval()
    cls.load_state_dict(model.state_dict(), strict=False)  # same encoder and classifier, [CLS] + a pooler instead
    with torch.no_grad():
        assert not torch.allclose(cls(ids, attention_mask=mask)[0], logits, atol=1e-3)


def test_padding_does_not_change_the_prediction():
    model = _mean_model(num_labels=2)
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    padded = torch.cat([ids, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone = model(ids, attention_mask=torch.ones_like(ids))[0]
        with_pad = model(padded, attention_mask=(padded != 0).long())[0]
        unmasked = model(padded)[0]  # no mask: the padding counts, and changes the mean
    torch.testing.assert_close(alone, with_pad, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(alone, unmasked, atol=1e-3)


def test_config_round_trip_and_not_hf_compatible(tmp_path, caplog):
    with pytest.raises(NanobertError, match="classifier_pooling 'max'"):
        BertConfig.from_dict({**TINY, "classifier_pooling": "max"})
    assert BertConfig().classifier_pooling == "cls" and BertConfig().hf_compatible
    model = _mean_model()
    assert not model.config.hf_compatible
    with pytest.raises(NanobertError, match="classifier_pooling 'mean'"):
        model.save_pretrained(tmp_path / "hf", require_hf=True)
    with caplog.at_level(logging.WARNING, logger="nanobert.model.bert"):
        model.save_pretrained(tmp_path / "own")
    assert "cannot run" in caplog.text
    saved = json.loads((tmp_path / "own" / "config.json").read_text())
    assert saved["classifier_pooling"] == "mean" and saved["model_type"] == "nanobert_bert"
    back = BertForSequenceClassification.from_pretrained(tmp_path / "own")
    assert back.bert.pooler is None and back.config.classifier_pooling == "mean"


def test_tabular_classifier_mean_pooling():
    stats = TabularStats(columns=["x"], mean=[0.0], std=[1.0], hidden=4)
    torch.manual_seed(0)
    model = BertForTabularClassification(BertConfig.from_dict({**TINY, "classifier_pooling": "mean"}), stats).eval()
    assert model.bert.pooler is None
    ids = torch.tensor([[101, 2023, 102]])
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    x = torch.tensor([[0.5]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, torch.ones_like(ids), tabular=x)[0],
                                   model(padded, (padded != 0).long(), tabular=x)[0], atol=1e-5, rtol=1e-5)


def test_classifier_head_runs_the_whole_model_for_mean(mean_dir):
    from nanobert.infer.heads import ClassifierHead

    model = BertForSequenceClassification.from_pretrained(mean_dir)
    head = ClassifierHead(model).eval()
    assert not head.cls_only
    ids = torch.tensor([[101, 2023, 2003, 102, 0], [101, 2307, 3185, 2001, 102]])
    mask, types = (ids != 0).long(), torch.zeros_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(head(ids, mask, types), model(ids, mask, types)[0])


def test_mean_pooled_onnx_export_matches_pytorch(mean_dir, tmp_path, shared_data):
    from nanobert.infer.onnx import export_onnx
    from nanobert.infer.pipelines import ClassifyPipeline

    result = export_onnx(mean_dir, tmp_path / "mean.onnx")
    assert result.max_abs_diff <= 1e-4
    lines = (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:31]
    texts = [line.split("\t")[0] for line in lines]  # different lengths: padding inside every batch
    p_torch = ClassifyPipeline(mean_dir, batch_size=8).probabilities(texts)
    np.testing.assert_allclose(ClassifyPipeline(result.path, batch_size=8).probabilities(texts), p_torch, atol=1e-5)


def test_classify_and_evaluate_agree(mean_dir, tmp_path, shared_data):
    from nanobert.infer.pipelines import ClassifyPipeline
    from nanobert.tasks.finetune import evaluate_classifier

    lines = (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:41]
    names = {"0": "negative", "1": "positive"}
    rows = [(text, names[y.strip()]) for text, y in (line.split("\t") for line in lines)]
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    predicted = [p["label"] for p in ClassifyPipeline(mean_dir, batch_size=1)([t for t, _ in rows])]  # unpadded
    accuracy = np.mean([p == y for p, (_, y) in zip(predicted, rows)])
    assert 0 < accuracy < 1  # the test can tell a wrong answer from a right one
    metrics = evaluate_classifier(mean_dir, data, batch_size=16)  # padded batches
    assert metrics["accuracy"] == pytest.approx(accuracy)


def test_finetune_pooling_option(tmp_path):
    from nanobert.tasks.finetune import FinetuneConfig, build_classifier
    from nanobert.data.tables import LabelMap

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig.from_dict(TINY)).save_pretrained(tmp_path / "mlm")
    labels = LabelMap(["negative", "positive"])
    mean = build_classifier(tmp_path / "mlm", labels, FinetuneConfig(pooling="mean", progress=False), None)
    assert mean.config.classifier_pooling == "mean" and mean.bert.pooler is None
    default = build_classifier(tmp_path / "mlm", labels, FinetuneConfig(progress=False), None)
    assert default.config.classifier_pooling == "cls" and default.bert.pooler is not None
    with pytest.raises(NanobertError, match="pooling must be cls or mean"):
        FinetuneConfig(pooling="max")


@pytest.mark.slow
def test_cli_finetune_pooling_mean_then_evaluate(tmp_path, shared_data, minilm_dir):
    from nanobert.cli import main
    from nanobert.infer.pipelines import ClassifyPipeline
    from nanobert.tokenizers.wordpiece import WordPieceTokenizer

    tok = WordPieceTokenizer.load(minilm_dir)
    lines = (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(lines[:101]) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("\n".join([lines[0], *lines[101:141]]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig.from_dict(TINY)).save_pretrained(
        tmp_path / "mlm", tokenizer=tok)
    out = tmp_path / "cls"
    assert main(["finetune", "--model", str(tmp_path / "mlm"), "--train", str(tmp_path / "train.tsv"),
                 "--validation", str(tmp_path / "dev.tsv"), "--out", str(out), "--pooling", "mean", "--epochs", "1",
                 "--no-progress", "--threads", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["classifier_pooling"] == "mean"
    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "dev.tsv"),
                 "--out", str(tmp_path / "eval.json")]) == 0
    texts = [line.split("\t")[0] for line in lines[101:141]]
    truth = [int(line.split("\t")[1]) for line in lines[101:141]]
    predicted = [int(p["label"]) for p in ClassifyPipeline(out, batch_size=1)(texts)]
    accuracy = np.mean(np.asarray(predicted) == np.asarray(truth))
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == pytest.approx(accuracy)
