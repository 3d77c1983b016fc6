"""The teacher's labelling pass of `nanobert distill`, fp32 against bf16 autocast, on real SST-2 rows.

    python benchmarks/distill_labelling.py --teacher runs/sst2-minilm --rows 4000 --threads 1

Times `nanobert.distill.data.teacher_logits` (what `distill` runs over every training and unlabelled
row) on the first `--rows` SST-2 training sentences, fp32 and bf16 taking turns (`--rounds`, the best
of each kept: a shared machine's load hits both alike), and compares the two on the 872 dev sentences:
accuracy of each, how often they predict the same class, and the largest logit difference. Prints the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from nanobert.data.labelled import encode_labelled
from nanobert.distill.data import teacher_logits
from nanobert.distill.run import load_teacher
from nanobert.tasks.finetune import FinetuneConfig, evaluate_logits, read_split
from nanobert.train.precision import cpu_has_bf16, cpu_name

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="classifier directory written by 'nanobert finetune'")
    ap.add_argument("--rows", type=int, default=4000, help="SST-2 training sentences to label per timing")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    teacher, tok, labels, t_cfg = load_teacher(args.teacher)
    columns = FinetuneConfig(text_column=t_cfg.text_column, label_column=t_cfg.label_column)
    train = read_split(DATA / "train.tsv", columns)
    train.texts, train.labels = train.texts[:args.rows], train.labels[:args.rows]
    rows = encode_labelled(train, tok, 128, labels)
    dev = encode_labelled(read_split(DATA / "dev.tsv", columns), tok, 128, labels)
    print(f"CPU: {cpu_name()} (bf16 matmuls: {cpu_has_bf16()}), {args.threads} thread(s), torch {torch.__version__}")
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(args.rounds):
        for name in best:
            t0 = time.perf_counter()
            teacher_logits(teacher, rows, tok.pad_token_id, 128, bf16=name == "bf16")
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        print(f"{name}: {len(rows)} rows in {seconds:.2f} s = {len(rows) / seconds:.0f} rows/s")
    print(f"bf16 / fp32 speed: {best['fp32'] / best['bf16']:.2f}x")
    out = {name: teacher_logits(teacher, dev, tok.pad_token_id, 128, bf16=name == "bf16") for name in best}
    for name, logits in out.items():
        print(f"{name}: dev accuracy {evaluate_logits(logits, dev.labels, labels.names)['accuracy']:.4f}")
    same = (out["fp32"].argmax(-1) == out["bf16"].argmax(-1)).float().mean()
    diff = (out["fp32"] - out["bf16"]).abs().max()
    print(f"same class on {100 * same:.2f}% of dev; largest logit difference {diff:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
