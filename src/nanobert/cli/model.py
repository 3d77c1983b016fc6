"""`nanobert model presets | info | convert`: look at model sizes and checkpoints, convert old layouts.

    nanobert model presets                      # parameter counts of every preset
    nanobert model info out/model               # what a saved model is, and whether it loads strictly
    nanobert model convert old_dir/ new_dir/    # pytorch_model.bin / gamma-beta / BertForPreTraining -> safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nanobert.errors import NanobertError

ORDER = 25


def _presets(args) -> int:
    from nanobert.model.bert import preset_table

    print(f"{'preset':<14} {'sizes':<13} {'BertModel':>12} {'+MLM head':>12} {'+classifier':>12}  (vocab {args.vocab_size})")
    for name, sizes, base, mlm, clf in preset_table(args.vocab_size):
        print(f"{name:<14} {sizes:<13} {base:>12,} {mlm:>12,} {clf:>12,}")
    return 0


def _info(args) -> int:
    from nanobert.model.bert import load_model

    model = load_model(args.dir)
    cfg, report = model.config, model.load_report
    print(f"{args.dir}: {type(model).__name__}, {model.num_parameters():,} parameters")
    print(f"  L{cfg.num_hidden_layers}/H{cfg.hidden_size}/A{cfg.num_attention_heads}, intermediate "
          f"{cfg.intermediate_size}, vocab {cfg.vocab_size}, max positions {cfg.max_position_embeddings}")
    variants = [f"{k}={getattr(cfg, k)}" for k in ("position_embedding_type", "pre_layer_norm", "norm_type", "use_bias")]
    print(f"  {', '.join(variants)}; loadable by transformers: {'yes' if cfg.hf_compatible else 'no'}")
    if cfg.num_labels and type(model).__name__ == "BertForSequenceClassification":
        print(f"  labels: {', '.join(cfg.labels)}")
    print(f"  weights: {len(report.loaded)} tensors loaded, {len(report.dropped)} not used"
          + (f" ({', '.join(report.dropped[:4])}{', ...' if len(report.dropped) > 4 else ''})" if report.dropped else ""))
    return 0


def _convert(args) -> int:
    from nanobert.model.bert import load_model

    src, dst = Path(args.src), Path(args.dst)
    if dst.resolve() == src.resolve():
        raise NanobertError("convert writes a new directory; give a destination other than the source")
    model = load_model(src)
    tokenizer = None
    if (src / "vocab.txt").is_file():
        from nanobert.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(src)
    model.save_pretrained(dst, tokenizer=tokenizer, require_hf=args.require_hf)
    print(f"wrote {type(model).__name__} to {dst} (config.json, model.safetensors"
          + (", tokenizer files)" if tokenizer else ")"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="inspect presets and saved models; convert checkpoint layouts",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    q = sub.add_parser("presets", help="parameter counts of every model preset")
    q.add_argument("--vocab-size", type=int, default=30522, help="vocabulary size to count with (default: BERT's)")
    q.set_defaults(func=_presets)

    q = sub.add_parser("info", help="describe a saved model and check that it loads strictly")
    q.add_argument("dir", help="directory with config.json and model.safetensors (or pytorch_model.bin)")
    q.set_defaults(func=_info)

    q = sub.add_parser("convert", help="rewrite any BERT checkpoint layout as config.json + model.safetensors",
                       description="Read a BERT checkpoint in any layout nanobert understands (pytorch_model.bin, "
                       "TF-era gamma/beta names, BertForPreTraining with its NSP head, unprefixed BertModel) and "
                       "write config.json + model.safetensors (+ the tokenizer files when SRC has vocab.txt).")
    q.add_argument("src", help="directory to read")
    q.add_argument("dst", help="directory to write")
    q.add_argument("--require-hf", action="store_true",
                   help="fail if the model is a variant transformers cannot load (pre-LN, RMSNorm, ...)")
    q.set_defaults(func=_convert)
