"""BERT's WordPiece tokenizer: `vocab.txt` in, the same ids as Hugging Face's BERT tokenizers out.

Encoding = BERT normalization and word split (`normalize.py`), then, for each word, greedy
longest-match-first against the vocabulary, continuation pieces spelled "##piece"; a word
longer than `max_input_chars_per_word` characters, or one with a piece that matches nothing,
becomes a single [UNK]. Special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written in the text
are never split.

Speed comes from doing little per token in Python: one regex pass splits a line into words
(ASCII lines skip Unicode normalization entirely), and each distinct word is split into pieces
once, then served from a dict.

Example (bert-base-uncased): `encode("Hello, tokenizers!")` ->
`[101, 7592, 1010, 19204, 17629, 2015, 999, 102]` = [CLS] hello , token ##izer ##s ! [SEP].
"""

from __future__ import annotations

import os
from itertools import chain
from pathlib import Path
from typing import Iterable

from nanobert.errors import NanobertError
from nanobert.fileio import write_text
from nanobert.tokenizers.base import Tokenizer, read_whole_text
from nanobert.tokenizers.encoding import batch_encode
from nanobert.tokenizers.normalize import BertNormalizer
from nanobert.tokenizers.wordpiece_train import learn_wordpiece_vocab

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}

# decode(): no space before these, no space after those (a readable guess; exact text needs offsets).
_CLOSERS = set(".,;:!?)]}%")
_OPENERS = set("([{$#")
_JOINERS = set("-/'@")  # bind both neighbours when they are words: co-op, and/or, it's
_CONTRACTIONS = {"s", "t", "d", "m", "ll", "re", "ve"}


class _PieceCache(dict):
    """word -> tuple of ids; a miss runs the WordPiece split once and remembers it."""

    def __init__(self, split):
        super().__init__()
        self.split = split

    def __missing__(self, word):
        ids = self[word] = tuple(i for i, _ in self.split(word))
        return ids

    def __reduce__(self):  # pickle (for worker processes) as an empty cache
        return (type(self), (self.split,))


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    """`vocab.txt` (one token a line, id = line number) as a dict; a NanobertError if malformed."""
    lines = read_whole_text(path, "vocab file").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        token = token.rstrip("\r")
        if not token or token.strip() != token:
            raise NanobertError(f"{path}: line {i + 1} is not a token (empty or padded with spaces)")
        if token in vocab:
            raise NanobertError(f"{path}: token {token!r} appears on lines {vocab[token] + 1} and {i + 1}")
        vocab[token] = i
    if not vocab:
        raise NanobertError(f"{path} is empty: a vocab.txt holds one token per line")
    return vocab


