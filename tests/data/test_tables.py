"""Labelled tables: every format gives the same rows; labels map as transformers stores them; clear errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from nanobert.data.tables import LabelMap, read_labelled, read_table
from nanobert.errors import NanobertError

ROWS = [("a \"quoted\" film , really", "pos", 1.5, 3), ("dull", "neg", "", 0), ("fine, I guess", "pos", -2.0, 7)]


def _write(tmp_path, fmt):
    path = tmp_path / f"data{fmt}"
    if fmt == ".tsv":
        path.write_text("text\tlabel\tscore\tvotes\n" + "".join(f"{t}\t{y}\t{s}\t{v}\n" for t, y, s, v in ROWS))
    elif fmt == ".csv":
        import csv

        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label", "score", "votes"])
            w.writerows(ROWS)
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": y, "score": s if s != "" else None, "votes": v}) + "\n"
                                for t, y, s, v in ROWS) + "\n")
    elif fmt == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": [r[0] for r in ROWS], "label": [r[1] for r in ROWS],
                                 "score": [r[2] if r[2] != "" else None for r in ROWS], "votes": [r[3] for r in ROWS]}), path)
    return path


@pytest.mark.parametrize("fmt", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same(tmp_path, fmt):
    data = read_labelled(_write(tmp_path, fmt), tabular_columns=["score", "votes"])
    assert data.texts == [r[0] for r in ROWS]
    assert data.labels == ["pos", "neg", "pos"]
    assert data.tabular.shape == (3, 2) and data.tabular.dtype == np.float32
    assert data.tabular[0].tolist() == [1.5, 3.0] and np.isnan(data.tabular[1, 0])  # empty cell -> NaN


def test_gzip_and_real_sst2(shared_data, tmp_path):
    data = read_labelled(shared_data / "sst2" / "dev.tsv")  # "sentence" is found without --text-column
    assert len(data) == 872 and sorted(set(data.labels)) == [0, 1]
    assert data.labels.count(1) == 444  # the README's count of positives
    gz = tmp_path / "dev.tsv.gz"
    gz.write_bytes(gzip.compress((shared_data / "sst2" / "dev.tsv").read_bytes()))
    assert read_labelled(gz).texts == data.texts


def test_label_map_ints_and_strings():
    ints = LabelMap.from_labels([1, 0, 1])
    assert ints.id2label == {0: "0", 1: "1"} and ints.encode([1, 1, 0]) == [1, 1, 0]
    sparse = LabelMap.from_labels([10, 2, 5])
    assert sparse.names == ["2", "5", "10"]  # numeric order, not "10" < "2"
    strings = LabelMap.from_labels(["pos", "neg", "neutral"])
    assert strings.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert LabelMap.from_config({"1": "pos", "0": "neg"}).names == ["neg", "pos"]
    with pytest.raises(NanobertError, match="label 'great' \\(row 3\\) is not one of the training labels"):
        strings.encode(["pos", "great"], source="dev.csv")


def test_text_pair_column(tmp_path):
    path = tmp_path / "nli.csv"
    path.write_text("premise,hypothesis,label\nA man sleeps.,Someone rests.,entailment\n")
    data = read_labelled(path, text_column="premise", text_pair_column="hypothesis")
    assert data.texts == ["A man sleeps."] and data.text_pairs == ["Someone rests."]


def test_errors(tmp_path):
    tsv = _write(tmp_path, ".tsv")
    with pytest.raises(NanobertError, match="no label column 'y' .*columns: text, label, score, votes.*--label-column"):
        read_labelled(tsv, label_column="y")
    with pytest.raises(NanobertError, match="row 3, tabular column 'score': 'abc' is not a number"):
        bad = tmp_path / "bad.tsv"
        bad.write_text("text\tlabel\tscore\nok\t1\t2\nno\t0\tabc\n")
        read_labelled(bad, tabular_columns=["score"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(NanobertError, match="has no data rows"):
        read_table(empty)
    with pytest.raises(NanobertError, match="data file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(NanobertError, match="unknown table format '.xlsx'"):
        (tmp_path / "a.xlsx").write_text("x")
        read_table(tmp_path / "a.xlsx")
    no_label = tmp_path / "nolabel.tsv"
    no_label.write_text("text\tlabel\nfine\t\n")
    with pytest.raises(NanobertError, match="row 2 has an empty 'label'"):
        read_labelled(no_label)
    assert read_labelled(tsv, label_column="y", require_labels=False).labels is None  # prediction input
    with pytest.raises(NanobertError, match="not valid JSON"):
        (tmp_path / "b.jsonl").write_text('{"text": "a"}\n{oops\n')
        read_table(tmp_path / "b.jsonl")
