"""Model FLOPs of a training step and the device's peak, for model FLOPs utilisation (MFU).

    fm = flop_model(model)                         # weights per token, per target, attention shape
    flops = fm.batch_flops(tokens=4096, targets=600, seq_len=128)
    mfu = flops / seconds / peak_flops(device, torch.bfloat16)

The count is the one of PaLM's appendix B and nanoGPT's `estimate_mfu`: a weight matrix costs
2 FLOPs per multiply-add in the forward pass and twice that in the backward pass (the gradients of
its input and of itself), so 6 FLOPs per weight per row it multiplies; attention adds
12 * layers * width * seq_len per token (QK^T and attention x V, forward and backward). Only
matrix products count: embeddings lookups, norms, softmax and biases are left out, as there.
"Model" FLOPs: what the model needs, not what the hardware did (no recomputation, no padding).

A masked LM that predicts only the masked positions (our `BertForMaskedLM` with labels: logits
(M, V)) runs its prediction head, including the tied (V, H) decoder, on those M rows only, so the
head's weights are counted per target, not per token (with 15% masking, a seventh of the cost
per token; the tied decoder alone is 23M of bert-base's 110M weights).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

log = logging.getLogger(__name__)

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, FLOP/s. The first name contained in
# torch.cuda.get_device_name() wins, so longer names come before their prefixes ("A100" before "A10").
GPU_PEAK_BF16 = [
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
    ("L4", 121e12), ("A10", 125e12), ("RTX 4090", 165e12), ("RTX 3090", 71e12),
]


@dataclass(frozen=True)
class FlopModel:
    """What a training step's model FLOPs depend on."""

    params_per_token: int  # weights of the matrix products every token goes through
    params_per_target: int = 0  # weights of those that only predicted positions go through (sparse MLM head)
    layers: int = 0  # attention layers (0: no attention term)
    width: int = 0  # attention width: heads * head size

    def batch_flops(self, tokens: int, targets: int, seq_len: int) -> float:
        """Forward + backward FLOPs of one batch. Example: FlopModel(100, 10, 2, 8).batch_flops(tokens=6,
        targets=2, seq_len=3) = 6*100*6 + 6*10*2 + 12*2*8*3*6 = 3600 + 120 + 3456 = 7176."""
        return (6.0 * self.params_per_token * tokens + 6.0 * self.params_per_target * targets
                + 12.0 * self.layers * self.width * seq_len * tokens)


def _linear_weights(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def flop_model(model: torch.nn.Module) -> FlopModel:
    """The FlopModel of a BERT or GPT (ours): nn.Linear weights per token, the sparse MLM head per target, the
    attention shape from `model.config`. Other models: their nn.Linear weights per token, no attention term.

    A classifier's pooler and classifier run once per sequence, not per token; they are counted per
    token all the same (under 1% of a BERT's weights)."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or 0
    width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or 0
    head = getattr(getattr(model, "cls", None), "predictions", None)  # BertForMaskedLM's head: sparse with labels
    if head is None:
        return FlopModel(_linear_weights(model), 0, layers, width)
    decoder = model.bert.embeddings.word_embeddings.weight.numel()  # the tied (V, H) vocabulary projection
    return FlopModel(_linear_weights(model) - _linear_weights(head), _linear_weights(head) + decoder, layers, width)


def _gpu_table_peak(name: str, dtype: torch.dtype) -> float | None:
    if dtype != torch.bfloat16:
        return None
    return next((peak for key, peak in GPU_PEAK_BF16 if key in name), None)


@lru_cache(maxsize=None)
def _measured_peak(device_type: str, index: int | None, dtype: torch.dtype, threads: int) -> float:
    """FLOP/s of a large square matmul in `dtype`, timed for ~0.25 s (a single call when one takes longer)."""
    device = torch.device(device_type, index) if index is not None else torch.device(device_type)
    n = 1024 if device_type == "cpu" else 8192
    g = torch.Generator().manual_seed(0)  # not the global generator: training's random draws stay as they were
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)

    def timed(repeats: int) -> float:
        if device_type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device_type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    first = timed(1)  # also the warm-up
    repeats = 0 if first > 0.25 else max(1, int(0.25 / max(first, 1e-6)))
    seconds = timed(repeats) / repeats if repeats else first
    return 2.0 * n ** 3 / seconds


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Peak FLOP/s of one device in `dtype`: a known GPU's data-sheet figure (bf16), else measured once per
    process by a timed matmul (CPUs, other GPUs, fp32). The measurement takes at most about half a second."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = _gpu_table_peak(name, dtype)
        if peak is not None:
            return peak
    peak = _measured_peak(device.type, device.index, dtype, torch.get_num_threads())
    log.debug("peak %s %s FLOP/s measured: %.3g", device, dtype, peak)
    return peak