class WordPieceTokenizer(Tokenizer):
    kind = "wordpiece"

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, strip_accents: bool | None = None,
                 clean_text: bool = True, handle_chinese_chars: bool = True, max_input_chars_per_word: int = 100,
                 model_max_length: int = 512, special_tokens: dict[str, str] | None = None):
        names = {**SPECIAL_TOKENS, **(special_tokens or {})}
        super().__init__(vocab, list(names.values()))
        self.special_token_names = names
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = (
            vocab[names[k]] for k in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"))
        self.normalizer = BertNormalizer(lowercase, strip_accents, clean_text, handle_chinese_chars)
        self.max_input_chars_per_word = max_input_chars_per_word
        self.model_max_length = model_max_length
        self._longest = max(len(t) for t in vocab)
        self._cache = _PieceCache(self._split_word)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, lowercase: bool = True, strip_accents: bool | None = None,
                        **kwargs) -> "WordPieceTokenizer":
        return cls(load_vocab(path), lowercase=lowercase, strip_accents=strip_accents, **kwargs)

    @classmethod
    def train(cls, files_or_texts, vocab_size: int = 30522, lowercase: bool = True, strip_accents: bool | None = None,
              min_frequency: int = 2, limit_alphabet: int = 1000, max_input_chars_per_word: int = 100,
              progress: bool = False) -> "WordPieceTokenizer":
        """Learn a vocabulary from files (paths) or an iterable of strings; see `wordpiece_train`."""
        normalizer = BertNormalizer(lowercase=lowercase, strip_accents=strip_accents)
        tokens = learn_wordpiece_vocab(files_or_texts, vocab_size, normalizer, list(SPECIAL_TOKENS.values()),
                                       min_frequency, limit_alphabet, max_input_chars_per_word, progress)
        return cls({t: i for i, t in enumerate(tokens)}, lowercase=lowercase, strip_accents=strip_accents,
                   max_input_chars_per_word=max_input_chars_per_word)

    # -- WordPiece proper ---------------------------------------------------------------------
    def _split_word(self, word: str) -> list[tuple[int, int]]:
        """Greedy longest-match-first: `word` -> [(id, number of characters)], or one [UNK].

        Example (bert-base-uncased): `"tokenizers"` -> `[(19204, 5), (17629, 4), (2015, 1)]`
        (token, ##izer, ##s).
        """
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [(self.unk_token_id, n)]
        vocab, pieces, start = self.vocab, [], 0
        while start < n:
            end = min(n, start + self._longest)
            prefix = "##" if start else ""
            while end > start:
                i = vocab.get(prefix + word[start:end])
                if i is not None:
                    break
                end -= 1
            else:
                return [(self.unk_token_id, n)]
            pieces.append((i, end - start))
            start = end
        return pieces

    def _encode(self, text: str) -> list[int]:
        return list(chain.from_iterable(map(self._cache.__getitem__, self.normalizer.words(text))))

    def _with_special(self, ids: list[int], pair: list[int] | None = None) -> list[int]:
        if pair is None:
            return [self.cls_token_id, *ids, self.sep_token_id]
        return [self.cls_token_id, *ids, self.sep_token_id, *pair, self.sep_token_id]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids (no [CLS]/[SEP]) and, per token, its (start, end) character span in `text`.

        `text[start:end]` is the original text of the token: `"Héllo"` -> ids of hello, span (0, 5).
        """
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        for k, part in enumerate(self.split_special(text)):
            if k % 2:
                ids.append(self.vocab[part])
                offsets.append((pos, pos + len(part)))
            else:
                for word, spans in self.normalizer.words_with_offsets(part):
                    at = 0
                    for i, n in self._split_word(word):
                        ids.append(i)
                        offsets.append((pos + spans[at][0], pos + spans[at + n - 1][1]))
                        at += n
            pos += len(part)
        return ids, offsets

    def _encode_chunk(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        # Same as encode() per text, with fewer attribute look-ups on the hot path.
        words, get, cls, sep = self.normalizer.words, self._cache.__getitem__, self.cls_token_id, self.sep_token_id
        out = []
        for text in texts:
            if self.may_hold_special(text):
                out.append(self.encode(text, add_special_tokens))
                continue
            ids = list(chain.from_iterable(map(get, words(text))))
            if add_special_tokens:
                ids.insert(0, cls)
                ids.append(sep)
            out.append(ids)
        return out

    def __call__(self, text: str | Iterable[str], text_pair: str | Iterable[str] | None = None, *,
                 add_special_tokens: bool = True, max_length: int | None = None,
                 truncation: bool | str = False, padding: bool | str = False, return_tensors: str | None = None,
                 return_offsets_mapping: bool = False, return_special_tokens_mask: bool = False) -> dict:
        """Model inputs with Hugging Face's key names: input_ids, token_type_ids, attention_mask
        (+ offset_mapping, special_tokens_mask). A str gives one row (lists); a list gives a batch.
        """
        return batch_encode(self, text, text_pair, add_special_tokens=add_special_tokens, max_length=max_length,
                            truncation=truncation, padding=padding, return_tensors=return_tensors,
                            return_offsets_mapping=return_offsets_mapping,
                            return_special_tokens_mask=return_special_tokens_mask)

    # -- decoding -----------------------------------------------------------------------------
    def _decode_tokens(self, tokens: list[str]) -> str:
        """Join ## pieces to their word and put spaces where English usually has them.

        Example: `["\"", "it", "'", "s", "co", "-", "op", "(", "3", ".", "5", "%", ")", "-", "-", "ok", "\""]`
        -> `'"it's co-op (3.5%)--ok"'`.
        """
        words: list[str] = []
        for tok in tokens:
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        n = len(words)
        # A run of one joiner ("-", "--", "'") binds to both neighbours when they are words: co-op, came--a.
        bound = [False] * n
        k = 0
        while k < n:
            j = k
            while j < n and words[j] in _JOINERS and words[j] == words[k]:
                j += 1
            if j > k:
                before, after = words[k - 1][-1:] if k else "", words[j][:1] if j < n else ""
                word_after = after.isalnum() or after == '"'
                if words[k] == "'":  # an apostrophe binds only in contractions: it's, don't, we'll
                    word_after = j < n and words[j] in _CONTRACTIONS
                if (before.isalnum() or before in '.?!;,)"') and word_after:
                    bound[k:j] = [True] * (j - k)
            k = max(j, k + 1)
        out: list[str] = []
        quote_open = glue_next = False
        for k, w in enumerate(words):
            prev = words[k - 1] if k else ""
            glue = k == 0 or glue_next or bound[k] or (k > 0 and bound[k - 1])
            glue_next = False
            if w == '"':  # straight quotes alternate: an opening one binds right, a closing one left
                if k == n - 1 and k > 0:  # at the very end it closes (what it closes began earlier)
                    quote_open = True
                glue, glue_next = (True, False) if quote_open else (glue, True)
                quote_open = not quote_open
            elif w in _CLOSERS or prev in _OPENERS:
                glue = True
            if k >= 2 and words[k - 2].isdigit() and w.isdigit() and (
                    prev == "." or prev == "," and len(w) == 3 and len(words[k - 2]) <= 3):
                glue = True  # 3.5 and 1,000 (but "May 28, 1990")
            out.append(w if glue else " " + w)
        return "".join(out)

    def restore(self, text: str, offsets: list[tuple[int, int]]) -> str:
        """The exact original text covered by tokens with `offsets` (e.g. a predicted answer span)."""
        spans = [(s, e) for s, e in offsets if e > s]
        return text[min(s for s, _ in spans):max(e for _, e in spans)] if spans else ""

    # -- save / load --------------------------------------------------------------------------
    def config(self) -> dict:
        n = self.normalizer
        return {**super().config(), "tokenizer_class": "BertTokenizer", "do_lower_case": n.lowercase,
                "strip_accents": n.strip_accents, "tokenize_chinese_chars": n.handle_chinese_chars,
                "clean_text": n.clean_text, "max_input_chars_per_word": self.max_input_chars_per_word,
                "model_max_length": self.model_max_length, **self.special_token_names}

    def _save_files(self, directory: Path) -> None:
        write_text(directory / "vocab.txt", "".join(t + "\n" for t in self._tokens))

    @classmethod
    def _from_dir(cls, directory: Path, config: dict) -> "WordPieceTokenizer":
        special = {k: config[k] for k in SPECIAL_TOKENS if isinstance(config.get(k), str)}
        max_len = config.get("model_max_length", 512)
        return cls(load_vocab(directory / "vocab.txt"), lowercase=config.get("do_lower_case", True),
                   strip_accents=config.get("strip_accents"),
                   handle_chinese_chars=config.get("tokenize_chinese_chars", True),
                   clean_text=config.get("clean_text", True),
                   max_input_chars_per_word=config.get("max_input_chars_per_word", 100),
                   model_max_length=max_len if isinstance(max_len, int) and max_len < 10**9 else 512,
                   special_tokens=special)
