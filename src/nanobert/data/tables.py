"""Labelled tables for classification: CSV, TSV, JSONL or parquet in, texts + labels (+ numbers) out.

    data = read_labelled("train.tsv", text_column="sentence", label_column="label")
    data.texts[0], data.labels[0]          # 'hide new secretions ...', 0
    labels = LabelMap.from_labels(data.labels)
    labels.encode(data.labels)[:3]         # [0, 0, 1]

Every user mistake (a missing column, an empty file, a label the model has never seen, a cell
that should be a number) raises one `NanobertError` that names the file, the row and the fix.
A `.gz` suffix after the format's own suffix is read transparently (`train.tsv.gz`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.data.textio import open_text, read_json_lines
from nanobert.errors import NanobertError

FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
TEXT_COLUMN_GUESSES = ("text", "sentence")  # tried in order when --text-column is not given


def _format_of(path: Path) -> str:
    """The table format from the file name. Example: 'a/train.tsv.gz' -> '.tsv'."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in FORMATS:
        raise NanobertError(f"{path}: unknown table format {fmt or '(no suffix)'!r}; use one of {', '.join(FORMATS)}")
    return fmt


def read_table(path: str | Path) -> tuple[list[str], list[dict]]:
    """Read a whole table: `(column names, rows as dicts)`. CSV/TSV cells are strings.

    TSV is read without quote handling (as GLUE writes it: a sentence may contain a lone `"`).
    """
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"data file not found: {path}")
    fmt = _format_of(path)
    try:
        if fmt == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise NanobertError("reading parquet needs pyarrow: pip install 'nanobert[extras]'") from None
            try:
                table = pq.read_table(path)
            except Exception as e:  # pyarrow raises its own error types for corrupt files
                raise NanobertError(f"{path} is not a readable parquet file: {e}") from None
            columns, rows = list(table.column_names), table.to_pylist()
        elif fmt in (".jsonl", ".json"):
            rows = [row for _, row in read_json_lines(path)]
            columns = list(dict.fromkeys(k for row in rows for k in row))
        else:
            with open_text(path, "data file") as f:
                if fmt == ".tsv":
                    reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                else:
                    reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                rows = list(reader)
    except (OSError, csv.Error) as e:
        raise NanobertError(f"cannot read {path}: {e}") from None
    if not rows:
        raise NanobertError(f"{path} has no data rows; a labelled file needs a header and at least one row")
    return columns, rows


@dataclass
class LabelledData:
    """Columns of a labelled table, in file order. `tabular` is (N, F) float32 with NaN for empty cells."""

    texts: list[str]
    labels: list | None
    text_pairs: list[str] | None = None
    tabular: np.ndarray | None = None
    tabular_columns: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)


def _column(path, columns: list[str], name: str, what: str, flag: str) -> str:
    if name not in columns:
        raise NanobertError(f"{path}: no {what} column {name!r} (columns: {', '.join(columns)}); set {flag}")
    return name


def _as_label(value, path, row: int, column: str):
    """Labels are kept as ints when every one reads as an int, else as strings."""
    if value is None or (isinstance(value, str) and value.strip() == "") or (isinstance(value, float) and math.isnan(value)):
        raise NanobertError(f"{path}: row {row} has an empty {column!r}; every row needs a label")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def _as_number(value, path, row: int, column: str) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise NanobertError(f"{path}: row {row}, tabular column {column!r}: {value!r} is not a number") from None


def read_labelled(path: str | Path, *, text_column: str | None = None, text_pair_column: str | None = None,
                  label_column: str = "label", tabular_columns: Sequence[str] = (),
                  require_labels: bool = True) -> LabelledData:
    """Read texts, optional text pairs, labels and numeric columns from a labelled table.

    `text_column=None` takes the first of "text", "sentence" that exists. With `require_labels=False`
    a file without the label column gives `labels=None` (prediction input).
    """
    columns, rows = read_table(path)
    if text_column is None:
        found = [c for c in TEXT_COLUMN_GUESSES if c in columns]
        if not found:
            raise NanobertError(f"{path}: no 'text' or 'sentence' column (columns: {', '.join(columns)}); "
                                "set --text-column")
        text_column = found[0]
    _column(path, columns, text_column, "text", "--text-column")
    if text_pair_column:
        _column(path, columns, text_pair_column, "text-pair", "--text-pair-column")
    for name in tabular_columns:
        _column(path, columns, name, "tabular", "--tabular-columns")
    has_labels = label_column in columns
    if require_labels:
        _column(path, columns, label_column, "label", "--label-column")

    # Row numbers in messages count the header as row 1, as a spreadsheet shows them.
    texts = ["" if r.get(text_column) is None else str(r[text_column]) for r in rows]
    pairs = ["" if r.get(text_pair_column) is None else str(r[text_pair_column]) for r in rows] if text_pair_column else None
    labels = [_as_label(r.get(label_column), path, i + 2, label_column) for i, r in enumerate(rows)] if has_labels else None
    tabular = None
    if tabular_columns:
        tabular = np.array([[_as_number(r.get(c), path, i + 2, c) for c in tabular_columns] for i, r in enumerate(rows)],
                           dtype=np.float32)  # (N, F)
    return LabelledData(texts, labels, pairs, tabular, list(tabular_columns), str(path))


@dataclass
class LabelMap:
    """Label values <-> class ids, stored in config.json as Hugging Face does (`id2label`, `label2id`).

    Integer labels 0..K-1 keep their value as id; other labels are sorted (ints numerically, strings
    alphabetically). Example: from_labels(["pos", "neg", "pos"]) -> names ['neg', 'pos'], encode(["pos"]) -> [1].
    """

    names: list[str]

    @classmethod
    def from_labels(cls, labels: Sequence) -> "LabelMap":
        values = set(labels)
        if all(isinstance(v, int) for v in values):
            ordered = sorted(values)  # 0..K-1 map to themselves
        else:
            ordered = sorted(str(v) for v in values)
        return cls([str(v) for v in ordered])

    @classmethod
    def from_config(cls, id2label: dict) -> "LabelMap":
        return cls([str(id2label[k]) for k in sorted(id2label, key=int)])

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, labels: Sequence, source: str = "") -> list[int]:
        """Label values -> ids; a value the map does not know is an error naming it."""
        index = self.label2id
        ids = []
        for i, label in enumerate(labels):
            key = str(label)
            if key not in index:
                where = f"{source}: " if source else ""
                raise NanobertError(f"{where}label {label!r} (row {i + 2}) is not one of the training labels "
                                    f"{self.names}; fix the file or train with it")
            ids.append(index[key])
        return ids
