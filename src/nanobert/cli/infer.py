"""`nanobert fill-mask`, `classify`, `embed` and `report`: the inference pipelines from the command line.

The library is imported inside each command, so that building the parser does not load torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nanobert.data.textio import open_text
from nanobert.errors import NanobertError

ORDER = 50

_MODEL_HELP = "a model directory (runs in PyTorch) or an .onnx file from `nanobert export onnx` (runs in ONNX Runtime)"


def read_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts from a UTF-8 file, one per line (.gz read transparently); .tsv: the first column, header skipped.

    Empty lines and WikiText-style headers (" = Title = ") are skipped. A file that is not UTF-8
    text (another encoding, a binary file) is one clear error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"input file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    texts = []
    with open_text(path, "input file") as f:  # UTF-8, .gz, binary and truncated files: one clear error each
        for n, line in enumerate(f):
            line = line.rstrip("\n")
            if ".tsv" in path.suffixes:
                if n == 0:
                    continue
                line = line.split("\t")[0]
            if not line.strip() or (line.strip().startswith("=") and line.strip().endswith("=")):
                continue
            texts.append(line.strip())
            if limit and len(texts) >= limit:
                break
    if not texts:
        raise NanobertError(f"{path} has no text lines")
    return texts


def _check_out(out: str | None) -> None:
    """Fail before any work when --out names a directory (the file would be written as a sibling temp, then fail)."""
    if out and Path(out).is_dir():
        raise NanobertError(f"--out {out} is a directory; give a file name (e.g. {Path(out) / 'out.npy'})")


def _texts(args) -> list[str]:
    if args.input and args.texts:
        raise NanobertError("give texts on the command line or --input FILE, not both")
    if args.input:
        return read_texts(args.input, getattr(args, "limit", None))
    if not args.texts:
        raise NanobertError("no text given: pass one or more TEXT arguments or --input FILE")
    return args.texts


def _pipe(cls, args):
    providers = args.provider.split(",") if args.provider else None
    return cls(args.model, batch_size=args.batch_size, providers=providers, threads=args.threads)


def _fill_mask(args) -> int:
    from nanobert.infer.pipelines import FillMaskPipeline, check_top_k

    check_top_k(args.top_k)
    texts = _texts(args)
    results = _pipe(FillMaskPipeline, args)(texts, top_k=args.top_k)
    for text, per_mask in zip(texts, results):
        if args.json:
            print(json.dumps({"text": text, "masks": per_mask}, ensure_ascii=False))
            continue
        print(text)
        for m, candidates in enumerate(per_mask, 1):
            shown = "   ".join(f"{c['word']} {c['score']:.3g}" for c in candidates)
            print(f"  [MASK] {m}: {shown}")
        print(f"  -> {per_mask and per_mask[-1][0]['sequence']}")
    return 0


def _classify(args) -> int:
    from nanobert.infer.pipelines import ClassifyPipeline

    texts = _texts(args)
    for text, r in zip(texts, _pipe(ClassifyPipeline, args)(texts)):
        if args.json:
            print(json.dumps({"text": text, **r}, ensure_ascii=False))
        else:
            print(f"{r['label']}\t{r['score']:.4f}\t{text}")
    return 0


def _embed(args) -> int:
    import numpy as np

    from nanobert.fileio import atomic_path
    from nanobert.infer.pipelines import EmbedPipeline

    _check_out(args.out)
    texts = _texts(args)
    vectors = _pipe(EmbedPipeline, args)(texts)  # (N, H)
    if args.out:
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, vectors)
        print(f"saved {vectors.shape[0]} embeddings of dimension {vectors.shape[1]} to {args.out}", file=sys.stderr)
    else:
        for text, v in zip(texts, vectors):
            print(json.dumps({"text": text, "embedding": [round(float(x), 6) for x in v]}, ensure_ascii=False))
    return 0


def _report(args) -> int:
    from nanobert.infer.pipelines import FillMaskPipeline, check_top_k
    from nanobert.infer.report import mask_and_predict, write_report

    _check_out(args.out)
    check_top_k(args.top_k)
    texts = _texts(args)
    examples = mask_and_predict(_pipe(FillMaskPipeline, args), texts, mask_prob=args.mask_prob, seed=args.seed, top_k=args.top_k)
    accuracy = write_report(args.out, examples, title=args.title or str(args.model))
    masked = sum(len(e.masked) for e in examples)
    print(f"accuracy {accuracy:.1%} on {masked} masked words in {len(examples)} texts; saved {args.out}")
    return 0


def _common(p: argparse.ArgumentParser, input_help: str) -> None:
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to run (or use --input)")
    p.add_argument("--model", required=True, help=_MODEL_HELP)
    p.add_argument("--input", metavar="FILE", help=input_help)
    p.add_argument("--batch-size", type=int, default=32, help="texts per model call (default 32)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the runtime's choice)")
    p.add_argument(
        "--provider",
        default=None,
        help="ONNX Runtime execution providers, comma-separated (default: TensorRT, then CUDA, then CPU, as installed)",
    )


def register(sub) -> None:
    file_help = "one text per line (.gz ok; .tsv: the first column, after a header)"

    p = sub.add_parser(
        "fill-mask",
        help="predict the words behind [MASK] tokens",
        description="Top-k predictions with probabilities for every [MASK] in each text; pieces of a word are "
        "shown joined (jump + ##s -> jumps).",
        epilog='example: nanobert fill-mask --model runs/mlm "The quick brown fox [MASK] over the lazy [MASK]."',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p, file_help)
    p.add_argument("--top-k", type=int, default=5, help="candidates per mask (default 5; at most 50, and 20 [MASK]s a text)")
    p.add_argument("--json", action="store_true", help="one JSON object per text instead of the readable listing")
    p.set_defaults(func=_fill_mask)

    p = sub.add_parser(
        "classify",
        help="label texts with a fine-tuned classifier",
        description="Prints label, probability and text per line (--json: every label's probability).",
        epilog="example: nanobert classify --model runs/sst2 \"a charming, funny film\" \"dull and far too long\"",
    )
    _common(p, file_help)
    p.add_argument("--json", action="store_true", help="one JSON object per text with all probabilities")
    p.set_defaults(func=_classify)

    p = sub.add_parser(
        "embed",
        help="sentence embeddings (mean pooling, L2-normalised)",
        description="Mean of the last hidden states over the text's tokens, L2-normalised: for all-MiniLM-L6-v2 the "
        "same vectors as sentence-transformers. Prints JSON lines, or saves an (N, H) .npy array with --out.",
        epilog="example: nanobert embed --model minilm/ --input sentences.txt --out vectors.npy",
    )
    _common(p, file_help)
    p.add_argument("--out", metavar="FILE.npy", help="save the embeddings as a NumPy array instead of printing them")
    p.set_defaults(func=_embed)

    p = sub.add_parser(
        "report",
        help="HTML page of masked-word predictions, right and wrong",
        description="Masks about --mask-prob of the words of each text, lets the model predict them and writes an "
        "HTML page: predictions in green when right, red with the original word when wrong, and the accuracy.",
        epilog="example: nanobert report --model runs/mlm --input enwiki_clean.txt.gz --limit 20 --out report.html",
    )
    _common(p, file_help + "; WikiText ' = Title = ' lines are skipped")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--limit", type=int, default=20, help="texts to take from --input (default 20)")
    p.add_argument("--mask-prob", type=float, default=0.15, help="fraction of words to mask (default 0.15)")
    p.add_argument("--top-k", type=int, default=3, help="candidates shown on hover (default 3)")
    p.add_argument("--seed", type=int, default=0, help="which words get masked (default 0)")
    p.add_argument("--title", default=None, help="page title (default: the model path)")
    p.set_defaults(func=_report)
