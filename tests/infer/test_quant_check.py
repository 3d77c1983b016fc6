"""The int8 quality check: its verdicts by hand on small arrays, and on real exported graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.infer.onnx import export_onnx
from nanobert.infer.quant_check import check_int8, compare, cosines, default_probes, verify_int8


def test_cosines_by_hand():
    np.testing.assert_allclose(cosines(np.array([[1.0, 0.0], [3.0, 4.0]]), np.array([[1.0, 1.0], [6.0, 8.0]])),
                               [1 / np.sqrt(2), 1.0], rtol=1e-6)


def test_embeddings_fail_on_one_bad_probe():
    fp32 = np.eye(4, dtype=np.float32)
    good = fp32 + 0.001
    assert compare("embed", fp32, good).passed
    bad = good.copy()
    bad[2] = [0.0, 1.0, 1.0, 0.0]  # cosine 0.707 with row 2 of the identity
    report = compare("embed", fp32, bad)
    assert not report.passed and report.worst_cosine == pytest.approx(1 / np.sqrt(2), rel=1e-3)
    assert "1 below 0.99" in report.failures[0]


def test_classifier_label_agreement_and_accuracy_drop():
    fp32 = np.zeros((200, 2), dtype=np.float32)
    fp32[:, 1] = 1.0  # every probe: class 1
    int8 = fp32.copy()
    int8[150] = [2.0, 0.0]  # one flip in 200, on an unlabelled probe: 99.5% agree
    labels = np.ones(100, dtype=np.int64)  # the first 100 rows are labelled
    r = compare("classify", fp32, int8, labels)
    assert r.passed and r.agreement == 0.995 and (r.accuracy_fp32, r.accuracy_int8) == (100.0, 100.0)
    int8[0] = [2.0, 0.0]  # a second flip, on a labelled row: 99% still agree, but accuracy drops 1 point
    r = compare("classify", fp32, int8, labels)
    assert r.agreement == 0.99 and len(r.failures) == 1 and "accuracy falls from 100.00% to 99.00%" in r.failures[0]
    int8[151:154] = [2.0, 0.0]  # five flips in 200: 97.5%
    r = compare("classify", fp32, int8)
    assert not r.passed and "2.5% of the probes" in r.failures[0]


def test_default_probes_are_real_sentences():
    probes = default_probes()
    assert len(probes) == 256 and len(set(probes)) > 250 and all(len(p.split()) >= 1 for p in probes)


@pytest.mark.slow
def test_real_graphs(tiny_cls_dir, tiny_mlm_dir, vocab_tokenizer, tmp_path):
    fp32 = export_onnx(tiny_cls_dir, tmp_path / "cls.onnx").path
    int8 = export_onnx(tiny_cls_dir, tmp_path / "cls-int8.onnx", int8=True).path
    probes = default_probes(64)
    same = check_int8(fp32, fp32, vocab_tokenizer, "classify", probes=probes)
    assert same.passed and same.agreement == 1.0 and same.probes == 64
    report = check_int8(fp32, int8, vocab_tokenizer, "classify", probes=probes)
    assert report.agreement > 0.5  # the tiny model's int8 graph: whatever it is, it is measured and reported
    assert report.seconds_fp32 > 0 and report.seconds_int8 > 0  # and what it costs or saves in time
    assert f"{report.seconds_fp32 / report.seconds_int8:.2f}x" in report.summary()

    # Another classifier of the same shape stands in for a quantisation that wrecked the model.
    from nanobert.model.bert import BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    other_dir = tmp_path / "other"
    other = BertForSequenceClassification(BertConfig.from_pretrained(tiny_cls_dir))
    with torch.no_grad():
        for p in other.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    other.save_pretrained(other_dir, tokenizer=vocab_tokenizer)
    wrecked = export_onnx(other_dir, tmp_path / "other.onnx").path
    with pytest.raises(NanobertError, match="int8 quantisation loses quality: the int8 graph changes the label"):
        verify_int8(fp32, wrecked, vocab_tokenizer, "classify", probes=probes)

    emb = export_onnx(tiny_mlm_dir, tmp_path / "embed.onnx", task="embed").path
    r = check_int8(emb, emb, vocab_tokenizer, "embed", probes=probes)
    assert r.passed and r.worst_cosine == pytest.approx(1.0, abs=1e-6)
