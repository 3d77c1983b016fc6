"""BERT's basic tokenizer: text normalization and the split into words and punctuation.

Steps, in the order BERT applies them (they decide which ids come out, so the order matters):

1. clean text: drop NUL, U+FFFD and "other" characters (categories Cc, Cf, Cn, Co, Cs, except tab,
   newline and carriage return); every whitespace character becomes a plain space;
2. CJK ideographs get a space on each side, so each one is a word of its own;
3. strip accents (NFD, then drop nonspacing marks, category Mn) -- on by default when lowercasing;
4. lowercase, one character at a time (so a final capital sigma becomes "σ", not "ς");
5. split on spaces, and every punctuation character (category P*, plus the ASCII symbols
   ``$+<=>^`|~``) becomes a word of its own.

Two implementations live here, and tests hold them equal:
- `BertNormalizer.words(text)`: whole-string regex passes, fast, no offsets;
- `BertNormalizer.words_with_offsets(text)`: one character at a time, keeping for every output
  character the span of the input character it came from, for `offset_mapping`.

Example: `BertNormalizer().words("Héllo, WORLD!")` -> `['hello', ',', 'world', '!']`.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import unicodedata
from dataclasses import dataclass

# Unicode's White_Space property (not every one survives step 1: \x0b, \x0c and \x85 are controls).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"

# The CJK Unified Ideographs blocks BERT isolates (not Hiragana, Katakana or Hangul, which are words).
CJK_RANGES = [
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
]


def _char_class(codepoints) -> str:
    """A regex character class matching exactly `codepoints`, written as ranges.

    Example: `_char_class([97, 98, 99, 120])` -> `'[\\x61-\\x63\\x78]'`.
    """
    def esc(cp: int) -> str:
        return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"

    cps = sorted(set(codepoints))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(esc(cps[i]) if i == j else f"{esc(cps[i])}-{esc(cps[j])}")
        i = j + 1
    return "[" + "".join(parts) + "]"


@functools.cache
def _tables():
    """Character sets from the Unicode database, built once (a scan of all code points, ~0.3 s)."""
    control, punct, marks = [], [ord(c) for c in string.punctuation], []
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "C":
            control.append(cp)
        elif cat[0] == "P":
            punct.append(cp)
        elif cat == "Mn":
            marks.append(cp)
    control = [cp for cp in control if chr(cp) not in "\t\n\r"] + [0xFFFD]
    punct_class = _char_class(punct)
    return {
        "control": re.compile(_char_class(control)),
        "space": re.compile(_char_class(map(ord, WHITESPACE))),
        "cjk": re.compile("(" + _char_class(cp for a, b in CJK_RANGES for cp in range(a, b + 1)) + ")"),
        "marks": re.compile(_char_class(marks)),
        "words": re.compile(f"{punct_class}|[^ {punct_class[1:]}+"),
        "punct": frozenset(map(chr, punct)),
    }


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(a <= cp <= b for a, b in CJK_RANGES)


# The ASCII fast path: lines with no control characters need only lower() and one regex.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\t\n\r ]")


@dataclass(frozen=True)
class BertNormalizer:
    lowercase: bool = True  # uncased BERT; False for cased vocabularies
    strip_accents: bool | None = None  # None: follow `lowercase`, as BERT does
    clean_text: bool = True  # drop control characters, map whitespace variants to a space
    handle_chinese_chars: bool = True  # one word per CJK ideograph

    @property
    def strips_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents

    def normalize(self, text: str) -> str:
        """Steps 1-4 on the whole string. Example: `normalize("Ça\\tva")` -> `'ca va'`."""
        t = _tables()
        if self.clean_text:
            text = t["space"].sub(" ", t["control"].sub("", text))
        if self.handle_chinese_chars:
            text = t["cjk"].sub(r" \1 ", text)
        if self.strips_accents:
            text = t["marks"].sub("", unicodedata.normalize("NFD", text))
        if self.lowercase:
            text = text.replace("Σ", "σ").lower()  # per-character lowercasing: no final-sigma rule
        return text

    def words(self, text: str) -> list[str]:
        """Normalized words and punctuation marks of `text` (no offsets)."""
        if text.isascii() and self.clean_text and not _ASCII_CONTROL.search(text):
            return _ASCII_WORDS.findall(text.lower() if self.lowercase else text)
        return _tables()["words"].findall(self.normalize(text))

    def words_with_offsets(self, text: str) -> list[tuple[str, list[tuple[int, int]]]]:
        """Like `words`, but each word comes with, per character, the (start, end) in `text` it came from.

        Example: `words_with_offsets("Éa b")` -> `[('ea', [(0, 1), (1, 2)]), ('b', [(3, 4)])]`.
        """
        t = _tables()
        control, punct = t["control"], t["punct"]
        out: list[tuple[str, list[tuple[int, int]]]] = []
        chars: list[str] = []
        spans: list[tuple[int, int]] = []

        def flush():
            if chars:
                out.append(("".join(chars), spans.copy()))
                chars.clear()
                spans.clear()

        for i, ch in enumerate(text):
            if self.clean_text and control.match(ch):
                continue
            if self.clean_text and ch in WHITESPACE or ch == " ":
                flush()
                continue
            pieces = ch
            if self.strips_accents:
                pieces = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
            if self.lowercase:
                pieces = "".join(c.lower() for c in pieces)
            for c in pieces:
                if c in punct or c == " " or (self.handle_chinese_chars and is_cjk(ch)):
                    flush()
                    if c != " ":
                        out.append((c, [(i, i + 1)]))
                else:
                    chars.append(c)
                    spans.append((i, i + 1))
        flush()
        return out
