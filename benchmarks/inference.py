"""Inference speed and int8 accuracy: nanobert's runtimes against transformers' PyTorch, in one run.

    python benchmarks/inference.py --classifier runs/sst2-minilm

A MiniLM-L6 classifier (all-MiniLM-L6-v2 with a classification head), inputs of exactly
`--seq-len` (128) tokens cut from real SST-2 dev sentences, on the CPU with `--threads` threads:

- batch-1 latency (median of `--repeats` calls) and batch-32 throughput (sequences per second) for
  transformers PyTorch, nanobert PyTorch, nanobert ONNX Runtime fp32 and ONNX Runtime int8
  (graph optimized, then dynamic int8 quantization); the runtimes take turns a few calls at a
  time, so a change of load slows them all alike;
- SST-2 dev accuracy through `ClassifyPipeline` on the fp32 and int8 graphs (and PyTorch), which
  needs a fine-tuned classifier (`--classifier`); without one a random head on MiniLM is timed
  and accuracy is skipped. One is made with
  `nanobert finetune --model <minilm> --train sst2/train.tsv --validation sst2/dev.tsv --out DIR`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


import numpy as np  # noqa: E402
import torch  # noqa: E402

from nanobert.infer.onnx import OrtRunner, export_onnx  # noqa: E402
from nanobert.infer.quant_check import Thresholds  # noqa: E402
from nanobert.infer.pipelines import ClassifyPipeline, TorchRunner, build_head, load_torch_model  # noqa: E402
from nanobert.resources import find_minilm  # noqa: E402
from nanobert.train.precision import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"


def read_sst2(path: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    return [r[0] for r in rows], [r[1].strip() for r in rows]


def fixed_length_batch(tokenizer, sentences: list[str], batch: int, length: int) -> dict[str, np.ndarray]:
    """`batch` rows of exactly `length` tokens: [CLS] + real sentence tokens run together + [SEP], no padding."""
    stream = [i for s in sentences for i in tokenizer.encode(s, add_special_tokens=False)]
    rows, n = [], length - 2
    for b in range(batch):
        start = (b * n) % max(len(stream) - n, 1)
        rows.append([tokenizer.cls_token_id] + stream[start : start + n] + [tokenizer.sep_token_id])
    ids = np.array(rows, dtype=np.int64)  # (B, T)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def timed_rounds(runners: dict, feeds: dict, repeats: int, warmup: int, clock=time.perf_counter,
                 block: int = 5) -> dict[str, float]:
    """Median seconds per call of each runner; the runners take turns, `block` calls at a time.

    Turns make a change of load hit every runtime alike; blocks keep each runtime's thread pool from
    competing with the previous runtime's, whose threads may still be spinning for work right after
    a switch (PyTorch's OpenMP threads do; the first call of a block pays for that, the median does
    not). `clock=time.process_time` counts this process's CPU seconds: with one thread, the time the
    call would take on an idle machine.
    """
    for _ in range(warmup):
        for run in runners.values():
            run(feeds)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, -(-repeats // block))):
        for name, run in runners.items():
            for _ in range(block):
                t = clock()
                run(feeds)
                times[name].append(clock() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", type=Path, help="fine-tuned MiniLM classifier directory (default: random head, no accuracy)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30, help="timed batch-1 calls per runtime")
    ap.add_argument("--batch-repeats", type=int, default=12, help="timed batch-32 calls per runtime (in turns of 2)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or process CPU time (use with --threads 1 on a shared machine)")
    ap.add_argument("--accuracy-examples", type=int, default=None, help="SST-2 dev examples to score (default all 872)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="nanobert-bench-"))
    model_dir = args.classifier
    if model_dir is None:
        from nanobert.model.bert import BertForSequenceClassification
        from nanobert.tokenizers.wordpiece import WordPieceTokenizer

        minilm = find_minilm()
        torch.manual_seed(0)
        net = BertForSequenceClassification.from_pretrained(minilm, expected_missing=BertForSequenceClassification.new_head_keys)
        model_dir = work / "minilm-random-head"
        net.save_pretrained(model_dir, tokenizer=WordPieceTokenizer.load(minilm))

    print(f"CPU: {cpu_name()}; model {model_dir}; torch {torch.__version__}, {args.threads} threads, "
          f"{args.clock} clock; seq len {args.seq_len}", flush=True)
    t = time.time()
    fp32 = export_onnx(model_dir, work / "fp32.onnx", optimize=True)
    # the speed of the plain int8 graph (the first scheme): its accuracy is measured below, so the export's own
    # quality check, which could keep MatMuls in fp32, is told to accept it
    int8 = export_onnx(model_dir, work / "int8.onnx", int8=True, optimize=True,
                       int8_thresholds=Thresholds(min_cosine=-1.0, min_agreement=0.0))
    print(f"exported in {time.time() - t:.0f} s: fp32 max abs diff vs PyTorch {fp32.max_abs_diff:.1e}; "
          f"int8 {int8.int8_max_abs_diff:.1e}; sizes {fp32.size_bytes / 2**20:.0f} / {int8.size_bytes / 2**20:.0f} MiB", flush=True)

    hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    ours = TorchRunner(build_head(load_torch_model(model_dir)[0], "classify", 103))
    ort32, ort8 = OrtRunner(fp32.path, ["CPUExecutionProvider"], args.threads), OrtRunner(int8.path, ["CPUExecutionProvider"], args.threads)

    def hf_run(f):
        with torch.inference_mode():
            return hf(**{k: torch.from_numpy(v) for k, v in f.items()}).logits.numpy()

    runners = {
        "transformers PyTorch": hf_run,
        "nanobert PyTorch": lambda f: ours(**f),
        "nanobert ORT fp32": lambda f: ort32(**f),
        "nanobert ORT int8": lambda f: ort8(**f),
    }
    sentences, labels = read_sst2(SST2)
    tok = ClassifyPipeline(model_dir).tokenizer
    one = fixed_length_batch(tok, sentences, 1, args.seq_len)
    many = fixed_length_batch(tok, sentences, args.batch, args.seq_len)
    ref = hf_run(many)
    for name, run in runners.items():
        print(f"  {name:22s} batch-{args.batch} logits vs transformers: max abs diff {np.abs(run(many) - ref).max():.1e}")

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    lat = timed_rounds(runners, one, args.repeats, warmup=3, clock=clock)
    thr = timed_rounds(runners, many, args.batch_repeats, warmup=1, clock=clock, block=2)
    print(f"\n{'runtime':24s}{'batch-1 latency':>18s}{f'batch-{args.batch} throughput':>24s}")
    for name in runners:
        print(f"{name:24s}{lat[name] * 1e3:15.2f} ms{args.batch / thr[name]:18.1f} seq/s")
    base = "transformers PyTorch"
    fastest = min((n for n in runners if n != base), key=lambda n: lat[n])
    best_thr = min((n for n in runners if n != base), key=lambda n: thr[n])
    lat_ratio, thr_ratio = lat[base] / lat[fastest], thr[base] / thr[best_thr]
    print(f"\nbatch-1: {fastest} {lat[fastest] * 1e3:.2f} ms vs transformers {lat[base] * 1e3:.2f} ms: "
          f"{lat_ratio:.2f}x faster (target >= 2x) {'PASS' if lat_ratio >= 2 else 'FAIL'}")
    print(f"batch-{args.batch}: {best_thr} {args.batch / thr[best_thr]:.1f} seq/s vs transformers {args.batch / thr[base]:.1f} seq/s: "
          f"{thr_ratio:.2f}x (target >= 2x) {'PASS' if thr_ratio >= 2 else 'FAIL'}")
    for name in ("nanobert ORT fp32", "nanobert PyTorch"):
        print(f"  {name}: batch-1 {lat[base] / lat[name]:.2f}x, batch-{args.batch} {thr[base] / thr[name]:.2f}x vs transformers")

    if args.classifier is None:
        print("\naccuracy: skipped (random head; pass --classifier with a fine-tuned SST-2 model)")
        return 0
    n = args.accuracy_examples or len(sentences)
    texts, gold = sentences[:n], labels[:n]
    accuracy = {}
    for name, path in (("PyTorch fp32", model_dir), ("ORT fp32", fp32.path), ("ORT int8", int8.path)):
        pipe = ClassifyPipeline(path, threads=args.threads)
        best = pipe.probabilities(texts).argmax(axis=1)
        # labels by name when the checkpoint's names are the file's ("0"/"1"), else by index
        names = pipe.labels if set(gold) <= set(pipe.labels) else [str(i) for i in range(len(pipe.labels))]
        predicted = [names[i] for i in best]
        accuracy[name] = 100.0 * sum(p == g for p, g in zip(predicted, gold)) / n
    print(f"\nSST-2 dev accuracy ({n} sentences): " + ", ".join(f"{k} {v:.2f}%" for k, v in accuracy.items()))
    drop = accuracy["ORT fp32"] - accuracy["ORT int8"]
    print(f"int8 vs fp32: {-drop:+.2f} points (target: within 0.5) {'PASS' if abs(drop) <= 0.5 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
