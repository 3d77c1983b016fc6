"""Byte-level BPE (GPT-2)."""
from nanobert.tokenizers.base import Tokenizer


class ByteLevelBPETokenizer(Tokenizer):
    kind = "bpe"
