"""`nanobert tokenizer train|encode|decode`, and its errors: one line, exit 2, nothing written."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nanobert.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("tok") / "wordpiece"
    assert main(["tokenizer", "train", "--input", str(shared_data / "janeausten" / "persuasion.txt"),
                 "--vocab-size", "1500", "--out", str(out)]) == 0
    return out


def test_train_encode_decode(trained, capsys):
    assert sorted(p.name for p in trained.iterdir()) == [".nanobert-output.json", "tokenizer_config.json", "vocab.txt"]
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "Anne Elliot, at last!"]) == 0
    out = capsys.readouterr().out
    assert "tokens: [CLS] anne elliot , at last ! [SEP]" in out and "decode: anne elliot, at last!" in out
    ids = out.split("ids:")[1].split("\n")[0].split()
    assert main(["tokenizer", "decode", "--tokenizer", str(trained), *ids]) == 0
    assert capsys.readouterr().out.strip() == "anne elliot, at last!"


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_other_kinds(kind, tmp_path, shared_data, capsys):
    out = tmp_path / kind
    size = ["--vocab-size", "400"] if kind == "bpe" else []
    assert main(["tokenizer", "train", "--kind", kind, "--input", str(shared_data / "janeausten" / "persuasion.txt"),
                 *size, "--out", str(out)]) == 0
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "Anne Elliot"]) == 0
    assert "decode: Anne Elliot" in capsys.readouterr().out


def test_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "novocab").mkdir()
    (tmp_path / "novocab" / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    commands = [
        ["tokenizer", "train", "--input", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o1")],
        ["tokenizer", "train", "--input", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "o2")],
        ["tokenizer", "train", "--input", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o3")],
        ["tokenizer", "encode", "--tokenizer", str(tmp_path / "nowhere"), "x"],
        ["tokenizer", "encode", "--tokenizer", str(tmp_path / "novocab"), "x"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().split("\n")[-1]
        assert err.startswith("nanobert: error: ") and "Traceback" not in err
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


ASSET = Path(__file__).parents[2] / "src" / "nanobert" / "assets" / "janeausten" / "persuasion.txt.gz"


def _train(out, *extra):
    return main(["tokenizer", "train", "--input", str(ASSET), "--vocab-size", "200", "--out", str(out), *extra])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().split("\n")
    assert len([line for line in err if line.startswith("nanobert: error: ")]) == 1 and "Traceback" not in err[-1]
    return err[-1]


def test_train_never_replaces_what_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert _train(mine) == 2 and "not written by nanobert tokenizer train" in _error(capsys)
    assert _train(mine, "--overwrite") == 2 and "not written by" in _error(capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    copy = tmp_path / "corpus"
    copy.mkdir()
    (copy / "c.txt.gz").write_bytes(ASSET.read_bytes())
    assert main(["tokenizer", "train", "--input", str(copy / "c.txt.gz"), "--out", str(copy), "--overwrite"]) == 2
    assert "contains the input" in _error(capsys) and (copy / "c.txt.gz").is_file()


def test_train_replaces_its_own_output_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "tok"
    assert _train(out) == 0
    before = (out / "vocab.txt").read_text()
    assert _train(out, "--lowercase") == 2 and "--overwrite" in _error(capsys)
    assert main(["tokenizer", "train", "--kind", "char", "--input", str(ASSET), "--out", str(out),
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".nanobert-output.json", "tokenizer_config.json", "vocab.json"]
    assert before and sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_train_checks_out_before_training(tmp_path, capsys, monkeypatch):
    import nanobert.tokenizers.wordpiece as wordpiece

    monkeypatch.setattr(wordpiece, "learn_wordpiece_vocab", lambda *a, **k: pytest.fail("trained before checking"))
    (tmp_path / "file").write_text("")
    assert _train(tmp_path / "file") == 2 and "not a directory" in _error(capsys)


def test_char_refuses_a_vocab_size(tmp_path, capsys):
    argv = ["tokenizer", "train", "--kind", "char", "--input", str(ASSET), "--out", str(tmp_path / "c")]
    assert main([*argv, "--vocab-size", "30"]) == 2 and "--vocab-size does not apply" in _error(capsys)
    assert not (tmp_path / "c").exists()


def test_encode_refuses_bytes_that_are_not_utf8(trained, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("café".encode("latin-1")),
                                                      errors="surrogateescape"))
    assert main(["tokenizer", "encode", "--tokenizer", str(trained)]) == 2
    assert "standard input is not UTF-8 text" in _error(capsys)
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "caf\udce9"]) == 2  # how argv carries bad bytes
    assert "not valid UTF-8" in _error(capsys)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("café".encode())))
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "--no-special-tokens"]) == 0
    assert "decode: cafe" in capsys.readouterr().out
