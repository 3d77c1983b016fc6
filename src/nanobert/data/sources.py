"""Read raw text corpora as a stream of documents (each a string, paragraphs separated by newlines).

Supported inputs, chosen by file name:

- `.txt` / `.txt.gz`: one document per file; or, when the file uses WikiText-style headers
  (` = Title = ` alone on a line), one document per article.
- `.jsonl` / `.jsonl.gz`: one JSON object per line, the document in field `text_column`.
- `.parquet`: the column `text_column` (needs the optional `pyarrow`).
- `.tsv` / `.csv` (optionally `.gz`): a table with a header; the column `text_column`, or else the first of
  "text", "sentence" it has. The file is one document whose paragraphs are its rows, so short rows (a
  labelled task's sentences, e.g. SST-2's train.tsv) are packed several to a sequence; labels are ignored.
- a directory: every supported file in it, sorted by name.

Binary files (NUL bytes, invalid UTF-8) are refused with a `NanobertError` naming the file
(`nanobert.data.textio.open_text` reads every text file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from nanobert.data.tables import TEXT_COLUMN_GUESSES, read_table
from nanobert.data.textio import open_text, read_json_lines
from nanobert.errors import NanobertError

_TITLE = re.compile(r"^ ?= ([^=].*?) = ?$")  # " = Title = " (top-level only; " = = Section = = " is not a title)
SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".parquet", ".tsv", ".tsv.gz", ".csv", ".csv.gz")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files to read: each input file as given, each directory's supported files sorted by name."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f))
            if not found:
                raise NanobertError(f"no {', '.join(SUFFIXES)} files in directory {p}")
            files.extend(found)
        elif p.is_file():
            if _kind(p) is None:
                raise NanobertError(f"cannot read {p}: use {', '.join(SUFFIXES)} files")
            files.append(p)
        else:
            raise NanobertError(f"input not found: {p}")
    if not files:
        raise NanobertError("no input files given")
    return files


def _lines(path: Path) -> Iterator[str]:
    with open_text(path) as f:
        for line in f:
            yield line.rstrip("\r\n")


def _paragraphs(lines: list[str], one_per_line: bool) -> str:
    """Paragraphs joined by newlines: each non-blank line (WikiText), or blank-line-separated blocks (books)."""
    if one_per_line:
        return "\n".join(line.strip() for line in lines if line.strip())
    paras, cur = [], []
    for line in lines + [""]:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    return "\n".join(paras)


def read_text_documents(path: str | Path) -> Iterator[str]:
    """Documents of a .txt/.txt.gz file: one per ` = Title = ` article if it has such headers, else the whole file.

    In an article each line is a paragraph; in a plain file (a book, hard-wrapped) paragraphs are
    separated by blank lines and their lines are joined.
    Example: " = A = \\n\\nx y\\n = B = \\nz\\n" -> ["x y", "z"];  "a\\nb\\n\\nc" -> ["a b\\nc"].
    """
    path = Path(path)
    lines: list[str] = []
    titled = False
    for line in _lines(path):
        if _TITLE.match(line):
            doc = _paragraphs(lines, titled)
            if doc:
                yield doc
            lines, titled = [], True
        else:
            lines.append(line)
    doc = _paragraphs(lines, titled)
    if doc:
        yield doc


def read_jsonl(path: str | Path, text_column: str = "text") -> Iterator[str]:
    """Field `text_column` of each JSON object line of a .jsonl / .jsonl.gz file."""
    for i, obj in read_json_lines(path):
        if text_column not in obj:
            raise NanobertError(f"{path}:{i} has no field {text_column!r}; set text-column to the text field")
        text = obj[text_column]
        if isinstance(text, str) and text.strip():
            yield text


def read_parquet(path: str | Path, text_column: str = "text") -> Iterator[str]:
    """Column `text_column` of a parquet file, read batch by batch."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise NanobertError("reading parquet needs pyarrow: pip install 'nanobert[extras]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own error types for corrupt files
        raise NanobertError(f"{path} is not a readable parquet file: {e}") from None
    if text_column not in pf.schema_arrow.names:
        raise NanobertError(f"{path} has no column {text_column!r} (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=[text_column], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield text


def read_table_document(path: str | Path, text_column: str = "text") -> Iterator[str]:
    """The text column of a .tsv / .csv table as one document, a row a paragraph (nothing if it has no text)."""
    columns, rows = read_table(path)
    found = [c for c in (text_column, *TEXT_COLUMN_GUESSES) if c in columns]
    if not found:
        raise NanobertError(f"{path} has no column {text_column!r} (columns: {', '.join(columns)}); "
                            "set text-column to the text column")
    texts = [str(row[found[0]] or "").strip() for row in rows]
    doc = "\n".join(t for t in texts if t)
    if doc:
        yield doc


def read_documents(inputs: Iterable[str | Path], text_column: str = "text") -> Iterator[str]:
    """All documents of all inputs, in order (see the module docstring for the formats)."""
    for path in expand_inputs(inputs):
        kind = _kind(path)
        if kind in (".txt", ".txt.gz"):
            yield from read_text_documents(path)
        elif kind in (".jsonl", ".jsonl.gz"):
            yield from read_jsonl(path, text_column)
        elif kind in (".tsv", ".tsv.gz", ".csv", ".csv.gz"):
            yield from read_table_document(path, text_column)
        else:
            yield from read_parquet(path, text_column)
