"""`nanobert export onnx`: an ONNX graph checked against PyTorch, optionally optimized and int8-quantized."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 60

_EPILOG = """\
The graph takes input_ids, attention_mask and token_type_ids (int64, dynamic batch and sequence)
and returns what the task needs: logits at the [MASK] positions (fill-mask), class logits
(classify) or L2-normalised mean-pooled embeddings (embed). The task, config and tokenizer travel
in the file's metadata, so `nanobert fill-mask|classify|embed --model FILE.onnx` and
`nanobert serve --model FILE.onnx` need nothing else.

Before the file is written the fp32 graph is run on a probe batch of another shape and compared
with PyTorch; a difference above --atol (1e-4) aborts the export and writes nothing.

examples:
  nanobert export onnx --model runs/sst2 --out sst2.onnx
  nanobert export onnx --model runs/sst2 --out sst2-int8.onnx --int8 --optimize   (fastest on CPU)
  nanobert export onnx --model minilm/ --out minilm-embed.onnx --task embed
  nanobert export onnx --model runs/sst2 --out sst2-static.onnx --int8 --int8-scheme static --optimize

With --int8, classify and embed graphs are checked on real sentences before anything is written: the
same label as fp32 on 99% of them (classify) or a cosine of 0.99 to fp32 on each (embed). Where dynamic
quantization falls short, the most sensitive MatMuls are left in fp32 and static quantization calibrated
on other sentences is tried; each rung tried is printed with its speed against fp32.
"""


def _is_onnx(path: Path) -> bool:
    """Whether `path` parses as an ONNX model (its graph only; external weights are not read)."""
    import onnx

    try:
        return bool(onnx.load(str(path), load_external_data=False).graph.node)
    except Exception:  # any parse failure: not an ONNX model
        return False


def _export(args) -> int:
    from nanobert.errors import NanobertError
    from nanobert.infer.onnx import export_onnx
    from nanobert.infer.quant_check import Thresholds

    out = Path(args.out)
    if out.is_dir():
        raise NanobertError(f"{out} is a directory; give the .onnx file to write")
    if out.exists() and not args.overwrite and not _is_onnx(out):
        raise NanobertError(f"{out} exists and is not an ONNX model; pass --overwrite to replace it, "
                            "or choose another output")
    thresholds = Thresholds(min_cosine=args.int8_min_cosine, min_agreement=args.int8_min_agreement)
    r = export_onnx(args.model, args.out, int8=args.int8, optimize=args.optimize, task=args.task, opset=args.opset,
                    atol=args.atol, int8_thresholds=thresholds, int8_scheme=args.int8_scheme)
    print(f"exported {args.model} ({r.task}) to {r.path}: {r.size_bytes / 2**20:.1f} MiB")
    print(f"  fp32 graph vs PyTorch: max abs diff {r.max_abs_diff:.2e} (limit {args.atol:g})")
    if r.fused_ops:
        print("  fused: " + ", ".join(f"{k} x{v}" for k, v in r.fused_ops.items()))
    if r.int8_max_abs_diff is not None:
        print(f"  int8 graph vs PyTorch: max abs diff {r.int8_max_abs_diff:.2e} ({r.int8_scheme})")
        for name, report in r.int8_tried:  # every way tried, with what it kept and what it cost
            print(f"  int8 {name}: {'chosen' if report.passed else 'failed the quality check'}: {report.summary()}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX for ONNX Runtime", description="Export a model for fast runtimes.")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    o = formats.add_parser(
        "onnx",
        help="ONNX graph with dynamic batch and sequence axes",
        description="Export a model directory to an ONNX file, checked against PyTorch before it is written.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    o.add_argument("--model", required=True, help="model directory (config.json, model.safetensors, vocab.txt)")
    o.add_argument("--out", required=True, help="the .onnx file to write (a previous ONNX model there is replaced)")
    o.add_argument("--overwrite", action="store_true", help="replace OUT even when it is not an ONNX model")
    o.add_argument("--int8", action="store_true", help="dynamic int8 quantization of the weights (smaller, faster on CPU)")
    o.add_argument("--optimize", action="store_true", help="fuse LayerNorm/residual/GELU/attention into ONNX Runtime's fused operators")
    o.add_argument("--task", choices=["fill-mask", "classify", "embed"], default=None, help="what the graph computes (default: the model's own task)")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    o.add_argument("--atol", type=float, default=1e-4, help="largest allowed fp32 difference from PyTorch (default 1e-4)")
    o.add_argument("--int8-min-agreement", type=float, default=0.99,
                   help="classifiers: the int8 graph must give the fp32 graph's label on this share of the probe "
                   "sentences, or a safer scheme is tried and, failing all, nothing is written (default 0.99)")
    o.add_argument("--int8-min-cosine", type=float, default=0.99,
                   help="embeddings: the int8 graph's cosine to fp32 on every probe sentence (default 0.99)")
    o.add_argument("--int8-scheme", choices=["auto", "dynamic", "static"], default="auto",
                   help="auto (default): dynamic; then 1/8 of the most sensitive MatMuls in fp32; static, calibrated "
                   "on other sentences; 1/4 and 1/2 in fp32; until one passes the quality check. dynamic or "
                   "static: that one alone")
    o.set_defaults(func=_export)
