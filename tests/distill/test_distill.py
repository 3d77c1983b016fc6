"""Distillation end to end on a tiny fine-tuned teacher: the student it writes, and the mistakes it refuses."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nanobert.cli import main
from nanobert.data.labelled import encode_labelled
from nanobert.distill import DistillConfig, DistillLossConfig, distill
from nanobert.distill.losses import soft_loss
from nanobert.distill.run import load_teacher
from nanobert.distill.student import build_student
from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForSequenceClassification, BertModel
from nanobert.tasks.finetune import load_classifier, predict_logits, read_split

from sst2_sample import sst2_rows, word_tokenizer, write_tsv

FAST = dict(epochs=2, batch_size=16, lr=2e-3, progress=False, threads=1)
LEARN = dict(epochs=6, batch_size=16, lr=5e-3, progress=False, threads=1)  # what the teacher needed to learn


def _kl_to_teacher(student_dir, teacher_dir, data_file) -> tuple[float, float]:
    """Mean T=1 KL from the teacher's to the student's distribution over the rows of `data_file`, and how often
    the two predict the same class."""
    out, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    for d in (teacher_dir, student_dir):
        model, tok, cfg = load_classifier(d)
        out.append(predict_logits(model, encode_labelled(read_split(data_file, cfg), tok, 128), tok.pad_token_id))
    torch.set_num_threads(threads)
    return float(soft_loss(out[1], out[0], 1.0).mean()), float((out[0].argmax(-1) == out[1].argmax(-1)).double().mean())


def test_distilled_student_learns_the_teacher_and_is_an_ordinary_classifier(teacher_dir, splits, tmp_path, capsys):
    train, dev = splits
    unlabeled = tmp_path / "more.txt"
    unlabeled.write_text("".join(f"{s}\n" for s, _ in sst2_rows("train", 100, skip=300)), encoding="utf-8")
    out = tmp_path / "student"
    cfg = DistillConfig(student="teacher:1", loss=DistillLossConfig(temperature=2.0, alpha=0.5), **LEARN)
    report = distill(teacher_dir, train, dev, out, cfg, unlabeled=[unlabeled])
    assert report["train_examples"] == 300 and report["unlabeled_examples"] == 100
    assert report["steps"] == 6 * 25  # 400 rows in batches of 16, six epochs
    assert {"config.json", "model.safetensors", "vocab.txt", "finetune.json", "distill.json", "metrics.json",
            "classification_report.txt"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and config["num_hidden_layers"] == 1
    assert config["id2label"] == {"0": "0", "1": "1"}

    # The student learnt the teacher's distribution: far closer to it than the same student before training
    # (this setup: KL 0.090 -> 0.049, 81% same class; a student that predicts one class for all agrees on 61% of the rows).
    torch.manual_seed(cfg.seed)
    fresh = tmp_path / "fresh"
    BertForSequenceClassification(BertConfig.from_pretrained(out)).save_pretrained(
        fresh, tokenizer=load_classifier(out)[1])
    (fresh / "finetune.json").write_text((out / "finetune.json").read_text())
    (before, _), (after, agree) = _kl_to_teacher(fresh, teacher_dir, train), _kl_to_teacher(out, teacher_dir, train)
    assert after < 0.7 * before and agree > 0.75, (before, after, agree)

    # evaluate and classify load it as they load any fine-tuned model
    assert main(["evaluate", "--model", str(out), "--data", str(dev), "--no-progress"]) == 0
    assert f"accuracy                           {report['accuracy']:.2f}" in capsys.readouterr().out
    assert main(["classify", "--model", str(out), "--json", "a gorgeous , witty film", "dull and lifeless"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 2 and all(str(row["label"]) in {"0", "1"} for row in lines)


def test_narrower_student_with_intermediate_losses(teacher_dir, splits, tmp_path):
    train, dev = splits
    out = tmp_path / "mini"
    cfg = DistillConfig(student="mini", loss=DistillLossConfig(hidden=1.0, attention=1.0), max_train_examples=64,
                        **{**FAST, "epochs": 1})
    report = distill(teacher_dir, train, dev, out, cfg)
    assert report["steps"] == 4 and report["options"]["hidden"] == 1.0
    config = json.loads((out / "config.json").read_text())
    teacher = json.loads((teacher_dir / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (128, 2, teacher["vocab_size"])
    weights = load_file(out / "model.safetensors")
    assert not any(k.startswith(("proj", "student")) for k in weights)  # the projection stays behind
    assert set(weights) == set(load_file(teacher_dir / "model.safetensors"))


def test_student_from_the_teachers_layers(teacher_dir):
    teacher, tok, labels, _ = load_teacher(teacher_dir)
    student, _ = build_student("teacher:1", teacher, tok, labels, init_from_teacher=True)
    s, t = student.state_dict(), load_file(teacher_dir / "model.safetensors")
    assert set(s) == {k for k in t if not k.startswith("bert.encoder.layer.1.")}
    assert all(torch.equal(s[k], t[k]) for k in s)  # embeddings, layer 0, pooler, classifier: the teacher's own


def test_label_set_mismatch_is_refused_before_any_work(teacher_dir, splits, tmp_path):
    train, dev = splits
    named = write_tsv(tmp_path / "named.tsv", [(s, "pos" if y else "neg") for s, y in sst2_rows("train", 40)])
    with pytest.raises(NanobertError, match=r"labels \['neg', 'pos'\] are not among the teacher's labels"):
        distill(teacher_dir, named, dev, tmp_path / "out", DistillConfig(**FAST))
    assert not (tmp_path / "out").exists()
    assert main(["distill", "--teacher", str(teacher_dir), "--train", str(train), "--validation", str(named),
                 "--out", str(tmp_path / "out")]) == 2  # a validation file with other labels: one line, exit 2


def test_intermediate_losses_need_the_teachers_tokenizer(teacher_dir, splits, tmp_path, capsys):
    train, dev = splits
    other = word_tokenizer(sst2_rows("train", 300), size=100)  # a smaller vocabulary: other ids for the same text
    student_dir = tmp_path / "other"
    BertModel(BertConfig(vocab_size=other.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128)).save_pretrained(student_dir, tokenizer=other)
    for flag in ("--hidden-loss", "--attention-loss"):
        code = main(["distill", "--teacher", str(teacher_dir), "--student", str(student_dir), "--train", str(train),
                     "--validation", str(dev), "--out", str(tmp_path / "out"), flag, "1"])
        assert code == 2 and "tokenizer differs from the teacher's" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # Logits alone need no shared tokenizer: the student reads the rows through its own.
    report = distill(teacher_dir, train, dev, tmp_path / "out", DistillConfig(student=str(student_dir),
                                                                             **{**FAST, "epochs": 1}))
    assert report["steps"] == 19 and (tmp_path / "out" / "vocab.txt").read_text().count("\n") == other.vocab_size


def test_teacher_must_be_a_classifier(teacher_dir, splits, tmp_path):
    train, dev = splits
    base = teacher_dir.parent / "base"  # the encoder the teacher was fine-tuned from: no id2label
    with pytest.raises(NanobertError, match="no id2label"):
        distill(base, train, dev, tmp_path / "out", DistillConfig(**FAST))
