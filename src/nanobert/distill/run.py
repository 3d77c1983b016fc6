"""Distil a fine-tuned classifier into a smaller one: check, prepare, train through the shared loop, save.

    cfg = DistillConfig(student="small", temperature=2.0, alpha=0.5, epochs=3)
    report = distill("sst2-teacher/", "train.tsv", "dev.tsv", "sst2-student/", cfg, unlabeled=["more.txt"])
    report["accuracy"], report["teacher_accuracy"]

Every mistake is found before any training: a teacher that is not a classifier, a training or
validation label the teacher does not know, an intermediate-layer loss the student cannot share
with the teacher. Then the teacher labels every training row once (its logits), and the student
trains through `nanobert.train.loop.train` (checkpoints each epoch, exact resume, metrics.csv,
plots in OUT/run/), ending on the last step's weights (no choice made on the validation data).

OUT is an ordinary classifier directory, like fine-tuning's: config.json (id2label), model.safetensors,
the tokenizer, finetune.json (columns and max_length for evaluate/classify), distill.json (this
config), metrics.json (student and teacher on the validation file, sizes, time) and
classification_report.txt.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nanobert.config import check_fields, to_dict
from nanobert.data.labelled import encode_labelled, sorted_batches
from nanobert.data.tables import LabelMap, LabelledData
from nanobert.distill.augment import AugmentConfig, augment_texts, neighbour_table, words_of
from nanobert.distill.data import (cached_logits, distill_batches, encode_texts, join, logits_key, read_texts,
                                   teacher_logits)
from nanobert.distill.student import (DistillLossConfig, DistillModel, build_student, check_intermediate,
                                      same_tokenizer)
from nanobert.distill.ffn import check_ffn_size, shrink_ffn
from nanobert.distill.vocab import prune_vocabulary, teacher_ids
from nanobert.errors import NanobertError
from nanobert.fileio import write_json, write_text
from nanobert.model.config import BertConfig
from nanobert.model.tabular import TABULAR_FILE
# From fine-tuning (reading, prediction, loading, its settings file)
from nanobert.tasks.finetune import (SETTINGS_FILE, FinetuneConfig, evaluate_logits, load_classifier, predict_logits,
                                     read_split)
from nanobert.train.loop import LoopConfig, train
from nanobert.train.metrics import format_report
from nanobert.train.precision import PRECISIONS, cpu_has_bf16, use_bf16

log = logging.getLogger(__name__)

RUN_DIR = "run"  # OUT/run: checkpoints, metrics.csv, train.log, plots
CONFIG_FILE = "distill.json"


@dataclass
class DistillConfig:
    """How to distil. Defaults: a 4-layer, 256-wide student (about 1/2 of MiniLM-L6, 1/10 of BERT-base)."""

    student: str = "small"  # a preset (mini, small, ...), teacher:K (the teacher's shape, K layers) or a directory
    init_from_teacher: bool = False  # start from the teacher's embeddings and every other layer (DistilBERT)
    init_embeddings_from_teacher: bool = False  # a narrower student's embeddings: the teacher's, PCA-projected
    prune_vocab: int | None = None  # keep only this many of the teacher's tokens (those the rows use most): a
    # teacher-wide student then fits in far fewer parameters (distill.vocab); None: the whole vocabulary
    prune_ffn: int | None = None  # with init_from_teacher: keep this many feed-forward neurons per layer, those
    # that matter most to the task (distill.ffn): half of MiniLM's 1,536 lets 3 teacher layers fit where 2 did
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # variants of the training sentences (TinyBERT)
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    # --- data
    text_column: str | None = None  # None: the teacher's (finetune.json), else "text" or "sentence"
    text_pair_column: str | None = None
    label_column: str | None = None  # None: the teacher's, else "label"
    max_length: int = 128
    max_train_examples: int | None = None  # a random subset (fixed by `seed`) of the labelled training file
    max_unlabeled_examples: int | None = None  # the first N texts of each unlabelled file
    # --- optimisation (through the shared loop)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4  # a small student from random weights wants more than fine-tuning's 5e-5
    warmup_ratio: float = 0.06  # of all optimizer steps, as fine-tuning
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    dropout: float | None = None  # classifier dropout; None: the student's hidden_dropout_prob
    checkpoint_every: int | None = None  # steps; None: once per epoch
    seed: int = 0
    eval_batch_size: int = 128
    threads: int | None = None  # torch CPU threads; None: torch's default
    device: str = "auto"  # where the student trains (the teacher labels the rows on the CPU, once)
    precision: str = "fp32"  # the student's training: auto | fp32 | bf16 (train.precision; bf16 barely helps a
    # 128-wide student on a CPU: its step time is not in its matmuls)
    teacher_precision: str = "auto"  # the teacher's labelling pass: auto = bf16 where the CPU (or GPU) does bf16
    # matmuls natively (2.26x faster on a shared AMX Xeon, same labels; docs/distill.md), else fp32
    teacher_logits_cache: str | None = None  # a .safetensors file: reuse the teacher's logits when the teacher,
    # the rows and the precision are the same as when it was written (else label again and replace it)
    progress: bool = True

    def __post_init__(self):
        check_fields(self, {"epochs": ">= 1", "batch_size": ">= 1", "lr": "> 0", "max_length": ">= 2",
                            "max_train_examples": ">= 1", "max_unlabeled_examples": ">= 1", "threads": ">= 1",
                            "prune_vocab": ">= 1", "prune_ffn": ">= 1"},
                     {"precision": list(PRECISIONS), "teacher_precision": list(PRECISIONS)})
        self.augment.check()


def labelling_bf16(precision: str) -> bool:
    """Whether the teacher (on the CPU) labels under bf16 autocast: `auto` means where the CPU does bf16 matmuls."""
    return cpu_has_bf16() if precision == "auto" else use_bf16(precision, torch.device("cpu"))


def _subset(data: LabelledData, n: int | None, seed: int) -> LabelledData:
    if n is None or n >= len(data):
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    return LabelledData([data.texts[i] for i in keep], [data.labels[i] for i in keep],
                        [data.text_pairs[i] for i in keep] if data.text_pairs else None, None, [], data.source)


def load_teacher(teacher_dir):
    """(teacher, tokenizer, LabelMap, its FinetuneConfig); refuses anything but a text classifier directory."""
    teacher_dir = Path(teacher_dir)
    if (teacher_dir / TABULAR_FILE).is_file():
        raise NanobertError(f"{teacher_dir} is a text + tabular classifier; distillation takes text classifiers only")
    if BertConfig.from_pretrained(teacher_dir).id2label is None:
        raise NanobertError(f"{teacher_dir}/config.json has no id2label: the teacher must be a fine-tuned classifier "
                            "(a directory written by 'nanobert finetune')")
    teacher, tokenizer, ft_cfg = load_classifier(teacher_dir)
    return teacher.eval(), tokenizer, LabelMap.from_config(teacher.config.id2label), ft_cfg


def _check_labels(data: LabelledData, labels: LabelMap, what: str) -> None:
    unknown = sorted({str(v) for v in data.labels} - set(labels.names))
    if unknown:
        raise NanobertError(f"{data.source}: {what} labels {unknown} are not among the teacher's labels "
                            f"{labels.names}; distil on data labelled like the teacher's")


def distill(teacher_dir, train_file, validation_file, out_dir, cfg: DistillConfig | None = None,
            unlabeled=(), resume: bool = False, callbacks=()) -> dict:
    """Train a student of `cfg.student` on the teacher in `teacher_dir`; write `out_dir`; return metrics.json's dict."""
    cfg = cfg or DistillConfig()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _distill(Path(teacher_dir), train_file, validation_file, Path(out_dir), cfg, list(unlabeled),
                        resume, callbacks)
    finally:
        torch.set_num_threads(threads)


