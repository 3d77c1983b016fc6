"""The `nanobert` command: a thin layer of subcommands over the library.

Each module in this package registers its subcommands with `register(subparsers)` and sets
`ORDER` (its place in the pipeline: tokenizer → prepare → pretrain → finetune → infer → export
→ serve → generate → demo) so that `nanobert --help` reads like the pipeline. A subcommand's
handler returns an exit code; a `NanobertError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from nanobert import __version__
from nanobert.errors import NanobertError


def _command_modules():
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m for m in mods if hasattr(m, "register")), key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanobert",
        description="Build BERT- and GPT-style language models from scratch: train a tokenizer, pretrain with "
        "masked language modeling, fine-tune, evaluate, predict, export to ONNX and serve.",
        epilog="Run 'nanobert COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"nanobert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except NanobertError as e:
        print(f"nanobert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanobert: interrupted", file=sys.stderr)
        return 130
