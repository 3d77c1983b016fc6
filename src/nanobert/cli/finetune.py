"""`nanobert finetune` and `nanobert evaluate`: train a classifier on a labelled file, score one on another."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ORDER = 40

_EPILOG_FT = """\
The output directory is a complete model (transformers' BertForSequenceClassification loads it):
config.json with id2label/label2id, model.safetensors (LoRA merged in), the tokenizer files,
adapter/ (the LoRA adapter as PEFT saves it, with --lora-r), tabular.json (with --tabular-columns),
finetune.json, metrics.json, classification_report.txt and confusion_matrix.png.

examples:
  nanobert finetune --model minilm/ --train sst2/train.tsv --validation sst2/dev.tsv --out sst2-full \\
      --epochs 2 --lr 5e-5
  nanobert finetune --model minilm/ --train train.csv --validation dev.csv --out lora-r8 \\
      --lora-r 8 --lora-targets query,value --lora-layers last-4 --lr 5e-4
  nanobert finetune ... --config recipe.toml --warmup_ratio 0.1     (any FinetuneConfig field as --key value)
"""


def _config(args):
    from nanobert.config import load_config
    from nanobert.tasks.finetune import FinetuneConfig

    # Named options first become overrides, so a TOML file can hold the rest and the command line wins.
    overrides = list(args.overrides)
    named = {"text_column": args.text_column, "text_pair_column": args.text_pair_column,
             "label_column": args.label_column, "tabular_columns": args.tabular_columns, "epochs": args.epochs,
             "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length,
             "max_train_examples": args.max_train_examples, "max_minutes": args.max_minutes,
             "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_targets": args.lora_targets,
             "lora_layers": args.lora_layers, "lora_modules_to_save": args.lora_modules_to_save,
             "lora_plus_ratio": args.lora_plus_ratio, "keep": args.keep, "seed": args.seed, "threads": args.threads}
    for key, value in named.items():
        if value is not None:
            overrides = [f"--{key}", str(value)] + overrides
    cfg = load_config(FinetuneConfig, args.config, overrides)
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    return cfg


def _finetune(args) -> int:
    from nanobert.tasks.classification_report import format_report
    from nanobert.tasks.finetune import finetune

    cfg = _config(args)
    report = finetune(args.model, args.train, args.validation, args.out, cfg, test_file=args.test)
    print(f"best epoch {report['best_epoch']} of {len(report['history'])}; {report['split']} loss "
          f"{report['loss']:.4f}; trainable parameters {report['trainable_params']:,} of {report['total_params']:,} "
          f"({100 * report['trainable_fraction']:.2f}%); training {report['train_time_s']:.0f} s")
    for h in report["history"]:
        print(f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f}  val loss {h['val_loss']:.4f}  "
              f"val accuracy {h['val_accuracy']:.4f}  {h['seconds']:.0f} s")
    print()
    print(format_report(report), end="")
    print(f"\nsaved to {args.out}")
    return 0


def _evaluate(args) -> int:
    from nanobert.fileio import write_json
    from nanobert.tasks.classification_report import format_report, plot_confusion_matrix
    from nanobert.tasks.finetune import evaluate

    metrics = evaluate(args.model, args.data, batch_size=args.batch_size, text_column=args.text_column,
                       text_pair_column=args.text_pair_column, label_column=args.label_column,
                       progress=not args.no_progress and sys.stderr.isatty())
    print(format_report(metrics, digits=args.digits), end="")
    print(f"\nloss {metrics['loss']:.4f}")
    if args.out:
        write_json(args.out, metrics)
        png = Path(args.out).with_suffix(".png")
        plot_confusion_matrix(metrics["confusion_matrix"], list(metrics["per_class"]), png)
        print(f"saved {args.out} and {png}")
    return 0


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", help="column with the text (default: 'text' or 'sentence', whichever exists)")
    p.add_argument("--text-pair-column", help="column with a second text, for sentence-pair tasks")
    p.add_argument("--label-column", help="column with the labels, strings or integers (default: label)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a BERT classifier (full, LoRA, or text + tabular)",
        description="Fine-tune a BERT checkpoint (ours or any Hugging Face BERT directory) for classification on a "
        "CSV, TSV, JSONL or parquet file. Each epoch ends with a validation pass; the weights of the epoch with "
        "the lowest validation loss are kept (--keep). Prints the classification report of the kept model.",
        epilog=_EPILOG_FT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="directory with config.json, model.safetensors and vocab.txt")
    p.add_argument("--train", required=True, help="labelled training file (.csv .tsv .jsonl .parquet, optionally .gz)")
    p.add_argument("--validation", required=True, help="labelled file scored after each epoch")
    p.add_argument("--test", help="labelled file scored once with the kept model (else the report is on validation)")
    p.add_argument("--out", required=True, help="output directory (replaced whole when training ends)")
    p.add_argument("--config", help="TOML file with FinetuneConfig fields")
    _columns(p)
    p.add_argument("--tabular-columns", help="comma-separated numeric columns to use beside the text")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 5e-5; LoRA wants ~5e-4)")
    p.add_argument("--max-length", type=int, help="truncate inputs to this many tokens (default 128)")
    p.add_argument("--max-train-examples", type=int, help="train on a random subset of this size")
    p.add_argument("--max-minutes", type=float, help="stop training after this much time")
    p.add_argument("--lora-r", type=int, help="LoRA rank; 0 (default) trains every weight")
    p.add_argument("--lora-alpha", type=float, help="LoRA scaling numerator (default 16; the update is scaled alpha/r)")
    p.add_argument("--lora-targets", help="linear layers to adapt, e.g. query,value (default) or query,key,value,dense")
    p.add_argument("--lora-layers", help="encoder layers to adapt: all (default), last-4, or 8,9,10,11")
    p.add_argument("--lora-modules-to-save", help="modules trained in full beside the adapters: classifier "
                   "(default) or classifier,pooler")
    p.add_argument("--lora-plus-ratio", type=float, help="LoRA+: lora_B's learning rate is this many times --lr "
                   "(default 1, plain LoRA; 16 is LoRA+'s choice)")
    p.add_argument("--keep", choices=["loss", "accuracy", "last"],
                   help="which epoch's weights to keep: lowest validation loss (default), highest accuracy, or the last")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_finetune, accepts_overrides=True)

    e = subparsers.add_parser(
        "evaluate", help="score a fine-tuned classifier on a labelled file",
        description="Print the classification report (precision, recall, F1 per class, accuracy, macro and "
        "weighted averages) and the loss of a model saved by 'nanobert finetune' on any labelled file. Columns "
        "default to the ones the model was trained with.")
    e.add_argument("--model", required=True, help="directory written by 'nanobert finetune'")
    e.add_argument("--data", required=True, help="labelled file (.csv .tsv .jsonl .parquet, optionally .gz)")
    _columns(e)
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--digits", type=int, default=2, help="decimals in the report")
    e.add_argument("--out", help="also write the metrics to this JSON file and the confusion matrix beside it (.png)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_evaluate)
