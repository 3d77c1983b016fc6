"""Tokenizers written from scratch: BERT WordPiece, GPT-2 byte-level BPE, characters.

`load_tokenizer(dir)` opens whatever `Tokenizer.save(dir)` wrote (or a Hugging Face BERT/GPT-2
tokenizer directory): `vocab.txt` -> WordPiece, `vocab.json` + `merges.txt` -> byte-level BPE.
"""

from __future__ import annotations

import os
from pathlib import Path

from nanobert.errors import NanobertError
from nanobert.tokenizers.base import Tokenizer, read_config
from nanobert.tokenizers.bpe import ByteLevelBPETokenizer
from nanobert.tokenizers.char import CharTokenizer
from nanobert.tokenizers.wordpiece import WordPieceTokenizer

KINDS = {cls.kind: cls for cls in (WordPieceTokenizer, ByteLevelBPETokenizer, CharTokenizer)}


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in `directory`, its class chosen from tokenizer_config.json or the files there."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NanobertError(f"tokenizer directory not found: {directory}")
    kind = read_config(directory).get("nanobert_tokenizer")
    if kind is None:
        if (directory / "vocab.txt").is_file():
            kind = "wordpiece"
        elif (directory / "merges.txt").is_file():
            kind = "bpe"
    if kind not in KINDS:
        raise NanobertError(f"no tokenizer in {directory}: expected vocab.txt (WordPiece) or vocab.json + merges.txt"
                            " (byte-level BPE)")
    return KINDS[kind].load(directory)


__all__ = ["Tokenizer", "WordPieceTokenizer", "ByteLevelBPETokenizer", "CharTokenizer", "load_tokenizer"]
