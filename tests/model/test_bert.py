"""BertModel and its heads: shapes, sparse prediction, padding, variants, presets, tracing, gradients."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nanobert.config import load_config
from nanobert.errors import NanobertError
from nanobert.model.bert import (
    PRESETS,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    load_model,
    preset_table,
)

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32)
VARIANTS = {
    "pre_ln": dict(pre_layer_norm=True),
    "rmsnorm": dict(norm_type="rmsnorm"),
    "sinusoidal": dict(position_embedding_type="sinusoidal"),
    "no_bias": dict(use_bias=False),
    "all": dict(pre_layer_norm=True, norm_type="rmsnorm", position_embedding_type="sinusoidal", use_bias=False),
}


def tiny(**kw) -> BertConfig:
    return BertConfig(**{**TINY, **kw})


def test_shapes_of_every_model():
    ids = torch.randint(1, 50, (3, 7))
    hidden, pooled = BertModel(tiny()).eval()(ids)
    assert hidden.shape == (3, 7, 16) and pooled.shape == (3, 16)
    assert BertModel(tiny(), add_pooling_layer=False)(ids)[1] is None
    logits, loss = BertForMaskedLM(tiny())(ids)
    assert logits.shape == (3, 7, 50) and loss is None
    logits, loss = BertForSequenceClassification(tiny(num_labels=4))(ids, labels=torch.tensor([0, 3, 1]))
    assert logits.shape == (3, 4) and loss.ndim == 0


def test_sparse_prediction_equals_dense_logits_at_masked_positions():
    model = BertForMaskedLM(tiny()).eval()
    ids = torch.randint(1, 50, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[0, 5], labels[1, 0], labels[1, 3] = 7, 8, 9  # row-major order: (0,5), (1,0), (1,3)
    with torch.no_grad():
        dense, _ = model(ids)
        sparse, loss = model(ids, labels=labels)
    expected = torch.stack([dense[0, 5], dense[1, 0], dense[1, 3]])
    assert sparse.shape == (3, 50)
    assert torch.allclose(sparse, expected, atol=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(expected, torch.tensor([7, 8, 9])).item(), abs=1e-6)


def test_no_masked_token_gives_zero_loss_that_backpropagates():
    model = BertForMaskedLM(tiny())
    logits, loss = model(torch.randint(1, 50, (2, 5)), labels=torch.full((2, 5), -100))
    assert logits.shape == (0, 50) and loss.item() == 0.0
    loss.backward()


def test_decoder_is_tied_to_word_embeddings():
    model = BertForMaskedLM(tiny())
    keys = set(model.state_dict())
    assert "cls.predictions.bias" in keys and "cls.predictions.decoder.weight" not in keys
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[3] += 1.0  # moves the embedding and the output row together
    h = model.cls.predictions.transform(torch.ones(1, 16))
    logits = model.cls.predictions(torch.ones(1, 16), model.bert.embeddings.word_embeddings.weight)
    assert torch.allclose(logits[0, 3], h[0] @ model.bert.embeddings.word_embeddings.weight[3])


def test_all_ones_mask_equals_no_mask_and_padding_is_ignored():
    model = BertModel(tiny()).eval()
    ids = torch.randint(1, 50, (2, 8))
    with torch.no_grad():
        a = model(ids)[0]
        b = model(ids, torch.ones_like(ids))[0]
        mask = torch.ones_like(ids)
        mask[1, 5:] = 0
        padded = model(torch.cat([ids[:, :5], torch.randint(1, 50, (2, 3))], 1), mask)[0]
        short = model(ids[1:, :5])[0]
    assert torch.equal(a, b)
    assert (padded[1, :5] - short[0]).abs().max() < 1e-5


@pytest.mark.parametrize("variant", ["absolute", "sinusoidal"])
def test_a_packed_row_encodes_each_sequence_as_if_alone(variant):
    """Three sequences in one row (position_ids restarting at 0, padding after them) give each sequence the
    hidden states it has alone in a row: attention never crosses a sequence or reaches the padding."""
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny(position_embedding_type=variant)).eval()
    seqs = [torch.randint(5, 50, (n,)) for n in (5, 3, 6)]
    row = torch.cat(seqs + [torch.zeros(2, dtype=torch.long)])[None]  # (1, 16): 14 tokens, 2 padding
    positions = torch.cat([torch.arange(len(q)) for q in seqs] + [torch.zeros(2, dtype=torch.long)])[None]
    mask = torch.ones_like(row)
    mask[0, 14:] = 0
    with torch.no_grad():
        packed = model.bert(row, mask, position_ids=positions)[0][0]  # (16, H)
        start = 0
        for q in seqs:
            alone = model.bert(q[None])[0][0]  # (n, H)
            assert (packed[start:start + len(q)] - alone).abs().max() < 1e-5
            start += len(q)
        labels = torch.full_like(row, -100)
        labels[0, [1, 6, 9]] = row[0, [1, 6, 9]]
        _, loss = model(row, mask, labels=labels, position_ids=positions)  # the MLM head takes packed rows too
    assert torch.isfinite(loss)


def test_classification_losses_follow_transformers_rules():
    ids = torch.randint(1, 50, (4, 5))
    reg = BertForSequenceClassification(tiny(num_labels=1)).eval()
    logits, loss = reg(ids, labels=torch.tensor([0.5, 1.0, -1.0, 2.0]))
    assert loss.item() == pytest.approx(F.mse_loss(logits.squeeze(-1), torch.tensor([0.5, 1.0, -1.0, 2.0])).item())
    multi = BertForSequenceClassification(tiny(num_labels=3)).eval()
    y = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    logits, loss = multi(ids, labels=y)
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, y).item())


def test_gradients_match_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = tiny(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours = BertForMaskedLM(cfg)
    ours.save_pretrained(tmp_path)
    theirs = transformers.BertForMaskedLM.from_pretrained(tmp_path)
    ids = torch.randint(1, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    labels = torch.where(torch.rand(2, 9) < 0.3, ids, -100)
    labels[0, 2] = ids[0, 2]
    _, loss = ours.train()(ids, mask, labels=labels)
    ref = theirs.train()(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert (p.grad - theirs_params[name].grad).abs().max() < 1e-5, name


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_train_save_and_load(tmp_path, name):
    cfg = tiny(**VARIANTS[name])
    assert not cfg.hf_compatible
    model = BertForMaskedLM(cfg)
    ids = torch.randint(1, 50, (2, 6))
    _, loss = model(ids, labels=ids)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(NanobertError, match="transformers' BERT cannot run"):
        model.save_pretrained(tmp_path / "hf", require_hf=True)
    model.save_pretrained(tmp_path / "own")
    assert json.loads((tmp_path / "own" / "config.json").read_text())["model_type"] == "nanobert_bert"
    back = load_model(tmp_path / "own")
    assert back.config == cfg
    with torch.no_grad():
        assert torch.equal(back(ids)[0], model.eval()(ids)[0])


def test_variant_keys():
    keys = set(BertModel(tiny(**VARIANTS["all"])).state_dict())
    assert "embeddings.position_embeddings.weight" not in keys  # sinusoidal: computed, not stored
    assert "encoder.final_layer_norm.weight" in keys  # pre-LN normalises the stream once at the end
    assert not any(k.endswith(".bias") for k in keys)  # no bias anywhere, RMSNorm has none either
    assert set(BertModel(tiny()).state_dict()) - keys >= {"embeddings.position_embeddings.weight"}


def test_sinusoidal_table_hand_computed():
    from nanobert.model.layers import sinusoidal_positions

    table = sinusoidal_positions(3, 4)
    p, i = 2, 1  # row 2, frequency 1 / 10000^(2/4) = 0.01
    assert table[p, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(0.02)).item())
    assert table[p, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(0.02)).item())
    assert table[1, :2].tolist() == pytest.approx([0.8414709848, 0.5403023059])


def test_preset_parameter_counts_match_transformers():
    transformers = pytest.importorskip("transformers")
    rows = {name: counts for name, _, *counts in preset_table()}
    assert rows["base"][0] == 109_482_240  # bert-base-uncased, as published
    for name in ("mini", "small", "google-small"):
        cfg = BertConfig.from_preset(name)
        hf_cfg = transformers.BertConfig(**{k: v for k, v in cfg.to_dict().items() if k != "model_type"})
        with torch.device("meta"):
            hf_model = transformers.BertModel(hf_cfg)
            hf_mlm = transformers.BertForMaskedLM(hf_cfg)
        assert rows[name][0] == hf_model.num_parameters()
        assert rows[name][1] == hf_mlm.num_parameters()  # tied decoder counted once, as transformers does
    assert set(PRESETS) >= {"mini", "small", "base", "google-tiny", "google-mini", "google-medium"}


def test_config_errors_and_overrides(tmp_path):
    with pytest.raises(NanobertError, match="divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(NanobertError, match="unknown model preset 'huge'"):
        BertConfig.from_preset("huge")
    with pytest.raises(NanobertError, match="unknown BertConfig keys: hiden_size"):
        BertConfig.from_preset("mini", hiden_size=64)
    with pytest.raises(NanobertError, match="relative_key"):
        BertConfig(position_embedding_type="relative_key")
    cfg = BertConfig.from_preset("small", vocab_size=8000)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size) == (4, 256, 1024, 8000)
    toml = tmp_path / "m.toml"
    toml.write_text('hidden_size = 64\nnum_attention_heads = 4\nnorm_type = "rmsnorm"\n')
    cfg = load_config(BertConfig, toml, ["--num_hidden_layers", "3", "--pre_layer_norm", "true"])
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.pre_layer_norm, cfg.norm_type) == (64, 3, True, "rmsnorm")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(NanobertError, match="model_type is 'roberta'"):
        BertConfig.from_pretrained(tmp_path)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(NanobertError, match="longer than max_position_embeddings=32"):
        BertModel(tiny())(torch.ones(1, 33, dtype=torch.long))


def test_traced_model_keeps_the_padding_mask():
    model = BertForMaskedLM(tiny()).eval()
    ids = torch.randint(1, 50, (2, 8))

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, i, m):
            return self.model(i, m)[0]

    with torch.no_grad():
        traced = torch.jit.trace(Logits(), (ids, torch.ones_like(ids)))  # traced without padding
        mask = torch.ones_like(ids)
        mask[0, 4:] = 0
        assert torch.allclose(traced(ids, mask), model(ids, mask)[0], atol=1e-6)
        assert torch.allclose(traced(ids, mask)[0, :4], model(ids[:1, :4])[0][0], atol=1e-5)  # padding ignored


def test_lora_wrapped_projections_take_the_unfused_path():
    from nanobert.model.lora import apply_lora

    model = BertForSequenceClassification(tiny()).eval()
    ids = torch.randint(1, 50, (2, 6))
    with torch.no_grad():
        before = model.bert(ids)[0]
        apply_lora(model, r=2, alpha=4.0)
        assert torch.allclose(model.bert(ids)[0], before, atol=1e-6)  # B starts at zero
        for m in model.modules():
            if hasattr(m, "lora_B"):
                m.lora_B.weight.normal_()
        assert not torch.allclose(model.bert(ids)[0], before, atol=1e-2)


@pytest.mark.gpu
def test_cuda_matches_cpu_and_runs_under_bf16_autocast():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = BertForMaskedLM(tiny()).eval()
    ids = torch.randint(1, 50, (3, 10))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    with torch.no_grad():
        cpu = model(ids, mask)[0]
        gpu = model.cuda()(ids.cuda(), mask.cuda())[0].cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(ids.cuda(), mask.cuda())[0].float().cpu()
    assert (cpu - gpu).abs().max() < 1e-4
    assert (cpu - half).abs().max() < 0.1
    _, loss = model.train()(ids.cuda(), mask.cuda(), labels=ids.cuda())
    loss.backward()
