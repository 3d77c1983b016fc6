"""The student: built from a preset, a directory or the teacher's own layers; and the module the loop trains.

    student, tokenizer = build_student("small", teacher, teacher_tokenizer, labels)   # L4/H256, random weights
    student, tokenizer = build_student("teacher:3", teacher, ..., init_from_teacher=True)  # DistilBERT-style
    model = DistillModel(student, teacher, DistillLossConfig(temperature=2.0, alpha=0.5, hidden=1.0))
    logits, loss = model(**batch)      # batch: input_ids, attention_mask, token_type_ids, labels, teacher_logits

A student spec is a preset name (`model.config.PRESETS`: mini = L2/H128, small = L4/H256, ...) sized
to the teacher's vocabulary and tokenizer; `teacher:K`, the teacher's own shape with K layers; or a
model directory (its own tokenizer; a new classifier head when it has none, as fine-tuning makes).
`init_from_teacher` copies the teacher's embeddings, pooler, classifier and every other layer
(`capture.init_layers`) into a student of the teacher's width.

`DistillModel` is what `train.loop.train` sees: in training its forward returns the distillation loss
(`losses.kd_loss`, plus the intermediate-layer losses it was asked for); in eval mode the student's own
logits and cross-entropy, so the loop's validation pass scores the student as it will be used. The
teacher is held outside the module tree: it is frozen, and neither checkpointed nor optimised.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nanobert.data.tables import LabelMap
from nanobert.distill.capture import Capture, init_layers, layer_map
from nanobert.distill.losses import attention_loss, hidden_loss, kd_loss
from nanobert.errors import NanobertError
from nanobert.model.bert import BertForSequenceClassification
from nanobert.model.config import PRESETS, BertConfig
from nanobert.tasks.finetune import FinetuneConfig, build_classifier
from nanobert.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

_TEACHER_SHAPE = re.compile(r"^teacher:(\d+)$")
_SIZES = re.compile(r"^L(\d+)/H(\d+)(?:/A(\d+))?$")  # L4/H128: 4 layers, 128 wide, H/64 heads unless /A says


@dataclass
class DistillLossConfig:
    temperature: float = 2.0  # softens the teacher's distribution so its "dark knowledge" (runner-up classes) shows
    alpha: float = 0.5  # weight of the soft (teacher) loss on labelled rows; 1 - alpha goes to the hard labels
    hidden: float = 0.0  # weight of the hidden-state MSE (TinyBERT); 0: off
    attention: float = 0.0  # weight of the attention-map MSE (TinyBERT); 0: off

    @property
    def intermediate(self) -> bool:
        return self.hidden > 0 or self.attention > 0


def same_tokenizer(a, b) -> bool:
    """True when two tokenizers turn every text into the same ids (same class, vocabulary and settings)."""
    if type(a) is not type(b) or a.vocab != b.vocab:
        return False
    ca, cb = dict(a.config()), dict(b.config())
    ca.pop("model_max_length", None)
    cb.pop("model_max_length", None)
    return ca == cb


def _head_overrides(labels: LabelMap) -> dict:
    return dict(num_labels=len(labels), id2label=labels.id2label, label2id=labels.label2id)


def student_config(spec: str, teacher_cfg: BertConfig, labels: LabelMap) -> BertConfig | None:
    """The BertConfig of a preset or `teacher:K` spec (None for a directory)."""
    m = _TEACHER_SHAPE.match(spec)
    if m:
        k = int(m.group(1))
        if not 1 <= k <= teacher_cfg.num_hidden_layers:
            raise NanobertError(f"student {spec!r}: the teacher has {teacher_cfg.num_hidden_layers} layers; "
                                f"ask for 1 to {teacher_cfg.num_hidden_layers}")
        d = {**teacher_cfg.to_dict(), "num_hidden_layers": k, **_head_overrides(labels)}
        return BertConfig.from_dict(d, strict=False)
    sizes = _SIZES.match(spec)
    if spec in PRESETS or sizes:
        t = teacher_cfg
        shape = {}
        if sizes:
            layers, width = int(sizes.group(1)), int(sizes.group(2))
            heads = int(sizes.group(3) or max(1, width // 64))
            if not (layers >= 1 and width >= 1 and width % heads == 0):
                raise NanobertError(f"student {spec!r}: needs at least one layer and a width divisible by the heads")
            shape = dict(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads,
                         intermediate_size=4 * width)
        return BertConfig.from_preset(spec if spec in PRESETS else "mini", vocab_size=t.vocab_size,
                                      max_position_embeddings=t.max_position_embeddings,
                                      type_vocab_size=t.type_vocab_size, pad_token_id=t.pad_token_id,
                                      layer_norm_eps=t.layer_norm_eps, hidden_act=t.hidden_act,
                                      **shape, **_head_overrides(labels))
    if Path(spec).is_dir():
        return None
    raise NanobertError(f"student {spec!r} is neither a model directory, a preset ({', '.join(PRESETS)}), "
                        "sizes such as L4/H128 (layers/width, optionally /A2 heads) nor teacher:K "
                        "(the teacher's shape with K layers)")


def copy_teacher_layers(student: nn.Module, teacher: nn.Module) -> list[int]:
    """Load the teacher's embeddings, pooler, classifier and evenly spread layers into `student`; returns the layers."""
    s_layers, t_layers = student.config.num_hidden_layers, teacher.config.num_hidden_layers
    picked = init_layers(t_layers, s_layers)
    source = teacher.state_dict()
    state = {}
    for key, value in student.state_dict().items():
        m = re.match(r"^bert\.encoder\.layer\.(\d+)\.(.*)$", key)
        src = f"bert.encoder.layer.{picked[int(m.group(1))]}.{m.group(2)}" if m else key
        if src not in source or source[src].shape != value.shape:
            raise NanobertError(f"--init-from-teacher needs the teacher's width: {key} is {tuple(value.shape)} in the "
                                f"student but {tuple(source[src].shape) if src in source else 'absent'} in the teacher; "
                                "use a teacher:K student or drop --init-from-teacher")
        state[key] = source[src].clone()
    student.load_state_dict(state)
    return picked