def _distill(teacher_dir: Path, train_file, validation_file, out: Path, cfg: DistillConfig, unlabeled: list,
             resume: bool, callbacks) -> dict:
    if not 0.0 <= cfg.loss.alpha <= 1.0 or cfg.loss.temperature <= 0:
        raise NanobertError(f"alpha must lie in [0, 1] and temperature be positive (got {cfg.loss.alpha}, "
                            f"{cfg.loss.temperature})")
    teacher, t_tok, labels, t_cfg = load_teacher(teacher_dir)
    columns = FinetuneConfig(text_column=cfg.text_column or t_cfg.text_column,
                             text_pair_column=cfg.text_pair_column or t_cfg.text_pair_column,
                             label_column=cfg.label_column or t_cfg.label_column, max_length=cfg.max_length)
    train_data = _subset(read_split(train_file, columns), cfg.max_train_examples, cfg.seed)
    val_data = read_split(validation_file, columns)
    _check_labels(train_data, labels, "training")
    _check_labels(val_data, labels, "validation")
    texts = [read_texts(p, columns.text_column, cfg.max_unlabeled_examples) for p in unlabeled]

    torch.manual_seed(cfg.seed)  # the student's random weights and the projection
    student, s_tok = build_student(cfg.student, teacher, t_tok, labels, cfg.init_from_teacher, cfg.dropout,
                                   cfg.init_embeddings_from_teacher)
    same = same_tokenizer(s_tok, t_tok)
    if cfg.prune_vocab and not same:
        raise NanobertError("--prune-vocab cuts the teacher's vocabulary: give a preset, sizes or teacher:K as "
                            "--student (a student directory has its own tokenizer)")
    if cfg.prune_ffn:
        check_ffn_size(student, cfg.prune_ffn, cfg.init_from_teacher)
    # A pruned vocabulary still lines up with the teacher's: the teacher reads the student's tokens (teacher_ids).
    check_intermediate(student.config, teacher.config, cfg.loss, same)
    t0 = time.perf_counter()
    augmented = _augment(train_data, teacher, t_tok, cfg)
    texts += [augmented] if augmented else []
    augment_seconds = time.perf_counter() - t0

    # The teacher labels every row once (none when only the labels teach); the student reads the same rows
    # through its own tokenizer.
    t0 = time.perf_counter()
    t_rows = join(encode_labelled(train_data, t_tok, cfg.max_length, labels),
                  *(encode_texts(t, t_tok, cfg.max_length) for t in texts))
    if cfg.prune_vocab:
        student, s_tok = prune_vocabulary(student, s_tok, t_rows, cfg.prune_vocab)
    pruned = bool(cfg.prune_vocab) and s_tok is not t_tok
    s_rows = t_rows if same and not pruned else join(encode_labelled(train_data, s_tok, cfg.max_length, labels),
                                                     *(encode_texts(t, s_tok, cfg.max_length) for t in texts))
    if cfg.prune_ffn:
        shrink_ffn(student, s_rows, cfg.prune_ffn, s_tok.pad_token_id, cfg.seed)
    model = DistillModel(student, teacher, cfg.loss, teacher_ids(s_tok, t_tok) if pruned else None)
    skip = cfg.loss.alpha == 0 and not texts and not cfg.loss.intermediate  # alpha 0: the soft loss has no weight
    bf16 = labelling_bf16(cfg.teacher_precision)
    soft, cached = (torch.zeros(len(t_rows), len(labels)), False) if skip else cached_logits(
        cfg.teacher_logits_cache, logits_key(teacher_dir, t_rows, bf16) if cfg.teacher_logits_cache else "",
        lambda: teacher_logits(teacher, t_rows, t_tok.pad_token_id, cfg.eval_batch_size, bf16))
    teacher_val, labelling_val = _score_teacher(teacher, t_tok, val_data, labels, cfg, bf16)
    teacher_seconds = time.perf_counter() - t0
    log.info("teacher: %d rows labelled (%d unlabelled) in %.0f s (%s); validation accuracy %.4f (%.4f as it "
             "labelled)", 0 if skip or cached else len(t_rows), len(t_rows) - len(train_data), teacher_seconds,
             "bf16" if bf16 else "fp32", teacher_val["accuracy"], labelling_val["accuracy"])

    val = encode_labelled(val_data, s_tok, cfg.max_length, labels)
    val_batches = sorted_batches(val, cfg.eval_batch_size, s_tok.pad_token_id)
    batches = distill_batches(s_rows, soft, cfg.batch_size, s_tok.pad_token_id, cfg.seed)
    per_epoch = batches.steps_per_epoch
    steps = per_epoch * cfg.epochs
    loop = LoopConfig(max_steps=steps, lr=cfg.lr, min_lr=0.0, warmup_steps=int(cfg.warmup_ratio * steps),
                      schedule="linear", weight_decay=cfg.weight_decay, beta2=0.999, eps=1e-8,
                      grad_clip=cfg.max_grad_norm, eval_every=per_epoch,
                      checkpoint_every=cfg.checkpoint_every or per_epoch, log_every=max(1, min(50, per_epoch)),
                      precision=cfg.precision, device=cfg.device, progress=cfg.progress, tensorboard=False)
    params = (sum(p.numel() for p in student.parameters()), sum(p.numel() for p in teacher.parameters()))
    log.info("student %s: %s parameters (teacher %s, %.1f%%); %d steps", cfg.student, f"{params[0]:,}",
             f"{params[1]:,}", 100 * params[0] / params[1], steps)
    t1 = time.perf_counter()
    state = train(model, batches, loop, out / RUN_DIR, eval_data=lambda: val_batches, resume=resume,
                  callbacks=callbacks, run_config={"distill": to_dict(cfg)})
    seconds = time.perf_counter() - t1

    student.cpu().eval()
    final = evaluate_logits(predict_logits(student, val, s_tok.pad_token_id, cfg.eval_batch_size), val.labels,
                            labels.names)
    report = {"split": "validation", **final, "teacher_accuracy": teacher_val["accuracy"],
              "teacher_loss": teacher_val["loss"], "student_params": params[0], "teacher_params": params[1],
              "param_ratio": params[0] / params[1], "steps": state.step, "train_time_s": seconds,
              "teacher_time_s": teacher_seconds, "augment_time_s": augment_seconds,
              "train_examples": len(train_data), "unlabeled_examples": len(t_rows) - len(train_data),
              "augmented_examples": len(augmented), "teacher_labelling_accuracy": labelling_val["accuracy"],
              "teacher_labelling_bf16": bf16, "teacher_logits_cached": cached, "student": cfg.student,
              "options": {"temperature": cfg.loss.temperature, "alpha": cfg.loss.alpha, "hidden": cfg.loss.hidden,
                          "attention": cfg.loss.attention, "init_from_teacher": cfg.init_from_teacher,
                          "init_embeddings_from_teacher": cfg.init_embeddings_from_teacher,
                          "prune_vocab": cfg.prune_vocab, "prune_ffn": cfg.prune_ffn,
                          "augment": to_dict(cfg.augment), "precision": cfg.precision}}
    sources = {"teacher": str(teacher_dir), "train": str(train_file), "validation": str(validation_file),
               "unlabeled": [str(p) for p in unlabeled]}
    _save(out, student, s_tok, report, final, columns, cfg, sources)
    log.info("student validation accuracy %.4f (teacher %.4f) after %d steps, %.0f s", final["accuracy"],
             teacher_val["accuracy"], state.step, seconds)
    return report


