"""`nanobert evaluate-mlm`: held-out masked-LM accuracy, loss and perplexity on fixed masks (tasks.evaluate_mlm)."""

from __future__ import annotations

import argparse
import logging

ORDER = 35  # after pretrain, before finetune
log = logging.getLogger("nanobert.cli")


def register(subparsers) -> None:
    from nanobert.tasks.evaluate_mlm import MLMEvalConfig

    d = MLMEvalConfig()
    p = subparsers.add_parser(
        "evaluate-mlm", help="score a pretrained masked LM on held-out text (accuracy, loss, perplexity)",
        description="Mask held-out text the standard way (15%% of the tokens chosen; of those 80%% [MASK], 10%% a "
        "random token, 10%% unchanged), with a fixed seed so that any two models with the same tokenizer are "
        "scored on exactly the same blanks, and report the accuracy over every chosen position, the mean loss "
        "and the perplexity. DATA is a directory written by 'nanobert prepare' (its test split by default; "
        "prepared with the model's tokenizer) or text files (.txt, .txt.gz, .jsonl, .parquet).",
        epilog="example: nanobert evaluate-mlm --model runs/mlm-cpu/model --data data/enwiki-8k-32",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="directory of a saved BertForMaskedLM (e.g. runs/mlm/model)")
    p.add_argument("--data", required=True, help="prepared shards directory, or a text file / directory of them")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the masks")
    p.add_argument("--max-sequences", type=int, default=d.max_sequences, help="score only the first N sequences")
    p.add_argument("--split", default=d.split, help="split of a prepared directory: test, val or train")
    p.add_argument("--mask-rate", type=float, default=d.mask_rate, help="share of tokens chosen for prediction")
    p.add_argument("--seq-len", type=int, default=d.seq_len,
                   help="text input only: tokens per sequence, special tokens included")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per batch (the masks depend on it: keep it the same to compare models)")
    p.add_argument("--out", help="also write the metrics to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from nanobert.errors import NanobertError
    from nanobert.fileio import write_json
    from nanobert.tasks.evaluate_mlm import MLMEvalConfig, evaluate_mlm

    if args.max_sequences is not None and args.max_sequences < 1:
        raise NanobertError(f"--max-sequences must be at least 1, got {args.max_sequences}")
    if args.batch_size < 1:
        raise NanobertError(f"--batch-size must be at least 1, got {args.batch_size}")
    cfg = MLMEvalConfig(seed=args.seed, mask_rate=args.mask_rate, batch_size=args.batch_size,
                        max_sequences=args.max_sequences, split=args.split, seq_len=args.seq_len)
    m = evaluate_mlm(args.model, args.data, cfg)
    print(f"MLM accuracy {100 * m['accuracy']:.2f}%  loss {m['loss']:.4f}  perplexity {m['perplexity']:.2f}  "
          f"({m['masked_tokens']:,} masked tokens in {m['sequences']:,} sequences, seed {m['seed']}, "
          f"mask rate {m['mask_rate']})")
    if args.out:
        write_json(args.out, m)
        log.info("saved %s", args.out)
    return 0
