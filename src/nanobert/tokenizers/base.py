"""The contract every nanobert tokenizer keeps, and the code they share.

A subclass provides only what differs:
- `_encode(text) -> list[int]`: ids of plain text (special-token strings already split out);
- `_decode_tokens(tokens) -> str`: the text for a list of token strings;
- `_save_files(dir)` / `_from_dir(dir, config)`: its own files besides `tokenizer_config.json`;
- optionally `_with_special(ids)`: how special tokens wrap one sequence (BERT: [CLS] ... [SEP]).

Everything else lives here: vocabulary look-ups, special tokens that are never split, batch
encoding over several processes with a progress bar, decoding, and save/load.
"""

from __future__ import annotations

import json
import multiprocessing
from array import array
from itertools import chain
import os
import re
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

from tqdm.auto import tqdm

from nanobert.data.textio import read_text
from nanobert.errors import NanobertError
from nanobert.fileio import write_json

CONFIG_FILE = "tokenizer_config.json"


def read_whole_text(path: str | os.PathLike, what: str = "file") -> str:
    """The whole content of a UTF-8 file as one string, or a NanobertError that names the file and the problem."""
    return read_text(path, what)


def read_config(directory: str | os.PathLike) -> dict:
    """`tokenizer_config.json` of `directory` as a dict ({} when absent)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(read_whole_text(path, "tokenizer config"))
    except json.JSONDecodeError as e:
        raise NanobertError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): fix or delete it") from None
    if not isinstance(config, dict):
        raise NanobertError(f"{path} must hold a JSON object")
    return config


class Tokenizer:
    """Text <-> ids. `vocab` maps token strings to ids 0..V-1; `special_tokens` are never split."""

    kind: ClassVar[str] = ""  # written to tokenizer_config.json as "nanobert_tokenizer"

    def __init__(self, vocab: dict[str, int], special_tokens: Sequence[str] = ()):
        if not vocab:
            raise NanobertError("the vocabulary is empty")
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise NanobertError("vocabulary ids must be 0..V-1, each used once")
        self.vocab = vocab
        self._tokens = sorted(vocab, key=vocab.__getitem__)
        missing = [t for t in special_tokens if t not in vocab]
        if missing:
            raise NanobertError(f"special token(s) {', '.join(missing)} missing from the vocabulary: add them")
        self.special_tokens = list(special_tokens)
        self.special_ids = {vocab[t] for t in special_tokens}
        # Longest first, so that a special token that is a prefix of another never wins.
        alternatives = "|".join(re.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})") if special_tokens else None
        # One character that every special token contains ("[" for BERT's): a text without it needs no split.
        common = set.intersection(*(set(t) for t in special_tokens)) if special_tokens else set()
        self._special_hint = min(common) if common else None

    # -- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self._tokens):
            raise NanobertError(f"token id {i} is outside the vocabulary (size {len(self._tokens)})")
        return self._tokens[i]

    # -- encoding -----------------------------------------------------------------------------
    def split_special(self, text: str) -> list[str]:
        """`text` cut around special tokens: `"a [SEP] b"` -> `['a ', '[SEP]', ' b']` (odd items are special)."""
        return self._special_re.split(text) if self._special_re is not None else [text]

    def may_hold_special(self, text: str) -> bool:
        """False when `text` surely holds no special token (a quick test before the regex split)."""
        if self._special_re is None:
            return False
        if self._special_hint is not None and self._special_hint not in text:
            return False
        return any(t in text for t in self.special_tokens)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; special-token strings in the text map to their ids, never split."""
        if not self.may_hold_special(text):
            ids = self._encode(text)
        else:
            ids = []
            for k, part in enumerate(self.split_special(text)):
                if k % 2:
                    ids.append(self.vocab[part])
                elif part:
                    ids.extend(self._encode(part))
        return self._with_special(ids) if add_special_tokens else ids

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = True, num_workers: int = 1,
                     progress: bool = False, chunk_size: int = 2000) -> list[list[int]]:
        """`encode` over many texts, in order; `num_workers` > 1 splits the work over processes."""
        texts = texts if isinstance(texts, list) else list(texts)
        chunks = [texts[i:i + chunk_size] for i in range(0, len(texts), chunk_size)]
        bar = tqdm(total=len(texts), unit="text", disable=not progress, desc="encoding")
        out: list[list[int]] = []
        if num_workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                out.extend(self._encode_chunk(chunk, add_special_tokens))
                bar.update(len(chunk))
        else:
            ctx = multiprocessing.get_context()
            # Forked workers inherit this tokenizer with its warm caches; others get a pickled copy.
            _set_worker(self)
            init = {} if ctx.get_start_method() == "fork" else {"initializer": _set_worker, "initargs": (self,)}
            try:
                with ctx.Pool(num_workers, **init) as pool:
                    for flat, lengths in pool.imap(_worker_encode, [(c, add_special_tokens) for c in chunks]):
                        flat, pos = flat.tolist(), 0
                        for n in lengths:
                            out.append(flat[pos:pos + n])
                            pos += n
                        bar.update(len(lengths))
            finally:
                _set_worker(None)
        bar.close()
        return out

    def _encode_chunk(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        encode = self.encode
        return [encode(t, add_special_tokens) for t in texts]

    def _with_special(self, ids: list[int]) -> list[int]:
        return ids

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    # -- decoding -----------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The text of `ids` (special tokens dropped unless `skip_special_tokens=False`)."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self._decode_tokens([self.id_to_token(i) for i in ids])

    def _decode_tokens(self, tokens: list[str]) -> str:
        raise NotImplementedError

    # -- save / load --------------------------------------------------------------------------
    def config(self) -> dict:
        """What `tokenizer_config.json` records (subclasses add their settings)."""
        return {"nanobert_tokenizer": self.kind}

    def save(self, directory: str | os.PathLike) -> None:
        """Write the tokenizer's files into `directory` (created if needed; other files left alone)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_files(directory)
        write_json(directory / CONFIG_FILE, self.config())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        directory = Path(directory)
        if not directory.is_dir():
            raise NanobertError(f"tokenizer directory not found: {directory}")
        return cls._from_dir(directory, read_config(directory))

    def _save_files(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _from_dir(cls, directory: Path, config: dict) -> "Tokenizer":
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


# Worker-process state for encode_batch: the tokenizer is sent once per process, not once per chunk.
_WORKER: Tokenizer | None = None


def _set_worker(tokenizer: Tokenizer) -> None:
    global _WORKER
    _WORKER = tokenizer


def _worker_encode(args) -> tuple[array, array]:
    """Encode a chunk; ids travel back as two flat arrays (all ids, then each text's length), which
    pickle as bytes -- far cheaper than a list of lists of Python ints."""
    texts, add_special_tokens = args
    rows = _WORKER._encode_chunk(texts, add_special_tokens)
    return array("q", chain.from_iterable(rows)), array("q", map(len, rows))
