"""Full fine-tuning against LoRA on SST-2: loss, accuracy, trainable parameters, training time, best epoch.

Four runs of `nanobert.finetune` on the same rows, with the same batch size, epochs, warmup and
schedule: full fine-tuning, LoRA r=1, LoRA r=8 (query, value in every layer) and LoRA r=8 in the
last 4 layers only (the classifier is trained in full in every LoRA run). Loss and accuracy are on
SST-2 dev, for the epoch with the lowest dev loss. Prints a Markdown table.

    python benchmarks/finetune_table.py                                    # all-MiniLM-L6-v2, defaults below
    python benchmarks/finetune_table.py --train-examples 20000 --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from nanobert.resources import find_minilm
from nanobert.model.lora import LoRAConfig
from nanobert.tasks.finetune import FinetuneConfig, finetune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"

# name, LoRA rank (0 = full), layers; LoRA uses alpha = 2r (scaling 2) and a 10x larger learning rate.
RUNS = [("full fine-tuning", 0, "all"), ("LoRA r=1", 1, "all"), ("LoRA r=8", 8, "all"), ("LoRA r=8, last 4 layers", 8, "last-4")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="BERT directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--data", default=str(DATA), help="folder with SST-2 train.tsv and dev.tsv")
    p.add_argument("--train-examples", type=int, default=3200, help="random subset of train (fixed by --seed)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="full fine-tuning learning rate")
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--targets", default="query,value")
    p.add_argument("--runs", default="0,1,2,3", help="which rows to run (indices into the list above)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    model_dir = Path(args.model) if args.model else find_minilm()
    work = Path(tempfile.mkdtemp(prefix="ft-table-"))
    lines = (Path(args.data) / "train.tsv").read_text(encoding="utf-8").splitlines()
    keep = np.sort(np.random.default_rng(args.seed).permutation(len(lines) - 1)[:args.train_examples])
    train = work / "train.tsv"
    train.write_text("\n".join([lines[0], *(lines[1 + i] for i in keep)]) + "\n", encoding="utf-8")
    dev = Path(args.data) / "dev.tsv"
    print(f"{len(keep)} SST-2 train rows, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr} (full) / "
          f"{args.lora_lr} (LoRA), LoRA on {args.targets}, {args.threads} thread(s); scored on SST-2 dev", flush=True)

    rows = []
    for i in (int(s) for s in args.runs.split(",")):
        name, r, layers = RUNS[i]
        torch.manual_seed(args.seed)
        cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lora_lr if r else args.lr,
                             lora=LoRAConfig(r=r, alpha=2.0 * r if r else 16.0, targets=args.targets.split(","),
                                             layers=layers),
                             seed=args.seed, threads=args.threads, progress=not args.no_progress)
        m = finetune(model_dir, train, dev, work / f"run{i}", cfg)
        rows.append({"name": name, "loss": m["loss"], "accuracy": m["accuracy"], "trainable": m["trainable_params"],
                     "total": m["total_params"], "train_time_s": m["train_time_s"], "best_epoch": m["best_epoch"],
                     "history": m["history"]})
        print(f"{name}: {json.dumps({k: v for k, v in rows[-1].items() if k != 'history'})}", flush=True)

    full = next((r for r in rows if r["name"] == RUNS[0][0]), None)
    print("\n| run | dev loss | dev accuracy | trainable params | relative params | train time | best epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{100 * r['trainable'] / r['total']:.2f}%"
        print(f"| {r['name']} | {r['loss']:.4f} | {100 * r['accuracy']:.2f}% | {r['trainable']:,} | {rel} | "
              f"{r['train_time_s'] / 60:.1f} min | {r['best_epoch']} of {len(r['history'])} |")
    if full:
        for r in rows:
            if r is not full:
                print(f"{r['name']}: {100 * (r['accuracy'] - full['accuracy']):+.2f} points vs full fine-tuning")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
