"""`nanobert train-gpt` (causal-LM pretraining) and `nanobert generate` (sampling from a GPT)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

ORDER = 80

log = logging.getLogger(__name__)

TRAIN_HELP = """\
Pretrain a GPT decoder (or the bigram baseline) to predict the next token.

The recipe is a TOML file of CausalLMConfig settings (see configs/gpt-austen-char.toml); any
setting can be overridden after the options, e.g. --loop.max_steps 200 --model.n_layer 2
--model_type bigram. The corpus is tokenized once into OUT_DIR/data (character vocabulary with
tokenizer = "char", or any saved tokenizer directory such as GPT-2's vocab.json + merges.txt),
then trained with checkpoints every loop.checkpoint_every steps; --resume continues the newest
one. At the end the whole val split is evaluated (loss and perplexity in OUT_DIR/results.json)
and the model is saved to OUT_DIR/model, ready for `nanobert generate` and for transformers'
GPT2LMHeadModel.from_pretrained."""

GENERATE_HELP = """\
Continue one or more prompts with a GPT saved by `nanobert train-gpt` or by transformers
(a directory with config.json, model.safetensors and the tokenizer's files).

Sampling by default (--temperature, --top-k, --top-p); --greedy picks the most likely token.
Several --prompt options are generated together as one batch. Generation stops after
--max-new-tokens or at end-of-text. The KV cache is on unless --no-cache (same tokens, slower)."""


def _train(args) -> int:
    from nanobert.cli.run_output import training_output
    from nanobert.config import load_config
    from nanobert.tasks.causal_lm import CausalLMConfig, train_causal_lm

    cfg = load_config(CausalLMConfig, args.config, args.overrides)
    inputs = [cfg.data_dir] if cfg.data_dir else [*cfg.inputs, cfg.tokenizer if cfg.tokenizer != "char" else None]
    with training_output(cfg.out_dir, "train-gpt", inputs, args.overwrite, args.resume):
        result = train_causal_lm(cfg, resume=args.resume)
    print(json.dumps(result, indent=2))
    return 0


def _generate(args) -> int:
    from nanobert.cli.options import given_values
    from nanobert.config import load_config
    from nanobert.errors import NanobertError
    from nanobert.infer.generate import GenerationConfig, generate_text
    from nanobert.model.gpt import GPT
    from nanobert.tokenizers import load_tokenizer

    if not args.prompt:
        raise NanobertError("give at least one --prompt TEXT")
    model = GPT.from_pretrained(args.model)
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    cfg = load_config(GenerationConfig, values=given_values(args, GENERATION_FLAGS))
    outputs = generate_text(model, tokenizer, args.prompt, cfg)
    for i, (prompt, text) in enumerate(zip(args.prompt, outputs)):
        if i:
            print("\n" + "-" * 40)
        sys.stdout.write(prompt + text + "\n")
    return 0


GENERATION_CONFIG = "nanobert.infer.generate:GenerationConfig"
GENERATION_FLAGS = ["max_new_tokens", "greedy", "temperature", "top_k", "top_p", "seed", "use_cache"]


def register(subparsers) -> None:
    from nanobert.cli.options import add_dataclass_args

    p = subparsers.add_parser("train-gpt", help="pretrain a GPT (or bigram) language model on text",
                              description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="TOML", help="recipe file, e.g. configs/gpt-austen-char.toml "
                   "(without it: the defaults, a small character GPT on the shipped Austen novels)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="replace out_dir when it holds a previous run of train-gpt (else a new or empty directory)")
    p.set_defaults(func=_train, accepts_overrides=True)

    g = subparsers.add_parser("generate", help="continue prompts with a GPT (greedy or sampled, KV cache)",
                              description=GENERATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--model", required=True, metavar="DIR", help="saved model directory (config.json, "
                   "model.safetensors)")
    g.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory, if not the model's")
    g.add_argument("--prompt", action="append", metavar="TEXT", help="text to continue; repeat for a batch")
    add_dataclass_args(g, GENERATION_CONFIG, GENERATION_FLAGS, names={"use_cache": "--no-cache"})
    g.set_defaults(func=_generate)
