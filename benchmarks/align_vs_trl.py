"""SFT and DPO step speed side by side: nanobert's `sft` / `dpo` against TRL's SFTTrainer / DPOTrainer.

Same small GPT (GPT-2's byte-level BPE vocabulary, --n-embd x --n-layer, saved once and loaded by both
sides, TRL's tokenizer read from the same directory), same rows (SST-2 training sentences cut into
prompt/completion; pairs: a sentence's real completion chosen over another sentence's completion,
end-of-text after every completion on both sides), same batches: TRL reads the rows in the order of
nanobert's first epoch of length-bucketed batches, sequentially, so step i of both sides holds the
same rows, right-padded to the longest. Same batch size, learning rate, AdamW, no warmup, fp32 on
the CPU, reference log-probs computed once before DPO. Each side's step time is the median interval
between its optimizer steps (after --warmup steps), so data loading and collation are counted and the
setup is not.

Prints the CPU, what each side's batches held (mean over steps 2 on: padded length, row tokens
(prompt + completion + end-of-text), loss-bearing completion tokens; TRL feeds each row's last token too, whose
prediction no loss uses, so its inputs are one token a row longer), both medians and the ratio
(TRL / ours: above 1 means ours is faster). --repeat runs the pair again, alternating which side goes
first, and prints the median of the ratios.

    python benchmarks/align_vs_trl.py --steps 30 --warmup 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanobert.align.dpo import DPOConfig, dpo, encode_pairs
from nanobert.align.policy import Policy
from nanobert.align.sft import SFTConfig, encode_rows, sft
from nanobert.align.task import cut_prompt, read_sst2
from nanobert.data.causal import ExampleBatches
from nanobert.model.gpt import GPT, GPTConfig
from nanobert.train.loop import LoopConfig
from nanobert.train.precision import cpu_name

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


class BatchCounts:
    """Per step, the batch trained on: padded length, row tokens (prompt + completion + end-of-text, all rows),
    loss-bearing tokens. Only references are kept during the run; the counting is done at the end."""

    def __init__(self, shifted: bool):
        self.shifted, self.batches = shifted, []  # shifted: labels[:, t] is token t + 1 (ours)

    def add(self, input_ids, tokens, loss_mask) -> None:
        self.batches.append((input_ids, tokens, loss_mask))

    def summary(self, skip: int) -> str:
        rows = []
        for ids, tokens, loss in self.batches[skip:]:
            if self.shifted:  # a row ends one token after its last target: its end-of-text
                last = torch.where(tokens, torch.arange(tokens.shape[1]), -1).amax(1)  # (B,)
                n_tokens = int((last + 2).sum())
            else:
                n_tokens = int(tokens.sum())
            rows.append((ids.shape[1], n_tokens, int(loss.sum())))
        t, tok, loss = np.mean(rows, axis=0)
        return f"padded length {t:.1f}, row tokens {tok:.1f}, loss tokens {loss:.1f} per batch"


class OurClock(StepClock):
    """The clock, and from the first step's end a forward hook on the trained model counting its batches."""

    def __init__(self, counts: BatchCounts):
        super().__init__()
        self.counts, self.hooked = counts, False

    def on_step_end(self, state):
        super().on_step_end()
        if not self.hooked:
            state.model.register_forward_pre_hook(self._count, with_kwargs=True)
            self.hooked = True

    def _count(self, module, args, kwargs):
        labels = kwargs["completion_labels"] if "completion_labels" in kwargs else kwargs["labels"]
        self.counts.add(kwargs["input_ids"], labels != -100, labels != -100)


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


