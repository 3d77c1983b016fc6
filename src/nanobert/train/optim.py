"""AdamW the way BERT and GPT are trained: weight decay only on matrices, fused kernels when available.

Biases, LayerNorm weights and other 1-D parameters are not decayed: shrinking them towards zero
only hurts (a LayerNorm gain of 0 switches its features off). Embedding tables and Linear
weights (>= 2-D) are decayed.

Some parameters may learn faster than the rest: `lr_scales={"lora_B": 16}` gives every parameter
whose name has a `lora_B` part 16 times the learning rate (LoRA+). Each group carries its
`lr_scale`; a schedule sets `group["lr"] = lr * group["lr_scale"]`.
"""

from __future__ import annotations

import inspect
import logging

import torch

log = logging.getLogger(__name__)


def param_groups(model: torch.nn.Module, weight_decay: float, lr_scales: dict[str, float] | None = None) -> list[dict]:
    """AdamW groups: >= 2-D trainable parameters with `weight_decay`, the rest with 0, each split by `lr_scales`.

    Parameters shared between modules (tied embeddings) appear once; empty groups are left out.
    Example: Linear(4, 3) -> [{"params": [weight], "weight_decay": wd, "lr_scale": 1.0},
                              {"params": [bias], "weight_decay": 0.0, "lr_scale": 1.0}].
    """
    lr_scales = lr_scales or {}
    groups: dict[tuple[bool, float], list] = {}
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        parts = name.split(".")
        scale = next((float(v) for k, v in lr_scales.items() if k in parts), 1.0)
        groups.setdefault((p.dim() >= 2, scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.01,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                   fused: bool | None = None, lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay, lr_scales)`; `fused=None` uses the fused kernel where torch has one.

    The fused kernel updates every parameter in one pass instead of a dozen small ops per
    tensor, which matters for small models whose step time is dominated by per-tensor overhead.
    """
    groups = param_groups(model, weight_decay, lr_scales)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    kwargs = dict(lr=lr, betas=tuple(betas), eps=eps)
    if fused is None:
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError) as e:  # device or dtype without a fused kernel
            log.debug("fused AdamW unavailable (%s); using the foreach implementation", e)
    return torch.optim.AdamW(groups, **kwargs)
