"""LoRA: hand-checked maths on nn.Linear, merge/unmerge, layer selection, and PEFT compatibility both ways."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nanobert.errors import NanobertError
from nanobert.model.lora import (LoRALinear, apply_lora, count_parameters, load_adapter, merge_lora,
                                 resolve_layers, save_adapter)


def _trained(layer: LoRALinear) -> LoRALinear:
    with torch.no_grad():
        layer.lora_B.weight.normal_()  # as if trained: B is no longer zero
    return layer


def test_lora_linear_starts_as_base_and_matches_hand_formula():
    base = nn.Linear(6, 4)
    x = torch.randn(3, 6)
    expected_base = base(x)
    layer = LoRALinear(base, r=2, alpha=8)
    assert torch.equal(layer.lora_B.weight, torch.zeros(4, 2))
    assert torch.allclose(layer(x), expected_base)  # B = 0: the model starts as the base model
    _trained(layer)
    A, B = layer.lora_A.weight, layer.lora_B.weight
    hand = x @ base.weight.T + base.bias + (8 / 2) * (x @ A.T @ B.T)
    assert torch.allclose(layer(x), hand, atol=1e-5)
    # Code that reads `.weight` (fused GEMMs) sees the same adapted layer.
    assert torch.allclose(nn.functional.linear(x, layer.weight, layer.bias), hand, atol=1e-5)
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight"}
    assert layer.state_dict()["weight"] is not None and torch.equal(layer.state_dict()["weight"], base.weight)


def test_only_adapters_get_gradients():
    layer = LoRALinear(nn.Linear(5, 5), r=1, alpha=1)
    layer(torch.randn(2, 5)).sum().backward()
    assert layer.base_weight.grad is None and layer.bias.grad is None
    assert layer.lora_A.weight.grad is not None and layer.lora_B.weight.grad is not None


def test_merge_unmerge_same_outputs():
    layer = _trained(LoRALinear(nn.Linear(6, 4), r=2, alpha=4))
    x = torch.randn(5, 6)
    before = layer(x)
    w0 = layer.base_weight.detach().clone()
    layer.merge()
    assert torch.allclose(layer(x), before, atol=1e-5)
    assert not torch.allclose(layer.base_weight, w0)
    layer.unmerge()
    assert torch.allclose(layer.base_weight, w0, atol=1e-6)
    assert torch.allclose(layer.to_linear()(x), before, atol=1e-5)


def test_resolve_layers():
    assert resolve_layers("all", 6) is None
    assert resolve_layers("last-4", 6) == [2, 3, 4, 5]
    assert resolve_layers("0,5", 6) == [0, 5]
    assert resolve_layers([-1], 6) == [5]
    with pytest.raises(NanobertError):
        resolve_layers("7", 6)
    with pytest.raises(NanobertError):
        resolve_layers("last-9", 6)


# --- on BERT, against transformers + peft ------------------------------------------------------------------------

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, num_labels=3)


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 99, (4, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 4:] = 0
    return ids, mask


@pytest.fixture
def saved_base(tmp_path):
    from nanobert.model.bert import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _ours(base_dir):
    from nanobert.model.bert import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(base_dir).eval()


def _perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))  # "train": adapters and classifier move


def test_apply_lora_on_bert_counts_and_names(saved_base):
    model = _ours(saved_base)
    cfg = apply_lora(model, r=2, alpha=4, targets=["query", "value"], layers=[1, 2])
    trainable, total = count_parameters(model)
    H = TINY["hidden_size"]
    adapters = 2 * 2 * 2 * (H + H)  # layers x targets x r x (in + out)
    classifier = H * 3 + 3
    assert trainable == adapters + classifier
    assert cfg.modules_to_save == ["classifier"]
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "bert.encoder.layer.1.attention.self.query.lora_A.weight" in names
    assert not any(".layer.0." in n for n in names)


@pytest.mark.parametrize("modules_to_save", [["classifier"], ["classifier", "pooler"]])
def test_adapter_loads_in_peft_with_same_logits(saved_base, tmp_path, modules_to_save):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    ours = _ours(saved_base)
    apply_lora(ours, r=4, alpha=8, targets=["query", "value"], layers=[0, 2], modules_to_save=modules_to_save)
    H = TINY["hidden_size"]
    pooler = H * H + H if "pooler" in modules_to_save else 0
    assert count_parameters(ours)[0] == 2 * 2 * 4 * (H + H) + H * 3 + 3 + pooler
    _perturb(ours)
    save_adapter(ours, tmp_path / "adapter", base_model_name_or_path=str(saved_base))
    ids, mask = _batch()
    with torch.no_grad():
        our_logits = ours(ids, attention_mask=mask)[0]

    hf = transformers.BertForSequenceClassification.from_pretrained(saved_base).eval()
    hf = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        hf_logits = hf(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(our_logits, hf_logits, atol=1e-5), (our_logits - hf_logits).abs().max()

    # Merged for inference: same outputs, plain Linears again.
    merge_lora(ours)
    assert not any(isinstance(m, LoRALinear) for m in ours.modules())
    with torch.no_grad():
        assert torch.allclose(ours(ids, attention_mask=mask)[0], our_logits, atol=1e-5)


@pytest.mark.parametrize("modules_to_save", [None, ["classifier", "pooler"]])
def test_peft_adapter_loads_in_ours(saved_base, tmp_path, modules_to_save):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(saved_base)
    hf = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=6, modules_to_save=modules_to_save,
                                                 target_modules=["query", "key", "value"]))
    _perturb(hf)
    hf.eval()
    hf.save_pretrained(tmp_path / "peft_adapter")
    ids, mask = _batch()
    with torch.no_grad():
        hf_logits = hf(input_ids=ids, attention_mask=mask).logits
    ours = _ours(saved_base)
    cfg = load_adapter(ours, tmp_path / "peft_adapter")
    assert cfg.targets == ["query", "key", "value"] or sorted(cfg.targets) == ["key", "query", "value"]
    with torch.no_grad():
        assert torch.allclose(ours(ids, attention_mask=mask)[0], hf_logits, atol=1e-5)


def test_bad_adapter_inputs(saved_base, tmp_path):
    model = _ours(saved_base)
    with pytest.raises(NanobertError, match="no LoRA adapters"):
        save_adapter(model, tmp_path / "a")
    with pytest.raises(NanobertError, match="not an adapter directory"):
        load_adapter(model, tmp_path)
    with pytest.raises(NanobertError, match="no linear layer"):
        apply_lora(model, targets=["qkv"])
