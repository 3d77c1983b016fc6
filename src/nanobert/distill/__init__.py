"""Task distillation: a small classifier trained on a fine-tuned teacher's softened predictions."""

from nanobert.distill.augment import AugmentConfig
from nanobert.distill.losses import attention_loss, hidden_loss, kd_loss, soft_loss
from nanobert.distill.run import DistillConfig, distill
from nanobert.distill.student import DistillLossConfig, DistillModel, build_student

__all__ = ["AugmentConfig", "DistillConfig", "DistillLossConfig", "DistillModel", "attention_loss", "build_student",
           "distill", "hidden_loss", "kd_loss", "soft_loss"]
