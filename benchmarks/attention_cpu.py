"""Attention on a CPU in bf16: PyTorch's fused SDPA kernel against the three ops written out.

`nanobert.model.layers.attend` runs `F.scaled_dot_product_attention` everywhere except bf16 tensors on
a CPU, where it writes attention out as matmul -> softmax (fp32) -> matmul. This script measures why,
in one run on this CPU, both ways alternately (benchmarks/_timing.py):

1. attention alone, forward + backward, at BERT-like shapes (batch, heads, length, head size);
2. a whole MLM training step (forward, backward, AdamW) of the mini and small models under bf16
   autocast, with the layer's attention switched between the two;

and prints each median time and the ratio (SDPA / written out: above 1 means writing it out wins),
with the largest difference between the two outputs. On a CPU without bf16 matmul instructions
(AVX-512 BF16 or AMX) bf16 is emulated and `precision = "auto"` picks fp32, where SDPA always runs.

    python benchmarks/attention_cpu.py                  # 2 threads
    python benchmarks/attention_cpu.py --threads 1 --repeats 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed_pair  # noqa: E402

import nanobert.model.layers as layers  # noqa: E402
from nanobert.model.bert import BertConfig, BertForMaskedLM  # noqa: E402
from nanobert.train.precision import cpu_has_bf16, cpu_name  # noqa: E402

SHAPES = [(128, 2, 32, 64), (64, 4, 64, 64), (32, 4, 128, 64), (16, 12, 128, 64)]  # (B, nh, T, hs)
STEPS = [("mini", 64, 32), ("small", 64, 64), ("small", 32, 128)]  # (preset, batch, length)
WRITTEN_OUT = layers.attend


def sdpa(q, k, v, mask=None, dropout_p=0.0, is_causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


def padding_bias(B: int, T: int) -> torch.Tensor:
    """(B, 1, 1, T) additive mask with the last fifth of every row padded, as a real batch has."""
    keep = torch.ones(B, T)
    keep[:, T - T // 5:] = 0
    return (1.0 - keep)[:, None, None, :] * torch.finfo(torch.float32).min


def attention_alone(B, nh, T, hs, repeats):
    q, k, v = (torch.randn(B, nh, T, hs).bfloat16().requires_grad_() for _ in range(3))
    bias = padding_bias(B, T)

    def run(fn):
        return lambda: fn(q, k, v, bias).float().sum().backward()

    ref = sdpa(q.float(), k.float(), v.float(), bias)
    err = [(fn(q, k, v, bias).float() - ref).abs().max().item() for fn in (sdpa, WRITTEN_OUT)]
    t_sdpa, t_out = timed_pair(run(sdpa), run(WRITTEN_OUT), repeats, warmup=2)
    return t_sdpa, t_out, err


def training_step(preset, B, T, repeats):
    cfg = BertConfig.from_preset(preset, vocab_size=8192, max_position_embeddings=T,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, 8192, (B, T))
    mask = torch.ones_like(ids)
    mask[:, T - T // 5:] = 0
    labels = torch.where((torch.rand(B, T) < 0.3) & mask.bool(), ids, -100)

    def step(fn):
        def run():
            layers.attend = fn
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(input_ids=ids, attention_mask=mask, labels=labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    try:
        return timed_pair(step(sdpa), step(WRITTEN_OUT), repeats, warmup=2)
    finally:
        layers.attend = WRITTEN_OUT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds of each side (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CPU: {cpu_name()} (bf16 matmuls: {cpu_has_bf16()}); torch {torch.__version__}, {args.threads} threads")
    print("\nattention forward + backward, bf16 (max |difference| to fp32 SDPA)")
    print(f"{'B x heads x T x hs':>20} {'SDPA ms':>9} {'written out ms':>15} {'ratio':>6} {'err SDPA':>9} {'err ours':>9}")
    for B, nh, T, hs in SHAPES:
        t_sdpa, t_out, err = attention_alone(B, nh, T, hs, args.repeats)
        print(f"{f'{B} x {nh} x {T} x {hs}':>20} {t_sdpa * 1e3:9.1f} {t_out * 1e3:15.1f} {t_sdpa / t_out:6.2f} "
              f"{err[0]:9.4f} {err[1]:9.4f}")
    print("\nMLM training step (forward, backward, AdamW) under bf16 autocast, vocabulary 8,192")
    print(f"{'model, batch x T':>20} {'SDPA ms':>9} {'written out ms':>15} {'ratio':>6}")
    for preset, B, T in STEPS:
        t_sdpa, t_out = training_step(preset, B, T, args.repeats)
        print(f"{f'{preset}, {B} x {T}':>20} {t_sdpa * 1e3:9.1f} {t_out * 1e3:15.1f} {t_sdpa / t_out:6.2f}")


if __name__ == "__main__":
    main()
