"""Fine-tuning side by side: `nanobert finetune` against transformers' Trainer (+ peft for LoRA).

Same checkpoint (all-MiniLM-L6-v2 by default), same training rows (a random subset of SST-2 train,
fixed by --seed), same hyperparameters (AdamW, lr, weight decay on matrices only, eps, warmup ratio,
linear decay, gradient clipping, batch size, epochs, length-grouped batches, max length), same number
of optimizer steps; both scored on SST-2 dev. Prints accuracy, loss, training time of each and the ratios.

    python benchmarks/finetune_vs_hf.py                                   # full fine-tuning
    python benchmarks/finetune_vs_hf.py --lora-r 8 --lr 5e-4              # LoRA on query,value vs peft
    python benchmarks/finetune_vs_hf.py --train-examples 4000 --threads 2

The training time of each side is the wall time of its training loop (validation excluded). On a
shared machine the load changes between the two runs, so the time ratio is indicative only; the
accuracy comparison does not depend on load.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


import numpy as np
import torch

from nanobert.data.tables import LabelMap, read_labelled
from nanobert.resources import find_minilm
from nanobert.model.lora import LoRAConfig
from nanobert.tasks.finetune import FinetuneConfig, evaluate_logits, finetune

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def write_subset(src: Path, n: int | None, seed: int, dst: Path) -> Path:
    """The first line (header) and a random subset of `n` rows of a TSV, in file order."""
    lines = src.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    if n and n < len(rows):
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
        rows = [rows[i] for i in keep]
    dst.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return dst


def run_ours(model_dir, train, dev, out, args) -> dict:
    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=0.01,
                         adam_eps=1e-8, warmup_ratio=args.warmup_ratio, max_grad_norm=1.0, max_length=args.max_length,
                         lora=LoRAConfig(r=args.lora_r, alpha=args.lora_alpha, targets=args.lora_targets.split(","),
                         layers=args.lora_layers, modules_to_save=args.lora_modules_to_save.split(",")), seed=args.seed, threads=args.threads,
                         max_minutes=args.max_minutes, progress=not args.no_progress)
    r = finetune(model_dir, train, dev, out, cfg)
    return {"accuracy": r["accuracy"], "loss": r["loss"], "train_time_s": r["train_time_s"], "steps": r["steps"],
            "trainable_params": r["trainable_params"], "total_params": r["total_params"],
            "history": r["history"]}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "token_type_ids": self.enc["token_type_ids"][i],
                "attention_mask": self.enc["attention_mask"][i], "labels": int(self.labels[i])}


def run_hf(model_dir, train, dev, out, args) -> dict:
    import transformers
    from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    transformers.logging.set_verbosity_error()
    tr, dv = read_labelled(train), read_labelled(dev)
    labels = LabelMap.from_labels(tr.labels)
    y_tr = np.array(labels.encode(tr.labels)); y_dv = np.array(labels.encode(dv.labels))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc_tr = tok(tr.texts, truncation=True, max_length=args.max_length)
    enc_dv = tok(dv.texts, truncation=True, max_length=args.max_length)
    model = BertForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=len(labels), id2label=labels.id2label, label2id=labels.label2id)
    if args.lora_r:
        import peft

        layers = None
        if args.lora_layers != "all":
            from nanobert.model.lora import resolve_layers
            layers = resolve_layers(args.lora_layers, model.config.num_hidden_layers)
        model = peft.get_peft_model(model, peft.LoraConfig(
            task_type="SEQ_CLS", r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
            target_modules=args.lora_targets.split(","), layers_to_transform=layers,
            modules_to_save=args.lora_modules_to_save.split(",")))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    targs = TrainingArguments(
        output_dir=str(out), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=128, learning_rate=args.lr, weight_decay=0.01, adam_epsilon=1e-8,
        warmup_steps=int(args.warmup_ratio * math.ceil(len(y_tr) / args.batch_size) * args.epochs),
        lr_scheduler_type="linear", max_grad_norm=1.0, train_sampling_strategy="group_by_length", eval_strategy="no",
        save_strategy="no", logging_strategy="no", report_to=[], seed=args.seed, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=args.no_progress)
    trainer = Trainer(model=model, args=targs, train_dataset=_Rows(enc_tr, y_tr), processing_class=tok,
                      data_collator=DataCollatorWithPadding(tok))
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    # Trainer's evaluation sampler also groups by length, so take the labels in the order it returns them.
    pred = trainer.predict(_Rows(enc_dv, y_dv))
    logits = torch.from_numpy(np.asarray(pred.predictions)).float()
    m = evaluate_logits(logits, np.asarray(pred.label_ids, dtype=np.int64), labels.names)
    return {"accuracy": m["accuracy"], "loss": m["loss"], "train_time_s": seconds, "steps": result.global_step,
            "trainable_params": trainable, "total_params": total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="BERT directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--data", default=str(DATA), help="folder with SST-2 train.tsv and dev.tsv")
    p.add_argument("--train-examples", type=int, default=12800, help="random subset of train (0: all 67,349)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lora-r", type=int, default=0)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-targets", default="query,value")
    p.add_argument("--lora-layers", default="all")
    p.add_argument("--lora-modules-to-save", default="classifier", help="trained in full beside the adapters, e.g. classifier,pooler")
    p.add_argument("--max-minutes", type=float, default=None, help="cap on our training time (the HF side runs the same steps)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both sides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["ours", "hf"], help="run one side only")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--work", help="folder for the subset and both fine-tuned models (default: a new temporary folder)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else find_minilm()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ft-vs-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    train = write_subset(Path(args.data) / "train.tsv", args.train_examples, args.seed, work / "train.tsv")
    dev = Path(args.data) / "dev.tsv"
    mode = f"LoRA r={args.lora_r} on {args.lora_targets} (layers {args.lora_layers}; {args.lora_modules_to_save} in full)" if args.lora_r else "full fine-tuning"
    print(f"{mode}; {model_dir.name if args.model else 'all-MiniLM-L6-v2'}; {args.train_examples or 'all'} train rows, "
          f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr}, warmup {args.warmup_ratio}, "
          f"{args.threads} thread(s); models under {work}", flush=True)
    results = {}
    if args.only != "hf":
        results["nanobert"] = run_ours(model_dir, train, dev, work / "ours", args)
        print(f"nanobert: {json.dumps({k: v for k, v in results['nanobert'].items() if k != 'history'})}", flush=True)
    if args.only != "ours":
        torch.manual_seed(args.seed)
        results["transformers"] = run_hf(model_dir, train, dev, work / "hf", args)
        print(f"transformers: {json.dumps(results['transformers'])}", flush=True)

    print()
    print(f"| {'':14s} | dev accuracy | dev loss | train time | steps | trainable params |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name:14s} | {r['accuracy']:.4f} | {r['loss']:.4f} | {r['train_time_s']:.0f} s | {r['steps']} | "
              f"{r['trainable_params']:,} ({100 * r['trainable_params'] / r['total_params']:.2f}%) |")
    if len(results) == 2:
        a, b = results["nanobert"], results["transformers"]
        print(f"\naccuracy nanobert - transformers: {100 * (a['accuracy'] - b['accuracy']):+.2f} points; "
              f"training time nanobert / transformers: {a['train_time_s'] / b['train_time_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
