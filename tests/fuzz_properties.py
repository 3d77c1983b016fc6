"""Properties that every reader and tokenizer keeps on any input; shared by tests/test_fuzz.py and benchmarks/fuzz.py.

Each entry of PROPERTIES is (strategy, check): `check(value)` returns normally or raises
AssertionError (a broken property) or anything else (a crash). A reader's only allowed outcomes
are a result or one NanobertError; a tokenizer's encode never raises, its ids lie in the
vocabulary, and encoding the decoded text again gives the same ids.
"""

from __future__ import annotations

import functools
import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from nanobert.errors import NanobertError

ASSETS = Path(__file__).parents[1] / "src" / "nanobert" / "assets"


def _outcome(fn, *args, **kwargs):
    """`fn(...)`, or None when it raises NanobertError; any other exception escapes (a failure)."""
    try:
        return fn(*args, **kwargs)
    except NanobertError as e:
        assert str(e) and "\n" not in str(e), f"a NanobertError must be one line: {e!r}"
        return None


# -- inputs -------------------------------------------------------------------------------------
_PIECES = ["\n", "\r\n", "\t", ",", '"', " = Title = \n", "{", "}", "[", "]", ":", "=", "label", "text",
           "sentence", "\x00", "\ufeff", "é", "😀", "\u2028", "1", "-1.5e3", "nan", "true", "\\"]
texts = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(_PIECES)), max_size=30).map("".join)
raw_bytes = st.one_of(st.binary(max_size=300), texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.tuples(texts, st.binary(max_size=4)).map(lambda p: p[0].encode() + p[1]))
# (content, gzip it?, cut the gzip stream at this fraction (1.0: whole))
file_contents = st.tuples(raw_bytes, st.booleans(), st.sampled_from([1.0, 1.0, 0.5, 0.9]))


def _write(directory: Path, name: str, content) -> Path:
    data, gz, keep = content
    if gz:
        data = gzip.compress(data)
        data = data[:max(1, int(len(data) * keep))]
        name += ".gz"
    path = directory / name
    path.write_bytes(data)
    return path


# -- readers ------------------------------------------------------------------------------------
def check_text_readers(content) -> None:
    from nanobert.data.sources import read_documents
    from nanobert.data.textio import open_text, read_text
    from nanobert.tokenizers.trainer import iter_lines

    with tempfile.TemporaryDirectory() as d:
        for suffix in (".txt", ".jsonl"):
            path = _write(Path(d), "corpus" + suffix, content)
            docs = _outcome(lambda: list(read_documents([path])))
            assert docs is None or all(isinstance(x, str) and x for x in docs)
            whole = _outcome(read_text, path)
            lines = _outcome(lambda: list(open_text(path)))
            assert (whole is None) == (lines is None)
            assert whole is None or "".join(lines) == whole or whole == "".join(lines).removeprefix("\ufeff")
            _outcome(lambda: list(iter_lines([path])))


def check_tables(content) -> None:
    from nanobert.data.tables import LabelMap, read_labelled

    with tempfile.TemporaryDirectory() as d:
        for suffix in (".tsv", ".csv", ".jsonl"):
            path = _write(Path(d), "train" + suffix, content)
            data = _outcome(read_labelled, path)
            if data is not None:
                assert len(data.texts) == len(data.labels) and all(isinstance(t, str) for t in data.texts)
                labels = LabelMap.from_labels(data.labels)
                assert len(labels.encode(data.labels)) == len(data)
            _outcome(read_labelled, path, require_labels=False, tabular_columns=["label"])


def check_toml_config(content) -> None:
    from nanobert.config import load_config
    from nanobert.tasks.pretrain import PretrainConfig

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_bytes(content[0])
        _outcome(load_config, PretrainConfig, path)


_toml_values = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=10),
                         st.lists(st.integers(), max_size=3))
_toml_keys = st.sampled_from(["lr", "seed", "out_dir", "model", "train", "data", "hidden_size", "max_steps",
                              "batch_size", "mask_prob", "warmup_steps", "x"])


