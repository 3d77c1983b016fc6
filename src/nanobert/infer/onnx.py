"""Export a checkpoint to ONNX, check it against PyTorch, and run it with ONNX Runtime.

    result = export_onnx("runs/sst2", "sst2.onnx", int8=True, optimize=True)
    result.max_abs_diff        # fp32 graph vs PyTorch on a probe batch, <= 1e-4 or nothing is written

What gets exported is the task's *head* from `nanobert.infer.pipelines` (logits at the [MASK]s,
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
   quantized per call at run time) of every MatMul with a constant weight; its difference from PyTorch is measured and reported (how much it costs in
   accuracy depends on the task: `benchmarks/inference.py` measures it on SST-2);
5. store the task, config and tokenizer files in the graph's metadata, so the .onnx file is all
   that `FillMaskPipeline("model.onnx")` & co. need, and rename it into place.

Execution providers: `OrtRunner` picks, in order, TensorRT, CUDA, then CPU, among those the
installed onnxruntime offers (`pip install onnxruntime-gpu` brings the first two); pass
`providers=[...]` to choose.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.infer import pipelines

log = logging.getLogger(__name__)

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
# Fusions left out, by the graph optimizer and, on the CPU, by ONNX Runtime's own session-time passes:
# the fused SkipLayerNormalization CPU kernel takes 2-3x the time of Add + LayerNormalization on a
# (32, 128, 384) batch, ~5% of a MiniLM int8 forward (benchmarks/inference.py). On CUDA the session
# fuses them again, ONNX Runtime's default there (not measured here).
SLOWER_FUSIONS = ["SkipLayerNormFusion"]
OUTPUT_NAME = {"fill-mask": "mask_logits", "classify": "logits", "embed": "embeddings"}


def _require(name: str):
    try:
        return __import__(name)
    except ImportError as e:
        raise NanobertError(f"{name} is not installed: pip install 'nanobert[onnx]'") from e


@dataclass
class ExportResult:
    path: Path
    task: str
    max_abs_diff: float  # fp32 graph vs PyTorch
    int8_max_abs_diff: float | None  # int8 graph vs PyTorch (None when not quantized)
    optimized: bool
    fused_ops: dict  # e.g. {"Attention": 5, "BiasGelu": 6, "LayerNormalization": 13} when optimized
    size_bytes: int


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


def _session(path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None):
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # Worker threads spin between the operators of one call (waking a sleeping thread for each of a
    # hundred operators costs ~7% at batch 1) and stop when the call returns: a pool left spinning
    # keeps the cores busy while Python tokenizes the next batch (or another runtime works).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    chosen = resolve_providers(providers)
    disabled = SLOWER_FUSIONS if chosen[0] == "CPUExecutionProvider" else []
    return ort.InferenceSession(str(path), options, providers=chosen, disabled_optimizers=disabled)


def resolve_providers(providers: Sequence[str] | None = None) -> list[str]:
    """The execution providers to ask for: `providers` if all are installed, else the best of TensorRT, CUDA, CPU."""
    ort = _require("onnxruntime")
    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise NanobertError(f"execution provider(s) {', '.join(missing)} not available; this onnxruntime offers {', '.join(available)}")
        return list(providers)
    return [p for p in PROVIDER_PREFERENCE if p in available]


def _unfused_attention(self, x, mask=None, is_causal=False):
    """SelfAttention.forward written out op by op (the same numbers as SDPA) so that the graph
    optimizer recognises the pattern and fuses it into one Attention operator."""
    B, T, H = x.shape

    def heads(t):
        return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, T, H) -> (B, nh, T, hs)

    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, nh, T, T)
    if mask is not None:
        scores = scores + mask  # (B, 1, 1, T) additive padding mask
    y = torch.matmul(scores.softmax(dim=-1), v)  # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, H)  # (B, T, H)


@contextlib.contextmanager
def _fusable_attention(module: torch.nn.Module):
    """Trace every plain (non-LoRA) self-attention of `module` with `_unfused_attention`; restore afterwards."""
    from nanobert.model.layers import SelfAttention

    patched = [
        m for m in module.modules()
        if isinstance(m, SelfAttention) and all(type(p) is torch.nn.Linear for p in (m.query, m.key, m.value))
    ]
    for m in patched:
        m.forward = types.MethodType(_unfused_attention, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


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
    _require("onnxruntime")
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # see SLOWER_FUSIONS
    with _quiet():
        model = optimize_model(
            str(src), model_type="bert", num_heads=int(config["num_attention_heads"]), hidden_size=int(config["hidden_size"]),
            opt_level=0, optimization_options=options,
        )
        model.save_model_to_file(str(dst))
        return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    int8: bool = False,
    optimize: bool = False,
    *,
    task: str | None = None,
    opset: int = 17,
    atol: float = 1e-4,
) -> ExportResult:
    """Export `model_dir` for `task` (default: its own) to the .onnx file `out`; see the module docstring."""
    onnx = _require("onnx")
    _require("onnxruntime")
    model_dir, out = Path(model_dir), Path(out)
    if out.suffix != ".onnx":
        raise NanobertError(f"the output file should end in .onnx, got {out}")
    net, config, task = pipelines.load_torch_model(model_dir, task)
    tokenizer = pipelines.load_tokenizer_dir(model_dir)
    head = pipelines.build_head(net, task, tokenizer.mask_token_id)
    vocab = int(config["vocab_size"])
    traced = probe_batch(tokenizer, vocab, batch=2, length=16, task=task, seed=0)
    check = probe_batch(tokenizer, vocab, batch=3, length=min(37, int(config.get("max_position_embeddings", 512))), task=task, seed=1)
    reference = _torch_outputs(head, check)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
        axes[OUTPUT_NAME[task]] = {0: "masks" if task == "fill-mask" else "batch"}
        log.info("exporting %s (%s) to ONNX", model_dir, task)
        with warnings.catch_warnings(), _fusable_attention(head):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                tuple(torch.from_numpy(traced[n]) for n in INPUT_NAMES),
                str(fp32),
                input_names=INPUT_NAMES,
                output_names=[OUTPUT_NAME[task]],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        fused = {}
        if optimize:
            optimized = Path(tmp) / "optimized.onnx"
            fused = _optimize(fp32, optimized, config)
            log.debug("fused operators: %s", fused)
            fp32 = optimized

        diff = max_abs_diff(fp32, check, reference)
        log.debug("fp32 graph vs PyTorch: max abs diff %.2e", diff)
        if not diff <= atol:
            raise NanobertError(f"the exported graph differs from PyTorch by {diff:.2e} (> {atol:g}); nothing was written")
        final, int8_diff = fp32, None
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            final = Path(tmp) / "int8.onnx"
            with _quiet():  # the quantizer gives advice on the root logger
                quantize_dynamic(
                    str(fp32), str(final), weight_type=QuantType.QInt8,
                    # one scale per output channel, and 7-bit weights so that the u8 x s8 products of
                    # AVX2 CPUs without VNNI cannot saturate: together they keep SST-2 accuracy
                    # within 0.5 point of fp32, where the per-tensor 8-bit default lost 1.7
                    per_channel=True, reduce_range=True,
                    # weights of matrix products only: a quantized embedding table would be
                    # dequantized whole on every call
                    op_types_to_quantize=["MatMul", "Attention"],
                    # fused contrib ops defeat shape inference; their outputs are float
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            int8_diff = max_abs_diff(final, check, reference)
            log.debug("int8 graph vs PyTorch: max abs diff %.2e", int8_diff)
            if not np.isfinite(int8_diff):  # quantization error is task-dependent: only a broken graph is refused here
                raise NanobertError("the int8 graph gives outputs of the wrong shape or non-finite values; nothing was written")

        model = onnx.load(str(final))
        tok_dir = Path(tmp) / "tokenizer"
        tokenizer.save(tok_dir)
        meta = {
            "nanobert.task": task,
            "nanobert.config": json.dumps(config),
            "nanobert.tokenizer": json.dumps({p.name: p.read_text(encoding="utf-8") for p in sorted(tok_dir.iterdir()) if p.is_file()}),
            "nanobert.max_length": str(pipelines.sentence_max_length(model_dir, config) if task == "embed" else config.get("max_position_embeddings", 512)),
            "nanobert.max_abs_diff": f"{diff:.3e}",
            "nanobert.int8": str(bool(int8)),
        }
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        if model.ByteSize() >= 2**31:
            raise NanobertError("the model is over 2 GB, the most one .onnx file can hold; export a smaller model")
        with atomic_path(out) as tmp_out:
            onnx.save(model, str(tmp_out))
    return ExportResult(out, task, diff, int8_diff, optimize, fused, out.stat().st_size)


def max_abs_diff(path: Path, feeds: dict[str, np.ndarray], reference: np.ndarray) -> float:
    """Largest |ORT(path)(feeds) - reference| (inf when the shapes differ)."""
    session = _session(path, ["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    got = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    if got.shape != reference.shape:
        return float("inf")
    return float(np.abs(got.astype(np.float64) - reference).max()) if got.size else 0.0


class OrtRunner:
    """Runs an exported head with ONNX Runtime: numpy int64 arrays in, a float32 numpy array out.

    `task`, `config` and `max_length` come from the graph's metadata; `tokenizer()` rebuilds the
    tokenizer stored there.
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise NanobertError(f"ONNX model not found: {path}")
        try:
            self.session = _session(path, providers, threads)
        except NanobertError:
            raise
        except Exception as e:  # onnxruntime raises its own types for unreadable files
            raise NanobertError(f"cannot load {path} with ONNX Runtime: {str(e).splitlines()[0]}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if "nanobert.task" not in meta:
            raise NanobertError(f"{path} was not exported by nanobert (no task metadata); export it with `nanobert export onnx`")
        self.task = meta["nanobert.task"]
        self.config = json.loads(meta["nanobert.config"])
        self.max_length = int(meta["nanobert.max_length"])
        self._tokenizer_files = json.loads(meta["nanobert.tokenizer"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.name = "onnxruntime:" + self.session.get_providers()[0]

    def tokenizer(self):
        """The tokenizer saved in the graph's metadata."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in self._tokenizer_files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            return pipelines.load_tokenizer_dir(Path(tmp))

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
