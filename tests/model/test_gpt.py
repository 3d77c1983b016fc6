"""GPT and bigram models: parity with transformers' GPT2LMHeadModel both ways, KV cache, padding, errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nanobert.errors import NanobertError
from nanobert.model.gpt import GPT, BigramLanguageModel, GPTConfig, KVCache

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=101, n_positions=40, n_embd=48, n_layer=3, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
             attn_pdrop=0.0, bos_token_id=100, eos_token_id=100)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random-initialized transformers GPT-2 (small config), saved the way transformers saves it."""
    torch.manual_seed(1)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**SMALL))
    with torch.no_grad():  # random but far from the tiny init, so every weight matters to the logits
        for name, p in hf.named_parameters():
            if not name.endswith("ln_1.weight") and not name.endswith("ln_2.weight"):
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("hf") / "gpt2"
    hf.save_pretrained(path)
    return path


def _hf_logits(model_dir, idx, **kw):
    hf = transformers.GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        return hf(idx, **kw).logits


def test_hf_gpt2_loads_into_ours_with_the_same_logits(hf_dir):
    idx = torch.randint(0, SMALL["vocab_size"], (3, 40))
    ours = GPT.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        logits, loss = ours(idx)
    assert loss is None and logits.shape == (3, 40, SMALL["vocab_size"])
    expected = _hf_logits(hf_dir, idx)
    assert (logits - expected).abs().max().item() <= 1e-4
    assert ours.lm_head.weight is ours.transformer.wte.weight  # tied, as in GPT-2


