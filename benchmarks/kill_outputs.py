"""Kill the commands that write an output at random moments; check the previous output survives each kill.

    python benchmarks/kill_outputs.py --kills 20 [--only prepare "tokenizer train"]

Training commands (finetune, pretrain, train-gpt) write in place and are rerun with --resume: a
killed rerun must leave the finished run loadable, with the same files. For each command: run it to completion once on tiny inputs (the shipped assets), remember the
output (its file names and, for deterministic commands, their content), then start the same
command again `--kills` times and SIGKILL it after a random delay (up to 1.2x the time of a full
run). After each kill the output must still load and hold the same files (or a complete new
output: the same, for a deterministic command). A run that was not killed in time must leave no
leftovers. At the end a full run must clean up everything the killed runs left behind (hidden
temporaries, `.OUT.old`, lock files). Prints counts per command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "nanobert" / "assets"
BOOK = ASSETS / "janeausten" / "persuasion.txt.gz"
STABLE = {"prepare", "tokenizer train"}  # deterministic: every complete output has the same bytes


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    return env


def _cli(*argv) -> list[str]:
    return [sys.executable, "-m", "nanobert", *map(str, argv)]


def _tiny_base(work: Path) -> Path:
    """A tiny random BERT with a WordPiece vocabulary learned from SST-2 sentences (finetune's --model)."""
    code = f"""
import gzip, torch
from nanobert.model.bert import BertConfig, BertModel
from nanobert.tokenizers import WordPieceTokenizer
lines = gzip.open({str(ASSETS / 'sst2' / 'train.tsv.gz')!r}, 'rt').read().splitlines()[1:3000]
tok = WordPieceTokenizer.train([l.rsplit('\\t', 1)[0] for l in lines], vocab_size=800)
torch.manual_seed(0)
cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=128)
BertModel(cfg).save_pretrained({str(work / 'base')!r}, tokenizer=tok)
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    return work / "base"


def commands(work: Path) -> dict:
    """name -> (argv writing `out`, output path, replaces a previous output with these extra args)."""
    sst2 = ASSETS / "sst2"
    return {
        "tokenizer train": (_cli("tokenizer", "train", "--input", BOOK, "--vocab-size", "1000", "--out",
                                 work / "tok"), work / "tok", ["--overwrite"]),
        "prepare": (_cli("prepare", BOOK, "--tokenizer", work / "tok", "--out", work / "data", "--seq-len", "64",
                         "--workers", "1", "--no-progress"), work / "data", ["--overwrite"]),
        "finetune": (_cli("finetune", "--model", work / "base", "--train", sst2 / "dev.tsv.gz", "--validation",
                          sst2 / "dev.tsv.gz", "--out", work / "ft", "--epochs", "1", "--threads", "1",
                          "--no-progress"), work / "ft", ["--resume"]),
        "export": (_cli("export", "onnx", "--model", work / "ft", "--out", work / "ft.onnx"), work / "ft.onnx", []),
        "pretrain": (_cli("pretrain", "--out_dir", work / "mlm", "--data.dir", work / "data", "--data.batch_size", 8,
                          "--data.eval_batches", 1, "--model.hidden_size", 32, "--model.num_hidden_layers", 1,
                          "--model.num_attention_heads", 2, "--model.intermediate_size", 64,
                          "--model.max_position_embeddings", 64, "--train.max_steps", 6, "--train.eval_every", 3,
                          "--train.checkpoint_every", 3, "--train.progress", "false",
                          "--samples", "[]"), work / "mlm", ["--resume"]),
        "train-gpt": (_cli("train-gpt", "--inputs", BOOK, "--out_dir", work / "gpt", "--model.n_positions", 16,
                           "--model.n_embd", 16, "--model.n_layer", 1, "--model.n_head", 2, "--loop.max_steps", 6,
                           "--loop.checkpoint_every", 3, "--loop.progress", "false"),
                      work / "gpt", ["--resume"]),
    }


def _load(name: str, out: Path) -> None:
    """Open the output the way its users do; raises if it is not a complete output."""
    code = {"tokenizer train": "from nanobert.tokenizers import load_tokenizer as f; f(p).encode('a test')",
            "prepare": "from nanobert.data.loaders import TokenShards as f; assert len(f(p, 'train'))",
            "finetune": "from nanobert.tasks.finetune import load_classifier as f; f(p)",
            "export": "import onnxruntime as o; o.InferenceSession(p, providers=['CPUExecutionProvider'])",
            "pretrain": "from nanobert.model.bert import BertForMaskedLM as f; f.from_pretrained(p + '/model')",
            "train-gpt": "from nanobert.model.gpt import GPT as f; f.from_pretrained(p + '/model')"}[name]
    subprocess.run([sys.executable, "-c", f"p = {str(out)!r}\n{code}"], check=True, env=_env(),
                   capture_output=True)


def _snapshot(out: Path, stable: bool) -> dict:
    files = [out] if out.is_file() else sorted(p for p in out.rglob("*") if p.is_file() and not _dead(p, out))
    skip = {".nanobert-output.json"}  # holds the time it was written
    return {str(p.relative_to(out.parent)): (hashlib.sha256(p.read_bytes()).hexdigest() if stable else None)
            for p in files if p.name not in skip and not p.name.startswith("events.out.tfevents")}  # one per run


def _dead(p: Path, out: Path) -> bool:
    """Inside `out`: a hidden temporary of a killed in-place writer (the next run removes it)."""
    return any(part.startswith(".") and part.endswith(".tmp") for part in p.relative_to(out).parts)


def _leftovers(out: Path) -> list[str]:
    beside = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    inside = [str(p.relative_to(out)) for p in out.rglob("*.tmp") if _dead(p, out)] if out.is_dir() else []
    return sorted(beside + inside)


def run_command(name: str, argv: list[str], out: Path, again: list[str], kills: int, rng: random.Random) -> dict:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, env=_env(), capture_output=True)
    full = time.monotonic() - t0
    _load(name, out)
    stable = name in STABLE
    before = _snapshot(out, stable)
    counts = {"kills": 0, "finished first": 0, "intact": 0, "broken": 0, "leftovers after kills": 0,
              "leftovers after a full run": 0, "full run s": round(full, 1)}
    for _ in range(kills):
        proc = subprocess.Popen(argv + again, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        delay = rng.uniform(0, 1.2 * full)
        try:
            proc.wait(timeout=delay)
            counts["finished first"] += 1
            if proc.returncode != 0:
                print(f"  {name}: a rerun failed: {proc.stderr.read().decode()[-300:]}", file=sys.stderr)
            if _leftovers(out):
                counts["leftovers after a full run"] += 1
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            counts["kills"] += 1
            counts["leftovers after kills"] += bool(_leftovers(out))
        try:
            _load(name, out) if out.exists() else None
            ok = out.exists() and _snapshot(out, stable) == before
        except subprocess.CalledProcessError:
            ok = False
        counts["intact" if ok else "broken"] += 1
        if not ok:
            print(f"  {name}: output not intact after a kill at {delay:.2f}s; beside it: {_leftovers(out)}",
                  file=sys.stderr)
    subprocess.run(argv + again, check=True, env=_env(), capture_output=True)
    counts["leftovers after the last run"] = _leftovers(out)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="killed runs per command")
    parser.add_argument("--only", nargs="*", default=None, help="commands to test (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.kills} killed runs per command")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        _tiny_base(work)
        failed = False
        for name, (argv, out, again) in commands(work).items():
            if args.only and name not in args.only:
                # later commands read earlier outputs: still build them, untested
                subprocess.run(argv, check=True, env=_env(), capture_output=True)
                continue
            counts = run_command(name, argv, out, again, args.kills, rng)
            failed |= counts["broken"] > 0 or bool(counts["leftovers after the last run"])
            print(f"{name:16s} {json.dumps(counts)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
