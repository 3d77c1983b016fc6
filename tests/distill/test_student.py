"""The module the loop trains: the losses it adds, the layers it maps, the students it builds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nanobert.data.tables import LabelMap
from nanobert.distill.capture import Capture
from nanobert.distill.losses import attention_loss, hidden_loss, kd_loss
from nanobert.distill.student import DistillLossConfig, DistillModel, build_student
from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForSequenceClassification

LABELS = LabelMap(["neg", "pos"])
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _teacher() -> BertForSequenceClassification:
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     id2label=LABELS.id2label, **NO_DROPOUT)
    return BertForSequenceClassification(cfg).eval()


def _batch():
    ids = torch.randint(5, 50, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3])
    return ids, mask, torch.tensor([0, 1, -100])


def test_a_copy_of_the_teacher_has_only_the_hard_label_loss():
    teacher = _teacher()
    student, _ = build_student("teacher:2", teacher, None, LABELS, init_from_teacher=True)
    model = DistillModel(student, teacher, DistillLossConfig(alpha=0.5, hidden=1.0, attention=1.0)).train()
    assert model.proj is None  # same width: nothing to project
    ids, mask, y = _batch()
    t_logits, _ = teacher(ids, mask)
    logits, loss = model(ids, mask, labels=y, teacher_logits=t_logits)
    assert torch.allclose(logits, t_logits, atol=1e-6)
    hard = F.cross_entropy(t_logits[:2], y[:2], reduction="sum") / 3  # two labelled rows of three; the third: soft = 0
    assert loss.item() == pytest.approx(0.5 * hard.item(), abs=1e-5)


def test_a_narrower_shallower_student_learns_layer_1_through_the_projection():
    teacher = _teacher()
    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                     id2label=LABELS.id2label, **NO_DROPOUT)
    student = BertForSequenceClassification(cfg)
    model = DistillModel(student, teacher, DistillLossConfig(temperature=3.0, alpha=0.2, hidden=0.5, attention=2.0))
    assert model.layer_map == [1] and tuple(model.proj.weight.shape) == (16, 8)
    ids, mask, y = _batch()
    t_logits, _ = teacher(ids, mask)
    logits, loss = model.train()(ids, mask, labels=y, teacher_logits=t_logits)
    with Capture(student, hidden=True, attention=True) as s, Capture(teacher, hidden=True, attention=True) as t:
        student(ids, mask), teacher(ids, mask)
    expected = (kd_loss(logits, t_logits, y, 3.0, 0.2) + 0.5 * hidden_loss(model.proj(s.hidden[0]), t.hidden[1], mask)
                + 2.0 * attention_loss(s.attention[0], t.attention[1], mask))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert model.proj.weight.grad.abs().sum() > 0 and all(p.grad is None for p in teacher.parameters())
    # eval mode: the student's own logits and cross-entropy, as the validation pass wants
    model.eval()
    out, ce = model(ids[:2], mask[:2], labels=y[:2], teacher_logits=t_logits[:2])
    assert ce.item() == pytest.approx(F.cross_entropy(out, y[:2]).item(), rel=1e-6)
    assert "proj.weight" in model.state_dict() and not any(k.startswith("_teacher") for k in model.state_dict())


def test_student_specs():
    teacher = _teacher()
    small, _ = build_student("mini", teacher, None, LABELS)
    assert (small.config.num_hidden_layers, small.config.hidden_size, small.config.vocab_size) == (2, 128, 50)
    assert small.config.id2label == {0: "neg", 1: "pos"}
    with pytest.raises(NanobertError, match="the teacher has 2 layers"):
        build_student("teacher:3", teacher, None, LABELS)
    with pytest.raises(NanobertError, match="needs the teacher's width"):
        build_student("mini", teacher, None, LABELS, init_from_teacher=True)
    with pytest.raises(NanobertError, match="neither a model directory, a preset"):
        build_student("no-such-thing", teacher, None, LABELS)


def test_sizes_spec_builds_that_shape():
    student, _ = build_student("L3/H64", _teacher(), None, LABELS)
    c = student.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size) == \
        (3, 64, 1, 256, 50)
    assert build_student("L1/H32/A4", _teacher(), None, LABELS)[0].config.num_attention_heads == 4


def test_projected_embeddings_keep_the_teachers_principal_subspace():
    teacher = _teacher()
    torch.manual_seed(1)
    student, _ = build_student("L1/H8/A2", teacher, None, LABELS, init_embeddings_from_teacher=True)
    s, t = student.bert.embeddings, teacher.bert.embeddings
    assert s.word_embeddings.weight.shape == (50, 8) and s.position_embeddings.weight.shape == (512, 8)
    words = t.word_embeddings.weight.detach()
    centred = words - words.mean(0)
    sing = torch.linalg.svd(centred).S
    projected = s.word_embeddings.weight.detach()
    # the projection's coordinates are the top 8 principal components: uncorrelated, with the top 8 variances
    gram = projected.T @ projected
    assert torch.allclose(gram, torch.diag(sing[:8] ** 2), atol=1e-4)
    # a word's summed embedding (word + position + type) is the teacher's, projected onto the same axes
    basis = torch.linalg.lstsq(centred, projected).solution  # (16, 8): the map the student applied
    total_t = words[7] + t.position_embeddings.weight[3] + t.token_type_embeddings.weight[0]
    total_s = s.word_embeddings.weight[7] + s.position_embeddings.weight[3] + s.token_type_embeddings.weight[0]
    assert torch.allclose(total_s, total_t @ basis, atol=1e-4)
    with pytest.raises(NanobertError, match="width of at most the teacher's 16"):
        build_student("L1/H32", teacher, None, LABELS, init_embeddings_from_teacher=True)