def test_ours_saved_loads_into_transformers_with_the_same_logits(tmp_path):
    torch.manual_seed(2)
    ours = GPT(GPTConfig(**SMALL)).eval()
    ours.save_pretrained(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architectures"] == ["GPT2LMHeadModel"] and config["n_embd"] == 48
    idx = torch.randint(0, SMALL["vocab_size"], (2, 33))
    with torch.no_grad():
        logits, _ = ours(idx)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    with torch.no_grad():
        assert (hf(idx).logits - logits).abs().max().item() <= 1e-4
    # and back again: a round trip changes no weight
    again = GPT.from_pretrained(tmp_path / "m")
    for (name, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_loss_and_gradients_match_transformers(hf_dir):
    idx = torch.randint(0, SMALL["vocab_size"], (2, 30))
    ours = GPT.from_pretrained(hf_dir)
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_dir, attn_implementation="sdpa")
    _, loss = ours(input_ids=idx[:, :-1], labels=idx[:, 1:])  # our labels are already shifted
    hf_loss = hf(idx, labels=idx).loss  # transformers shifts the labels itself
    assert abs(loss.item() - hf_loss.item()) < 1e-5
    loss.backward()
    hf_loss.backward()
    ours_grad = ours.transformer.h[1].attn.c_attn.weight.grad
    hf_grad = hf.transformer.h[1].attn.c_attn.weight.grad  # Conv1D: (in, out)
    assert torch.allclose(ours_grad, hf_grad.t(), atol=1e-6)
    assert torch.allclose(ours.transformer.wte.weight.grad, hf.transformer.wte.weight.grad, atol=1e-6)


def test_old_style_checkpoint_without_prefix_and_with_mask_buffers_loads(hf_dir, tmp_path):
    """GPT-2 checkpoints saved from GPT2Model have no `transformer.` prefix and keep `attn.bias` masks."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(hf_dir / "model.safetensors"))
    old = {k.removeprefix("transformer."): v for k, v in tensors.items() if k != "lm_head.weight"}
    for i in range(SMALL["n_layer"]):
        old[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 40, 40))
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / "model.safetensors"))
    (tmp_path / "old" / "config.json").write_text((hf_dir / "config.json").read_text())
    idx = torch.randint(0, SMALL["vocab_size"], (1, 12))
    with torch.no_grad():
        a, _ = GPT.from_pretrained(tmp_path / "old")(idx)
        b, _ = GPT.from_pretrained(hf_dir)(idx)
    assert torch.equal(a, b)


def test_strict_loading_names_missing_and_misshaped_keys(hf_dir, tmp_path):
    from safetensors.torch import load_file

    tensors = load_file(str(hf_dir / "model.safetensors"))
    model = GPT(GPTConfig(**SMALL))
    broken = dict(tensors)
    del broken["transformer.h.2.mlp.c_fc.bias"]
    broken["transformer.h.0.attn.c_attn.weight"] = broken["transformer.h.0.attn.c_attn.weight"].t()[:, :10]
    broken["transformer.extra"] = torch.zeros(1)
    with pytest.raises(NanobertError) as e:
        model.load_hf_state_dict(broken)
    msg = str(e.value)
    assert "missing: transformer.h.2.mlp.c_fc.bias" in msg
    assert "unexpected: transformer.extra" in msg
    assert "transformer.h.0.attn.c_attn.weight" in msg and "\n" not in msg
    with pytest.raises(NanobertError, match="n_embd=48 must be a multiple of n_head=5"):
        GPT(GPTConfig(**{**SMALL, "n_head": 5}))
    config = json.loads((hf_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(NanobertError, match="scale_attn_by_inverse_layer_idx"):
        GPTConfig.from_pretrained(tmp_path)


def test_kv_cache_gives_the_same_logits_as_the_full_forward(hf_dir):
    model = GPT.from_pretrained(hf_dir).eval()
    idx = torch.randint(0, SMALL["vocab_size"], (2, 20))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache(model.config, batch_size=2, max_len=40)
        parts = [model(idx[:, :7], cache=cache)[0]]  # prefill 7 tokens
        parts += [model(idx[:, t:t + 1], cache=cache)[0] for t in range(7, 15)]  # one at a time
        parts += [model(idx[:, 15:], cache=cache)[0]]  # then 5 at once after the cached ones
    assert cache.length == 20
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_left_padding_with_attention_mask_gives_the_unpadded_logits(hf_dir):
    model = GPT.from_pretrained(hf_dir).eval()
    short = torch.randint(0, SMALL["vocab_size"], (1, 6))
    padded = torch.cat([torch.full((1, 4), 7), short], dim=1)  # 4 pad tokens on the left
    mask = torch.tensor([[0] * 4 + [1] * 6])
    with torch.no_grad():
        alone, _ = model(short)
        batched, _ = model(padded, attention_mask=mask)
    assert torch.allclose(batched[:, 4:], alone, atol=1e-5)
    # transformers agrees on the same left-padded batch (given the positions its generate() would use)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    expected = _hf_logits(hf_dir, padded, attention_mask=mask, position_ids=positions)
    assert torch.allclose(batched[:, 4:], expected[:, 4:], atol=1e-4)


def test_too_long_input_is_a_clear_error():
    model = GPT(GPTConfig(**SMALL))
    with pytest.raises(NanobertError, match="longer than the context of 40"):
        model(torch.zeros(1, 41, dtype=torch.long))


def test_bigram_logits_are_rows_of_its_table_and_loss_is_cross_entropy():
    model = BigramLanguageModel(5)
    idx = torch.tensor([[0, 3, 3, 1]])
    targets = torch.tensor([[3, 3, 1, 4]])
    logits, loss = model(input_ids=idx, labels=targets, attention_mask=torch.ones_like(idx))
    table = model.token_embedding_table.weight
    assert torch.equal(logits[0], table[[0, 3, 3, 1]])
    hand = -sum(F.log_softmax(table[a], -1)[b] for a, b in zip([0, 3, 3, 1], [3, 3, 1, 4])) / 4
    assert abs(loss.item() - hand.item()) < 1e-6


def test_forward_takes_a_loop_batch_and_right_padding_changes_nothing_before_it():
    """model(**batch) with input_ids / attention_mask / labels: padded rows give the real rows' logits and loss."""
    from nanobert.data.causal import pad_examples

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    long, short = [1, 2, 3, 4, 5, 6], [7, 8, 9]
    batch = pad_examples([long, short], loss_from=[0, 0], pad_id=0)
    with torch.no_grad():
        logits, loss = model(**batch)
        alone, alone_loss = model(input_ids=torch.tensor([short[:-1]]), labels=torch.tensor([short[1:]]))
    assert torch.allclose(logits[1, :2], alone[0], atol=1e-6)
    per_token = F.cross_entropy(logits.reshape(-1, 11), batch["labels"].reshape(-1), reduction="none",
                                ignore_index=-100)
    assert abs(loss.item() - per_token.sum().item() / 7) < 1e-6  # 5 + 2 real targets, the padding ignored
    assert abs(per_token.view(2, 5)[1, :2].mean().item() - alone_loss.item()) < 1e-6
