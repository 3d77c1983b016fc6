"""The one way nanobert opens a text file: UTF-8, `.gz` read compressed, `-` for standard input.

    with open_text("corpus.txt.gz") as f:
        for line in f:          # lines keep their "\n" (and "\r\n"); nothing else is translated
            ...
    text = read_text("notes.txt")

Whatever is wrong with the bytes becomes one `NanobertError` naming the file: invalid UTF-8 (with
the byte offset and line), binary data (NUL bytes), a damaged or truncated `.gz`. A leading UTF-8
byte-order mark (as spreadsheet programs write) is dropped.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from nanobert.errors import NanobertError

STDIN = "-"


def _name(path) -> str:
    return "standard input" if str(path) == STDIN else str(path)


class TextReader:
    """Lines of a UTF-8 text source, decoded strictly; any reading problem raises one NanobertError."""

    def __init__(self, path: str | os.PathLike, what: str = ""):
        self.path, self.what = path, what
        self.name = f"{what} {_name(path)}".strip()
        self.offset = 0  # bytes read so far (uncompressed)
        self.line = 0
        self._raw = self._open(path)
        self._check_head()

    def _open(self, path) -> BinaryIO:
        if str(path) == STDIN:
            return sys.stdin.buffer
        p = Path(path)
        if p.is_dir():
            raise NanobertError(f"{self.name} is a directory; give a text file")
        try:
            return gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")
        except FileNotFoundError:
            raise NanobertError(f"{self.name} not found" if self.what else f"file not found: {path}") from None
        except OSError as e:
            raise NanobertError(f"cannot open {self.name}: {e.strerror or e}") from None

    def _check_head(self) -> None:
        """A NUL byte near the start means binary data: say so, rather than naming the first non-UTF-8 byte."""
        try:
            head = self._raw.peek(4096)[:4096] if hasattr(self._raw, "peek") else b""
        except (OSError, EOFError, zlib.error) as e:
            self.close()
            raise self._bad_read(e) from None
        nul = head.find(b"\x00")
        if nul >= 0:
            self.close()
            raise NanobertError(f"{self.name} looks binary (NUL byte at byte {nul}), not UTF-8 text; give a text file")

    def _decode(self, data: bytes) -> str:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NanobertError(f"{self.name} is not UTF-8 text ({e.reason} at byte {self.offset + e.start}, "
                                f"line {self.line}); re-encode it as UTF-8") from None
        if "\x00" in text:
            nul = self.offset + data.index(b"\x00")
            raise NanobertError(f"{self.name} looks binary (NUL byte at byte {nul}, "
                                f"line {self.line}), not UTF-8 text; give a text file")
        if self.offset == 0 and text.startswith("\ufeff"):
            text = text[1:]
        return text

    def _bad_read(self, e: Exception) -> NanobertError:
        if isinstance(e, EOFError):
            return NanobertError(f"{self.name} is a truncated .gz file (it ends after {self.offset} bytes of text); "
                                 "compress or download it again")
        if isinstance(e, (gzip.BadGzipFile, zlib.error)):
            return NanobertError(f"{self.name} is not a valid .gz file ({e}); compress or download it again")
        return NanobertError(f"cannot read {self.name}: {e}")

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                data = self._raw.readline()
            except (OSError, EOFError, zlib.error) as e:
                raise self._bad_read(e) from None
            if not data:
                return
            self.line += 1
            text = self._decode(data)
            self.offset += len(data)
            yield text

    def read(self) -> str:
        """The whole remaining text."""
        try:
            data = self._raw.read()
        except (OSError, EOFError, zlib.error) as e:
            raise self._bad_read(e) from None
        self.line = 1
        try:
            return self._decode(data)
        except NanobertError:  # say on which line the first bad byte is, as the line-by-line reader does
            try:
                data.decode("utf-8")
                bad = data.index(b"\x00")
            except UnicodeDecodeError as e:
                bad = e.start
            self.line = data.count(b"\n", 0, bad) + 1
            return self._decode(data)  # raises again

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()

    def __enter__(self) -> "TextReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_text(path: str | os.PathLike, what: str = "") -> TextReader:
    """Open `path` (`.gz`: compressed; `-`: standard input) as UTF-8 text; `what` names it in errors ("vocab file")."""
    return TextReader(path, what)


def read_text(path: str | os.PathLike, what: str = "") -> str:
    """The whole UTF-8 text of `path` (see `open_text`)."""
    with open_text(path, what) as f:
        return f.read()


def read_json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """`(line number, object)` for each non-blank line of a .jsonl / .jsonl.gz file; one JSON object a line."""
    path = Path(path)
    with open_text(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise NanobertError(f"{path}:{i}: not valid JSON ({e.msg}); write one object a line") from None
            if not isinstance(obj, dict):
                raise NanobertError(f"{path}:{i}: expected a JSON object a line, got {type(obj).__name__}")
            yield i, obj
