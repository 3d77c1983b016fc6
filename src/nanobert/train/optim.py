"""AdamW the way BERT and GPT are trained: weight decay only on matrices, fused kernels when available.

Biases, LayerNorm weights and other 1-D parameters are not decayed: shrinking them towards zero
only hurts (a LayerNorm gain of 0 switches its features off). Embedding tables and Linear
weights (>= 2-D) are decayed.
"""

from __future__ import annotations

import inspect
import logging

import torch

log = logging.getLogger(__name__)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: >= 2-D trainable parameters with `weight_decay`, the rest with 0.

    Parameters shared between modules (tied embeddings) appear once.
    Example: Linear(4, 3) -> [{"params": [weight], "weight_decay": wd}, {"params": [bias], "weight_decay": 0.0}].
    """
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.01,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`; `fused=None` uses the fused kernel where torch has one.

    The fused kernel updates every parameter in one pass instead of a dozen small ops per
    tensor, which matters for small models whose step time is dominated by per-tensor overhead.
    """
    groups = param_groups(model, weight_decay)
    kwargs = dict(lr=lr, betas=tuple(betas), eps=eps)
    if fused is None:
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError) as e:  # device or dtype without a fused kernel
            log.debug("fused AdamW unavailable (%s); using the foreach implementation", e)
    return torch.optim.AdamW(groups, **kwargs)
