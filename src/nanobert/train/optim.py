"""AdamW the way BERT and GPT are trained: weight decay only on matrices, fused kernels when available.

Biases, LayerNorm weights and other 1-D parameters are not decayed: shrinking them towards zero
only hurts (a LayerNorm gain of 0 switches its features off). Embedding tables and Linear
weights (>= 2-D) are decayed.

Some parameters may learn faster than the rest: `lr_scales={"lora_B": 16}` gives every parameter
whose name has a `lora_B` part 16 times the learning rate (LoRA+). A key of several parts matches
those parts in a row ("encoder.layer.1" matches `bert.encoder.layer.1.output.dense.weight`, not
`...layer.10...`); a parameter matched by several keys gets the product of their scales, so layer-wise
decay (`layer_decay_scales`) and LoRA+ combine. Each group carries its `lr_scale`; a schedule sets
`group["lr"] = lr * group["lr_scale"]`.
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
        dotted = f".{name}."
        scale = 1.0
        for key, value in lr_scales.items():
            if f".{key}." in dotted:
                scale *= float(value)
        groups.setdefault((p.dim() >= 2, scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]


def layer_decay_scales(num_layers: int, decay: float) -> dict[str, float]:
    """`lr_scales` for layer-wise learning-rate decay: each layer learns `decay` times as fast as the one above it.

    The top encoder layer gets `decay`, layer i `decay ** (num_layers - i)`, the embeddings
    `decay ** (num_layers + 1)`; the rest (pooler, classifier, tabular head) the full rate. Fine-tuning
    a pretrained encoder this way (ELECTRA's and DeBERTa's recipes, 0.8 for 12 layers) changes what
    pretraining put in the lower layers least. decay = 1: every scale 1 (plain fine-tuning).
    Example: layer_decay_scales(2, 0.5) -> {"embeddings": 0.125, "encoder.layer.0": 0.25, "encoder.layer.1": 0.5}.
    """
    scales = {"embeddings": decay ** (num_layers + 1)}
    scales.update({f"encoder.layer.{i}": decay ** (num_layers - i) for i in range(num_layers)})
    return scales


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