def _score_teacher(teacher, tokenizer, val_data: LabelledData, labels: LabelMap, cfg: DistillConfig,
                   bf16: bool) -> tuple[dict, dict]:
    """The teacher's validation metrics in fp32, and as it labelled the rows (under bf16 autocast or not)."""
    rows = encode_labelled(val_data, tokenizer, cfg.max_length, labels)
    fp32 = evaluate_logits(predict_logits(teacher, rows, tokenizer.pad_token_id, cfg.eval_batch_size), rows.labels,
                           labels.names)
    if not bf16:
        return fp32, fp32
    return fp32, evaluate_logits(teacher_logits(teacher, rows, tokenizer.pad_token_id, cfg.eval_batch_size, True),
                                 rows.labels, labels.names)


def _augment(train_data: LabelledData, teacher, tokenizer, cfg: DistillConfig) -> list[str]:
    """TinyBERT-style variants of the training sentences (distill.augment), from the teacher's word embeddings."""
    if not cfg.augment.n:
        return []
    if train_data.text_pairs:
        raise NanobertError("--augment varies single sentences; this training file has text pairs: drop --augment")
    vocab = getattr(tokenizer, "vocab", None)
    if not isinstance(vocab, dict):
        raise NanobertError("--augment needs a WordPiece teacher tokenizer (a vocab.txt of whole words)")
    lowercase = getattr(getattr(tokenizer, "normalizer", None), "lowercase", True)
    table = neighbour_table(vocab, teacher.bert.embeddings.word_embeddings.weight,
                            words_of(train_data.texts, lowercase), cfg.augment.k)
    return augment_texts(train_data.texts, table, cfg.augment, cfg.seed, lowercase, cfg.progress)


def _save(out: Path, student, tokenizer, report: dict, final: dict, columns: FinetuneConfig, cfg: DistillConfig,
          sources: dict) -> None:
    """The student as fine-tuning writes a classifier, plus distill.json; each file replaced atomically."""
    student.save_pretrained(out, tokenizer=tokenizer)
    write_json(out / SETTINGS_FILE, {"base_model": sources["teacher"], **to_dict(dataclasses.replace(
        columns, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed))})
    write_json(out / CONFIG_FILE, {**sources, **to_dict(cfg)})
    write_json(out / "metrics.json", report)
    write_text(out / "classification_report.txt", format_report(final))
