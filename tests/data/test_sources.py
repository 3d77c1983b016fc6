import gzip
import json

import pytest

from nanobert.data.sources import read_documents, read_text_file, expand_inputs
from nanobert.errors import NanobertError

WIKI = " = Alpha = \n\nAlpha is a letter.\n = = History = = \nIt is old.\n\n = Beta = \n\nBeta follows alpha.\n"


def test_wikitext_titles_split_articles_and_are_dropped(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKI, encoding="utf-8")
    # " = = History = = " is a section heading, not a new article: it stays in Alpha's text
    assert list(read_text_file(path)) == ["Alpha is a letter.\n= = History = =\nIt is old.", "Beta follows alpha."]


def test_plain_text_file_is_one_document_and_gz_reads_the_same(tmp_path):
    plain = tmp_path / "book.txt"
    plain.write_text("First line.\n\nSecond paragraph.\n", encoding="utf-8")
    packed = tmp_path / "book2.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write("First line.\n\nSecond paragraph.\n")
    assert list(read_documents([plain])) == ["First line.\nSecond paragraph."]
    plain.write_text("A hard-wrapped\nparagraph.\n\nNext one.\n", encoding="utf-8")
    assert list(read_documents([plain])) == ["A hard-wrapped paragraph.\nNext one."]
    assert list(read_documents([packed])) == ["First line.\nSecond paragraph."]
    assert expand_inputs([tmp_path]) == [plain, packed]  # a directory: its files sorted by name


def test_jsonl_and_parquet_text_column(tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"body": t, "id": i}) for i, t in enumerate(["one doc", "two doc"])) + "\n")
    assert list(read_documents([jl], text_column="body")) == ["one doc", "two doc"]
    with pytest.raises(NanobertError, match="no field 'text'"):
        list(read_documents([jl]))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": ["a b c", "", "d e"], "n": [1, 2, 3]}), tmp_path / "d.parquet")
    assert list(read_documents([tmp_path / "d.parquet"])) == ["a b c", "d e"]


def test_real_enwiki_headers(shared_data):
    docs = read_documents([shared_data / "enwiki" / "enwiki_clean.txt.gz"])
    first = next(docs)
    assert first.startswith("Jarred Shaw (born September 28, 1990)")
    assert "= Jarred Shaw =" not in first


def test_binary_and_missing_inputs_are_clear_errors(tmp_path):
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(NanobertError, match="binary"):
        list(read_documents([binary]))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(NanobertError, match="not UTF-8"):
        list(read_documents([latin]))
    with pytest.raises(NanobertError, match="not found"):
        expand_inputs([tmp_path / "nope.txt"])
    with pytest.raises(NanobertError, match="cannot read"):
        csv = tmp_path / "x.csv"
        csv.write_text("a,b\n")
        expand_inputs([csv])
