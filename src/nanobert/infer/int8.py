"""int8 graphs that keep their quality: the ways to quantize, tried in order until one passes the check.

    path, rung, report, tried = quantize_checked(fp32_path, tmp_dir, tokenizer, "classify", max_length=128)
    rung.name                    # "dynamic, per-channel", "static, calibrated", ...
    [(r.name, q.passed, q.seconds_fp32 / q.seconds_int8) for r, q in tried]   # what each cost and bought

Every rung quantizes the matrix products whose weight is a constant (int8 weights, one scale per output
channel, 7-bit range so that the u8 x s8 products of AVX2 CPUs without VNNI cannot saturate) and is
checked on real text (`quant_check`) before it is kept:

1. dynamic: activations quantized per call at run time, from their own range (`quantize_dynamic`);
2. dynamic with the most sensitive 1/8 of the products left in fp32 (ranked by the relative rounding
   noise int8 adds to their weight and their input on real text, `sensitive_nodes`);
3. static, calibrated: activation ranges fixed once from sentences run through the fp32 graph (the
   shipped SST-2 *training* sample, so the probes that judge it are other sentences), at the 99.999th
   percentile of each activation's magnitude so that the rarest outliers do not widen the range for all;
   QDQ format, which ONNX Runtime fuses into integer matrix products where it can;
4. dynamic with the most sensitive 1/4, then 1/2 of the products left in fp32.

The first rung that passes is kept; each one tried is returned with its report (agreement or cosine,
and the time both graphs took on the probes), so a user sees what the choice cost in speed.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.errors import NanobertError
from nanobert.infer.quant_check import (QualityReport, Thresholds, check_int8, default_probes, graph_feeds,
                                        shipped_sentences)
from nanobert.infer.runners import ort_session, quiet, require

log = logging.getLogger(__name__)

QUANTIZED_OPS = ["MatMul", "Attention"]
CALIBRATION_TEXTS = 128  # sentences whose activations fix the static ranges
CALIBRATION_PERCENTILE = 99.999  # all-MiniLM-L6-v2 embeddings, worst probe cosine to fp32: 99.999th 0.976,
# 99.99th 0.918 (clips the outlier dimensions the pooled vectors rely on), min-max and entropy 0.972


@dataclass(frozen=True)
class Rung:
    name: str
    static: bool  # calibrated activation ranges instead of per-call ones
    fp32_share: float  # share of the quantizable products left in fp32, the most sensitive first


# In the order of their measured speed (the probes' time, fp32 over int8, on distilled MiniLM students and the
# MiniLM teacher, docs/distill.md): dynamic 1.46-1.65x, 1/8 fp32 1.29x, static 0.86-1.28x (its fused
# attention stays fp32), 1/4 fp32 1.06x, 1/2 fp32 0.96x.
INT8_LADDER = [Rung("dynamic, per-channel", False, 0.0), Rung("dynamic, 1/8 of MatMuls fp32", False, 0.125),
               Rung("static, calibrated", True, 0.0), Rung("dynamic, 1/4 of MatMuls fp32", False, 0.25),
               Rung("dynamic, 1/2 of MatMuls fp32", False, 0.5)]
SCHEMES = {"auto": INT8_LADDER, "dynamic": INT8_LADDER[:1], "static": INT8_LADDER[2:3]}


def calibration_texts(n: int = CALIBRATION_TEXTS) -> list[str]:
    """The first `n` sentences of the SST-2 training sample shipped in nanobert's assets (not the probes)."""
    return shipped_sentences("train", n)


def weight_products(model) -> list:
    """The nodes of `model` (an onnx.ModelProto) that multiply by a constant weight: what int8 quantizes."""
    weights = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in weights]


