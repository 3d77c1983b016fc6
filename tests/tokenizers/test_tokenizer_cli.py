"""`nanobert tokenizer train|encode|decode`, and its errors: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from nanobert.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("tok") / "wordpiece"
    assert main(["tokenizer", "train", "--input", str(shared_data / "janeausten" / "persuasion.txt"),
                 "--vocab-size", "1500", "--out", str(out)]) == 0
    return out


def test_train_encode_decode(trained, capsys):
    assert sorted(p.name for p in trained.iterdir()) == ["tokenizer_config.json", "vocab.txt"]
    assert main(["tokenizer", "encode", "--tokenizer", str(trained), "Anne Elliot, at last!"]) == 0
    out = capsys.readouterr().out
    assert "tokens: [CLS] anne elliot , at last ! [SEP]" in out and "decode: anne elliot, at last!" in out
    ids = out.split("ids:")[1].split("\n")[0].split()
    assert main(["tokenizer", "decode", "--tokenizer", str(trained), *ids]) == 0
    assert capsys.readouterr().out.strip() == "anne elliot, at last!"


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_other_kinds(kind, tmp_path, shared_data, capsys):
    out = tmp_path / kind
    assert main(["tokenizer", "train", "--kind", kind, "--input", str(shared_data / "janeausten" / "persuasion.txt"),
                 "--vocab-size", "400", "--out", str(out)]) == 0
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
