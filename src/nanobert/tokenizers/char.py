"""A character-level tokenizer: one id per character (for the bigram and character-GPT demos).

Example: `CharTokenizer.train("hello")` has vocabulary `e h l o` (sorted), and
`encode("hole")` -> `[1, 3, 2, 0]`. A character outside the vocabulary is an error, not a silent
[UNK]: a character model is trained on a closed alphabet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.tokenizers.base import Tokenizer, read_whole_text


class CharTokenizer(Tokenizer):
    kind = "char"

    @classmethod
    def train(cls, text: str | Iterable[str]) -> "CharTokenizer":
        """The vocabulary of every distinct character in `text` (a str or an iterable of str), sorted."""
        chars = set(text) if isinstance(text, str) else set().union(*map(set, text))
        if not chars:
            raise NanobertError("cannot build a character vocabulary from empty text")
        return cls({c: i for i, c in enumerate(sorted(chars))})

    def _encode(self, text: str) -> list[int]:
        try:
            return [self.vocab[c] for c in text]
        except KeyError as e:
            raise NanobertError(f"character {e.args[0]!r} is not in the vocabulary of {self.vocab_size}") from None

    def _encode_chunk(self, texts, add_special_tokens):
        return [self._encode(t) for t in texts]

    def _decode_tokens(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def _save_files(self, directory: Path) -> None:
        write_json(directory / "vocab.json", self.vocab)

    @classmethod
    def _from_dir(cls, directory: Path, config: dict) -> "CharTokenizer":
        try:
            vocab = json.loads(read_whole_text(directory / "vocab.json", "vocab file"))
        except json.JSONDecodeError as e:
            raise NanobertError(f"{directory / 'vocab.json'} is not valid JSON: {e.msg}") from None
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and len(k) == 1 for k in vocab):
            raise NanobertError(f"{directory / 'vocab.json'} must map single characters to ids")
        return cls(vocab)
