"""`nanobert prepare`: never replaces a directory it did not write, never deletes its own inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanobert.cli import main

ASSET = Path(__file__).parents[2] / "src" / "nanobert" / "assets" / "janeausten" / "persuasion.txt.gz"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok"
    assert main(["tokenizer", "train", "--input", str(ASSET), "--vocab-size", "300", "--out", str(out)]) == 0
    return out


def _prepare(inputs, tok, out, *extra):
    return main(["prepare", *map(str, inputs), "--tokenizer", str(tok), "--out", str(out), "--seq-len", "32",
                 "--workers", "1", "--no-progress", *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().split("\n")
    assert err[-1].startswith("nanobert: error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_prepare_refuses_to_write_over_its_corpus(tmp_path, tok, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt.gz").write_bytes(ASSET.read_bytes())
    for out in (corpus, tmp_path):
        assert _prepare([corpus], tok, out, "--overwrite") == 2
        assert "input" in _error(capsys)
    assert _prepare([corpus], tok, tok, "--overwrite") == 2  # the tokenizer is an input too
    assert "is the input" in _error(capsys)
    assert (corpus / "book.txt.gz").read_bytes() == ASSET.read_bytes() and (tok / "vocab.txt").is_file()


def test_prepare_replaces_only_its_own_output_and_only_with_overwrite(tmp_path, tok, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("keep")
    assert _prepare([ASSET], tok, other, "--overwrite") == 2 and "not written by nanobert prepare" in _error(capsys)
    assert [p.name for p in other.iterdir()] == ["results.csv"]

    out = tmp_path / "data"
    assert _prepare([ASSET], tok, out) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert json.loads((out / ".nanobert-output.json").read_text())["command"] == "prepare"
    assert _prepare([ASSET], tok, out, "--seed", "1") == 2 and "--overwrite" in _error(capsys)
    assert json.loads((out / "meta.json").read_text()) == meta
    assert _prepare([ASSET], tok, out, "--seed", "1", "--overwrite") == 0
    assert json.loads((out / "meta.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "other"]
    assert _prepare([ASSET], tok, tok, "--overwrite") == 2  # another command's output


def test_prepare_dedup_flags(tmp_path, tok, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "It was a bright cold day in April, and the clocks were striking thirteen. " * 3
    for i in range(4):  # the same document four times
        (corpus / f"copy{i}.txt").write_text(text, encoding="utf-8")
    assert _prepare([corpus], tok, tmp_path / "near", "--dedup", "near", "--near-threshold", "0.9",
                    "--val-fraction", "0", "--test-fraction", "0") == 0
    meta = json.loads((tmp_path / "near" / "meta.json").read_text(encoding="utf-8"))
    assert meta["documents"] == 1 and meta["filters"]["documents_in"] == 4
    assert meta["filters"]["removed"]["exact_duplicate"] == 3 and meta["filters"]["settings"]["threshold"] == 0.9
    with pytest.raises(SystemExit) as exit_:
        _prepare([corpus], tok, tmp_path / "bad", "--dedup", "fuzzy")
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
