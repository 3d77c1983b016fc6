"""The distillation losses against hand computations, and the hooks that read a model's layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nanobert.distill.capture import Capture, init_layers, layer_map
from nanobert.distill.losses import attention_loss, hidden_loss, kd_loss, soft_loss
from nanobert.model.bert import BertConfig, BertForSequenceClassification

LN3 = math.log(3.0)


def test_soft_loss_is_kl_of_softened_distributions_times_t_squared():
    teacher, student = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])  # p = (1/2, 1/2), q = (3/4, 1/4)
    by_hand = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert soft_loss(student, teacher, 1.0).item() == pytest.approx(by_hand, abs=1e-6)
    # At T = 2 logits twice as large give the same distributions, and the KL is scaled by T² = 4.
    assert soft_loss(2 * student, 2 * teacher, 2.0).item() == pytest.approx(4 * by_hand, abs=1e-6)
    assert soft_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_loss_mixes_hard_labels_on_labelled_rows_only():
    teacher = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    student = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    labels = torch.tensor([1, -100])  # the second row is unlabelled
    soft0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    hard0 = -math.log(0.25)  # student gives class 1 probability 1/4
    p = math.exp(2) / (math.exp(2) + 1)
    soft1 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    expected = ((0.25 * soft0 + 0.75 * hard0) + soft1) / 2
    assert kd_loss(student, teacher, labels, temperature=1.0, alpha=0.25).item() == pytest.approx(expected, abs=1e-6)
    # alpha = 1: the labels play no part; alpha = 0 on labelled rows: plain cross-entropy
    assert kd_loss(student, teacher, labels, 1.0, 1.0).item() == pytest.approx((soft0 + soft1) / 2, abs=1e-6)
    both = torch.tensor([1, 0])
    assert kd_loss(student, teacher, both, 1.0, 0.0).item() == pytest.approx(
        F.cross_entropy(student, both).item(), abs=1e-6)


def test_kd_loss_gradient_pulls_the_student_towards_the_teacher():
    student = torch.tensor([[LN3, 0.0]], requires_grad=True)
    kd_loss(student, torch.zeros(1, 2), None, temperature=1.0).backward()
    # d KL / d z_s = q - p = (3/4 - 1/2, 1/4 - 1/2)
    assert torch.allclose(student.grad, torch.tensor([[0.25, -0.25]]), atol=1e-6)


def test_hidden_and_attention_losses_ignore_padding():
    mask = torch.tensor([[1, 1, 0]])
    a, b = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)
    b[0, 0] = torch.tensor([1.0, 3.0])  # squared errors 1 and 9 -> mean 5 at token 0
    b[0, 2] = 100.0  # a padded token: not counted
    assert hidden_loss(a, b, mask).item() == pytest.approx(5 / 2)
    s, t = torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    t[0, 1, 0, 1] = 2.0  # one real (query, key) pair of head 1: error 4 over 2 heads x 4 real pairs
    t[0, 0, 2, :] = 7.0  # the padded query row
    assert attention_loss(s, t, mask).item() == pytest.approx(4 / 8)


def test_layer_maps():
    assert init_layers(6, 3) == [0, 2, 4] and init_layers(12, 4) == [0, 3, 6, 9]
    assert layer_map(6, 3) == [1, 3, 5] and layer_map(6, 2) == [2, 5] and layer_map(4, 4) == [0, 1, 2, 3]


def test_capture_reads_hidden_states_and_attention_without_changing_the_output():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=32)).eval()
    ids = torch.randint(5, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    plain, _ = model(ids, mask)
    with Capture(model, hidden=True, attention=True) as cap:
        logits, _ = model(ids, mask)
    assert torch.equal(plain, logits) and sorted(cap.hidden) == [0, 1] and sorted(cap.attention) == [0, 1]
    # Layer 0's attention by hand from its input, the embeddings
    x = model.bert.embeddings(ids)
    att = model.bert.encoder.layer[0].attention.self
    q = att.query(x).view(2, 5, 2, 8).transpose(1, 2)  # (B, nh, T, hs)
    k = att.key(x).view(2, 5, 2, 8).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    assert torch.allclose(cap.attention[0], scores.softmax(-1), atol=1e-6)
    assert cap.attention[0][1, :, :, 3:].abs().max() < 1e-6  # no weight on padding
    assert torch.allclose(cap.hidden[1], model.bert(ids, mask)[0], atol=1e-6)  # the last layer's output
    with torch.no_grad():
        model(ids, mask)
    assert not model.bert.encoder.layer[0]._forward_hooks  # the hooks are gone after the block