def quantize_dynamic_int8(src: Path, dst: Path, exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization of the constant-weight matrix products of `src` (but `exclude`) into `dst`."""
    onnx = require("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():  # the quantizer gives advice on the root logger
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
            # weights of matrix products only: a quantized embedding table would be dequantized whole per call
            op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=list(exclude),
            # fused contrib ops defeat shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def quantize_static_int8(src: Path, dst: Path, tokenizer, texts: Sequence[str], max_length: int) -> None:
    """Static (calibrated) int8 quantization of the constant-weight MatMuls of `src` into `dst`, QDQ format."""
    onnx = require("onnx")
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    # one batch: the histogram calibrator stacks every batch's activations, so they must share a shape
    names = {i.name for i in ort_session(src, ["CPUExecutionProvider"]).get_inputs()}
    batches = iter(graph_feeds(names, tokenizer, texts, len(texts), max_length))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    # MatMuls only: QDQ has no form of the fused Attention operator, which stays fp32
    nodes = [n.name for n in weight_products(onnx.load(str(src))) if n.op_type == "MatMul"]
    with quiet(), contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
        quantize_static(
            str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, nodes_to_quantize=nodes,
            op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "CalibPercentile": CALIBRATION_PERCENTILE},
        )


def _rel_noise(x: np.ndarray, axis=None) -> float:
    """Relative rounding noise of 8-bit quantization of `x` over its [min, max] range (per slice along `axis`)."""
    span = x.max(axis=axis) - x.min(axis=axis)
    return float(np.sqrt(np.mean((span / 255.0) ** 2 / 12.0)) / max(np.sqrt(np.mean(x ** 2)), 1e-12))


def sensitive_nodes(path: Path, tokenizer, texts: Sequence[str], max_length: int) -> list[str]:
    """Quantizable nodes of the graph at `path`, the most sensitive first, ranked by the relative noise
    int8 adds to their product: that of their weight (per output channel) plus that of their input on
    `texts` (per tensor, as dynamic quantization does it; inputs with outliers lose the most)."""
    onnx = require("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    nodes = weight_products(model)
    outputs = {o.name for o in model.graph.output}
    inputs = sorted({n.input[0] for n in nodes} - outputs)
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in inputs)
    probe_path = path.with_name(path.stem + "-activations.onnx")
    onnx.save(model, str(probe_path))
    session = ort_session(probe_path, ["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    got = session.run(inputs, graph_feeds(names, tokenizer, texts, len(texts), max_length)[0])  # one batch
    act = {name: _rel_noise(a.astype(np.float64)) for name, a in zip(inputs, got)}
    scores = {}
    for node in nodes:
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)  # (in, out)
        scores[node.name] = _rel_noise(w, axis=0) + act.get(node.input[0], 0.0)
    return sorted(scores, key=scores.get, reverse=True)


def quantize_checked(src: Path, tmp: Path, tokenizer, task: str, max_length: int,
                     thresholds: Thresholds | None = None, probes: Sequence[str] | None = None,
                     scheme: str = "auto") -> tuple[Path, Rung, QualityReport, list[tuple[Rung, QualityReport]]]:
    """The first rung of `SCHEMES[scheme]` whose int8 graph keeps `src`'s quality on real text:
    (its path, the rung, its report, every (rung, report) tried); NanobertError when none does."""
    if scheme not in SCHEMES:
        raise NanobertError(f"unknown int8 scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    ladder = SCHEMES[scheme]
    ranked = sensitive_nodes(src, tokenizer, (probes or default_probes())[:32], max_length) if any(
        r.fp32_share for r in ladder) else []
    tried = []
    for rung in ladder:
        dst = tmp / f"int8-{len(tried)}.onnx"
        if rung.static:
            quantize_static_int8(src, dst, tokenizer, calibration_texts(), max_length)
        else:
            quantize_dynamic_int8(src, dst, ranked[:int(np.ceil(rung.fp32_share * len(ranked)))])
        report = check_int8(src, dst, tokenizer, task, probes=probes, thresholds=thresholds, max_length=max_length)
        tried.append((rung, report))
        if report.passed:
            log.info("int8 (%s): %s", rung.name, report.summary())
            return dst, rung, report, tried
        log.info("int8 (%s) fails the quality check: %s (%s)", rung.name, "; ".join(report.failures), report.summary())
    failures = " | ".join(f"{r.name}: {'; '.join(q.failures)}" for r, q in tried)
    raise NanobertError(f"int8 quantisation loses quality however it is done ({failures}); nothing was written: "
                        "export without --int8, or accept the loss on purpose (--int8-min-agreement / "
                        "--int8-min-cosine)")
