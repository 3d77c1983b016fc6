"""A pruned student vocabulary: which tokens stay, the embedding rows they keep, and a run that uses one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nanobert.data.labelled import Encoded, encode_labelled, sorted_batches
from nanobert.distill import DistillConfig, DistillLossConfig, distill
from nanobert.distill.run import load_teacher
from nanobert.distill.student import DistillModel, build_student
from nanobert.distill.vocab import kept_token_ids, prune_vocabulary, teacher_ids
from nanobert.errors import NanobertError
from nanobert.tasks.finetune import load_classifier, read_split


def test_kept_ids_are_specials_characters_then_the_most_frequent():
    tokens = ["[PAD]", "[CLS]", "a", "##a", "é", "the", "film", "dull", "##s", "unused"]
    rows = Encoded([[1, 5, 6, 7, 7], [1, 7, 5, 6, 6, 6, 4]], [[0] * 5, [0] * 7], np.zeros(2, dtype=np.int64), None)
    # always: [PAD] [CLS] a ##a ##s (ASCII characters; é is not); then film (4 uses), dull (3), the (2), é (1)
    assert kept_token_ids(tokens, {0, 1}, rows, 7) == [0, 1, 2, 3, 6, 7, 8]
    assert kept_token_ids(tokens, {0, 1}, rows, 8) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert kept_token_ids(tokens, {0, 1}, rows, 100) == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # never an unused token
    with pytest.raises(NanobertError, match="smaller than the 5 special and character tokens"):
        kept_token_ids(tokens, {0, 1}, rows, 4)


def test_pruned_student_keeps_the_teachers_rows_and_tokenizes_with_what_is_left(teacher_dir, splits):
    teacher, tok, labels, cfg = load_teacher(teacher_dir)
    train = read_split(splits[0], cfg)
    rows = encode_labelled(train, tok, 128, labels)
    student, _ = build_student("teacher:1", teacher, tok, labels, init_from_teacher=True)
    before = student.bert.embeddings.word_embeddings.weight.detach().clone()
    size = tok.vocab_size - 60
    student, pruned = prune_vocabulary(student, tok, rows, size)
    assert pruned.vocab_size == size == student.config.vocab_size
    assert student.bert.embeddings.word_embeddings.weight.shape == (size, teacher.config.hidden_size)
    for token, new_id in list(pruned.vocab.items())[::7]:
        assert torch.equal(student.bert.embeddings.word_embeddings.weight[new_id], before[tok.vocab[token]])
    # the same text, through the pruned tokenizer: the teacher's tokens where kept, pieces of a dropped word else
    text = train.texts[0]
    new_ids = pruned(text)["input_ids"]
    assert all(0 <= i < size for i in new_ids) and len(new_ids) >= len(tok(text)["input_ids"])
    assert pruned.unk_token_id not in new_ids


def test_distill_with_a_pruned_vocabulary_writes_a_working_classifier(teacher_dir, splits, tmp_path):
    train, dev = splits
    teacher_vocab = load_teacher(teacher_dir)[1].vocab_size
    cfg = DistillConfig(student="teacher:1", init_from_teacher=True, prune_vocab=150,
                        max_train_examples=64, epochs=1, batch_size=16, lr=1e-3, progress=False, threads=1)
    report = distill(teacher_dir, train, dev, tmp_path / "out", cfg)
    model, tok, _ = load_classifier(tmp_path / "out")
    assert tok.vocab_size == model.config.vocab_size == 150 < teacher_vocab  # 64 rows use more than 150 tokens
    assert report["student_params"] == sum(p.numel() for p in model.parameters())
    assert (tmp_path / "out" / "vocab.txt").read_text().count("\n") == 150


def test_a_pruned_student_lines_up_with_its_teacher_through_the_teachers_ids(teacher_dir, splits):
    teacher, tok, labels, cfg = load_teacher(teacher_dir)
    data = read_split(splits[0], cfg)
    student, _ = build_student("teacher:2", teacher, tok, labels, init_from_teacher=True)  # the whole teacher
    student, pruned = prune_vocabulary(student, tok, encode_labelled(data, tok, 128, labels), tok.vocab_size - 60)
    ids = teacher_ids(pruned, tok)
    assert all(int(ids[i]) == tok.vocab[t] for t, i in pruned.vocab.items())
    batch = sorted_batches(encode_labelled(data, pruned, 128, labels), 16, pruned.pad_token_id)[-1]  # longest rows
    x = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    own, _ = student.eval()(*x)
    losses = []
    for mapping in (ids, None):
        model = DistillModel(student, teacher, DistillLossConfig(alpha=1.0, hidden=1.0), mapping).train()
        model.student.eval()  # no dropout: the student is the teacher, so what differs is what the teacher reads
        losses.append(model(*x, labels=batch["labels"], teacher_logits=own.detach())[1].item())
    assert losses[0] < 1e-8 < 1e-3 < losses[1]  # the teacher reads the student's tokens only through the mapping


def test_distill_with_a_pruned_vocabulary_and_hidden_loss_trains(teacher_dir, splits, tmp_path):
    train, dev = splits
    cfg = DistillConfig(student="teacher:1", init_from_teacher=True, prune_vocab=150, max_train_examples=64,
                        epochs=1, batch_size=16, lr=1e-3, progress=False, threads=1,
                        loss=DistillLossConfig(hidden=1.0, attention=1.0))
    report = distill(teacher_dir, train, dev, tmp_path / "out", cfg)
    assert report["options"]["hidden"] == 1.0 and report["steps"] == 4
    assert load_classifier(tmp_path / "out")[1].vocab_size == 150