@torch.no_grad()
def project_teacher_embeddings(student: nn.Module, teacher: nn.Module) -> float:
    """Start the student's embedding tables from the teacher's, projected onto the word embeddings' top principal axes.

    With E (V, H_t) the teacher's word embeddings, m their mean and P (H_t, H_s) the top H_s right singular
    vectors of E - m: words <- (E - m) P, positions <- positions P, token types <- (types + m) P, so that
    every token's summed embedding is the teacher's, projected: (word + position + type) P - nothing of it
    but what the narrower student cannot hold is lost. Returns the share of the word embeddings' variance kept.
    """
    s_emb, t_emb = student.bert.embeddings, teacher.bert.embeddings
    hs, ht = student.config.hidden_size, teacher.config.hidden_size
    if hs > ht or s_emb.word_embeddings.weight.shape[0] != t_emb.word_embeddings.weight.shape[0]:
        raise NanobertError(f"--init-embeddings-from-teacher needs the teacher's vocabulary and a width of at most "
                            f"the teacher's {ht} (the student is {hs} wide with "
                            f"{s_emb.word_embeddings.weight.shape[0]} tokens)")
    words = t_emb.word_embeddings.weight.float()  # (V, H_t)
    mean = words.mean(0)
    _, sing, vh = torch.linalg.svd(words - mean, full_matrices=False)  # vh: (H_t, H_t), rows = principal axes
    proj = vh[:hs].T  # (H_t, H_s)
    s_emb.word_embeddings.weight.copy_((words - mean) @ proj)
    s_emb.token_type_embeddings.weight.copy_((t_emb.token_type_embeddings.weight + mean) @ proj)
    if hasattr(s_emb, "position_embeddings") and hasattr(t_emb, "position_embeddings"):
        n = s_emb.position_embeddings.weight.shape[0]
        s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:n] @ proj)
    return float((sing[:hs] ** 2).sum() / (sing ** 2).sum())


