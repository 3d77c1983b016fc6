"""`nanobert distill`: train a small classifier on a fine-tuned teacher's predictions (nanobert.distill)."""

from __future__ import annotations

import argparse
import dataclasses

ORDER = 41  # right after finetune / evaluate

_EPILOG = """\
The output directory is an ordinary classifier (as 'nanobert finetune' writes): evaluate, classify,
export onnx --int8 --optimize and serve take it as is. Training state (checkpoints, metrics.csv,
train.log, plots) is in OUT/run; --resume continues it exactly.

students: a preset (mini = L2/H128, small = L4/H256, ...) or sizes (L4/H128; the teacher's tokenizer), teacher:K (the
teacher's shape with K layers; with --init-from-teacher it starts from every other teacher layer),
or a model directory (its own tokenizer; logits-only distillation when it differs from the teacher's).

examples:
  nanobert distill --teacher sst2-minilm --student small --train sst2/train.tsv --validation sst2/dev.tsv \\
      --out sst2-small --temperature 2 --alpha 0.5 --epochs 3 --lr 1e-4
  nanobert distill --teacher sst2-minilm --student teacher:3 --init-from-teacher --hidden-loss 1 \\
      --attention-loss 1 --unlabeled reviews.txt --train ... --validation ... --out sst2-l3
  nanobert distill --teacher sst2-minilm --student L4/H128 --init-embeddings-from-teacher --augment 4 \\
      --train sst2/train.tsv --validation sst2/dev.tsv --out sst2-l4   (TinyBERT-style augmented text)
  nanobert distill --teacher sst2-minilm --student teacher:1 --init-from-teacher --prune-vocab 9200 \\
      --augment 2 --teacher-logits-cache aug-logits.safetensors --train ... --validation ... --out sst2-t1
  nanobert distill --teacher sst2-minilm --student teacher:3 --init-from-teacher --prune-vocab 6100 \\
      --prune-ffn 512 --hidden-loss 1 --train ... --validation ... --out sst2-t3   (3 layers in a quarter of MiniLM)
  nanobert distill ... --config recipe.toml --loss.temperature 4   (any DistillConfig field as --key value)
"""


def _config(args):
    from nanobert.config import load_config
    from nanobert.distill import DistillConfig

    overrides = list(args.overrides)
    named = {"student": args.student, "loss.temperature": args.temperature, "loss.alpha": args.alpha,
             "loss.hidden": args.hidden_loss, "loss.attention": args.attention_loss,
             "init_from_teacher": True if args.init_from_teacher else None, "epochs": args.epochs, "lr": args.lr,
             "init_embeddings_from_teacher": True if args.init_embeddings_from_teacher else None,
             "augment.n": args.augment, "prune_vocab": args.prune_vocab, "prune_ffn": args.prune_ffn,
             "teacher_logits_cache": args.teacher_logits_cache,
             "precision": args.precision, "teacher_precision": args.teacher_precision,
             "batch_size": args.batch_size, "max_length": args.max_length, "seed": args.seed,
             "max_train_examples": args.max_train_examples, "max_unlabeled_examples": args.max_unlabeled_examples,
             "text_column": args.text_column, "label_column": args.label_column, "threads": args.threads}
    for key, value in named.items():
        if value is not None:
            overrides = [f"--{key}", str(value)] + overrides
    cfg = load_config(DistillConfig, args.config, overrides)
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    return cfg


