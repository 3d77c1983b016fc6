"""The real all-MiniLM-L6-v2 checkpoint gives the same numbers in nanobert as in transformers and sentence-transformers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanobert.model.bert import BertForSequenceClassification, BertModel
from nanobert.tokenizers.wordpiece import WordPieceTokenizer

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "The cat sat on the mat.",
    "A man is playing a guitar on the corner of a busy street in Paris.",
    "Hello!",
    "Machine learning models learn patterns from data, and transformers learn them from text at scale.",
    "Elizabeth Bennet was not a woman who could be easily persuaded.",
]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertModel.from_pretrained(minilm_dir), WordPieceTokenizer.load(minilm_dir)


def test_last_hidden_state_matches_transformers_batched_with_padding(minilm, minilm_dir):
    ours, tok = minilm
    theirs = transformers.BertModel.from_pretrained(minilm_dir).eval()
    batch = tok(SENTENCES, padding="longest", return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    with torch.no_grad():
        hidden, pooled = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ref = theirs(**batch)
    real = batch["attention_mask"].bool()
    assert hidden.shape == ref.last_hidden_state.shape == (len(SENTENCES), real.shape[1], 384)
    assert (hidden - ref.last_hidden_state)[real].abs().max().item() <= 1e-4
    assert (pooled - ref.pooler_output).abs().max().item() <= 1e-4


def test_padding_does_not_change_real_tokens(minilm):
    ours, tok = minilm
    batch = tok(SENTENCES, padding="longest", return_tensors="pt")
    alone = tok(SENTENCES[2:3], return_tensors="pt")
    with torch.no_grad():
        padded = ours(batch["input_ids"], batch["attention_mask"])[0][2]
        single = ours(alone["input_ids"], alone["attention_mask"])[0][0]
    n = single.shape[0]
    assert (padded[:n] - single).abs().max().item() <= 1e-4


def test_mean_pooled_embeddings_equal_sentence_transformers(minilm, minilm_dir):
    st = pytest.importorskip("sentence_transformers")
    ours, tok = minilm
    batch = tok(SENTENCES, padding="longest", return_tensors="pt")
    with torch.no_grad():
        hidden, _ = ours(batch["input_ids"], batch["attention_mask"])
    m = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
    emb = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)  # (B, 384)
    ref = st.SentenceTransformer(str(minilm_dir), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    assert (emb - ref).abs().max().item() <= 1e-4
    # Similar sentences really are closer than unrelated ones (a sanity check on the vectors).
    assert (emb[0] @ emb[0]).item() == pytest.approx(1.0, abs=1e-5)


def test_base_checkpoint_into_classifier_needs_the_new_head_named(minilm_dir):
    from nanobert.errors import NanobertError

    with pytest.raises(NanobertError, match=r"missing: classifier.weight, classifier.bias \(2 keys\)"):
        BertForSequenceClassification.from_pretrained(minilm_dir)
    model = BertForSequenceClassification.from_pretrained(minilm_dir, expected_missing=["classifier.*"], num_labels=3)
    assert sorted(model.load_report.missing) == ["classifier.bias", "classifier.weight"]
    assert model.classifier.weight.shape == (3, 384)
