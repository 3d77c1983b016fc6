"""Bad inputs to `nanobert fill-mask | classify | embed | report` and the pipelines: one clear error each."""

from __future__ import annotations

import gzip
import shutil

import pytest

from nanobert.cli import main
from nanobert.errors import NanobertError
from nanobert.infer.pipelines import (
    MAX_MASKS_PER_TEXT,
    MAX_TOP_K,
    ClassifyPipeline,
    EmbedPipeline,
    FillMaskPipeline,
)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["fill-mask", "classify", "embed", "report"])
def test_non_utf8_input_file_names_file_and_encoding(tiny_mlm_dir, tmp_path, capsys, command):
    src = tmp_path / "latin1.txt"
    src.write_bytes("un caf\u00e9 tr\u00e8s [MASK]\n".encode("latin-1"))
    assert main([command, "--model", str(tiny_mlm_dir), "--input", str(src)]) == 2
    err = _error_line(capsys)
    assert str(src) in err and "not UTF-8" in err


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"text\x00\x00\x01binary\n"])
def test_binary_input_file_is_one_clear_error(tiny_mlm_dir, tmp_path, capsys, content):
    src = tmp_path / "blob.bin"
    src.write_bytes(content)
    assert main(["embed", "--model", str(tiny_mlm_dir), "--input", str(src)]) == 2
    err = _error_line(capsys)
    assert str(src) in err and ("not UTF-8" in err or "binary" in err)


def test_non_utf8_gz_input(tiny_mlm_dir, tmp_path, capsys):
    src = tmp_path / "texts.txt.gz"
    with gzip.open(src, "wb") as f:
        f.write("na\u00efve [MASK]\n".encode("cp1252"))
    assert main(["classify", "--model", str(tiny_mlm_dir), "--input", str(src)]) == 2
    assert "not UTF-8" in _error_line(capsys)


@pytest.mark.parametrize("command", ["embed", "report"])
def test_out_directory_is_refused_before_any_work(tmp_path, capsys, command):
    # the model does not exist: the --out error must come first, before anything is loaded
    assert main([command, "--model", str(tmp_path / "no-model"), "--out", str(tmp_path), "some text"]) == 2
    err = _error_line(capsys)
    assert "--out" in err and "is a directory" in err


def test_fill_mask_limits_through_the_cli(tiny_mlm_dir, capsys):
    too_many = " ".join(["[MASK]"] * (MAX_MASKS_PER_TEXT + 1))
    assert main(["fill-mask", "--model", str(tiny_mlm_dir), too_many]) == 2
    assert f"at most {MAX_MASKS_PER_TEXT}" in _error_line(capsys)
    assert main(["fill-mask", "--model", str(tiny_mlm_dir), "--top-k", str(MAX_TOP_K + 1), "a [MASK]"]) == 2
    assert f"from 1 to {MAX_TOP_K}" in _error_line(capsys)
    assert main(["fill-mask", "--model", str(tiny_mlm_dir), "--top-k", str(MAX_TOP_K), "--json",
                 " ".join(["[MASK]"] * MAX_MASKS_PER_TEXT)]) == 0  # the limits themselves are allowed


def test_fill_mask_pipeline_enforces_the_same_limits(tiny_mlm_dir):
    fill = FillMaskPipeline(tiny_mlm_dir)
    with pytest.raises(NanobertError, match="MAX_MASKS_PER_TEXT"):
        fill("[MASK] " * (MAX_MASKS_PER_TEXT + 1))
    with pytest.raises(NanobertError, match="MAX_TOP_K"):
        fill("a [MASK]", top_k=MAX_TOP_K + 1)
    assert len(fill("a [MASK]", top_k=MAX_TOP_K)[0]) == MAX_TOP_K


@pytest.mark.parametrize("content, message", [
    (b'{"hidden_size": 32,', "not valid JSON"),
    (b"\xff\xfe\x00\x01binary\x00", "not UTF-8"),
    (b'["BertForMaskedLM"]', "holds a JSON list, not an object"),
])
@pytest.mark.parametrize("pipeline_cls", [FillMaskPipeline, ClassifyPipeline, EmbedPipeline])
def test_malformed_config_json_is_one_clear_error(tiny_mlm_dir, tmp_path, content, message, pipeline_cls):
    model = tmp_path / "model"
    shutil.copytree(tiny_mlm_dir, model)
    (model / "config.json").write_bytes(content)
    with pytest.raises(NanobertError, match=message):
        pipeline_cls(model)


def test_absurd_config_json_is_refused_by_the_pipelines(tiny_mlm_dir, tmp_path, capsys):
    import json

    model = tmp_path / "model"
    shutil.copytree(tiny_mlm_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1_000_000}))
    with pytest.raises(NanobertError, match="memory available|says 1,000,000 layers but the weights hold 2"):
        EmbedPipeline(model)  # 8.5G parameters: over the memory of most machines, and the file has 2 layers
    (model / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1000}))
    with pytest.raises(NanobertError, match="says 1,000 layers but the weights hold 2"):
        FillMaskPipeline(model)
    (model / "config.json").write_text(json.dumps({**config, "hidden_size": 10**9, "num_attention_heads": 1}))
    assert main(["fill-mask", "--model", str(model), "a [MASK]"]) == 2
    assert "memory available" in _error_line(capsys)
