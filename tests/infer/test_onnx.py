"""ONNX export: checked against PyTorch, dynamic axes, int8, self-contained files, nothing half-written."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nanobert.cli import main
from nanobert.errors import NanobertError
from nanobert.infer import int8 as int8_ladder
from nanobert.infer.onnx import OrtRunner, export_onnx, resolve_providers
from nanobert.infer.pipelines import ClassifyPipeline, EmbedPipeline, FillMaskPipeline
from nanobert.infer.quant_check import Thresholds


@pytest.fixture(scope="module")
def mlm_onnx(tiny_mlm_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "mlm.onnx"
    return export_onnx(tiny_mlm_dir, path)


def _texts(sentences, n, masks=False):
    out = []
    for i, s in enumerate(sentences[:n]):
        words = s.split()
        if masks:
            words[i % len(words)] = "[MASK]"
            if i % 3 == 0 and len(words) > 4:
                words[-2] = "[MASK]"
        out.append(" ".join(words))
    return out


def test_fill_mask_onnx_equals_pytorch(mlm_onnx, tiny_mlm_dir, sst2_sentences):
    assert mlm_onnx.max_abs_diff <= 1e-4 and mlm_onnx.task == "fill-mask" and mlm_onnx.int8_max_abs_diff is None
    graph = onnx.load(str(mlm_onnx.path))
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert dims == [["batch", "sequence"]] * 3
    texts = _texts(sst2_sentences, 11, masks=True)
    torch_pipe, ort_pipe = FillMaskPipeline(tiny_mlm_dir, batch_size=4), FillMaskPipeline(mlm_onnx.path, batch_size=4)
    assert ort_pipe.backend == "onnxruntime:CPUExecutionProvider" and torch_pipe.backend == "pytorch"
    expected, got = torch_pipe(texts, top_k=5), ort_pipe(texts, top_k=5)
    for e, g in zip(expected, got):  # batch sizes 4, 4, 3 of different lengths: the axes really are dynamic
        assert [[c["token_id"] for c in m] for m in e] == [[c["token_id"] for c in m] for m in g]
        np.testing.assert_allclose([[c["score"] for c in m] for m in e], [[c["score"] for c in m] for m in g], atol=1e-5)
        assert [[c["sequence"] for c in m] for m in e] == [[c["sequence"] for c in m] for m in g]


def test_onnx_file_is_self_contained(mlm_onnx, tiny_mlm_dir, tmp_path):
    copy = tmp_path / "alone.onnx"
    shutil.copy(mlm_onnx.path, copy)  # no model directory beside it: task, config, tokenizer come from the metadata
    runner = OrtRunner(copy)
    assert runner.task == "fill-mask" and runner.config["hidden_size"] == 32 and runner.max_length == 512
    assert runner.tokenizer().encode("hello world") == FillMaskPipeline(tiny_mlm_dir).tokenizer.encode("hello world")
    with pytest.raises(NanobertError, match="exported for fill-mask"):
        ClassifyPipeline(copy)


def test_classifier_int8_optimized(tiny_cls_dir, sst2_sentences, tmp_path):
    fp32 = export_onnx(tiny_cls_dir, tmp_path / "cls.onnx", optimize=True)
    int8 = export_onnx(tiny_cls_dir, tmp_path / "cls8.onnx", int8=True, optimize=True)
    assert fp32.max_abs_diff <= 1e-4
    # 2 layers: the first fuses into one Attention op; the last runs for [CLS] alone (its own pattern)
    assert fp32.fused_ops.get("Attention") == 1 and fp32.fused_ops.get("BiasGelu") == 2
    fp32_ops = [n.op_type for n in onnx.load(str(fp32.path)).graph.node]
    # residual + LayerNorm stays unfused (the fused kernel is slower): one per sublayer, plus the embeddings'
    assert "SkipLayerNormalization" not in fp32_ops and fp32_ops.count("LayerNormalization") == 5
    assert int8.int8_max_abs_diff is not None and int8.int8_max_abs_diff > 0  # quantized weights do change the outputs
    ops = {n.op_type for n in onnx.load(str(int8.path)).graph.node}
    assert {"QAttention", "MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert int8.size_bytes < fp32.size_bytes
    texts = sst2_sentences[:40]
    p_torch = ClassifyPipeline(tiny_cls_dir).probabilities(texts)
    np.testing.assert_allclose(ClassifyPipeline(fp32.path).probabilities(texts), p_torch, atol=1e-5)
    p_int8 = ClassifyPipeline(int8.path).probabilities(texts)
    assert np.abs(p_int8 - p_torch).max() < 0.05
    assert ClassifyPipeline(int8.path)(texts[0])["label"] in ("negative", "neutral", "positive")


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_gpu_providers_match_cpu(provider, tiny_cls_dir, sst2_sentences, tmp_path):
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} not in this onnxruntime (pip install onnxruntime-gpu on a CUDA machine)")
    path = export_onnx(tiny_cls_dir, tmp_path / "cls.onnx", optimize=True).path
    texts = sst2_sentences[:40]
    gpu = ClassifyPipeline(path, providers=[provider, "CPUExecutionProvider"])
    assert gpu.runner.name == f"onnxruntime:{provider}"  # the session got the provider asked for, not the CPU
    cpu = ClassifyPipeline(path, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(gpu.probabilities(texts), cpu.probabilities(texts), atol=1e-3)


def test_embed_onnx_equals_pytorch(tiny_mlm_dir, sst2_sentences, tmp_path):
    # a masked LM exports its encoder for embeddings too (--task embed)
    r = export_onnx(tiny_mlm_dir, tmp_path / "embed.onnx", task="embed")
    assert r.task == "embed" and r.max_abs_diff <= 1e-4
    texts = sst2_sentences[:20]
    ort_pipe = EmbedPipeline(r.path, batch_size=8)
    assert ort_pipe.max_length == 512
    got = ort_pipe(texts)
    np.testing.assert_allclose(got, EmbedPipeline(tiny_mlm_dir)(texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_failed_check_writes_nothing(tiny_mlm_dir, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(NanobertError, match="differs from PyTorch.*nothing was written"):
        export_onnx(tiny_mlm_dir, out, atol=-1.0)  # no graph can pass a negative tolerance
    assert list(tmp_path.iterdir()) == []


def test_int8_quality_check_refuses_when_no_scheme_passes(tiny_mlm_dir, sst2_sentences, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(NanobertError, match="int8 quantisation loses quality however.*nothing was written"):
        export_onnx(tiny_mlm_dir, out, task="embed", int8=True, probes=sst2_sentences[:16],
                    int8_thresholds=Thresholds(min_cosine=1.01))  # no cosine reaches 1.01
    assert list(tmp_path.iterdir()) == []


def test_int8_quality_check_falls_back(tiny_mlm_dir, sst2_sentences, tmp_path, monkeypatch):
    # a bar only unquantized weights clear: the first rung fails it, the one keeping every MatMul fp32 passes
    monkeypatch.setitem(int8_ladder.SCHEMES, "auto", [int8_ladder.Rung("per-channel", False, 0.0),
                                                      int8_ladder.Rung("all MatMuls fp32", False, 1.0)])
    r = export_onnx(tiny_mlm_dir, tmp_path / "embed8.onnx", task="embed", int8=True, probes=sst2_sentences[:16],
                    int8_thresholds=Thresholds(min_cosine=0.999999))
    assert r.int8_scheme == "all MatMuls fp32" and r.int8_quality.worst_cosine >= 0.999999
    meta = {p.key: p.value for p in onnx.load(str(r.path)).metadata_props}
    assert meta["nanobert.int8_scheme"] == "all MatMuls fp32" and meta["nanobert.int8"] == "True"
    assert [(name, q.passed) for name, q in r.int8_tried] == [("per-channel", False), ("all MatMuls fp32", True)]
    assert all(q.seconds_fp32 > 0 and q.seconds_int8 > 0 for _, q in r.int8_tried)  # what each rung cost


@pytest.mark.parametrize("optimize", [False, True])
def test_static_int8_is_calibrated_on_other_sentences_and_checked(tiny_mlm_dir, sst2_sentences, tmp_path, optimize):
    assert not set(int8_ladder.calibration_texts()) & set(sst2_sentences[:32])  # the probes judge unseen text
    r = export_onnx(tiny_mlm_dir, tmp_path / "static.onnx", task="embed", int8=True, int8_scheme="static",
                    optimize=optimize, probes=sst2_sentences[:32], int8_thresholds=Thresholds(min_cosine=0.95))
    assert r.int8_scheme == "static, calibrated" and [n for n, _ in r.int8_tried] == ["static, calibrated"]
    ops = {n.op_type for n in onnx.load(str(r.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    got = EmbedPipeline(r.path, batch_size=8)(sst2_sentences[:32])
    want = EmbedPipeline(tiny_mlm_dir)(sst2_sentences[:32])
    assert r.int8_quality.worst_cosine >= 0.95
    assert (got * want).sum(-1).min() == pytest.approx(r.int8_quality.worst_cosine, abs=1e-4)
    with pytest.raises(NanobertError, match="unknown int8 scheme"):
        export_onnx(tiny_mlm_dir, tmp_path / "x.onnx", task="embed", int8=True, int8_scheme="fp4")


def test_cli_offers_every_int8_scheme_and_no_other():
    """`export onnx --int8-scheme` spells its choices out (the parser must not import torch); they are the ladder's."""
    from nanobert.cli import build_parser
    from nanobert.infer.int8 import SCHEMES
    export = next(a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions
                  if getattr(a, "choices", None) and "onnx" in a.choices).choices["onnx"]
    scheme = next(a for a in export._actions if "--int8-scheme" in a.option_strings)
    assert list(scheme.choices) == list(SCHEMES)


