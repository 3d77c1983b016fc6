"""`nanobert pretrain`: masked-language-model pretraining from a TOML recipe (nanobert.tasks.pretrain)."""

from __future__ import annotations

import argparse
import logging

ORDER = 30
log = logging.getLogger("nanobert.cli")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a BERT with masked language modeling",
        description="Pretrain BertForMaskedLM on data written by 'nanobert prepare'. Settings come from the "
        "PretrainConfig defaults, then --config FILE (TOML with [data], [model] and [train] tables), then "
        "--key value overrides such as --train.max_steps 500 --model.preset small --data.batch_size 64 "
        "(unknown keys are an error). Writes checkpoints, metrics.csv, train.log, TensorBoard events, "
        "loss/accuracy PNGs and the final Hugging Face-format model (OUT_DIR/model) to out_dir. "
        "--objective rtd trains ELECTRA's replaced-token detection instead (a 1-layer generator fills the "
        "masks, the BERT learns which tokens were replaced; OUT_DIR/model is then the discriminator as a BERT "
        "encoder to fine-tune, OUT_DIR/model/generator the generator). "
        "Several processes: torchrun --nproc-per-node N -m nanobert pretrain ...",
        epilog="example: nanobert pretrain --config configs/mlm-cpu.toml --train.max_steps 2000 --out_dir runs/cpu",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML recipe, e.g. configs/mlm-cpu.toml")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in out_dir (same settings); ends exactly where an "
                   "uninterrupted run would")
    p.add_argument("--overwrite", action="store_true",
                   help="replace out_dir when it holds a previous run of pretrain (else a new or empty directory)")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args) -> int:
    from nanobert.cli.run_output import training_output
    from nanobert.config import load_config
    from nanobert.tasks.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    with training_output(cfg.out_dir, "pretrain", [cfg.data.dir], args.overwrite, args.resume):
        state = pretrain(cfg, resume=args.resume)
    if state.info.is_main:
        m = state.metrics
        rtd = cfg.objective == "rtd"  # the loss is generator + weight x discriminator: no perplexity
        extra = (f"; val loss {m['loss']:.4f}, {'generator ' if rtd else ''}MLM accuracy {m['accuracy']:.4f}"
                 + ("" if rtd else f", perplexity {m['perplexity']:.2f}")) if m else ""
        log.info("done: %d steps%s; model saved to %s/model", state.step, extra, cfg.out_dir)
    return 0
