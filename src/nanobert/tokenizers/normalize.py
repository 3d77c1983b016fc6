"""BERT's basic tokenizer: text normalization and the split into words and punctuation.

Steps, in the order BERT applies them (the order decides which ids come out):

1. clean text: drop NUL, U+FFFD and "other" characters (categories Cc, Cf, Co, Cs, except tab,
   newline and carriage return; unassigned ones stay); every whitespace character becomes a space;
2. CJK ideographs get a space on each side, so each one is a word of its own;
3. strip accents (NFD, then drop nonspacing marks, category Mn) -- on by default when lowercasing;
4. lowercase, one character at a time (so a final capital sigma becomes "σ", never "ς");
5. split on spaces, and every punctuation character (category P*, plus the ASCII symbols
   ``$+<=>^`|~``) becomes a word of its own.

All five steps act on one character at a time, so they fold into one table: character -> its
normalized text, with spaces around punctuation and ideographs (`é` -> `e`, `,` -> ` , `, a
soft hyphen -> nothing). The table fills itself the first time it meets a character; then
`text.translate(table).split()` is the whole basic tokenizer, run in C.

Characters are classified with `unicodedata`, except for the few hundred code points where
Hugging Face's tokenizers (older Unicode tables) disagree; those follow it (`unicode_compat.py`).

Example: `BertNormalizer().words("Héllo, WORLD!")` -> `['hello', ',', 'world', '!']`.
"""

from __future__ import annotations

import functools
import logging
import string
import unicodedata
from dataclasses import dataclass

import nanobert.tokenizers.unicode_compat as compat

log = logging.getLogger(__name__)


@functools.cache
def _check_unicode_version() -> None:
    if unicodedata.unidata_version != compat.CHECKED_AGAINST:
        log.warning("unicodedata is Unicode %s, not %s: characters added or reclassified since may normalize "
                    "differently from Hugging Face's BERT tokenizer", unicodedata.unidata_version,
                    compat.CHECKED_AGAINST)

# Unicode's White_Space property (\x0b, \x0c and \x85 are controls too, so cleaning drops them).
WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                       + "".join(map(chr, range(0x2000, 0x200B))))

# The CJK Unified Ideographs blocks BERT isolates (not Hiragana, Katakana or Hangul: those form words).
# The fifth range starts at U+2B920 (not U+2B820) in Hugging Face's tokenizers; we follow it.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

ASCII_PUNCTUATION = frozenset(string.punctuation)  # includes $ + < = > ^ ` | ~, which are symbols (S*)


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(a <= cp <= b for a, b in CJK_RANGES)


def is_control(ch: str) -> bool:
    """Characters BERT's cleaning drops. Examples: U+00AD soft hyphen (Cf) -> True; tab -> False;
    an unassigned code point (Cn) -> False, as in Hugging Face's tokenizers."""
    if ch in "\x00\ufffd":
        return True
    cat = unicodedata.category(ch)
    return cat[0] == "C" and cat != "Cn" and ch not in "\t\n\r" and ord(ch) not in compat.KEPT_FORMAT


def is_punctuation(ch: str) -> bool:
    """Categories P* plus ASCII symbols. Examples: "," -> True; "$" -> True; "€" (Sc) -> False."""
    cp = ord(ch)
    if cp in compat.EXTRA_PUNCTUATION:
        return True
    return (ch in ASCII_PUNCTUATION or unicodedata.category(ch)[0] == "P") and cp not in compat.NOT_PUNCTUATION


def is_nonspacing_mark(ch: str) -> bool:
    """What stripping accents removes (category Mn). Example: U+0301 combining acute -> True."""
    cp = ord(ch)
    if cp in compat.EXTRA_NONSPACING:
        return True
    return unicodedata.category(ch) == "Mn" and cp not in compat.NOT_NONSPACING


def lower_char(ch: str) -> str:
    """Lowercase one character. Example: "Σ" -> "σ" (never the final form "ς"); "İ" -> "i̇"."""
    cp = compat.EXTRA_LOWER.get(ord(ch))
    return chr(cp) if cp is not None else ch.lower()


class _CharTable(dict):
    """code point -> normalized text; computes and keeps an entry the first time it is asked."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, cp: int) -> str:
        out = self[cp] = self.fn(chr(cp))
        return out

    def __reduce__(self):  # pickle (for worker processes) as a fresh table
        return (type(self), (self.fn,))


@dataclass(frozen=True)
class BertNormalizer:
    lowercase: bool = True  # uncased BERT; False for cased vocabularies
    strip_accents: bool | None = None  # None: follow `lowercase`, as BERT does
    clean_text: bool = True  # drop control characters, map whitespace variants to a space
    handle_chinese_chars: bool = True  # one word per CJK ideograph

    @property
    def strips_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents

    def normalize_char(self, ch: str, split: bool = False) -> str:
        """Steps 1-4 for one character (with `split`, step 5's spaces too).

        Examples: `"É"` -> `"e"`; `"\\u00ad"` -> `""`; `"中"` -> `" 中 "`; with split, `","` -> `" , "`.
        """
        if self.clean_text and is_control(ch):  # before whitespace: \x0b, \x0c and \x85 are both
            return ""
        if ch in WHITESPACE and (self.clean_text or split):
            return " "
        out = ch
        if self.strips_accents:
            if ord(ch) not in compat.NOT_DECOMPOSED:
                out = unicodedata.normalize("NFD", out)
            out = "".join(c for c in out if not is_nonspacing_mark(c))
        if self.lowercase:
            out = "".join(map(lower_char, out))
        if self.handle_chinese_chars and is_cjk(ch):
            return f" {out} "
        if split:
            out = "".join(f" {c} " if is_punctuation(c) else c for c in out)
        return out

    @functools.cached_property
    def _table(self) -> _CharTable:
        _check_unicode_version()
        return _CharTable(self.normalize_char)

    @functools.cached_property
    def _split_table(self) -> _CharTable:
        _check_unicode_version()
        return _CharTable(functools.partial(self.normalize_char, split=True))

    def normalize(self, text: str) -> str:
        """Steps 1-4 on a string, like Hugging Face's BertNormalizer. Example: `"Ça\\tva"` -> `"ca va"`."""
        return text.translate(self._table)

    def words(self, text: str) -> list[str]:
        """Normalized words and punctuation marks of `text`, in order (no offsets)."""
        text = text.translate(self._split_table)
        # str.split() also splits on \x1c-\x1f; only cleaning guarantees those are gone.
        return text.split() if self.clean_text else [w for w in text.split(" ") if w]

    def words_with_offsets(self, text: str) -> list[tuple[str, list[tuple[int, int]]]]:
        """Like `words`, each word with, per character, the (start, end) in `text` it came from.

        Example: `words_with_offsets("Éa, b")` ->
        `[('ea', [(0, 1), (1, 2)]), (',', [(2, 3)]), ('b', [(4, 5)])]`.
        """
        table = self._split_table
        out: list[tuple[str, list[tuple[int, int]]]] = []
        chars: list[str] = []
        spans: list[tuple[int, int]] = []
        for i, ch in enumerate(text):
            mapped = table[ord(ch)]
            if mapped == ch and ch != " ":
                chars.append(ch)
                spans.append((i, i + 1))
                continue
            for c in mapped:
                if c == " ":
                    if chars:
                        out.append(("".join(chars), spans))
                        chars, spans = [], []
                else:
                    chars.append(c)
                    spans.append((i, i + 1))
        if chars:
            out.append(("".join(chars), spans))
        return out
