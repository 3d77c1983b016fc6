"""A narrower feed-forward block: each layer keeps the intermediate neurons that matter most to the task.

    scores = ffn_importance(student, batches)        # one (I,) tensor per layer
    prune_ffn(student, scores, size=768)             # intermediate_size 1536 -> 768, every layer

A layer of MiniLM spends two thirds of its parameters (and of its matmul work) on the feed-forward
block: 384 -> 1536 -> 384. Halving the 1,536 intermediate neurons lets three of the teacher's layers
fit where two whole ones did, at the same size and about the same cost per token.

Which neurons: the first-order (Taylor) estimate of how much the loss changes when one is removed
(Molchanov et al., 2019). Zeroing neuron j's activation a_j changes the loss by about -sum(a_j * dL/da_j)
over the tokens of a batch; its score is the absolute value of that sum, added up over the batches.
A neuron whose output weights are zero scores 0: nothing downstream reads it.

The pruned layer is an ordinary BERT layer with a smaller `intermediate_size` (the same in every layer,
as config.json has one number): the student still loads in transformers.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from nanobert.data.labelled import Encoded, sorted_batches
from nanobert.distill.capture import encoder_layers
from nanobert.errors import NanobertError

log = logging.getLogger(__name__)


def importance_batches(rows: Encoded, n: int, batch_size: int, pad_id: int, seed: int) -> list[dict]:
    """Batches of at most `n` labelled rows (a seeded random choice) to score the neurons on."""
    labelled = np.flatnonzero(rows.labels >= 0)
    if len(labelled) == 0:
        raise NanobertError("--prune-ffn scores neurons on the labelled training rows, and there are none")
    pick = np.sort(np.random.default_rng(seed).permutation(labelled)[:n])
    subset = Encoded([rows.input_ids[i] for i in pick], [rows.token_type_ids[i] for i in pick],
                     rows.labels[pick], None)
    return sorted_batches(subset, batch_size, pad_id)


def ffn_importance(model: nn.Module, batches: list[dict]) -> list[torch.Tensor]:
    """Per layer, (I,) Taylor scores |sum over a batch's tokens of a * dL/da|, summed over `batches` (eval mode)."""
    layers = encoder_layers(model)
    acts: dict[int, torch.Tensor] = {}

    def keep(i):
        def hook(module, args, output):
            output.retain_grad()
            acts[i] = output  # (B, T, I) after the activation
        return hook

    handles = [layer.intermediate.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    scores = [torch.zeros(layer.intermediate.dense.out_features) for layer in layers]
    was_training = model.training
    model.eval()  # no dropout: the same scores on every run
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            _, loss = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                            labels=batch["labels"])
            loss.backward()
            for i, a in acts.items():
                scores[i] += (a.detach() * a.grad).sum(dim=(0, 1)).abs().cpu()  # (I,)
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


@torch.no_grad()
def prune_ffn(model: nn.Module, scores: list[torch.Tensor], size: int) -> None:
    """Keep the `size` highest-scoring intermediate neurons of every layer (in their order); updates the config."""
    layers = encoder_layers(model)
    for layer, score in zip(layers, scores):
        keep = torch.topk(score, size).indices.sort().values  # (size,)
        up, down = layer.intermediate.dense, layer.output.dense  # (I, H) and (H, I) weights
        new_up = nn.Linear(up.in_features, size, bias=up.bias is not None)
        new_down = nn.Linear(size, down.out_features, bias=down.bias is not None)
        new_up.weight.copy_(up.weight[keep])
        new_down.weight.copy_(down.weight[:, keep])
        if up.bias is not None:
            new_up.bias.copy_(up.bias[keep])
        if down.bias is not None:
            new_down.bias.copy_(down.bias)
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    model.config.intermediate_size = size


def check_ffn_size(model: nn.Module, size: int, from_teacher: bool) -> None:
    """Refuse, before any work, a pruning that has no trained neurons to choose from or nothing to remove."""
    if not from_teacher:
        raise NanobertError("--prune-ffn keeps the teacher's most useful feed-forward neurons: add "
                            "--init-from-teacher (a student from random weights takes its size from --student)")
    current = model.config.intermediate_size
    if not 1 <= size < current:
        raise NanobertError(f"--prune-ffn {size}: the layers have {current} feed-forward neurons; keep between 1 "
                            f"and {current - 1} (half, {current // 2}, frees a third of each layer's parameters)")


def shrink_ffn(model: nn.Module, rows: Encoded, size: int, pad_id: int, seed: int, n_rows: int = 2048,
               batch_size: int = 32) -> None:
    """Score the neurons on up to `n_rows` labelled rows and keep `size` of them in every layer (in place)."""
    current = model.config.intermediate_size
    check_ffn_size(model, size, True)
    before = sum(p.numel() for p in model.parameters())
    scores = ffn_importance(model, importance_batches(rows, n_rows, batch_size, pad_id, seed))
    prune_ffn(model, scores, size)
    kept = [float(torch.topk(s, size).values.sum() / s.sum().clamp(min=1e-12)) for s in scores]
    log.info("feed-forward pruned to %d of %d neurons per layer (%s of each layer's importance kept); "
             "%s -> %s parameters", size, current, ", ".join(f"{100 * k:.0f}%" for k in kept), f"{before:,}",
             f"{sum(p.numel() for p in model.parameters()):,}")
