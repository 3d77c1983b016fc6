"""Pipelines against transformers / sentence-transformers on real text, and hand-worked whole-word cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.infer.pipelines import (
    ClassifyPipeline,
    EmbedPipeline,
    FillMaskPipeline,
    load_pipelines,
    mean_pool,
    pipeline,
    softmax,
)

FILL_TEXTS = [
    "The quick brown fox [MASK] over the lazy dog.",
    "Paris is the [MASK] of France, and Berlin is the [MASK] of [MASK].",
    "[MASK]",
    "she was jump[MASK] for joy",
]


def test_mean_pool_and_softmax_by_hand():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0]]
    np.testing.assert_allclose(softmax(np.array([0.0, math.log(3.0)])), [0.25, 0.75])


def test_fill_mask_matches_transformers_pipeline(tiny_mlm_dir):
    from transformers import pipeline as hf_pipeline

    hf = hf_pipeline("fill-mask", model=str(tiny_mlm_dir), device="cpu")
    ours = FillMaskPipeline(tiny_mlm_dir)
    for text in FILL_TEXTS[:3]:
        expected = hf(text, top_k=4)
        if isinstance(expected[0], dict):  # one mask: transformers drops the per-mask level
            expected = [expected]
        got = ours(text, top_k=4)
        assert len(got) == len(expected) == text.count("[MASK]")
        for got_mask, hf_mask in zip(got, expected):
            assert [c["token_id"] for c in got_mask] == [c["token"] for c in hf_mask]
            np.testing.assert_allclose([c["score"] for c in got_mask], [c["score"] for c in hf_mask], rtol=1e-4, atol=1e-7)
            scores = [c["score"] for c in got_mask]
            assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6


def test_fill_mask_batches_equal_one_at_a_time(tiny_mlm_dir, sst2_sentences):
    # real sentences of different lengths, one or two masks each, run through batches of 3 with padding
    texts = []
    for i, s in enumerate(sst2_sentences[:9]):
        words = s.split()
        words[len(words) // 2] = "[MASK]"
        if i % 2 and len(words) > 3:
            words[1] = "[MASK]"
        texts.append(" ".join(words))
    pipe = FillMaskPipeline(tiny_mlm_dir, batch_size=3)
    together = pipe(texts, top_k=3)
    for text, result in zip(texts, together):
        alone = pipe(text, top_k=3)
        assert [[c["token_id"] for c in m] for m in alone] == [[c["token_id"] for c in m] for m in result]
        np.testing.assert_allclose([[c["score"] for c in m] for m in alone], [[c["score"] for c in m] for m in result], atol=1e-6)
        assert len(result) == text.count("[MASK]")


class _FixedLogits:
    """A stand-in model: at every [MASK] the logits are `logits` (V,)."""

    name = "fixed"

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, input_ids, attention_mask, token_type_ids):
        m = int(((input_ids == 103) & (attention_mask == 1)).sum())
        return np.tile(self.logits, (m, 1)).astype(np.float32)  # (M, V)


def test_whole_word_display_joins_pieces(vocab_tokenizer):
    tok = vocab_tokenizer
    s_piece, ing_piece = tok.token_to_id("##s"), tok.token_to_id("##ing")
    logits = np.zeros(tok.vocab_size)
    logits[s_piece], logits[ing_piece] = 3.0, 2.0
    pipe = FillMaskPipeline.from_runner(_FixedLogits(logits), tok, {"vocab_size": tok.vocab_size}, max_length=512)
    (candidates,) = pipe("the fox jump [MASK] over the dog", top_k=2)  # one mask
    best, second = candidates
    total = math.exp(3) + math.exp(2) + (tok.vocab_size - 2)
    assert best["token"] == "##s" and best["word"] == "jumps" and best["score"] == pytest.approx(math.exp(3) / total)
    assert second["token"] == "##ing" and second["word"] == "jumping" and second["score"] == pytest.approx(math.exp(2) / total)
    assert best["sequence"] == "the fox jumps over the dog"
    assert pipe.word_span([101, tok.token_to_id("jump"), s_piece, tok.token_to_id("over"), 102], 2) == (1, 3)


def test_classify_matches_transformers(tiny_cls_dir, sst2_sentences):
    from transformers import AutoModelForSequenceClassification, BertTokenizer

    texts = sst2_sentences[:12]
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    enc = BertTokenizer.from_pretrained(tiny_cls_dir)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(hf(**enc).logits, -1).numpy()
    pipe = ClassifyPipeline(tiny_cls_dir, batch_size=5)
    np.testing.assert_allclose(pipe.probabilities(texts), expected, atol=1e-5)
    results = pipe(texts)
    assert pipe.labels == ["negative", "neutral", "positive"]
    for r, p in zip(results, expected):
        assert r["label"] == pipe.labels[int(p.argmax())] and r["score"] == pytest.approx(float(p.max()), abs=1e-5)
        assert set(r["scores"]) == set(pipe.labels) and sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    alone = pipe(texts[0])  # without the batch's padding: same numbers up to float rounding
    assert alone["label"] == results[0]["label"] and alone["scores"] == pytest.approx(results[0]["scores"], abs=1e-6)


def test_embeddings_equal_sentence_transformers(minilm_dir, sst2_sentences):
    from sentence_transformers import SentenceTransformer

    long_text = " ".join(sst2_sentences[:40])  # > 256 tokens: both cut it at the model's max_seq_length
    texts = sst2_sentences[:24] + [long_text, "a"]
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, batch_size=8, convert_to_numpy=True)
    pipe = EmbedPipeline(minilm_dir, batch_size=8)
    assert pipe.max_length == 256
    got = pipe(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pipe(texts[3]), got[3], atol=1e-6)


def test_load_pipelines_shares_one_model(tiny_mlm_dir):
    pipes = load_pipelines(tiny_mlm_dir)
    assert list(pipes) == ["fill-mask", "embed"]
    assert pipes["embed"].runner.head.encoder is pipes["fill-mask"].runner.head.model.bert
    assert pipes["embed"](["x", "a longer text"]).shape == (2, 32)


def test_user_errors(tiny_mlm_dir, tiny_cls_dir, tmp_path):
    fill = pipeline("fill-mask", tiny_mlm_dir)
    with pytest.raises(NanobertError, match="no \\[MASK\\]"):
        fill(["fine [MASK]", "no mask here"])
    with pytest.raises(NanobertError, match="top_k"):
        fill("a [MASK]", top_k=0)
    with pytest.raises(NanobertError, match="at most 512"):
        fill("word " * 600 + "[MASK]")
    with pytest.raises(NanobertError, match="cannot do classify"):
        ClassifyPipeline(tiny_mlm_dir)
    with pytest.raises(NanobertError, match="cannot do fill-mask"):
        FillMaskPipeline(tiny_cls_dir)
    with pytest.raises(NanobertError, match="not found"):
        EmbedPipeline(tmp_path / "nothing")
    with pytest.raises(NanobertError, match="unknown task"):
        pipeline("translate", tiny_mlm_dir)
    with pytest.raises(NanobertError, match="list of strings"):
        fill([1, 2])


def test_classifier_head_computes_the_last_layer_for_cls_only(tiny_cls_dir):
    from nanobert.infer.pipelines import ClassifierHead, load_torch_model

    model, _, _ = load_torch_model(tiny_cls_dir)
    head = ClassifierHead(model)
    assert head.cls_only
    ids = torch.randint(1000, 30000, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padding in one row
    ids[1, 7:] = 0
    with torch.no_grad():
        full = model(ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
        short = head(ids, mask, torch.zeros_like(ids))
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)
