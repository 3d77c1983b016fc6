"""fp32 against bf16 autocast on this CPU: MLM pretraining through the shared loop, same seed, same batches.

Prints the CPU, its bf16 instruction sets (/proc/cpuinfo `avx512_bf16`, `amx_bf16`) and whether
torch's oneDNN can use them, then trains the same BertForMaskedLM twice from the same
initialisation on the same masked enwiki batches (see benchmarks/pretrain.py): the losses at equal
steps, the median step time of each and their ratio: whether bf16 pays for a model of this size on
this CPU (`precision = "auto"` times the real model's first step both ways and decides the same
way: nanobert.train.precision). On a CPU without bf16 instructions this says so, and the bf16 run
measures the emulated path that "auto" avoids.

    python benchmarks/precision.py                       # small (L4/H256), batch 32 x 128, 30 steps
    python benchmarks/precision.py --size mini --steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain import SIZES, make_batches  # noqa: E402  (benchmarks/pretrain.py: the same data)

from nanobert.model.bert import BertConfig, BertForMaskedLM  # noqa: E402
from nanobert.train.loop import LoopConfig, train  # noqa: E402
from nanobert.train.precision import _torch_cpu_bf16, cpu_bf16_flags, cpu_name, use_bf16  # noqa: E402


class _Record:
    """Loss and wall time of every step."""

    def __init__(self):
        self.losses, self.times = [], [time.perf_counter()]

    def on_step_end(self, state):
        self.losses.append(state.loss)
        self.times.append(time.perf_counter())


def run(precision: str, batches: list[dict], size: str, steps: int) -> _Record:
    layers, hidden, heads = SIZES[size]
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=4 * hidden,
                                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    cfg = LoopConfig(max_steps=steps, lr=1e-3, warmup_steps=max(1, steps // 10), precision=precision,
                     device="cpu", progress=False, tensorboard=False, plots=False)
    record = _Record()
    train(model, itertools.cycle(batches), cfg, callbacks=[record])
    return record




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(SIZES))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--distinct-batches", type=int, default=10, help="batches cycled through")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        flags = cpu_bf16_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = []
    print(f"CPU: {cpu_name()}; bf16 instructions: {', '.join(flags) or 'none'}; torch oneDNN bf16: "
          f"{_torch_cpu_bf16()}; precision 'auto' here: {'bf16' if use_bf16('auto', torch.device('cpu')) else 'fp32'}")
    if not flags:
        print("this CPU lacks avx512_bf16 and amx_bf16: bf16 is emulated here, and 'auto' trains in fp32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.size}, batch {args.batch} x "
          f"<= {args.seq}, {args.steps} steps")
    batches = make_batches(args.distinct_batches, args.batch, args.seq)
    results = {p: run(p, batches, args.size, args.steps) for p in ("fp32", "bf16")}
    every = max(1, args.steps // 6)
    print("step   fp32 loss   bf16 loss")
    for s in list(range(every, args.steps + 1, every)) + ([args.steps] if args.steps % every else []):
        print(f"{s:4d}   {results['fp32'].losses[s - 1]:9.4f}   {results['bf16'].losses[s - 1]:9.4f}")
    med = {p: statistics.median(b - a for a, b in zip(r.times[2:], r.times[3:])) for p, r in results.items()}
    print(f"median step (after 2 warm-up steps): fp32 {med['fp32'] * 1000:.0f} ms, bf16 {med['bf16'] * 1000:.0f} ms;"
          f" bf16 speed-up {med['fp32'] / med['bf16']:.2f}x")


if __name__ == "__main__":
    main()