def _toml_line(kv) -> str:
    key, value = kv
    return f"{key} = {value!r}" if isinstance(value, float) else f"{key} = {json.dumps(value)}"  # repr: nan, inf


toml_docs = st.lists(st.one_of(st.tuples(_toml_keys, _toml_values).map(_toml_line),
                               _toml_keys.map(lambda k: f"[{k}]"), texts), max_size=8).map(
    lambda lines: ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))


def check_tokenizer_files(files) -> None:
    from nanobert.tokenizers import load_tokenizer

    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        tok = _outcome(load_tokenizer, d)
        if tok is not None:
            ids = tok.encode("hello world", add_special_tokens=False) if tok.kind != "char" else []
            assert all(0 <= i < tok.vocab_size for i in ids)


_vocab_txt = st.lists(st.one_of(st.sampled_from(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "##a", "a", ""]),
                                st.text(max_size=5)), max_size=12).map(lambda v: "\n".join(v).encode("utf-8", "surrogatepass"))
_json_vocab = st.dictionaries(st.text(max_size=4), st.integers(-2, 12), max_size=10).map(
    lambda v: json.dumps(v).encode())
_config = st.sampled_from([b"", b"{", b"[]", b'{"nanobert_tokenizer": "char"}', b'{"nanobert_tokenizer": "bpe"}',
                           b'{"nanobert_tokenizer": "wordpiece", "lowercase": "yes"}', b'{"nanobert_tokenizer": 3}'])
tokenizer_files = st.fixed_dictionaries({}, optional={
    "vocab.txt": st.one_of(_vocab_txt, raw_bytes), "vocab.json": st.one_of(_json_vocab, raw_bytes),
    "merges.txt": st.one_of(texts.map(str.encode), raw_bytes), "tokenizer_config.json": _config})


# -- tokenizers ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def tokenizers() -> dict:
    """Small trained WordPiece and byte-level BPE tokenizers, the real MiniLM WordPiece, and a char tokenizer."""
    from nanobert.data.sources import read_documents
    from nanobert.resources import find_minilm
    from nanobert.tokenizers import ByteLevelBPETokenizer, CharTokenizer, WordPieceTokenizer

    book = ASSETS / "janeausten" / "persuasion.txt.gz"
    return {"wordpiece": WordPieceTokenizer.train([book], vocab_size=400),
            "wordpiece-cased": WordPieceTokenizer.train([book], vocab_size=400, lowercase=False),
            "minilm": WordPieceTokenizer.from_vocab_file(find_minilm() / "vocab.txt"),
            "bpe": ByteLevelBPETokenizer.train([book], vocab_size=400),
            "char": CharTokenizer.train(read_documents([book]))}


def check_tokenizers(text: str) -> None:
    for name, tok in tokenizers().items():
        if name == "char":  # no unknown token: a character outside the vocabulary is an error
            ids = _outcome(tok.encode, text)
            if ids is None:
                continue
        else:
            ids = tok.encode(text, add_special_tokens=False)
        assert all(0 <= i < tok.vocab_size for i in ids), name
        again = tok.encode(tok.decode(ids, skip_special_tokens=False), add_special_tokens=False)
        assert again == ids, f"{name}: {text!r} -> {ids} -> {tok.decode(ids, skip_special_tokens=False)!r} -> {again}"
        tok.encode_batch([text, text], add_special_tokens=True)


unicode_texts = st.one_of(st.text(), texts, st.text(alphabet=st.characters(codec="utf-8"), max_size=50))

PROPERTIES = {
    "text readers": (file_contents, check_text_readers),
    "tables (tsv/csv/jsonl)": (file_contents, check_tables),
    "toml configs": (toml_docs.map(lambda b: (b, False, 1.0)), check_toml_config),
    "toml configs (any bytes)": (raw_bytes.map(lambda b: (b, False, 1.0)), check_toml_config),
    "tokenizer files": (tokenizer_files, check_tokenizer_files),
    "tokenizers": (unicode_texts, check_tokenizers),
}
