"""GPT-2's byte-level BPE: `vocab.json` + `merges.txt` in, the same ids as Hugging Face's GPT-2 tokenizers out.

Encoding:
1. cut `<|endoftext|>` (and any other special token) out of the text; they map to their ids whole;
2. pre-tokenize with GPT-2's pattern -- contractions ('s 't 're 've 'm 'll 'd), an optional space
   plus letters, an optional space plus digits, an optional space plus other symbols, and runs of
   whitespace (a run before a word leaves its last space to the word);
3. each piece becomes UTF-8 bytes, each byte a printable stand-in character (`bytes_to_unicode`);
4. merge the adjacent pair with the best (lowest) rank in `merges.txt`, again and again.

Decoding maps tokens back to bytes and bytes to text, so `decode(encode(s)) == s` for every
string -- lone surrogates included (they travel as their "surrogatepass" bytes).

Python's `re` has no `\\p{L}`; instead each character is first mapped to a stand-in of its class
(a non-ASCII letter -> "x", number -> "0", whitespace -> "\\t", else "!", all one character each),
the ASCII pattern runs on that, and its spans cut the original text.

Example: `encode("Hello world")` -> `[15496, 995]` ("Hello", "Ġworld").
"""

from __future__ import annotations

import functools
import json
import os
import re
import unicodedata
from itertools import chain
from pathlib import Path

from nanobert.errors import NanobertError
from nanobert.fileio import write_json, write_text
from nanobert.tokenizers.base import Tokenizer, read_whole_text
from nanobert.tokenizers.normalize import WHITESPACE
from nanobert.tokenizers.trainer import count_words, learn_merges

EOT = "<|endoftext|>"
_WS = " \\t\\n\\x0b\\x0c\\r"
PATTERN = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes stand for themselves, the other 68
    bytes take the characters from U+0100 on, in order. Example: 32 (space) -> "Ġ", 10 -> "Ċ"."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _class_char(cp: int) -> str:
    """The stand-in of a character for the ASCII pattern: itself if ASCII, else its class."""
    ch = chr(cp)
    if cp < 128:
        return ch
    if ch in WHITESPACE:
        return "\t"
    cat = unicodedata.category(ch)
    return "x" if cat[0] == "L" else "0" if cat[0] == "N" else "!"


class _ClassTable(dict):
    def __missing__(self, cp: int) -> str:
        out = self[cp] = _class_char(cp)
        return out


_CLASSES = _ClassTable()


def pretokenize(text: str) -> list[str]:
    """GPT-2's pre-tokenization. Example: `"It's  fine!"` -> `["It", "'s", " ", " fine", "!"]`."""
    if text.isascii():
        return PATTERN.findall(text)
    pieces, start = [], 0
    for piece in PATTERN.findall(text.translate(_CLASSES)):
        pieces.append(text[start:start + len(piece)])
        start += len(piece)
    return pieces


class _MergeCache(dict):
    """pre-token -> tuple of ids; a miss runs the merges once and remembers the result."""

    def __init__(self, bpe):
        super().__init__()
        self.bpe = bpe

    def __missing__(self, piece: str):
        ids = self[piece] = self.bpe(piece)
        return ids

    def __reduce__(self):
        return (type(self), (self.bpe,))


class ByteLevelBPETokenizer(Tokenizer):
    kind = "bpe"

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], special_tokens: tuple[str, ...] = (EOT,)):
        super().__init__(vocab, [t for t in special_tokens if t in vocab])
        self.merges = merges
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_chars = [bytes_to_unicode()[b] for b in range(256)]
        self.char_bytes = {c: b for b, c in bytes_to_unicode().items()}
        missing = [c for c in self.byte_chars if c not in vocab]
        if missing:
            raise NanobertError(f"the vocabulary lacks {len(missing)} of the 256 byte tokens (e.g. {missing[0]!r})")
        self.eot_token_id = vocab.get(EOT)
        self._cache = _MergeCache(self._bpe)

    @classmethod
    def from_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> "ByteLevelBPETokenizer":
        try:
            vocab = json.loads(read_whole_text(vocab_json, "vocab file"))
        except json.JSONDecodeError as e:
            raise NanobertError(f"{vocab_json} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise NanobertError(f"{vocab_json} must map tokens to integer ids")
        merges = []
        for n, line in enumerate(read_whole_text(merges_txt, "merges file").split("\n")):
            if not line.strip() or (n == 0 and line.startswith("#version")):
                continue
            pair = line.split(" ")
            if len(pair) != 2 or pair[0] + pair[1] not in vocab:
                raise NanobertError(f"{merges_txt}: line {n + 1} is not a merge of two vocabulary tokens: {line!r}")
            merges.append((pair[0], pair[1]))
        return cls(vocab, merges)

    @classmethod
    def train(cls, files_or_texts, vocab_size: int = 50257, min_frequency: int = 2, progress: bool = False,
              special_tokens: tuple[str, ...] = (EOT,)) -> "ByteLevelBPETokenizer":
        """Learn merges from files (paths) or an iterable of strings, from the 256 bytes up to `vocab_size`."""
        table = bytes_to_unicode()
        counts = count_words(files_or_texts, pretokenize, progress=progress)
        words = {tuple(table[b] for b in w.encode("utf-8", "surrogatepass")): c for w, c in counts.items()}
        alphabet = [table[b] for b in range(256)]
        n_merges = vocab_size - len(alphabet) - len(special_tokens)
        if n_merges < 0:
            raise NanobertError(f"vocab_size={vocab_size} is below the {len(alphabet) + len(special_tokens)} "
                                "byte and special tokens")
        merges = learn_merges(words, n_merges, min_frequency, join=str.__add__, progress=progress)
        tokens = alphabet + [a + b for a, b in merges] + list(special_tokens)
        return cls({t: i for i, t in enumerate(tokens)}, merges, special_tokens)

    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Merge the byte characters of one pre-token. Example: `"Ġworld"` -> `(995,)`."""
        word = [self.byte_chars[b] for b in piece.encode("utf-8", "surrogatepass")]
        ranks = self.ranks
        while len(word) > 1:
            best, at = None, -1
            for k in range(len(word) - 1):
                r = ranks.get((word[k], word[k + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, k
            if best is None:
                break
            a, b = word[at], word[at + 1]
            merged, k = [], 0
            while k < len(word):
                if k < len(word) - 1 and word[k] == a and word[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        return tuple(self.vocab[t] for t in word)

    def _encode(self, text: str) -> list[int]:
        return list(chain.from_iterable(map(self._cache.__getitem__, pretokenize(text))))

    def _decode_tokens(self, tokens: list[str]) -> str:
        char_bytes = self.char_bytes
        data = bytearray()
        for t in tokens:
            if t in self.special_tokens:
                data += t.encode("utf-8")
            else:
                data += bytes(char_bytes[c] for c in t)
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # ids that cut a character in two
            return data.decode("utf-8", "replace")

    def config(self) -> dict:
        return {**super().config(), "tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False,
                "special_tokens": self.special_tokens, **({"eos_token": EOT, "bos_token": EOT, "unk_token": EOT}
                                                          if self.eot_token_id is not None else {})}

    def _save_files(self, directory: Path) -> None:
        write_json(directory / "vocab.json", self.vocab, indent=None)
        write_text(directory / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.merges))

    @classmethod
    def _from_dir(cls, directory: Path, config: dict) -> "ByteLevelBPETokenizer":
        tok = cls.from_files(directory / "vocab.json", directory / "merges.txt")
        special = config.get("special_tokens")
        return cls(tok.vocab, tok.merges, tuple(special)) if isinstance(special, list) else tok
