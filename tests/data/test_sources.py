import gzip
import json

import pytest

from nanobert.data.sources import read_documents, read_text_documents, expand_inputs
from nanobert.errors import NanobertError

WIKI = " = Alpha = \n\nAlpha is a letter.\n = = History = = \nIt is old.\n\n = Beta = \n\nBeta follows alpha.\n"


def test_wikitext_titles_split_articles_and_are_dropped(tmp_path):
    path = tmp_path / "wiki.txt"
    path.write_text(WIKI, encoding="utf-8")
    # " = = History = = " is a section heading, not a new article: it stays in Alpha's text
    assert list(read_text_documents(path)) == ["Alpha is a letter.\n= = History = =\nIt is old.", "Beta follows alpha."]


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


def test_a_labelled_table_is_one_document_of_its_text_column(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text('sentence\tlabel\na gripping , "funny film \t1\n\t0\nit drags .\t0\n', encoding="utf-8")
    # rows are paragraphs (packed several to a sequence by prepare); empty rows and the labels are dropped
    assert list(read_documents([tsv])) == ['a gripping , "funny film\nit drags .']
    csv = tmp_path / "reviews.csv"
    csv.write_text('id,body\n1,"Great, truly."\n2,Bad.\n', encoding="utf-8")
    assert list(read_documents([csv], text_column="body")) == ["Great, truly.\nBad."]
    with pytest.raises(NanobertError, match="no column 'text'.*columns: id, body"):
        list(read_documents([csv]))
    assert expand_inputs([tmp_path]) == [csv, tsv]


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
        doc = tmp_path / "x.docx"
        doc.write_text("a,b\n")
        expand_inputs([doc])


# -- the one text opener -------------------------------------------------------------------------
import gzip as _gzip  # noqa: E402
import io as _io  # noqa: E402

from nanobert.data.tables import read_table  # noqa: E402
from nanobert.data.textio import open_text, read_text  # noqa: E402
from nanobert.tokenizers.trainer import iter_lines  # noqa: E402


def test_open_text_names_file_offset_and_line_of_bad_bytes(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"fine\nca\xe9 au lait\n")
    for read in (lambda p: list(open_text(p)), read_text, lambda p: list(iter_lines([p]))):
        with pytest.raises(NanobertError, match=r"notes.txt is not UTF-8 text \(.* at byte 7, line 2\)"):
            read(bad)
    bad.write_bytes(b"text\n\x00\x01\x02")
    with pytest.raises(NanobertError, match=r"notes.txt looks binary \(NUL byte at byte 5"):
        read_text(bad)


def test_a_truncated_or_damaged_gz_is_one_clear_error(tmp_path):
    whole = _gzip.compress(("Some text that goes on.\n" * 2000).encode())
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(whole[:len(whole) // 2])
    tsv = tmp_path / "train.tsv.gz"
    rows = "".join(f"sentence {i * 7919 % 10007}\t{i % 2}\n" for i in range(5000))
    packed = _gzip.compress(("text\tlabel\n" + rows).encode())
    tsv.write_bytes(packed[:len(packed) // 2])
    for read in (lambda: list(read_documents([cut])), lambda: read_text(cut), lambda: read_table(tsv)):
        with pytest.raises(NanobertError, match="truncated .gz"):
            read()
    junk = tmp_path / "junk.txt.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(NanobertError, match="not a valid .gz"):
        read_text(junk)


def test_open_text_reads_stdin_and_drops_a_byte_order_mark(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", _io.TextIOWrapper(_io.BytesIO(b"\xef\xbb\xbfone\r\ntwo")))
    assert list(open_text("-")) == ["one\r\n", "two"]
    csv_file = tmp_path / "t.csv"
    csv_file.write_bytes(b"\xef\xbb\xbftext,label\nhi,1\n")
    assert read_table(csv_file) == (["text", "label"], [{"text": "hi", "label": "1"}])