def _distill(args) -> int:
    from nanobert.distill import distill
    from nanobert.train.metrics import format_report

    cfg = _config(args)
    r = distill(args.teacher, args.train, args.validation, args.out, cfg, unlabeled=args.unlabeled or [],
                resume=args.resume)
    print(f"student {r['student']}: {r['student_params']:,} parameters ({100 * r['param_ratio']:.1f}% of the "
          f"teacher's {r['teacher_params']:,}); {r['steps']} steps, {r['train_time_s']:.0f} s training, "
          f"{r['train_examples']:,} labelled + {r['unlabeled_examples']:,} unlabelled rows")
    print(f"validation accuracy: student {r['accuracy']:.4f}, teacher {r['teacher_accuracy']:.4f} "
          f"({100 * (r['accuracy'] - r['teacher_accuracy']):+.2f} points)\n")
    print(format_report(r), end="")
    print(f"\nsaved to {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "distill", help="distil a fine-tuned classifier into a smaller, faster one",
        description="Train a student classifier on a fine-tuned teacher's temperature-softened predictions "
        "(KL x T², mixed with the hard labels by --alpha) over the labelled training file and any unlabelled "
        "text (--unlabeled), optionally matching its hidden states and attention maps layer by layer. Trains "
        "through the shared loop (checkpoints each epoch, exact --resume) and keeps the last step's weights.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="classifier directory written by 'nanobert finetune'")
    p.add_argument("--student", help="preset (mini, small, ...), teacher:K, or a model directory (default small)")
    p.add_argument("--train", required=True, help="labelled training file (.csv .tsv .jsonl .parquet, optionally .gz)")
    p.add_argument("--unlabeled", nargs="+", metavar="FILE",
                   help="unlabelled text the teacher labels: .txt(.gz) one text a line, or a table's text column")
    p.add_argument("--validation", required=True, help="labelled file scored after each epoch and at the end")
    p.add_argument("--out", required=True, help="output directory: the student classifier, with OUT/run")
    p.add_argument("--config", help="TOML file with DistillConfig fields")
    p.add_argument("--temperature", type=float, help="softmax temperature of both models' distributions (default 2)")
    p.add_argument("--alpha", type=float, help="weight of the teacher's soft loss on labelled rows; 1 - alpha "
                   "goes to the labels (default 0.5; unlabelled rows use the soft loss alone)")
    p.add_argument("--hidden-loss", type=float, metavar="WEIGHT",
                   help="add the hidden-state MSE with this weight (default 0: off)")
    p.add_argument("--attention-loss", type=float, metavar="WEIGHT",
                   help="add the attention-map MSE with this weight (default 0: off)")
    p.add_argument("--init-from-teacher", action="store_true",
                   help="start from the teacher's embeddings and every other layer (student of the teacher's width)")
    p.add_argument("--init-embeddings-from-teacher", action="store_true",
                   help="start a narrower student's embeddings from the teacher's, projected onto their top "
                   "principal axes (the student keeps the teacher's vocabulary)")
    p.add_argument("--prune-vocab", type=int, metavar="N",
                   help="keep only the N teacher tokens the training rows use most (and every ASCII character): "
                   "a teacher-wide student (teacher:K) in far fewer parameters")
    p.add_argument("--prune-ffn", type=int, metavar="N",
                   help="with --init-from-teacher: keep the N feed-forward neurons of each layer that matter most "
                   "to the task (first-order Taylor scores on 2,048 training rows), so more teacher layers fit")
    p.add_argument("--augment", type=int, metavar="N",
                   help="add up to N variants of each training sentence, words swapped for their nearest "
                   "neighbours in the teacher's word embeddings, as unlabelled rows (--augment.p 0.4, "
                   "--augment.k 15, --augment.min_words 3; default 0: off)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="the student's training (default fp32)")
    p.add_argument("--teacher-precision", choices=["auto", "fp32", "bf16"],
                   help="the teacher's labelling pass (default auto: bf16 where the CPU does bf16 matmuls)")
    p.add_argument("--teacher-logits-cache", metavar="FILE",
                   help="a .safetensors file of the teacher's logits: reused when the teacher and the rows are the "
                   "same, else written (students tried one after another skip the teacher's pass)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-length", type=int, help="truncate inputs to this many tokens (default 128)")
    p.add_argument("--max-train-examples", type=int, help="distil on a random subset of the labelled file")
    p.add_argument("--max-unlabeled-examples", type=int, help="the first N texts of each unlabelled file")
    p.add_argument("--text-column", help="column with the text (default: the teacher's)")
    p.add_argument("--label-column", help="column with the labels (default: the teacher's)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/run")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_distill, accepts_overrides=True)
