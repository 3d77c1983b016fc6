"""What pretraining gains downstream: a pretrained BERT beside the same network from random weights.

For each model directory, both sides are scored the same ways on SST-2 (a random --train-examples
subset of train.tsv, dev.tsv for the score; fine-tuning seed and settings identical for both). The
random side is `nanobert finetune --init random`: the same BertConfig and tokenizer, every weight drawn
afresh (for the frozen-feature measures, a copy saved with torch seed --init-seed):

- `finetune`   full fine-tuning with `nanobert.tasks.finetune`, head [CLS] -> pooler -> classifier
               (`--pooling cls`), at every --lrs rate;
- `mean`       the same with the head reading the mean of the last layer over real tokens (`--pooling mean`);
- `probe`      frozen features + logistic regression (a linear probe: what the encoder carries before
               any fine-tuning), on [CLS] and on the token mean;
- `geometry`   mean pairwise cosine similarity of sentence vectors ([CLS], mean) over dev sentences: near
               1 means every sentence looks alike to the head (collapse).

    python benchmarks/pretrain_gain.py runs/mlm-cpu/model --lrs 3e-4,1e-3 --train-examples 6000
    python benchmarks/pretrain_gain.py runs/mlm-cpu-1h/model --train-examples 67349 --max-length 64 --only mean
    python benchmarks/pretrain_gain.py A/model B/model --only finetune,probe --out gain.json

Prints one Markdown table (and the CPU it ran on); the pretrained-minus-random gain is in the last column.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nanobert.data.labelled import collate_labelled, encode_labelled
from nanobert.data.tables import LabelMap
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertModel
from nanobert.tasks.finetune import FinetuneConfig, finetune, read_split
from nanobert.tokenizers import load_tokenizer
from nanobert.train.precision import cpu_name

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def random_copy(model_dir: Path, out: Path, seed: int) -> Path:
    """Save BertForMaskedLM(config of `model_dir`) with fresh weights and the same tokenizer to `out`."""
    torch.manual_seed(seed)
    config = BertConfig.from_pretrained(model_dir)
    BertForMaskedLM(config).save_pretrained(out, tokenizer=load_tokenizer(model_dir))
    return out


def run_finetune(model_dir: Path, args, lr: float, pooling: str, init: str) -> float:
    """SST-2 dev accuracy after `nanobert finetune --pooling POOLING --init INIT` with the script's settings."""
    cfg = FinetuneConfig(epochs=args.epochs, lr=lr, max_length=args.max_length, batch_size=32,
                         max_train_examples=args.train_examples, seed=args.seed, progress=False, keep="last",
                         pooling=pooling, init=init, precision=args.precision, dropout=args.dropout)
    with tempfile.TemporaryDirectory() as out:
        report = finetune(model_dir, args.data / "train.tsv", args.data / "dev.tsv", out, cfg)
    return report["accuracy"]


@torch.no_grad()
def features(model_dir: Path, file: Path, args, limit: int | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """([CLS] (N, H), mean (N, H), labels (N,)) of the last layer for the first `limit` rows of `file`."""
    cfg = FinetuneConfig(max_length=args.max_length)
    data = read_split(file, cfg)
    tok = load_tokenizer(model_dir)
    enc = encode_labelled(data, tok, args.max_length, LabelMap.from_labels(sorted(set(data.labels))))
    n = len(enc) if limit is None else min(limit, len(enc))
    if limit is not None:  # a fixed random subset, as finetune's max_train_examples picks
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(enc))[:n])
    else:
        keep = np.arange(n)
    model = BertModel.from_pretrained(model_dir, expected_missing=("pooler.*",)).eval()
    cls, mean = [], []
    for start in range(0, n, 256):
        batch = collate_labelled(enc, keep[start:start + 256], tok.pad_token_id)
        hidden, _ = model(batch["input_ids"], batch["attention_mask"])  # (B, T, H)
        m = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        cls.append(hidden[:, 0])
        mean.append((hidden * m).sum(1) / m.sum(1))
    return torch.cat(cls), torch.cat(mean), enc.labels[keep]


