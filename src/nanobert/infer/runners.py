"""Runners: a head in PyTorch or an exported graph in ONNX Runtime, behind one call.

A runner takes numpy int64 arrays (input_ids, attention_mask, token_type_ids), each (B, T), and
returns a float32 numpy array: what the task's head computes (see heads.py). `load_runner` opens
a model directory (PyTorch) or an .onnx file (ONNX Runtime) and returns the runner with the
tokenizer, config, task and longest input that go with it.

Execution providers: `OrtRunner` picks, in order, TensorRT, CUDA, then CPU, among those the
installed onnxruntime offers (`pip install onnxruntime-gpu` brings the first two); pass
`providers=[...]` to choose.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from nanobert.errors import NanobertError
from nanobert.infer.heads import build_head
from nanobert.infer.loading import input_max_length, load_tokenizer_dir, load_torch_model

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# Fusions left out, by the graph optimizer and, on the CPU, by ONNX Runtime's own session-time passes:
# the fused SkipLayerNormalization CPU kernel takes 2-3x the time of Add + LayerNormalization on a
# (32, 128, 384) batch, ~5% of a MiniLM int8 forward (benchmarks/inference.py). On CUDA the session
# fuses them again, ONNX Runtime's default there (not measured here).
SLOWER_FUSIONS = ["SkipLayerNormFusion"]


@contextlib.contextmanager
def quiet():
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


def require(name: str):
    """Import an optional dependency of the ONNX path, or say how to install it."""
    try:
        return __import__(name)
    except ImportError as e:
        raise NanobertError(f"{name} is not installed: pip install 'nanobert[onnx]'") from e


class TorchRunner:
    """Runs a head in PyTorch: numpy int64 arrays in, a float32 numpy array out."""

    def __init__(self, head: nn.Module):
        self.head = head
        self.name = "pytorch"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.head(torch.from_numpy(input_ids), torch.from_numpy(attention_mask), torch.from_numpy(token_type_ids))
        return out.float().numpy()


def resolve_providers(providers: Sequence[str] | None = None) -> list[str]:
    """The execution providers to ask for: `providers` if all are installed, else the best of TensorRT, CUDA, CPU."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise NanobertError(f"execution provider(s) {', '.join(missing)} not available; this onnxruntime offers {', '.join(available)}")
        return list(providers)
    return [p for p in PROVIDER_PREFERENCE if p in available]


def ort_session(path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None):
    """An ONNX Runtime session with every graph optimization, spinning workers stopped after each call."""
    ort = require("onnxruntime")
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
            self.session = ort_session(path, providers, threads)
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
            return load_tokenizer_dir(Path(tmp))

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]


def load_runner(model: str | Path, task: str | None = None, *, providers: Sequence[str] | None = None, threads: int | None = None):
    """Open a model directory (PyTorch) or an .onnx file (ONNX Runtime) -> (runner, tokenizer, config, task, max_length)."""
    path = Path(model)
    if path.suffix == ".onnx":
        runner = OrtRunner(path, providers=providers, threads=threads)
        if task is not None and task != runner.task:
            raise NanobertError(f"{path} was exported for {runner.task}, not {task}; export the model again with --task {task}")
        return runner, runner.tokenizer(), runner.config, runner.task, runner.max_length
    if not path.exists():
        raise NanobertError(f"model not found: {path} (pass a model directory or an .onnx file)")
    if threads:
        torch.set_num_threads(threads)
    net, config, task = load_torch_model(path, task)
    tokenizer = load_tokenizer_dir(path)
    runner = TorchRunner(build_head(net, task, tokenizer.mask_token_id))
    return runner, tokenizer, config, task, input_max_length(path, config, task)
