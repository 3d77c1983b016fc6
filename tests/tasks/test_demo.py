"""`nanobert demo --quick` end to end: every stage's files exist and hold real results."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from nanobert.cli import main
from nanobert.errors import NanobertError
from nanobert.tasks.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_demo_writes_every_stage(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    for name in ("tokenizer/vocab.txt", "data/meta.json", "pretrain/model/config.json",
                 "pretrain/model/model.safetensors", "pretrain/model/vocab.txt", "pretrain/loss.png",
                 "pretrain/accuracy.png", "pretrain/metrics.csv", "masked_predictions.html", "fill_mask.json",
                 "classifier.int8.onnx", "summary.md"):
        assert (demo_run / name).is_file() and (demo_run / name).stat().st_size > 0, name
    assert (demo_run / "pretrain/loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    inputs = json.loads((demo_run / "data" / "meta.json").read_text())["inputs"]
    # the corpus: a novel and the classifiers' training sentences; the report's novel and the test set stay unseen
    assert [i.rsplit("/", 1)[-1] for i in inputs] == ["pride_and_prejudice.txt.gz", "train.tsv"]
    html = (demo_run / "masked_predictions.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "Accuracy" in html
    # every fill-mask sentence got five candidates for its one [MASK]
    assert all(len(masks) == 1 and len(masks[0]) == 5 for masks in summary["fill_mask"].values())
    assert 0.0 <= summary["report_accuracy"] <= 1.0


def _val_losses(path):
    return [float(r["loss"]) for r in csv.DictReader(open(path)) if r["split"] == "val"]


@pytest.mark.slow
def test_demo_pretraining_learns(demo_run):
    short, full = _val_losses(demo_run / "pretrain-short/metrics.csv"), _val_losses(demo_run / "pretrain/metrics.csv")
    assert short[0] < 6.6, short  # starts at the unigram distribution (~6.1 nats), not uniform (ln 2000 = 7.6)
    assert short[-1] < short[0] - 0.3, short  # and learns from there on short sequences
    assert full[-1] < short[0] - 0.3, (short, full)  # the second phase continues from it on full-length ones
    summary = json.loads((demo_run / "summary.json").read_text())["pretrain"]
    assert [p["seq_len"] for p in summary["phases"]] == [32, 64] and summary["pretrain_steps"] == 400
    config = json.loads((demo_run / "pretrain-short/model/config.json").read_text())
    assert config["max_position_embeddings"] == 64  # the first phase's model already has every position


@pytest.mark.slow
def test_demo_classifiers_and_export(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    runs = summary["finetune"]
    assert {"ours-full", "ours-random", "ours-lora-r8"} <= set(runs)
    own = json.loads((demo_run / "finetune" / "ours-full" / "config.json").read_text())
    assert own["classifier_pooling"] == "mean"  # masked-LM pretraining leaves [CLS] untrained
    control = json.loads((demo_run / "finetune" / "ours-random" / "finetune.json").read_text())
    assert control["init"] == "random" and control["pooling"] == "mean"
    for name, m in runs.items():
        metrics = json.loads((demo_run / "finetune" / name / "metrics.json").read_text())
        assert metrics["accuracy"] == m["accuracy"] and 0.0 <= m["accuracy"] <= 1.0
        assert (demo_run / "finetune" / name / "confusion_matrix.png").is_file()
        if "lora" in name:
            assert m["trainable_params"] < m["total_params"]
    if "minilm-full" in runs:  # a real pretrained model learns sentiment even from a few hundred sentences
        assert runs["minilm-full"]["accuracy"] > 0.6
    export = summary["export"]
    assert export["fp32_max_abs_diff"] <= 1e-4
    assert set(export["batch1_latency_ms"]) == {"pytorch", "onnxruntime-int8"}
    assert export["model"] != "ours-random"  # the control is shown, never exported
    md = (demo_run / "summary.md").read_text()
    assert "| ours-full |" in md and "| ours-random |" in md and "pretraining is worth" in md


@pytest.mark.slow
def test_demo_model_opens_in_transformers(demo_run):
    transformers = pytest.importorskip("transformers")
    from nanobert.model.bert import BertForMaskedLM

    ours = BertForMaskedLM.from_pretrained(demo_run / "pretrain/model").eval()
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(demo_run / "pretrain/model").eval()
    ids = torch.tensor([[2, 50, 60, 70, 4, 3]])
    with torch.no_grad():
        a, _ = ours(ids)
        b = theirs(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_demo_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(NanobertError, match="not empty"):
        run_demo(DemoConfig(out_dir=str(tmp_path), quick=True))


def test_demo_refuses_too_few_minutes(tmp_path):
    with pytest.raises(NanobertError, match="too little"):
        run_demo(DemoConfig(out_dir=str(tmp_path / "x"), minutes=1))


def test_the_full_plan_is_fixed_work_and_minutes_scale_and_cap_it():
    from nanobert.tasks.demo import _plan

    fixed = _plan(DemoConfig())
    assert fixed.pretrain_steps == 1150 and fixed.pretrain_minutes is None  # no timing, no cap: same model anywhere
    assert _plan(DemoConfig()) == fixed
    half = _plan(DemoConfig(minutes=5))
    assert half.pretrain_steps == 575 and half.pretrain_minutes == 3.75
    assert half.minilm_examples == 2000 and fixed.minilm_examples == 4000


def test_export_keeps_fp32_when_the_int8_check_refuses(demo_run, monkeypatch):
    import nanobert.tasks.demo as demo

    real = demo.export_onnx

    def refusing(model_dir, out, int8=False, **kw):
        if int8:
            raise NanobertError("int8 quantisation loses quality however it is done")
        return real(model_dir, out, **kw)

    monkeypatch.setattr(demo, "export_onnx", refusing)
    e = demo._export(demo_run, "ours-full", DemoConfig(quick=True))
    assert e["int8_refused"] and e["onnx"].endswith("classifier.onnx") and (demo_run / "classifier.onnx").is_file()
    assert set(e["batch1_latency_ms"]) == {"pytorch", "onnxruntime-fp32"}
