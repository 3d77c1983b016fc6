"""A narrower feed-forward block: which neurons stay, what the pruned layer computes, and a run that uses it."""

from __future__ import annotations

import json

import pytest
import torch

from nanobert.data.labelled import encode_labelled, sorted_batches
from nanobert.data.tables import LabelMap
from nanobert.distill import DistillConfig, distill
from nanobert.distill.capture import encoder_layers
from nanobert.distill.ffn import ffn_importance, prune_ffn
from nanobert.distill.run import load_teacher
from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForSequenceClassification
from nanobert.tasks.finetune import load_classifier, read_split

LABELS = LabelMap(["neg", "pos"])


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     id2label=LABELS.id2label, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     initializer_range=0.3)  # large weights: a neuron changes the loss by more than rounding does
    return BertForSequenceClassification(cfg).eval()


def _batches(n: int = 3):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(5, 50, (4, 7), generator=g)
        mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 7, [1] * 3 + [0] * 4])
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                    "labels": torch.randint(0, 2, (4,), generator=g)})
    return out


def test_a_neuron_nothing_reads_scores_zero():
    model = _model()
    with torch.no_grad():
        encoder_layers(model)[1].output.dense.weight[:, 5] = 0.0  # layer 1, neuron 5: its output goes nowhere
    scores = ffn_importance(model, _batches())
    assert len(scores) == 2 and scores[0].shape == (32,)
    assert scores[1][5] == 0.0 and (scores[1] > 0).sum() == 31 and (scores[0] > 0).all()
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_scores_are_the_first_order_change_of_the_loss():
    model, batch = _model(), _batches(1)[0]
    score = ffn_importance(model, [batch])[0]
    layer = encoder_layers(model)[0]
    j = int(score.argmax())
    acts = {}
    h = layer.intermediate.register_forward_hook(lambda m, a, out: acts.setdefault("a", out))
    _, base = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    h.remove()
    # the loss with neuron j's activation scaled by (1 - eps): a finite-difference version of a_j * dL/da_j
    eps = 1e-2
    scale = torch.ones(32)
    scale[j] = 1 - eps
    h = layer.intermediate.register_forward_hook(lambda m, a, out: out * scale)
    _, nudged = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    h.remove()
    assert abs((base - nudged).item() / eps) == pytest.approx(score[j].item(), rel=2e-2)


def test_a_pruned_layer_computes_what_the_full_one_does_with_the_other_neurons_off():
    model, batches = _model(), _batches()
    scores = [torch.rand(32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    keep = [set(torch.topk(s, 12).indices.tolist()) for s in scores]
    ids, mask = batches[0]["input_ids"], batches[0]["attention_mask"]
    handles = []
    for layer, k in zip(encoder_layers(model), keep):
        off = torch.tensor([0.0 if j not in k else 1.0 for j in range(32)])
        handles.append(layer.intermediate.register_forward_hook(lambda m, a, out, off=off: out * off))
    expected, _ = model(ids, mask)
    for h in handles:
        h.remove()
    prune_ffn(model, scores, 12)
    assert model.config.intermediate_size == 12
    assert tuple(encoder_layers(model)[0].intermediate.dense.weight.shape) == (12, 16)
    assert tuple(encoder_layers(model)[1].output.dense.weight.shape) == (16, 12)
    got, _ = model(ids, mask)
    assert torch.allclose(got, expected, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in BertForSequenceClassification(model.config).parameters())  # an ordinary BERT of that shape


def test_distill_with_a_pruned_feed_forward_writes_an_ordinary_classifier(teacher_dir, splits, tmp_path):
    train, dev = splits
    teacher = load_teacher(teacher_dir)[0]
    cfg = DistillConfig(student="teacher:2", init_from_teacher=True, prune_ffn=24, max_train_examples=64, epochs=1,
                        batch_size=16, lr=1e-3, progress=False, threads=1)
    report = distill(teacher_dir, train, dev, tmp_path / "out", cfg)
    model, tok, ft = load_classifier(tmp_path / "out")
    assert model.config.intermediate_size == 24 < teacher.config.intermediate_size
    assert json.loads((tmp_path / "out" / "config.json").read_text())["intermediate_size"] == 24
    assert report["student_params"] == sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in teacher.parameters())
    rows = encode_labelled(read_split(dev, ft), tok, 128, LabelMap.from_config(model.config.id2label))
    logits, _ = model(**{k: v for k, v in sorted_batches(rows, 8, tok.pad_token_id)[0].items() if k != "labels"})
    assert logits.shape == (8, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(student="teacher:1", prune_ffn=8), "add --init-from-teacher"),
    (dict(student="teacher:1", init_from_teacher=True, prune_ffn=64), "keep between 1 and 63"),
])
def test_prune_ffn_refuses_what_it_cannot_do(teacher_dir, splits, tmp_path, kwargs, message):
    train, dev = splits
    with pytest.raises(NanobertError, match=message):
        distill(teacher_dir, train, dev, tmp_path / "x", DistillConfig(progress=False, **kwargs))
    assert not (tmp_path / "x").exists()
