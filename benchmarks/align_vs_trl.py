"""SFT and DPO step speed side by side: nanobert's `sft` / `dpo` against TRL's SFTTrainer / DPOTrainer.

Same small GPT (GPT-2's byte-level BPE vocabulary, --n-embd x --n-layer, saved once and loaded by both
sides), same rows (SST-2 training sentences cut into prompt/completion; pairs: a sentence's real
completion chosen over another sentence's completion), same batch size, learning rate, AdamW,
no warmup, fp32 on the CPU, reference log-probs computed once before DPO. Each side's step time is
the median interval between its optimizer steps (after --warmup steps), so data loading and
collation are counted and the setup is not. Prints the CPU, both medians and the ratio
(TRL / ours: above 1 means ours is faster).

    python benchmarks/align_vs_trl.py --steps 30 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanobert.align.dpo import DPOConfig, dpo
from nanobert.align.sft import SFTConfig, sft
from nanobert.align.task import cut_prompt, read_sst2
from nanobert.model.gpt import GPT, GPTConfig
from nanobert.train.loop import LoopConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class StepClock:
    """Callback for both sides: the time of every optimizer step's end."""

    def __init__(self):
        self.times = []

    def on_step_end(self, *args, **kwargs):
        self.times.append(time.perf_counter())

    def median(self, warmup: int) -> float:
        gaps = np.diff(self.times[warmup:])
        return float(statistics.median(gaps))


def make_rows(n: int, seed: int):
    rng = np.random.default_rng(seed)
    sentences = [s for s, _ in read_sst2(DATA / "sst2" / "train.tsv") if len(s.split()) >= 6][: 4 * n]
    cuts = [cut_prompt(s, rng) for s in sentences]
    sft_rows = [{"prompt": p, "completion": c} for p, c in cuts]
    pairs = [{"prompt": p, "chosen": c, "rejected": cuts[(i + 1) % len(cuts)][1]} for i, (p, c) in enumerate(cuts)]
    return sft_rows, pairs


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ours(kind: str, model_dir: Path, data: Path, out: Path, args) -> float:
    clock = StepClock()
    loop = LoopConfig(max_steps=args.steps, lr=args.lr, min_lr=args.lr, warmup_steps=0, schedule="constant",
                      weight_decay=0.0, beta2=0.999, eps=1e-8, checkpoint_every=0, eval_every=10**9, progress=False,
                      tensorboard=False, plots=False, device="cpu", precision="fp32")
    if kind == "sft":
        sft(model_dir, data, out, SFTConfig(batch_size=args.batch_size, val_fraction=0.0, loop=loop),
            callbacks=[clock])
    else:
        dpo(model_dir, data, out, DPOConfig(batch_size=args.batch_size, val_fraction=0.0, beta=0.1, loop=loop),
            callbacks=[clock])
    return clock.median(args.warmup)


def theirs(kind: str, model_dir: Path, rows, out: Path, args) -> float:
    import datasets
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    tok = transformers.GPT2TokenizerFast(vocab_file=str(model_dir / "vocab.json"),
                                         merges_file=str(model_dir / "merges.txt"))
    tok.pad_token = tok.eos_token
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir)
    clock = StepClock()
    cb = type("Clock", (transformers.TrainerCallback,), {"on_step_end": clock.on_step_end})()
    common = dict(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                  learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                  adam_epsilon=1e-8, max_grad_norm=1.0, save_strategy="no", logging_strategy="no", report_to=[],
                  use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, max_length=args.max_length, seed=0)
    ds = datasets.Dataset.from_list(rows)
    if kind == "sft":
        cfg = trl.SFTConfig(completion_only_loss=True, packing=False, **common)
        trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb])
    else:
        cfg = trl.DPOConfig(beta=0.1, precompute_ref_log_probs=True, **common)
        trainer = trl.DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb])
    trainer.train()
    return clock.median(args.warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", choices=["sft", "dpo"], help="one of the two trainers")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from nanobert.tokenizers import load_tokenizer

    tok = load_tokenizer(DATA / "gpt2")
    sft_rows, pairs = make_rows(args.batch_size * args.steps, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        GPT(GPTConfig(n_positions=args.max_length, n_embd=args.n_embd, n_layer=args.n_layer, n_head=4,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).save_pretrained(tmp / "gpt", tokenizer=tok)
        print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads; GPT n_embd {args.n_embd}, "
              f"{args.n_layer} layers, vocab 50257; batch {args.batch_size}, {args.steps} steps")
        for kind, rows in (("sft", sft_rows), ("dpo", pairs)):
            if args.only and kind != args.only:
                continue
            data = write_jsonl(tmp / f"{kind}.jsonl", rows)
            a = ours(kind, tmp / "gpt", data, tmp / f"ours-{kind}", args)
            b = theirs(kind, tmp / "gpt", rows, tmp / f"trl-{kind}", args)
            print(f"{kind}: ours {1000 * a:.1f} ms/step, TRL {1000 * b:.1f} ms/step, TRL/ours {b / a:.2f}x")


if __name__ == "__main__":
    main()
