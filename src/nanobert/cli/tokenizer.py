"""`nanobert tokenizer train|encode|decode`: learn a vocabulary, and see what it does to text."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nanobert.errors import NanobertError

ORDER = 10
log = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train a tokenizer; encode and decode with it",
                                   description="Train a WordPiece (BERT), byte-level BPE (GPT-2) or character "
                                   "tokenizer from text files, and show how it encodes and decodes text.",
                                   epilog="example: nanobert tokenizer train --input corpus.txt --vocab-size 8000 "
                                   "--out tok && nanobert tokenizer encode --tokenizer tok 'Hello, world!'")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="learn a vocabulary from text files",
                           description="Learn a vocabulary from text files (one document or paragraph a line; "
                           ".gz read compressed) and write it to --out: vocab.txt + tokenizer_config.json for "
                           "WordPiece (readable by transformers' BertTokenizerFast), vocab.json + merges.txt for "
                           "BPE, vocab.json for characters.")
    train.add_argument("--input", nargs="+", required=True, type=Path, metavar="FILE", help="UTF-8 text files")
    train.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="directory to write the tokenizer to (new or empty, or a previous one with --overwrite)")
    train.add_argument("--overwrite", action="store_true", help="replace DIR when it holds a previously trained tokenizer")
    train.add_argument("--kind", choices=["wordpiece", "bpe", "char"], default="wordpiece",
                       help="wordpiece: BERT (default); bpe: GPT-2 byte-level BPE; char: one token per character")
    train.add_argument("--vocab-size", type=int, default=None,
                       help="tokens in the vocabulary, special tokens included (default 30522, BERT's; not for "
                       "--kind char, whose vocabulary is every character of the corpus)")
    train.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                       help="lowercase the text, as uncased BERT (WordPiece only; default on)")
    train.add_argument("--strip-accents", action=argparse.BooleanOptionalAction, default=None,
                       help="remove accents (WordPiece only; default: follow --lowercase)")
    train.add_argument("--min-frequency", type=int, default=2, help="merge only pairs seen this often (default 2)")
    train.add_argument("--limit-alphabet", type=int, default=1000,
                       help="WordPiece: keep the N most frequent characters (default 1000)")
    train.set_defaults(func=_train)

    for name, helptext in (("encode", "show the tokens and ids of a text"), ("decode", "turn ids back into text")):
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("--tokenizer", required=True, type=Path, metavar="DIR",
                       help="a directory written by 'nanobert tokenizer train' (or a BERT/GPT-2 model directory)")
        if name == "encode":
            p.add_argument("text", nargs="*", help="text to encode (default: read standard input)")
            p.add_argument("--no-special-tokens", action="store_true", help="leave out [CLS]/[SEP]")
        else:
            p.add_argument("ids", nargs="+", type=int, help="token ids")
            p.add_argument("--keep-special-tokens", action="store_true", help="keep [CLS], [SEP], [PAD]")
        p.set_defaults(func=_encode if name == "encode" else _decode)


def _train(args) -> int:
    from nanobert.fileio import output_dir
    from nanobert.tokenizers import ByteLevelBPETokenizer, CharTokenizer, WordPieceTokenizer
    from nanobert.tokenizers.trainer import iter_lines

    for path in args.input:
        if not path.is_file():
            raise NanobertError(f"input file not found: {path}")
    if args.kind == "char" and args.vocab_size is not None:
        raise NanobertError("--vocab-size does not apply to --kind char (its vocabulary is every character of the "
                            "corpus); leave it out")
    vocab_size = 30522 if args.vocab_size is None else args.vocab_size
    if vocab_size < 1:
        raise NanobertError(f"--vocab-size must be positive, got {vocab_size}")
    with output_dir(args.out, "tokenizer train", args.input, args.overwrite) as tmp:  # checked before training
        if args.kind == "wordpiece":
            tok = WordPieceTokenizer.train(args.input, vocab_size=vocab_size, lowercase=args.lowercase,
                                           strip_accents=args.strip_accents, min_frequency=args.min_frequency,
                                           limit_alphabet=args.limit_alphabet, progress=True)
        elif args.kind == "bpe":
            tok = ByteLevelBPETokenizer.train(args.input, vocab_size=vocab_size, min_frequency=args.min_frequency,
                                              progress=True)
        else:
            tok = CharTokenizer.train(line for line in iter_lines(args.input) if line)
        tok.save(tmp)
    log.info("wrote a %s tokenizer with %d tokens to %s", args.kind, tok.vocab_size, args.out)
    return 0


def _encode(args) -> int:
    from nanobert.data.textio import read_text
    from nanobert.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    if args.text:
        text = " ".join(args.text)
        if any("\udc80" <= c <= "\udcff" for c in text):  # bytes the locale could not decode, kept as surrogates
            raise NanobertError("the text argument is not valid UTF-8; pass UTF-8 text")
    else:
        text = read_text("-")
    ids = tok.encode(text, add_special_tokens=not args.no_special_tokens)
    print("tokens:", " ".join(tok.id_to_token(i) for i in ids))
    print("ids:   ", " ".join(map(str, ids)))
    print("decode:", tok.decode(ids))
    return 0


def _decode(args) -> int:
    from nanobert.tokenizers import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    print(tok.decode(args.ids, skip_special_tokens=not args.keep_special_tokens))
    return 0
