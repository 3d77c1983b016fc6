"""Configs from TOML and overrides: nesting, coercion, unknown keys, and the range checks every config runs."""

from __future__ import annotations

import pytest

from nanobert.config import check_fields, in_range, load_config, parse_overrides
from nanobert.errors import NanobertError
from nanobert.tasks.finetune import FinetuneConfig
from nanobert.tasks.pretrain import PretrainConfig


def test_in_range_rules():
    assert in_range(1, ">= 1") and not in_range(0, ">= 1") and not in_range(0, "> 0")
    assert in_range(0, "[0, 1)") and not in_range(1, "[0, 1)") and in_range(1, "[0, 1]")
    assert not in_range(float("nan"), ">= 0") and not in_range(0, "(0, 1)")


def test_check_fields_names_the_field_and_range():
    class C:
        batch_size, keep, lr = 0, "loss", None

    with pytest.raises(NanobertError, match=r"^batch_size must be >= 1, got 0$"):
        check_fields(C(), {"batch_size": ">= 1"})
    check_fields(C(), {"lr": "> 0"}, {"keep": ["loss"]})  # None passes: an optional field left unset
    with pytest.raises(NanobertError, match="keep must be one of a, b, got 'loss'"):
        check_fields(C(), {}, {"keep": ["a", "b"]})


def test_toml_values_and_overrides_in_order(tmp_path):
    toml = tmp_path / "r.toml"
    toml.write_text('epochs = 5\nbatch_size = 8\n[lora]\nr = 4\ntargets = ["query", "key"]\n')
    cfg = load_config(FinetuneConfig, toml, ["--batch_size", "12", "--lora.alpha", "2"], values={"epochs": "7"})
    assert (cfg.epochs, cfg.batch_size) == (7, 12)  # values beat the file, overrides beat both
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.targets) == (4, 2.0, ["query", "key"])
    assert cfg.learning_rate == 1e-3  # LoRA's default rate


def test_unknown_and_badly_typed_keys():
    with pytest.raises(NanobertError, match="unknown config key 'lora.rank'"):
        load_config(FinetuneConfig, overrides=["--lora.rank", "4"])
    with pytest.raises(NanobertError, match="config key 'epochs': cannot read 'two' as int"):
        load_config(FinetuneConfig, overrides=["--epochs", "two"])
    assert parse_overrides(["--a.b=1", "--c", "x"]) == {"a": {"b": "1"}, "c": "x"}


@pytest.mark.parametrize("override, message", [
    (["--train.warmup_steps", "-1"], "train.warmup_steps must be >= 0"),
    (["--data.mask_rate", "1.5"], "data.mask_rate must be (0, 1)"),
    (["--model.dropout", "1"], "model.dropout must be [0, 1)"),
    (["--train.precision", "fp8"], "train.precision must be one of auto, fp32, bf16")])
def test_pretrain_config_ranges(override, message):
    with pytest.raises(NanobertError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(PretrainConfig, overrides=override)


def test_a_nested_config_is_named_by_its_key_path():
    """LoopConfig says "train." when built alone; under train-gpt's config it sits at "loop."."""
    from nanobert.tasks.causal_lm import CausalLMConfig
    from nanobert.train.loop import LoopConfig
    with pytest.raises(NanobertError, match=r"^loop\.lr must be > 0, got -1\.0$"):
        load_config(CausalLMConfig, overrides=["--loop.lr", "-1"])
    with pytest.raises(NanobertError, match=r"^train\.lr must be > 0"):
        LoopConfig(lr=-1)
