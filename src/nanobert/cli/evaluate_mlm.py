"""`nanobert evaluate-mlm`: held-out masked-LM accuracy, loss and perplexity on fixed masks (tasks.evaluate_mlm)."""

from __future__ import annotations

import logging

ORDER = 35  # after pretrain, before finetune
log = logging.getLogger("nanobert.cli")


CONFIG = "nanobert.tasks.evaluate_mlm:MLMEvalConfig"
FLAGS = ["seed", "max_sequences", "split", "mask_rate", "seq_len", "batch_size", "text_column"]  # every field


def register(subparsers) -> None:
    from nanobert.cli.options import add_dataclass_args

    p = subparsers.add_parser(
        "evaluate-mlm", help="score a pretrained masked LM on held-out text (accuracy, loss, perplexity)",
        description="Mask held-out text the standard way (15%% of the tokens chosen; of those 80%% [MASK], 10%% a "
        "random token, 10%% unchanged), with a fixed seed so that any two models with the same tokenizer are "
        "scored on exactly the same blanks, and report the accuracy over every chosen position, the mean loss "
        "and the perplexity. DATA is a directory written by 'nanobert prepare' (its test split by default; "
        "prepared with the model's tokenizer) or text files (.txt, .txt.gz, .jsonl, .parquet).",
        epilog="example: nanobert evaluate-mlm --model runs/mlm-cpu/model --data data/enwiki-8k-32")
    p.add_argument("--model", required=True, help="directory of a saved BertForMaskedLM (e.g. runs/mlm/model)")
    p.add_argument("--data", required=True, help="prepared shards directory, or a text file / directory of them")
    add_dataclass_args(p, CONFIG, FLAGS)
    p.add_argument("--out", help="also write the metrics to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from nanobert.cli.options import given_values
    from nanobert.config import load_config
    from nanobert.fileio import write_json
    from nanobert.tasks.evaluate_mlm import MLMEvalConfig, evaluate_mlm

    cfg = load_config(MLMEvalConfig, values=given_values(args, FLAGS))
    m = evaluate_mlm(args.model, args.data, cfg)
    print(f"MLM accuracy {100 * m['accuracy']:.2f}%  loss {m['loss']:.4f}  perplexity {m['perplexity']:.2f}  "
          f"({m['masked_tokens']:,} masked tokens in {m['sequences']:,} sequences, seed {m['seed']}, "
          f"mask rate {m['mask_rate']})")
    if args.out:
        write_json(args.out, m)
        log.info("saved %s", args.out)
    return 0