def linear_probe(xtr, ytr, xte, yte, steps: int = 300) -> float:
    """Dev accuracy of an L2-regularised logistic regression on standardised frozen features."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr_t = torch.from_numpy(ytr).long()
    lin = torch.nn.Linear(xtr.shape[1], int(ytr.max()) + 1)
    opt = torch.optim.LBFGS(lin.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xtr), ytr_t) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xte).argmax(-1).numpy() == yte).mean())


def mean_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity over all distinct pairs of rows of x (N, H)."""
    x = torch.nn.functional.normalize(x, dim=-1)
    sim = x @ x.T  # (N, N)
    n = x.shape[0]
    return float((sim.sum() - n) / (n * (n - 1)))


class _Shown(dict):
    """A dict that prints each entry as it is set: a long run shows its numbers as they come."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        print(f"  {self.label}: {key} = {value:.4f}", flush=True)


def score(model_dir: Path, weights_dir: Path, args, label: str, only: set[str]) -> dict:
    """The measures in `only` for one side: fine-tuning starts from `model_dir` (with `--init random` on the
    random side), the frozen-feature measures read `weights_dir` (the model itself, or its random copy)."""
    out = _Shown(label)
    init = "random" if label == "random" else "pretrained"
    if "probe" in only or "geometry" in only:
        c_tr, m_tr, y_tr = features(weights_dir, args.data / "train.tsv", args, args.train_examples)
        c_te, m_te, y_te = features(weights_dir, args.data / "dev.tsv", args, None)
        if "probe" in only:
            out["probe cls"] = linear_probe(c_tr, y_tr, c_te, y_te)
            out["probe mean"] = linear_probe(m_tr, y_tr, m_te, y_te)
        if "geometry" in only:
            out["cosine cls"] = mean_cosine(c_te)
            out["cosine mean"] = mean_cosine(m_te)
    if "finetune" in only:
        for lr in args.lrs:
            out[f"finetune cls lr {lr:g}"] = run_finetune(model_dir, args, lr, "cls", init)
    if "mean" in only:
        for lr in args.lrs:
            out[f"finetune mean lr {lr:g}"] = run_finetune(model_dir, args, lr, "mean", init)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="pretrained model directories (saved BertForMaskedLM)")
    p.add_argument("--data", type=Path, default=DATA, help="folder with SST-2 train.tsv and dev.tsv")
    p.add_argument("--train-examples", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--lrs", default="1e-3", help="comma-separated fine-tuning peak learning rates")
    p.add_argument("--seed", type=int, default=0, help="fine-tuning seed (the same for both sides)")
    p.add_argument("--init-seed", type=int, default=0, help="torch seed of the random-weights copy")
    p.add_argument("--only", default="finetune,mean,probe,geometry")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"],
                   help="fine-tuning precision, the same for both sides (auto times a step of each side on its "
                   "own, and for a small model the two timings can fall on either side of the threshold)")
    p.add_argument("--dropout", type=float, default=None,
                   help="encoder dropout while fine-tuning (default: the checkpoint's; 0 for the CPU recipes)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, help="also write the results as JSON")
    args = p.parse_args()
    args.lrs = [float(x) for x in args.lrs.split(",")]
    args.only = set(args.only.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_dir in args.models:
            t0 = time.perf_counter()
            frozen = args.only & {"probe", "geometry"}
            rand = random_copy(model_dir, Path(tmp) / f"random-{len(results)}", args.init_seed) if frozen else None
            r = results[str(model_dir)] = {"pretrained": {}, "random": {}}
            # the cheap frozen-feature measures first, then the fine-tuning runs, each on both sides in turn
            for stage in ({"probe", "geometry"}, {"mean"}, {"finetune"}):
                for side, weights in (("pretrained", model_dir), ("random", rand)):
                    r[side].update(score(model_dir, weights, args, side, stage & args.only))
            r["seconds"] = time.perf_counter() - t0
    print("| model | measure | pretrained | random | gain |\n|---|---|---|---|---|")
    for name, r in results.items():
        for k, v in r["pretrained"].items():
            w = r["random"][k]
            pct = "cosine" not in k
            f = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:.3f}")
            gain = f"{100 * (v - w):+.2f}" if pct else f"{v - w:+.3f}"
            print(f"| {name} | {k} | {f(v)} | {f(w)} | {gain} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
