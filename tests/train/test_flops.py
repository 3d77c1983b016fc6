"""Model FLOPs: the formula by hand for a tiny BERT, against torch's own FLOP counter, and the peak lookup."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nanobert.model.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification
from nanobert.train import flops
from nanobert.train.flops import FlopModel, flop_model, peak_flops

TINY = dict(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16)


def _batch():
    ids = torch.randint(5, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    labels = torch.full((2, 6), -100)
    labels[0, 1], labels[1, 2], labels[1, 4] = 7, 8, 9  # 3 targets
    return ids, labels


def test_mlm_flops_by_hand():
    fm = flop_model(BertForMaskedLM(BertConfig(**TINY)))
    # per layer: q, k, v, output 4 * 8*8 = 256; feed-forward 8*16 + 16*8 = 256 -> 512; two layers: 1024 per token.
    # sparse head, per target: transform dense 8*8 = 64 + tied decoder 50*8 = 400 -> 464.
    assert fm == FlopModel(params_per_token=1024, params_per_target=464, layers=2, width=8)
    # 2 x 6 tokens, 3 targets: 6*1024*12 + 6*464*3 + 12 * 2 layers * 8 * 6 (seq) * 12 (tokens)
    assert fm.batch_flops(tokens=12, targets=3, seq_len=6) == 73728 + 8352 + 13824


def test_mlm_formula_equals_torch_flop_counter():
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY))
    ids, labels = _batch()
    with FlopCounterMode(display=False) as counter:
        _, loss = model(ids, attention_mask=torch.ones_like(ids), labels=labels)
        loss.backward()
    assert counter.get_total_flops() == flop_model(model).batch_flops(tokens=12, targets=3, seq_len=6)


def test_classifier_counts_every_linear_per_token():
    fm = flop_model(BertForSequenceClassification(BertConfig(**TINY, num_labels=3)))
    assert fm == FlopModel(params_per_token=1024 + 64 + 8 * 3, params_per_target=0, layers=2, width=8)


def test_peak_from_the_table_and_measured_once():
    assert flops._gpu_table_peak("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989e12
    assert flops._gpu_table_peak("NVIDIA H100 PCIe", torch.bfloat16) == 756e12
    assert flops._gpu_table_peak("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312e12
    assert flops._gpu_table_peak("NVIDIA A10", torch.bfloat16) == 125e12
    assert flops._gpu_table_peak("NVIDIA A100-SXM4-80GB", torch.float32) is None  # fp32: measured
    assert flops._gpu_table_peak("Some Future GPU", torch.bfloat16) is None
    flops._measured_peak.cache_clear()
    rng = torch.get_rng_state()
    first = peak_flops(torch.device("cpu"), torch.float32)
    assert torch.equal(torch.get_rng_state(), rng)  # training's random draws are not moved by the measurement
    assert 1e8 < first < 1e14  # a CPU core does between 0.1 GFLOP/s and 100 TFLOP/s
    assert peak_flops(torch.device("cpu"), torch.float32) == first
    assert flops._measured_peak.cache_info().hits == 1  # measured once per process


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loop_logs_mfu(tmp_path, precision):
    from nanobert.train.loop import LoopConfig, train

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY))
    ids, labels = _batch()

    def batches():
        while True:
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    cfg = LoopConfig(max_steps=3, warmup_steps=1, log_every=1, eval_every=100, precision=precision, progress=False,
                     tensorboard=False, plots=False, device="cpu")
    state = train(model, batches(), cfg, tmp_path)
    assert state.flops == 3 * flop_model(model).batch_flops(12, 3, 6)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    mfu = [float(r.split(",")[-1]) for r in rows[1:]]
    assert len(mfu) == 3 and all(0 < m < 1 for m in mfu)
    assert "mfu" in (tmp_path / "train.log").read_text()
