"""The distillation losses: the teacher's softened class distribution, hidden states and attention maps.

    soft = kd_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5)

Task distillation (Hinton et al., 2015): the student matches the teacher's class distribution at
temperature T, softmax(z / T); the KL divergence is scaled by T² so that its gradients keep the
size of the hard-label loss's whatever T is. A labelled row mixes it with cross-entropy on the
label, `alpha * soft + (1 - alpha) * hard`; an unlabelled row (label -100) has only the soft part,
which then carries the whole row (the teacher is all it learns from). The batch loss is the mean
over rows.

Intermediate layers (TinyBERT, Jiao et al., 2020): the student's hidden states, through a learned
linear projection when the widths differ, match the teacher's by mean squared error over real
(unpadded) tokens; its attention maps match the teacher's by mean squared error over real query
and key positions, head by head (both models must then have as many heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of an unlabelled row, as elsewhere in nanobert


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row T² · KL(teacher_T || student_T): (B, K), (B, K) -> (B,).

    Example: equal logits -> 0; teacher [0, 0], student [ln 3, 0], T=1 -> 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.1438.
    """
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, K)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, K)
    return (t.exp() * (t - s)).sum(-1) * temperature ** 2  # (B,)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """Mean over rows of `alpha * soft + (1 - alpha) * CE(label)`, or `soft` alone where the label is -100 or absent."""
    soft = soft_loss(student_logits, teacher_logits, temperature)  # (B,)
    if labels is None or alpha >= 1.0:
        return soft.mean()
    labelled = labels != IGNORE  # (B,)
    hard = F.cross_entropy(student_logits.float(), labels.clamp(min=0), reduction="none")  # (B,)
    row = torch.where(labelled, alpha * soft + (1.0 - alpha) * hard, soft)
    return row.mean()


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """MSE between (B, T, H) hidden states (already projected to the same width), over tokens where mask (B, T) is 1."""
    err = (student.float() - teacher.float()).pow(2).mean(-1)  # (B, T)
    if mask is None:
        return err.mean()
    keep = mask.to(err.dtype)
    return (err * keep).sum() / keep.sum().clamp(min=1.0)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """MSE between (B, nh, T, T) attention probabilities, over real query and key positions (mask (B, T))."""
    err = (student.float() - teacher.float()).pow(2)  # (B, nh, T, T)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    pair = m[:, None, :, None] * m[:, None, None, :]  # (B, 1, T, T)
    return (err * pair).sum() / (pair.sum() * err.shape[1]).clamp(min=1.0)
