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
4. `int8`: int8 weights (per output channel, 7-bit range) for every MatMul with a constant weight,
   the ways of `nanobert.infer.int8.INT8_LADDER` tried in order: dynamic, 1/8 of the most sensitive
   MatMuls left fp32, static calibrated, then 1/4 and 1/2 left fp32. Classify and embed graphs must
   keep the fp32 graph's quality on real probe sentences (`nanobert.infer.quant_check`); the first rung that does is
   kept, and where none does, nothing is written. The rung chosen is logged and stored in the metadata
   (`nanobert.int8_scheme`), every rung tried is reported with its speed, and the int8 graph's
   difference from PyTorch is reported too;
5. store the task, config and tokenizer files in the graph's metadata, so the .onnx file is all
   that `FillMaskPipeline("model.onnx")` & co. need, and rename it into place.

The exported file runs with `nanobert.infer.runners.OrtRunner` (also importable from here).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.infer.heads import build_head
from nanobert.infer.loading import input_max_length, load_tokenizer_dir, load_torch_model
from nanobert.infer.quant_check import QualityReport, Thresholds
from nanobert.infer.int8 import INT8_LADDER, quantize_checked, quantize_dynamic_int8
from nanobert.infer.runners import OrtRunner, ort_session, quiet, require, resolve_providers  # noqa: F401  (OrtRunner, resolve_providers: importable from here)
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
    int8_scheme: str | None = None  # the name of the int8.INT8_LADDER rung chosen
    int8_quality: QualityReport | None = None  # its quality check (classify and embed)
    int8_tried: list = field(default_factory=list)  # (rung name, QualityReport) of every rung tried, in order


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


def _optimize(src: Path, dst: Path, config: dict) -> dict:
    """Fuse BERT subgraphs into ONNX Runtime contrib ops; returns the fused-operator counts."""
    require("onnxruntime")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # see runners.SLOWER_FUSIONS
    with quiet():
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
    int8_scheme: str = "auto",
) -> ExportResult:
    """Export `model_dir` for `task` (default: its own) to the .onnx file `out`; see the module docstring.

    `int8_thresholds` and `probes` set the int8 quality check of classify and embed graphs
    (`nanobert.infer.quant_check`: its defaults when None); `int8_scheme` ("auto": the whole ladder of
    `nanobert.infer.int8`; "dynamic" or "static": that rung alone, still checked)."""
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
        int8_diff, scheme, quality, tried = None, None, None, []
        max_length = input_max_length(model_dir, config, task)
        if int8 and task in ("classify", "embed"):
            final, rung, quality, tried = quantize_checked(final, Path(tmp), tokenizer, task, max_length,
                                                           int8_thresholds, probes, int8_scheme)
            scheme, tried = rung.name, [(r.name, q) for r, q in tried]
        elif int8:  # fill-mask: no probe-based check (its outputs depend on where the [MASK]s are)
            quantize_dynamic_int8(final, Path(tmp) / "int8.onnx")
            final, scheme = Path(tmp) / "int8.onnx", INT8_LADDER[0].name
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
    return ExportResult(out, task, diff, int8_diff, optimize, fused, out.stat().st_size, scheme, quality, tried)


def max_abs_diff(path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray) -> float:
    """Largest |ORT(path)(feeds) - reference| (inf when the shapes differ)."""
    session = ort_session(path, ["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    if got.shape != reference.shape:
        return float("inf")
    return float(np.abs(got.astype(np.float64) - reference).max()) if got.size else 0.0