def build_student(spec: str, teacher: nn.Module, teacher_tokenizer, labels: LabelMap,
                  init_from_teacher: bool = False, dropout: float | None = None,
                  init_embeddings_from_teacher: bool = False):
    """(student classifier, its tokenizer) for `spec` (see the module docstring), in train mode."""
    if init_from_teacher and init_embeddings_from_teacher:
        raise NanobertError("--init-from-teacher already copies the teacher's embeddings; drop "
                            "--init-embeddings-from-teacher (it is for students narrower than the teacher)")
    cfg = student_config(spec, teacher.config, labels)
    if cfg is None:
        if init_from_teacher or init_embeddings_from_teacher:
            raise NanobertError("--init-from-teacher and --init-embeddings-from-teacher build the student from the "
                                "teacher: give a preset, L4/H128-style sizes or teacher:K as --student, not a "
                                "directory")
        student = build_classifier(spec, labels, FinetuneConfig(classifier_dropout=dropout), None)
        tokenizer = load_tokenizer(spec)
    else:
        if dropout is not None:
            cfg.classifier_dropout = dropout
        student = BertForSequenceClassification(cfg)
        tokenizer = teacher_tokenizer
        if init_from_teacher:
            picked = copy_teacher_layers(student, teacher)
            log.info("student initialised from the teacher's layers %s", picked)
        if init_embeddings_from_teacher:
            kept = project_teacher_embeddings(student, teacher)
            log.info("student embeddings: the teacher's, projected to %d dims (%.1f%% of the word embeddings' "
                     "variance)", cfg.hidden_size, 100 * kept)
    return student.train(), tokenizer


def check_intermediate(student_cfg: BertConfig, teacher_cfg: BertConfig, loss: DistillLossConfig,
                       same_tok: bool) -> None:
    """Refuse intermediate-layer losses the two models cannot share, before any work."""
    if not loss.intermediate:
        return
    if not same_tok:
        raise NanobertError("--hidden-loss/--attention-loss compare the two models token by token, but the student's "
                            "tokenizer differs from the teacher's; use a preset or teacher:K student (they take the "
                            "teacher's tokenizer) or distill the logits only")
    if student_cfg.num_hidden_layers > teacher_cfg.num_hidden_layers:
        raise NanobertError(f"the student has more layers ({student_cfg.num_hidden_layers}) than the teacher "
                            f"({teacher_cfg.num_hidden_layers}); intermediate losses need a shallower student")
    if loss.attention > 0 and student_cfg.num_attention_heads != teacher_cfg.num_attention_heads:
        raise NanobertError(f"--attention-loss compares heads one to one: the student has "
                            f"{student_cfg.num_attention_heads} heads, the teacher {teacher_cfg.num_attention_heads}; "
                            "pick a student with as many heads or drop --attention-loss")


class DistillModel(nn.Module):
    """The student plus what the distillation loss needs (a hidden-state projection); forward -> (logits, loss)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, loss: DistillLossConfig,
                 teacher_ids: torch.Tensor | None = None):
        super().__init__()
        self.student = student
        self.loss_cfg = loss
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not a submodule
        self.layer_map = layer_map(teacher.config.num_hidden_layers, student.config.num_hidden_layers)
        hs, ht = student.config.hidden_size, teacher.config.hidden_size
        # One projection shared by all layers (TinyBERT's W_h); none when the widths agree.
        self.proj = nn.Linear(hs, ht) if loss.hidden > 0 and hs != ht else None
        # A pruned student's token ids, mapped to the teacher's (vocab.teacher_ids): the teacher reads the same
        # tokens, so the layers line up position by position. Not saved: rebuilt from the tokenizers.
        self.register_buffer("teacher_ids", teacher_ids, persistent=False)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, teacher_logits=None):
        if not self.training or teacher_logits is None:
            return self.student(input_ids, attention_mask, token_type_ids, labels=labels)
        cfg = self.loss_cfg
        with Capture(self.student, hidden=cfg.hidden > 0, attention=cfg.attention > 0) as s:
            logits, _ = self.student(input_ids, attention_mask, token_type_ids)  # (B, K)
        loss = kd_loss(logits, teacher_logits, labels, cfg.temperature, cfg.alpha)
        if not cfg.intermediate:
            return logits, loss
        teacher = self.teacher
        if next(teacher.parameters()).device != input_ids.device:
            teacher.to(input_ids.device)
        with torch.no_grad(), Capture(teacher, hidden=cfg.hidden > 0, attention=cfg.attention > 0,
                                      layers=sorted(set(self.layer_map))) as t:
            teacher(input_ids if self.teacher_ids is None else self.teacher_ids[input_ids], attention_mask,
                    token_type_ids)
        for i, j in enumerate(self.layer_map):
            if cfg.hidden > 0:
                h = self.proj(s.hidden[i]) if self.proj is not None else s.hidden[i]  # (B, T, H_teacher)
                loss = loss + cfg.hidden * hidden_loss(h, t.hidden[j], attention_mask)
            if cfg.attention > 0:
                loss = loss + cfg.attention * attention_loss(s.attention[i], t.attention[j], attention_mask)
        return logits, loss
