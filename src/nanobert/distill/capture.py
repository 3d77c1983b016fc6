"""Read a BERT's per-layer hidden states and attention maps during its forward, without changing its code.

    with Capture(model, hidden=True, attention=True) as cap:
        logits, _ = model(input_ids, attention_mask)
    cap.hidden[i]      # (B, T, H) output of encoder layer i
    cap.attention[i]   # (B, nh, T, T) softmax(q kᵀ / √d + mask) of layer i

Forward hooks sit on each `encoder.layer[i]` (its output is the hidden state) and on each
`encoder.layer[i].attention.self` (its input x and mask give q = query(x), k = key(x), and the
attention probabilities are recomputed from them: the fused kernel never materialises them). The
recomputation costs one extra pair of projections per layer, on the layers asked for only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def init_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layers a student starts from, evenly spread from the first (DistilBERT takes every other one).

    Example: init_layers(6, 3) -> [0, 2, 4]; init_layers(12, 4) -> [0, 3, 6, 9].
    """
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer each student layer learns from, evenly spread and ending on the last (TinyBERT's uniform map).

    Example: layer_map(6, 3) -> [1, 3, 5]; layer_map(6, 2) -> [2, 5]; layer_map(4, 4) -> [0, 1, 2, 3].
    """
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def encoder_layers(model: torch.nn.Module):
    """The `encoder.layer` ModuleList of a BERT classifier or encoder."""
    bert = getattr(model, "bert", model)
    return bert.encoder.layer


def attention_probs(module: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ / √d + mask) of a SelfAttention `module` on its input x (B, T, H): (B, nh, T, T)."""
    B, T, _ = x.shape
    nh, hs = module.num_heads, module.head_dim
    q = module.query(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = module.key(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)  # (B, nh, T, T)
    if mask is not None:
        scores = scores + mask  # (B, 1, 1, T) additive bias on padded keys
    return F.softmax(scores.float(), dim=-1)


class Capture:
    """Context manager that records hidden states and/or attention maps of the layers in `layers` (default all)."""

    def __init__(self, model: torch.nn.Module, hidden: bool = False, attention: bool = False,
                 layers: list[int] | None = None):
        self.model, self.want_hidden, self.want_attention = model, hidden, attention
        n = len(encoder_layers(model))
        self.layers = list(range(n)) if layers is None else list(layers)
        self.hidden: dict[int, torch.Tensor] = {}
        self.attention: dict[int, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> "Capture":
        self.hidden.clear()
        self.attention.clear()
        stack = encoder_layers(self.model)
        for i in self.layers:
            if self.want_hidden:
                self._handles.append(stack[i].register_forward_hook(self._keep_hidden(i)))
            if self.want_attention:
                self._handles.append(stack[i].attention.self.register_forward_hook(self._keep_attention(i),
                                                                                   with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _keep_hidden(self, i: int):
        def hook(module, args, output):
            self.hidden[i] = output
        return hook

    def _keep_attention(self, i: int):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs["x"]
            mask = args[1] if len(args) > 1 else kwargs.get("mask")
            self.attention[i] = attention_probs(module, x, mask)
        return hook