def test_bad_inputs(tiny_mlm_dir, tmp_path):
    with pytest.raises(NanobertError, match=r"\.onnx"):
        export_onnx(tiny_mlm_dir, tmp_path / "model.bin")
    with pytest.raises(NanobertError, match="cannot do classify"):
        export_onnx(tiny_mlm_dir, tmp_path / "x.onnx", task="classify")
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(foreign))
    with pytest.raises(NanobertError, match="not exported by nanobert"):
        OrtRunner(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(NanobertError, match="cannot load"):
        OrtRunner(tmp_path / "junk.onnx")
    with pytest.raises(NanobertError, match="not available"):
        resolve_providers(["NoSuchExecutionProvider"])
    assert resolve_providers() == [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
                                   if p in ort.get_available_providers()]


def test_cli_export_and_run(tiny_mlm_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--model", str(tiny_mlm_dir), "--out", str(out), "--int8"]) == 0
    printed = capsys.readouterr().out
    assert "fp32 graph vs PyTorch: max abs diff" in printed and "int8 graph vs PyTorch" in printed
    assert main(["fill-mask", "--model", str(out), "--top-k", "2", "--json", "a [MASK] day"]) == 0
    assert '"masks"' in capsys.readouterr().out
    assert main(["export", "onnx", "--model", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "nanobert: error:" in capsys.readouterr().err
