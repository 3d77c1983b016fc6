"""Export a checkpoint to ONNX, check it against PyTorch, and run it with ONNX Runtime.

    result = export_onnx("runs/sst2", "sst2.onnx", int8=True, optimize=True)
    result.max_abs_diff        # fp32 graph vs PyTorch on a probe batch, <= 1e-4 or nothing is written

What gets exported is the task's *head* from `nanobert.infer.heads` (logits at the [MASK]s,
classification logits, or pooled sentence embeddings), with dynamic batch and sequence axes.
The steps, all in a temporary directory beside the output:

1. trace the head with the TorchScript-based exporter (`dynamo=False`: it handles dynamic axes and
   the data-dependent [MASK] selection in one pass and exports a MiniLM in seconds);
2. `optimize`: fuse attention and bias+GELU into ONNX Runtime's contrib operators
   (`onnxruntime.transformers.optimizer`; residual+LayerNorm stays two operators, which run
   faster than the fused one: `SLOWER_FUSIONS`); the attention is traced op by op rather than
   through `scaled_dot_product_attention` so that the optimizer recognises it;
3. check the fp32 graph against PyTorch on a batch of a *different* shape than the traced one
   (so frozen shapes are caught): the largest absolute difference must be <= `atol` (1e-4);
4. `int8`: dynamic quantization (int8 weights per output channel, 7-bit range; activations
   quantized per call at run time) of every MatMul with a constant weight. Classify and embed graphs
   must then keep the fp32 graph's quality on real probe sentences (`nanobert.infer.quant_check`);
   where they do not, the most sensitive MatMuls stay fp32 (1/8, 1/4, then 1/2 of them:
   `INT8_LADDER`), and where nothing passes, nothing is written. The rung chosen is logged and stored
   in the metadata (`nanobert.int8_scheme`); its difference from PyTorch is reported too;
5. store the task, config and tokenizer files in the graph's metadata, so the .onnx file is all
   that `FillMaskPipeline("model.onnx")` & co. need, and rename it into place.

The exported file runs with `nanobert.infer.runners.OrtRunner` (also importable from here).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.infer.heads import build_head
from nanobert.infer.loading import input_max_length, load_tokenizer_dir, load_torch_model
from nanobert.infer.quant_check import QualityReport, Thresholds, check_int8, default_probes
from nanobert.infer.runners import OrtRunner, ort_session, require, resolve_providers  # noqa: F401  (OrtRunner, resolve_providers: importable from here)
from nanobert.model.config import model_max_length
from nanobert.model.layers import export_friendly_attention

log = logging.getLogger(__name__)

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT_NAME = {"fill-mask": "mask_logits", "classify": "logits", "embed": "embeddings"}


@dataclass
class ExportResult:
    path: Path
    task: str
    max_abs_diff: float  # fp32 graph vs PyTorch
    int8_max_abs_diff: float | None  # int8 graph vs PyTorch (None when not quantized)
    optimized: bool
    fused_ops: dict  # e.g. {"Attention": 5, "BiasGelu": 6, "LayerNormalization": 13} when optimized
    size_bytes: int
    int8_scheme: str | None = None  # the INT8_LADDER rung chosen
    int8_quality: QualityReport | None = None  # its quality check (classify and embed)


def probe_batch(tokenizer, vocab_size: int, batch: int, length: int, task: str, seed: int) -> dict[str, np.ndarray]:
    """A padded batch of random ids: row i has length - 3*i real tokens, [CLS] ... [SEP]; fill-mask rows get [MASK]s."""
    rng = np.random.default_rng(seed)
    special = set(getattr(tokenizer, "special_ids", ())) | {tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id}
    ids = np.full((batch, length), tokenizer.pad_token_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((batch, length), dtype=np.int64)  # (B, T)
    for i in range(batch):
        n = max(length - 3 * i, 4)
        row = rng.integers(0, vocab_size, n)
        row = np.where(np.isin(row, list(special)), 1 + (row % max(vocab_size - 1, 1)), row)
        while np.isin(row, list(special)).any():  # tiny vocabularies: redraw until no special token is left
            row = np.where(np.isin(row, list(special)), rng.integers(0, vocab_size, n), row)
        row[0], row[-1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        if task == "fill-mask":
            row[rng.choice(np.arange(1, n - 1), size=1 + i % 2, replace=False)] = tokenizer.mask_token_id
        ids[i, :n], mask[i, :n] = row, 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _torch_outputs(head, feeds) -> np.ndarray:
    with torch.inference_mode():
        return head(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES)).float().numpy()


@contextlib.contextmanager
def _quiet():
    """Silence warnings and the onnxruntime tools' INFO chatter (they log on the root and their own loggers)."""
    loggers = [logging.getLogger(n) for n in ("", "onnx_model", "onnx_model_bert", "fusion_base", "fusion_utils")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _optimize(src: Path, dst: Path, config: dict) -> dict:
    """Fuse BERT subgraphs into ONNX Runtime contrib ops; returns the fused-operator counts."""
    require("onnxruntime")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # see runners.SLOWER_FUSIONS
    with _quiet():
        model = optimize_model(
            str(src), model_type="bert", num_heads=int(config["num_attention_heads"]), hidden_size=int(config["hidden_size"]),
            opt_level=0, optimization_options=options,
        )
        model.save_model_to_file(str(dst))
        return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def _trace(head: torch.nn.Module, feeds: dict[str, np.ndarray], path: Path, task: str, opset: int) -> None:
    """Trace `head` on `feeds` into the .onnx file `path`, batch and sequence axes dynamic, attention op by op."""
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    axes[OUTPUT_NAME[task]] = {0: "masks" if task == "fill-mask" else "batch"}
    with warnings.catch_warnings(), export_friendly_attention(head):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            tuple(torch.from_numpy(feeds[n]) for n in INPUT_NAMES),
            str(path),
            input_names=INPUT_NAMES,
            output_names=[OUTPUT_NAME[task]],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


# Ways to quantize, tried in order until the int8 graph passes `quant_check` on real text: all
# constant-weight matrix products per channel, then with the most sensitive share of them left in fp32.
INT8_LADDER = [("per-channel", 0.0), ("per-channel, 1/8 of MatMuls fp32", 0.125),
               ("per-channel, 1/4 of MatMuls fp32", 0.25), ("per-channel, 1/2 of MatMuls fp32", 0.5)]
QUANTIZED_OPS = ["MatMul", "Attention"]


def _quantize(src: Path, dst: Path, exclude: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization of the constant-weight matrix products of `src` (but `exclude`) into `dst`."""
    onnx = require("onnx")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():  # the quantizer gives advice on the root logger
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8,
            # one scale per output channel, and 7-bit weights so that the u8 x s8 products of
            # AVX2 CPUs without VNNI cannot saturate: together they keep SST-2 accuracy
            # within 0.5 point of fp32, where the per-tensor 8-bit default lost 1.7
            per_channel=True, reduce_range=True,
            # weights of matrix products only: a quantized embedding table would be
            # dequantized whole on every call
            op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=list(exclude),
            # fused contrib ops defeat shape inference; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
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
    nodes = [n for n in model.graph.node
             if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in weights]
    outputs = {o.name for o in model.graph.output}
    inputs = sorted({n.input[0] for n in nodes} - outputs)
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in inputs)
    probe_path = path.with_name(path.stem + "-activations.onnx")
    onnx.save(model, str(probe_path))
    session = ort_session(probe_path, ["CPUExecutionProvider"])
    feed_names = {i.name for i in session.get_inputs()}
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True)
    got = session.run(inputs, {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in feed_names})
    act = {name: _rel_noise(a.astype(np.float64)) for name, a in zip(inputs, got)}
    scores = {}
    for node in nodes:
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)  # (in, out)
        scores[node.name] = _rel_noise(w, axis=0) + act.get(node.input[0], 0.0)
    return sorted(scores, key=scores.get, reverse=True)


def _quantize_checked(src: Path, tmp: Path, tokenizer, task: str, max_length: int,
                      thresholds: Thresholds | None, probes: Sequence[str] | None) -> tuple[Path, str, QualityReport]:
    """The first rung of `INT8_LADDER` whose int8 graph keeps `src`'s quality on real text (`quant_check`):
    (its path, its name, its report); NanobertError when none does."""
    ranked = sensitive_nodes(src, tokenizer, (probes or default_probes())[:32], max_length)
    reports = []
    for name, share in INT8_LADDER:
        dst = tmp / f"int8-{len(reports)}.onnx"
        _quantize(src, dst, ranked[:int(np.ceil(share * len(ranked)))])
        report = check_int8(src, dst, tokenizer, task, probes=probes, thresholds=thresholds, max_length=max_length)
        if report.passed:
            log.info("int8 (%s): %s", name, report.summary())
            return dst, name, report
        log.info("int8 (%s) fails the quality check: %s (%s)", name, "; ".join(report.failures), report.summary())
        reports.append(f"{name}: {'; '.join(report.failures)}")
    raise NanobertError(f"int8 quantisation loses quality however it is done ({' | '.join(reports)}); "
                        "nothing was written: export without --int8, or accept the loss on purpose "
                        "(--int8-min-agreement / --int8-min-cosine)")


def _metadata(task: str, config: dict, tokenizer, max_length: int, diff: float, int8: str | None,
              tmp: Path) -> dict[str, str]:
    """What the graph carries so that the .onnx file alone opens a pipeline: task, config, tokenizer files."""
    tok_dir = tmp / "tokenizer"
    tokenizer.save(tok_dir)
    return {
        "nanobert.task": task,
        "nanobert.config": json.dumps(config),
        "nanobert.tokenizer": json.dumps({p.name: p.read_text(encoding="utf-8") for p in sorted(tok_dir.iterdir()) if p.is_file()}),
        "nanobert.max_length": str(max_length),
        "nanobert.max_abs_diff": f"{diff:.3e}",
        "nanobert.int8": str(bool(int8)),
        **({"nanobert.int8_scheme": int8} if int8 else {}),
    }


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    int8: bool = False,
    optimize: bool = False,
    *,
    task: str | None = None,
    opset: int = 17,
    atol: float = 1e-4,
    int8_thresholds: Thresholds | None = None,
    probes: Sequence[str] | None = None,
) -> ExportResult:
    """Export `model_dir` for `task` (default: its own) to the .onnx file `out`; see the module docstring.

    `int8_thresholds` and `probes` set the int8 quality check of classify and embed graphs
    (`nanobert.infer.quant_check`: its defaults when None)."""
    onnx = require("onnx")
    require("onnxruntime")
    model_dir, out = Path(model_dir), Path(out)
    if out.suffix != ".onnx":
        raise NanobertError(f"the output file should end in .onnx, got {out}")
    net, config, task = load_torch_model(model_dir, task)
    tokenizer = load_tokenizer_dir(model_dir)
    head = build_head(net, task, tokenizer.mask_token_id)
    vocab = int(config["vocab_size"])
    traced = probe_batch(tokenizer, vocab, batch=2, length=16, task=task, seed=0)
    check = probe_batch(tokenizer, vocab, batch=3, length=min(37, model_max_length(config)), task=task, seed=1)
    reference = _torch_outputs(head, check)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        final = Path(tmp) / "fp32.onnx"
        log.info("exporting %s (%s) to ONNX", model_dir, task)
        _trace(head, traced, final, task, opset)
        fused = {}
        if optimize:
            fused = _optimize(final, Path(tmp) / "optimized.onnx", config)
            final = Path(tmp) / "optimized.onnx"
            log.debug("fused operators: %s", fused)
        diff = max_abs_diff(final, check, reference)
        log.debug("fp32 graph vs PyTorch: max abs diff %.2e", diff)
        if not diff <= atol:
            raise NanobertError(f"the exported graph differs from PyTorch by {diff:.2e} (> {atol:g}); nothing was written")
        int8_diff, scheme, quality = None, None, None
        max_length = input_max_length(model_dir, config, task)
        if int8 and task in ("classify", "embed"):
            final, scheme, quality = _quantize_checked(final, Path(tmp), tokenizer, task, max_length,
                                                       int8_thresholds, probes)
        elif int8:  # fill-mask: no probe-based check (its outputs depend on where the [MASK]s are)
            _quantize(final, Path(tmp) / "int8.onnx")
            final, scheme = Path(tmp) / "int8.onnx", INT8_LADDER[0][0]
        if int8:
            int8_diff = max_abs_diff(final, check, reference)
            log.debug("int8 graph vs PyTorch: max abs diff %.2e", int8_diff)
            if not np.isfinite(int8_diff):  # quantization error is task-dependent: only a broken graph is refused here
                raise NanobertError("the int8 graph gives outputs of the wrong shape or non-finite values; nothing was written")

        model = onnx.load(str(final))
        for key, value in _metadata(task, config, tokenizer, max_length, diff, scheme, Path(tmp)).items():
            model.metadata_props.add(key=key, value=value)
        if model.ByteSize() >= 2**31:
            raise NanobertError("the model is over 2 GB, the most one .onnx file can hold; export a smaller model")
        with atomic_path(out) as tmp_out:
            onnx.save(model, str(tmp_out))
    return ExportResult(out, task, diff, int8_diff, optimize, fused, out.stat().st_size, scheme, quality)


def max_abs_diff(path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray) -> float:
    """Largest |ORT(path)(feeds) - reference| (inf when the shapes differ)."""
    session = ort_session(path, ["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    if got.shape != reference.shape:
        return float("inf")
    return float(np.abs(got.astype(np.float64) - reference).max()) if got.size else 0.0
