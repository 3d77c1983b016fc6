"""First run on a GPU: bert-base MLM training speed and MFU, ours against transformers, then the budget recipe.

1. One training step (forward, backward, fused AdamW step) of a bert-base BertForMaskedLM on
   batch x 128-token sequences with 15% of the tokens masked, bf16 autocast: ours (logits only at the
   masked positions, SDPA attention) against transformers.BertForMaskedLM(attn_implementation="sdpa").
   The variants alternate step by step; the median step time gives tokens/s, and MFU is each one's
   model FLOPs (nanobert.train.flops: transformers scores every position, so its vocabulary
   projection counts per token) over the GPU's bf16 peak.
2. `nanobert pretrain --config configs/mlm-gpu-budget.toml` for --minutes on data prepared from the
   shipped Jane Austen novels (or --data DIR), with the loop's own tokens/s and MFU from metrics.csv.

Everything is printed and written as a Markdown table to --out. Without a CUDA GPU it says so and
exits 0.

    python benchmarks/gpu_check.py                      # batch 128, 20 steps each, 5-minute recipe run
    python benchmarks/gpu_check.py --batch 256 --minutes 30 --out runs/gpu_check.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _batch(batch: int, seq: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30522, (batch, seq), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(batch, seq, generator=g) < 0.15
    labels[chosen] = ids[chosen]
    ids[chosen] = 103  # [MASK]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def _variants(device):
    """{name: (step function, FlopModel)} for ours and transformers' bert-base."""
    import transformers

    from nanobert.model.bert import BertConfig, BertForMaskedLM
    from nanobert.train.flops import FlopModel, flop_model
    from nanobert.train.optim import make_optimizer

    torch.manual_seed(0)
    ours = BertForMaskedLM(BertConfig()).to(device).train()
    hf = transformers.BertForMaskedLM(transformers.BertConfig(attn_implementation="sdpa")).to(device).train()
    sparse = flop_model(ours)
    dense = FlopModel(sparse.params_per_token + sparse.params_per_target, 0, sparse.layers, sparse.width)
    out = {}
    for name, model, fm in (("nanobert", ours, sparse), ("transformers", hf, dense)):
        opt = make_optimizer(model, lr=1e-4)

        def step(batch, model=model, opt=opt, hf_model=model is hf):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out_ = model(**batch)
                loss = out_.loss if hf_model else out_[1]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        out[name] = (step, fm)
    return out


def speed_table(batch: int, seq: int, steps: int, device) -> list[dict]:
    from nanobert.train.flops import peak_flops

    peak = peak_flops(device, torch.bfloat16)
    data = _batch(batch, seq, device)
    targets = int((data["labels"] != -100).sum())
    variants = _variants(device)
    times = {name: [] for name in variants}
    for i in range(steps + 3):  # 3 warm-up steps, then alternate
        for name, (step, _) in variants.items():
            torch.cuda.synchronize()
            t = time.perf_counter()
            step(data)
            torch.cuda.synchronize()
            if i >= 3:
                times[name].append(time.perf_counter() - t)
    rows = []
    for name, (_, fm) in variants.items():
        sec = statistics.median(times[name])
        rows.append({"what": f"bert-base MLM step, {batch} x {seq}, bf16", "variant": name,
                     "tokens_per_s": batch * seq / sec, "mfu": fm.batch_flops(batch * seq, targets, seq) / sec / peak})
    return rows


def recipe_run(minutes: float, data_dir: str | None, work: Path) -> dict:
    """Run the budget recipe for `minutes`; the mean tokens/s and MFU of its train rows after the first."""
    if data_dir is None:
        from nanobert.resources import ASSETS, find_minilm

        data_dir = str(work / "data")
        novels = sorted(str(p) for p in (ASSETS / "janeausten").glob("*.txt.gz"))
        subprocess.run([sys.executable, "-m", "nanobert", "prepare", *novels, "--tokenizer", str(find_minilm()),
                        "--out", data_dir, "--seq-len", "128", "--no-progress"], check=True)
    run = work / "budget"
    subprocess.run([sys.executable, "-m", "nanobert", "pretrain", "--config", str(ROOT / "configs" /
                    "mlm-gpu-budget.toml"), "--data.dir", data_dir, "--out_dir", str(run),
                    "--train.time_limit_min", str(minutes), "--train.progress", "false"], check=True)
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    rows = [r for r in table if r["split"] == "train"][1:]  # the first row includes compilation
    val = [r for r in table if r["split"] == "val"]
    return {"what": f"configs/mlm-gpu-budget.toml, {minutes:g} min", "variant": "nanobert pretrain",
            "tokens_per_s": statistics.mean(float(r["tokens_per_s"]) for r in rows) if rows else float("nan"),
            "mfu": statistics.mean(float(r["mfu"]) for r in rows) if rows else float("nan"),
            "val_loss": float(val[-1]["loss"]) if val else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="measured steps per variant")
    ap.add_argument("--minutes", type=float, default=5.0, help="budget-recipe run length (0: skip it)")
    ap.add_argument("--data", help="prepared 128-token data for the recipe run (default: the shipped novels)")
    ap.add_argument("--work", default="runs/gpu_check", help="where the recipe run writes")
    ap.add_argument("--out", default="runs/gpu_check.md", help="Markdown table of the results")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(f"no CUDA GPU on this machine (torch {torch.__version__}); nothing to measure")
        return 0
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    rows = speed_table(args.batch, args.seq, args.steps, device)
    if args.minutes > 0:
        rows.append(recipe_run(args.minutes, args.data, Path(args.work)))
    lines = ["| what | variant | tokens/s | MFU |", "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['variant']} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% |" for r in rows]
    if len(rows) >= 2:
        lines.append(f"\nnanobert / transformers tokens/s: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}x")
    text = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}\n\n" + "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
