"""What a user would deploy: a distilled student as ONNX int8 against its teacher in transformers PyTorch.

    python benchmarks/distill.py --teacher runs/sst2-minilm --student runs/sst2-small

Both classify the same real SST-2 dev sentences, on the CPU with `--threads` threads, each through
its own tokenizer and padded to the longest sentence of its batch (as `classify` and `serve` do):

- batch-1 latency: the median over `--repeats` calls, one sentence a call, the same sentences for both;
- batch-32 throughput: sentences per second over batches of 32 consecutive dev sentences;
- SST-2 dev accuracy of both (`--accuracy-examples`, default all 872), the student through the int8 graph.

The student is exported with `nanobert.infer.onnx.export_onnx(int8=True, optimize=True)`, the file
`nanobert export onnx --int8 --optimize` writes. The two runtimes take turns a few calls at a time
(`inference.timed_rounds`) so that a change of load on a shared machine hits both alike. Prints the
CPU, both figures, and the ratios against the target (>= 10x on both).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import read_sst2, timed_rounds  # noqa: E402

from nanobert.infer.onnx import OrtRunner, export_onnx  # noqa: E402
from nanobert.infer.pipelines import ClassifyPipeline  # noqa: E402
from nanobert.tokenizers import load_tokenizer  # noqa: E402
from nanobert.train.precision import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
TARGET = 10.0




def padded_batches(tokenizer, sentences: list[str], batch: int, max_length: int = 128,
                   drop_last: bool = True) -> list[dict[str, np.ndarray]]:
    """Consecutive `batch`-sentence feeds, each padded to its longest sentence: input_ids etc. (B, T) int64."""
    feeds = []
    for i in range(0, len(sentences) - (batch - 1 if drop_last else 0), batch):
        enc = tokenizer(sentences[i:i + batch], truncation=True, max_length=max_length, padding=True)
        feeds.append({k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    return feeds


def cycling(run, feeds):
    """A runner that takes the next feed of `feeds` on every call (the argument is ignored)."""
    state = {"i": 0}

    def call(_):
        f = feeds[state["i"] % len(feeds)]
        state["i"] += 1
        return run(f)
    return call


def accuracy(predict, sentences, gold, names) -> float:
    best = predict(sentences).argmax(axis=1)
    return 100.0 * float(np.mean([names[i] == g for i, g in zip(best, gold)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", type=Path, required=True, help="fine-tuned teacher classifier directory")
    ap.add_argument("--student", type=Path, required=True, help="distilled student directory (nanobert distill --out)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=60, help="timed batch-1 calls per runtime")
    ap.add_argument("--batch-repeats", type=int, default=12, help="timed batch-32 calls per runtime")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or process CPU time (use with --threads 1 on a shared machine)")
    ap.add_argument("--accuracy-examples", type=int, default=None, help="SST-2 dev sentences to score (default all)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="nanobert-distill-bench-"))
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {args.threads} threads, {args.clock} clock", flush=True)
    t = time.time()
    int8 = export_onnx(args.student, work / "student-int8.onnx", int8=True, optimize=True)
    print(f"student exported (int8, optimized) in {time.time() - t:.0f} s: {int8.size_bytes / 2**20:.1f} MiB", flush=True)

    hf = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    ort8 = OrtRunner(int8.path, ["CPUExecutionProvider"], args.threads)
    n_teacher = sum(p.numel() for p in hf.parameters())
    n_student = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(args.student).parameters())
    print(f"parameters: teacher {n_teacher:,}, student {n_student:,} ({100 * n_student / n_teacher:.1f}%)")

    def hf_run(f):
        with torch.inference_mode():
            return hf(**{k: torch.from_numpy(v) for k, v in f.items()}).logits.numpy()

    sentences, gold = read_sst2(SST2)
    t_tok, s_tok = load_tokenizer(args.teacher), load_tokenizer(args.student)
    runs = {"teacher, transformers PyTorch": (hf_run, t_tok), "student, nanobert ORT int8": (lambda f: ort8(**f), s_tok)}
    one = {name: cycling(run, padded_batches(tok, sentences, 1)) for name, (run, tok) in runs.items()}
    many = {name: cycling(run, padded_batches(tok, sentences, args.batch)) for name, (run, tok) in runs.items()}

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    lat = timed_rounds(one, None, args.repeats, warmup=3, clock=clock)
    thr = timed_rounds(many, None, args.batch_repeats, warmup=1, clock=clock, block=2)
    print(f"\n{'runtime':32s}{'batch-1 latency':>18s}{f'batch-{args.batch} throughput':>24s}")
    for name in runs:
        print(f"{name:32s}{lat[name] * 1e3:15.2f} ms{args.batch / thr[name]:18.1f} seq/s")
    teacher, student = runs
    lat_ratio, thr_ratio = lat[teacher] / lat[student], thr[teacher] / thr[student]
    print(f"\nbatch-1: {lat_ratio:.1f}x faster (target >= {TARGET:g}x) {'PASS' if lat_ratio >= TARGET else 'FAIL'}")
    print(f"batch-{args.batch}: {thr_ratio:.1f}x the throughput (target >= {TARGET:g}x) "
          f"{'PASS' if thr_ratio >= TARGET else 'FAIL'}")

    n = args.accuracy_examples or len(sentences)
    texts, labels = sentences[:n], gold[:n]
    names = [hf.config.id2label[i] for i in range(hf.config.num_labels)]

    def hf_probs(batch_texts):
        return np.concatenate([hf_run(f) for f in padded_batches(t_tok, batch_texts, args.batch, drop_last=False)])

    pipe = ClassifyPipeline(int8.path, threads=args.threads)
    acc_t = accuracy(hf_probs, texts, labels, names)
    acc_s = accuracy(pipe.probabilities, texts, labels, pipe.labels)
    print(f"\nSST-2 dev accuracy ({n} sentences): teacher (transformers) {acc_t:.2f}%, student (ORT int8) {acc_s:.2f}% "
          f"({acc_s - acc_t:+.2f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