def our_order(kind: str, model_dir: Path, rows, args) -> list[dict]:
    """The rows of our first `steps` batches, in order (as `sft`/`dpo` draw them: seed 0, no validation rows)."""
    policy = Policy.load(model_dir)
    if kind == "sft":
        lengths = [len(s) for s in encode_rows(policy, [(r["prompt"], r["completion"]) for r in rows], True)[0]]
    else:
        lengths = [len(p) + max(len(c), len(j)) for p, c, j in encode_pairs(policy, rows)]
    plan = ExampleBatches(lengths, args.batch_size, lambda idx: idx, seed=0)
    batches = [next(plan) for _ in range(args.steps)]
    if any(len(b) != args.batch_size for b in batches):
        raise SystemExit("a short batch among the first steps; use more rows")
    return [rows[i] for b in batches for i in b]


def ours(kind: str, model_dir: Path, data: Path, out: Path, args, counts: BatchCounts) -> float:
    clock = OurClock(counts)
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


def theirs(kind: str, model_dir: Path, rows, out: Path, args, counts: BatchCounts) -> float:
    import datasets
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.eos_token
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir)
    clock = StepClock()
    cb = type("Clock", (transformers.TrainerCallback,), {"on_step_end": clock.on_step_end})()
    common = dict(output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                  learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                  adam_epsilon=1e-8, max_grad_norm=1.0, save_strategy="no", logging_strategy="no", report_to=[],
                  use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, max_length=args.max_length, seed=0,
                  train_sampling_strategy="sequential")
    ds = datasets.Dataset.from_list(rows)
    if kind == "sft":
        cfg = trl.SFTConfig(completion_only_loss=True, packing=False, **common)
        trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb])
    else:
        cfg = trl.DPOConfig(beta=0.1, precompute_ref_log_probs=True, **common)
        trainer = trl.DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[cb])
    if len(trainer.train_dataset) != len(rows):
        raise SystemExit(f"TRL dropped {len(rows) - len(trainer.train_dataset)} rows; the batches would differ")
    compute_loss = trainer.compute_loss

    def counted(model, inputs, *a, **k):  # the target of position t is token t + 1: the first is never one
        loss_mask = inputs["completion_mask"][:, 1:] if kind == "dpo" else inputs["labels"][:, 1:] != -100
        counts.add(inputs["input_ids"], inputs["attention_mask"], loss_mask)
        return compute_loss(model, inputs, *a, **k)

    trainer.compute_loss = counted
    trainer.train()
    return clock.median(args.warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=64, help="the GPT's context; TRL truncates rows to it")
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="runs of each pair, alternating which side goes first")
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
        print(f"CPU: {cpu_name()}, {args.threads} threads; GPT n_embd {args.n_embd}, {args.n_layer} layers, "
              f"vocab 50257, context {args.max_length}; batch {args.batch_size}, {args.steps} steps "
              f"({args.warmup} warm-up)")
        for kind, rows in (("sft", sft_rows), ("dpo", pairs)):
            if args.only and kind != args.only:
                continue
            data = write_jsonl(tmp / f"{kind}.jsonl", rows)
            ordered = our_order(kind, tmp / "gpt", rows, args)
            ratios = []
            for r in range(args.repeat):
                c_ours, c_trl = BatchCounts(shifted=True), BatchCounts(shifted=False)
                run_ours = lambda: ours(kind, tmp / "gpt", data, tmp / f"ours-{kind}-{r}", args, c_ours)  # noqa: E731
                run_trl = lambda: theirs(kind, tmp / "gpt", ordered, tmp / f"trl-{kind}-{r}", args, c_trl)  # noqa: E731
                if r % 2 == 0:
                    a, b = run_ours(), run_trl()
                else:
                    b, a = run_trl(), run_ours()
                skip = len(c_trl.batches) - len(c_ours.batches)  # ours counts from step 2 on: the same steps on both
                print(f"{kind} batches: ours {c_ours.summary(0)}; TRL {c_trl.summary(skip)}")
                print(f"{kind}: ours {1000 * a:.1f} ms/step, TRL {1000 * b:.1f} ms/step, TRL/ours {b / a:.2f}x")
                ratios.append(b / a)
            if args.repeat > 1:
                print(f"{kind}: median TRL/ours over {args.repeat} runs {statistics.median(ratios):.2f}x "
                      f"({', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
