"""`nanobert finetune` and `nanobert evaluate`: train a classifier on a labelled file, score one on another."""

from __future__ import annotations

import argparse
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
      --lora-r 8 --lora-targets query,value --lora-layers last-4          (LoRA's default lr: 1e-3)
  nanobert finetune ... --resume        (after a kill: rerun the same command with --resume)
  torchrun --nproc-per-node 2 -m nanobert finetune ...                  (data-parallel, same global batch)
  nanobert finetune ... --config recipe.toml --warmup_ratio 0.1 --lora.dropout 0.05   (any FinetuneConfig field)
"""


# FinetuneConfig fields with a named option (any other field: --key value after the options)
FLAGS = ["text_column", "text_pair_column", "label_column", "tabular_columns", "epochs", "batch_size", "lr",
         "max_length", "max_train_examples", "max_minutes", "grad_accum", "precision", "init", "pooling", "layer_lr_decay",
         "lora.r", "lora.alpha",
         "lora.targets", "lora.layers", "lora.modules_to_save", "lora.plus_ratio", "keep", "seed", "threads"]
COLUMN_FLAGS = FLAGS[:3]
CONFIG = "nanobert.tasks.finetune:FinetuneConfig"


def _config(args):
    from nanobert.cli.options import given_values
    from nanobert.config import load_config
    from nanobert.tasks.finetune import FinetuneConfig

    # Named options and a TOML file can be mixed: named options win over the file, --key value over both.
    cfg = load_config(FinetuneConfig, args.config, args.overrides, values=given_values(args, FLAGS))
    if args.no_progress:
        cfg.progress = False
    return cfg


def _finetune(args) -> int:
    from nanobert.cli.run_output import training_output
    from nanobert.tasks.finetune import RUN_DIR, finetune
    from nanobert.train.metrics import format_report

    cfg = _config(args)
    # Checked and locked before training: an output holding the data, or a previous model, is refused at once.
    with training_output(args.out, "finetune", [args.model, args.train, args.validation, args.test],
                         args.overwrite, args.resume, checkpoints=RUN_DIR) as out:
        report = finetune(args.model, args.train, args.validation, out, cfg, test_file=args.test, resume=args.resume)
    if not report:  # a torchrun process other than rank 0: rank 0 reports
        return 0
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
    from nanobert.tasks.finetune import evaluate_classifier
    from nanobert.train.metrics import format_report
    from nanobert.train.plots import plot_confusion_matrix

    metrics = evaluate_classifier(args.model, args.data, batch_size=args.batch_size, text_column=args.text_column,
                                  text_pair_column=args.text_pair_column, label_column=args.label_column)
    print(format_report(metrics, digits=args.digits), end="")
    print(f"\nloss {metrics['loss']:.4f}")
    if args.out:
        write_json(args.out, metrics)
        png = Path(args.out).with_suffix(".png")
        plot_confusion_matrix(metrics["confusion_matrix"], list(metrics["per_class"]), png)
        print(f"saved {args.out} and {png}")
    return 0


def register(subparsers) -> None:
    from nanobert.cli.options import add_dataclass_args

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
    p.add_argument("--out", required=True, help="output directory: a new or empty one, or a previous output of "
                   "finetune with --overwrite (replace it) or --resume (continue it)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it holds a previous output of finetune")
    p.add_argument("--config", help="TOML file with FinetuneConfig fields")
    add_dataclass_args(p, CONFIG, FLAGS)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints "
                   "(after a kill: the same final weights as an uninterrupted run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_finetune, accepts_overrides=True)

    e = subparsers.add_parser(
        "evaluate", help="score a fine-tuned classifier on a labelled file",
        description="Print the classification report (precision, recall, F1 per class, accuracy, macro and "
        "weighted averages) and the loss of a model saved by 'nanobert finetune' on any labelled file. Columns "
        "default to the ones the model was trained with.")
    e.add_argument("--model", required=True, help="directory written by 'nanobert finetune'")
    e.add_argument("--data", required=True, help="labelled file (.csv .tsv .jsonl .parquet, optionally .gz)")
    add_dataclass_args(e, CONFIG, COLUMN_FLAGS)
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--digits", type=int, default=2, help="decimals in the report")
    e.add_argument("--out", help="also write the metrics to this JSON file and the confusion matrix beside it (.png)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_evaluate)
