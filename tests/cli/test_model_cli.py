"""`nanobert model presets | info | convert`."""

from __future__ import annotations

import pytest
import torch

from nanobert.cli import main

transformers = pytest.importorskip("transformers")


def test_presets_prints_parameter_counts(capsys):
    assert main(["model", "presets"]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "109,482,240" in out and "L2/H128/A2" in out


def test_convert_legacy_pretraining_bin_to_safetensors(tmp_path, capsys):
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=20, max_position_embeddings=16)
    theirs = transformers.BertForPreTraining(cfg).eval()
    src = tmp_path / "old"
    theirs.config.save_pretrained(src)
    sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
          for k, v in theirs.state_dict().items()}
    torch.save(sd, src / "pytorch_model.bin")
    (src / "vocab.txt").write_text("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                           + [f"w{i}" for i in range(35)]))

    assert main(["model", "convert", str(src), str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "model.safetensors").is_file() and (tmp_path / "new" / "vocab.txt").is_file()
    back = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "new").eval()
    ids = torch.randint(5, 40, (2, 9))
    with torch.no_grad():
        assert (back(input_ids=ids).logits - theirs(input_ids=ids).prediction_logits).abs().max() <= 1e-5

    assert main(["model", "info", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "BertForMaskedLM" in out and "loadable by transformers: yes" in out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["model", "info", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"nanobert: error: model directory not found: {tmp_path / 'missing'}"
