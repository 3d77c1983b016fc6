"""Loading refuses what cannot work before building anything; saved weights get ordinary file modes."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.model import checkpoint_io
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertModel, load_model
from nanobert.model.config import estimate_encoder_parameters, model_max_length
from nanobert.model.gpt import GPT, GPTConfig

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=40)
GPT_SMALL = dict(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)


@pytest.fixture
def mlm_dir(tmp_path):
    BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path / "mlm")
    return tmp_path / "mlm"


def _edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, **changes}))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_model_max_length_reads_configs_and_dicts():
    assert model_max_length({"max_position_embeddings": 128}) == 128
    assert model_max_length({}) == 512
    assert model_max_length(BertConfig(**SMALL)) == 40
    assert model_max_length(GPTConfig(**GPT_SMALL)) == 16
    with pytest.raises(NanobertError, match="integer"):
        model_max_length({"max_position_embeddings": "long"})


@pytest.mark.parametrize("kw", [{}, {"pre_layer_norm": True}, {"norm_type": "rmsnorm", "use_bias": False},
                                {"position_embedding_type": "sinusoidal"}])
def test_parameter_estimate_equals_the_built_encoder(kw):
    cfg = BertConfig(**SMALL, **kw)
    assert estimate_encoder_parameters(cfg) == BertModel(cfg, add_pooling_layer=False).num_parameters()
    assert estimate_encoder_parameters(cfg.to_dict()) == estimate_encoder_parameters(cfg)
    g = GPTConfig(**GPT_SMALL)
    assert estimate_encoder_parameters(g) == GPT(g).num_parameters(non_embedding=False)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_hidden_layers": 1_000_000}, "memory available"),  # 12.4G parameters: never built
        ({"hidden_size": 10**9, "num_attention_heads": 1}, "memory available"),
        ({"vocab_size": 10**10}, "memory available"),
        ({"num_hidden_layers": 1000, "hidden_size": 4, "num_attention_heads": 1, "intermediate_size": 4},
         "says 1,000 layers but the weights hold 2"),  # fits in memory, but the file has 2 layers
        ({"vocab_size": 4_000_000}, "the weights hold at most"),  # 128M embeddings against a 30k-value file
    ],
)
def test_absurd_config_is_refused_before_building(mlm_dir, change, message):
    _edit_config(mlm_dir, **change)
    with pytest.raises(NanobertError, match=message) as err:
        load_model(mlm_dir)
    assert "\n" not in str(err.value)


def test_absurd_gpt_config_is_refused(tmp_path):
    GPT(GPTConfig(**GPT_SMALL)).save_pretrained(tmp_path / "gpt")
    _edit_config(tmp_path / "gpt", n_layer=1_000_000, n_embd=768, n_head=12)  # 7e12 parameters
    with pytest.raises(NanobertError, match="memory available"):
        GPT.from_pretrained(tmp_path / "gpt")
    _edit_config(tmp_path / "gpt", n_layer=500, n_embd=4, n_head=1)
    with pytest.raises(NanobertError, match="says 500 layers but the weights hold 2"):
        GPT.from_pretrained(tmp_path / "gpt")


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8"),
    (b"[1, 2, 3]", "holds a JSON list, not an object"),
])
def test_malformed_config_json_is_one_clear_error(mlm_dir, content, message):
    (mlm_dir / "config.json").write_bytes(content)
    with pytest.raises(NanobertError, match=message):
        load_model(mlm_dir)
    with pytest.raises(NanobertError, match=message):
        BertForMaskedLM.from_pretrained(mlm_dir)


def test_corrupted_safetensors_header_is_a_read_error(mlm_dir):
    (mlm_dir / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(NanobertError, match="cannot read weights"):
        load_model(mlm_dir)


def test_saved_weights_have_the_mode_of_any_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path / "new")
        (tmp_path / "existing").mkdir()
        BertForMaskedLM(BertConfig(**SMALL)).save_pretrained(tmp_path / "existing")
        GPT(GPTConfig(**GPT_SMALL)).save_pretrained(tmp_path / "gpt")
        checkpoint_io.save_safetensors({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    finally:
        os.umask(umask)
    for path in ("new/model.safetensors", "existing/model.safetensors", "gpt/model.safetensors", "plain.safetensors"):
        assert _mode(tmp_path / path) == 0o644, path
    assert _mode(tmp_path / "new/model.safetensors") == _mode(tmp_path / "new/config.json")


def test_adapter_files_go_through_the_same_strict_loader(tmp_path):
    from safetensors.torch import load_file, save_file

    from nanobert.model.bert import BertForSequenceClassification
    from nanobert.model.lora import apply_lora, load_adapter, save_adapter

    model = BertForSequenceClassification(BertConfig(**SMALL))
    apply_lora(model, r=2, targets=["query", "value"])
    save_adapter(model, tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    stored = load_file(weights)
    assert all(k.startswith(checkpoint_io.PEFT_PREFIX) for k in stored)  # PEFT's names, from PEFT_KEYS
    assert _mode(weights) == _mode(tmp_path / "adapter" / "adapter_config.json")

    key = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
    save_file({**stored, "base_model.model.bert.encoder.layer.0.extra": torch.zeros(1), key: torch.zeros(3, 32)},
              str(weights))
    with pytest.raises(NanobertError) as err:
        load_adapter(BertForSequenceClassification(BertConfig(**SMALL)), tmp_path / "adapter")
    msg = str(err.value)
    assert "unexpected: bert.encoder.layer.0.extra (1 key)" in msg
    assert "bert.encoder.layer.0.attention.self.query.lora_A.weight: file [3, 32] vs model [2, 32]" in msg
