"""Inference pipelines: fill-mask, classify and embed, on a PyTorch model directory or an .onnx file.

A pipeline is three steps: tokenize the texts, run a *head* (heads.py: a small module that turns
a padded batch into exactly the numbers the task needs) through a runner (runners.py: PyTorch or
ONNX Runtime), and turn those numbers into readable results.

    fill = FillMaskPipeline("runs/mlm")                 # a model directory (PyTorch) ...
    fill = FillMaskPipeline("runs/mlm.onnx")            # ... or an exported graph (ONNX Runtime)
    fill("The quick brown fox [MASK] over the lazy dog.", top_k=3)

The heads are the same modules that `export_onnx` traces, so both runtimes compute the same
function and the results agree to float precision (int8 graphs: to quantization error).
Texts are sorted by length before batching so that a batch pads to similar lengths; results come
back in the input order.

Fill-mask requests are bounded: at most `MAX_MASKS_PER_TEXT` [MASK]s in a text and `top_k` at
most `MAX_TOP_K` (the HTTP server enforces the same numbers), so one request cannot ask for
thousands of (mask, candidate) pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.errors import NanobertError
from nanobert.infer.heads import ClassifierHead, EmbeddingHead, MaskedLMHead, build_head, mean_pool  # noqa: F401
from nanobert.infer.limits import MAX_MASKS_PER_TEXT, MAX_TOP_K  # noqa: F401  (importable from here too)
from nanobert.infer.loading import (  # noqa: F401  (re-exported: nanobert.infer.pipelines.<name> keeps working)
    TASKS,
    default_task,
    input_max_length,
    load_tokenizer_dir,
    load_torch_model,
    sentence_max_length,
    supported_tasks,
)
from nanobert.infer.runners import OrtRunner, TorchRunner, load_runner  # noqa: F401
from nanobert.model.config import model_max_length

log = logging.getLogger(__name__)



def _as_list(inputs) -> tuple[list[str], bool]:
    if isinstance(inputs, str):
        return [inputs], True
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(t, str) for t in inputs):
        raise NanobertError("inputs must be a string or a list of strings")
    return list(inputs), False


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax. Example: softmax([0, log 3]) -> [0.25, 0.75]."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Pipeline:
    """Shared machinery: load, tokenize, batch by length, run the head, restore the input order."""

    task: str = ""

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ):
        runner, tokenizer, config, _, default_max = load_runner(model, self.task, providers=providers, threads=threads)
        self._setup(runner, tokenizer, config, max_length or default_max, batch_size)

    @classmethod
    def from_runner(cls, runner, tokenizer, config: dict, max_length: int, batch_size: int = 32) -> "Pipeline":
        """A pipeline over an already loaded runner (several pipelines can share one model)."""
        self = cls.__new__(cls)
        self._setup(runner, tokenizer, config, max_length, batch_size)
        return self

    def _setup(self, runner, tokenizer, config: dict, max_length: int, batch_size: int) -> None:
        if batch_size < 1:
            raise NanobertError(f"batch_size must be at least 1, got {batch_size}")
        self.runner, self.tokenizer, self.config, self.batch_size = runner, tokenizer, config, batch_size
        self.max_length = min(max_length, model_max_length(config))

    @property
    def backend(self) -> str:
        """"pytorch" or "onnxruntime:<provider>"."""
        return self.runner.name

    def encode(self, texts: list[str], truncate: bool = True) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], cut to `max_length` (keeping the final [SEP]) when `truncate`."""
        ids = self.tokenizer.encode_batch(texts)
        out = []
        for i, seq in enumerate(ids):
            if len(seq) > self.max_length:
                if not truncate:
                    raise NanobertError(f"text {i} is {len(seq)} tokens long; this model reads at most {self.max_length}")
                seq = seq[: self.max_length - 1] + [self.tokenizer.sep_token_id]
            out.append(seq)
        return out

    def run_ids(self, ids: list[list[int]]) -> list[np.ndarray]:
        """Run the head over id sequences of any number and length; one output array per sequence, input order.

        Fill-mask returns each sequence's (masks_in_it, V) logits; classify its (L,) logits; embed its (H,) vector.
        """
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[np.ndarray | None] = [None] * len(ids)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            T = max(len(ids[i]) for i in chunk)
            input_ids = np.full((len(chunk), T), pad, dtype=np.int64)  # (B, T)
            attention = np.zeros((len(chunk), T), dtype=np.int64)  # (B, T)
            for row, i in enumerate(chunk):
                input_ids[row, : len(ids[i])] = ids[i]
                attention[row, : len(ids[i])] = 1
            out = self.runner(input_ids, attention, np.zeros_like(input_ids))
            if self.task == "fill-mask":
                # (M, V) rows follow the masks in row-major order: split them back per sequence
                counts = ((input_ids == self.tokenizer.mask_token_id) & (attention == 1)).sum(axis=1)
                out = np.split(out, np.cumsum(counts)[:-1])
            for row, i in enumerate(chunk):
                results[i] = out[row]
        return results  # type: ignore[return-value]


class EmbedPipeline(Pipeline):
    """Sentence embeddings (mean pooling + L2 norm): `embed(texts)` -> (N, H) float32, a str -> (H,)."""

    task = "embed"

    def __call__(self, inputs: str | Sequence[str]) -> np.ndarray:
        texts, single = _as_list(inputs)
        if not texts:
            return np.zeros((0, int(self.config["hidden_size"])), dtype=np.float32)
        vectors = np.stack(self.run_ids(self.encode(texts))).astype(np.float32)  # (N, H)
        return vectors[0] if single else vectors


class ClassifyPipeline(Pipeline):
    """Text classification: each text -> {"label", "score", "scores": {label: probability}}."""

    task = "classify"

    @property
    def labels(self) -> list[str]:
        """Label names in logit order (config.json's id2label, else LABEL_i)."""
        n = int(self.config.get("num_labels") or len(self.config.get("id2label") or {}) or 2)
        id2label = {int(k): v for k, v in (self.config.get("id2label") or {}).items()}
        return [id2label.get(i, f"LABEL_{i}") for i in range(n)]

    def probabilities(self, inputs: Sequence[str]) -> np.ndarray:
        """(N, num_labels) class probabilities."""
        texts, _ = _as_list(list(inputs))
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return softmax(np.stack(self.run_ids(self.encode(texts))))

    def __call__(self, inputs: str | Sequence[str]):
        texts, single = _as_list(inputs)
        labels = self.labels
        results = []
        for p in self.probabilities(texts):
            best = int(p.argmax())
            results.append({"label": labels[best], "score": float(p[best]), "scores": {l: float(q) for l, q in zip(labels, p)}})
        return results[0] if single else results


def check_top_k(top_k: int) -> None:
    """Fail unless 1 <= top_k <= MAX_TOP_K."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise NanobertError(f"top_k must be an integer from 1 to {MAX_TOP_K} (MAX_TOP_K), got {top_k!r}")


class FillMaskPipeline(Pipeline):
    """Top-k predictions for every [MASK] of every text, with whole-word display.

    Each text gives a list with one entry per [MASK] (left to right); each entry is a list of the k
    best candidates `{"token_id", "token", "word", "score", "sequence"}`: `token` is the WordPiece
    ("##s"), `word` the whole word it completes ("jump" + "##s" -> "jumps"), `sequence` the text
    with this candidate in this mask and the best candidate in every other mask.
    """

    task = "fill-mask"

    def check(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize and check that every text has 1 to MAX_MASKS_PER_TEXT [MASK]s and fits the model; returns the ids."""
        ids = self.encode(list(texts), truncate=False)
        for i, seq in enumerate(ids):
            masks = seq.count(self.tokenizer.mask_token_id)
            if not masks:
                raise NanobertError(f"text {i} has no [MASK] token: write [MASK] where the model should fill in a word")
            if masks > MAX_MASKS_PER_TEXT:
                raise NanobertError(f"text {i} has {masks} [MASK] tokens; at most {MAX_MASKS_PER_TEXT} per text "
                                    "(MAX_MASKS_PER_TEXT): split it into several texts")
        return ids

    def __call__(self, inputs: str | Sequence[str], top_k: int = 5):
        texts, single = _as_list(inputs)
        results = self.predict_ids(self.check(texts), top_k)
        return results[0] if single else results

    def predict_ids(self, ids: list[list[int]], top_k: int = 5) -> list[list[list[dict]]]:
        """Fill-mask on token ids (each with [CLS]/[SEP] and at least one [MASK]); see the class docstring."""
        check_top_k(top_k)
        top_k = min(top_k, int(self.config["vocab_size"]))
        results = []
        for seq, logits in zip(ids, self.run_ids(ids)):
            probs = softmax(logits)  # (masks, V)
            best = np.argsort(-probs, axis=1)[:, :top_k]  # (masks, k)
            positions = [p for p, t in enumerate(seq) if t == self.tokenizer.mask_token_id]
            filled = list(seq)
            for p, row in zip(positions, best):
                filled[p] = int(row[0])
            per_mask = []
            for m, p in enumerate(positions):
                candidates = []
                for tok in best[m]:
                    tok = int(tok)
                    seq_c = filled[:p] + [tok] + filled[p + 1 :]
                    candidates.append(
                        {
                            "token_id": tok,
                            "token": self.tokenizer.id_to_token(tok),
                            "word": self.tokenizer.decode(seq_c[slice(*self.word_span(seq_c, p))]),
                            "score": float(probs[m, tok]),
                            "sequence": self.tokenizer.decode(seq_c),
                        }
                    )
                per_mask.append(candidates)
            results.append(per_mask)
        return results

    def word_span(self, ids: list[int], position: int) -> tuple[int, int]:
        """[start, end) of the whole word around `position`: back over "##" pieces, forward over following ones.

        Example: tokens [CLS] jump ##s over -> word_span(ids, 2) == (1, 3).
        """
        piece = lambda i: self.tokenizer.id_to_token(ids[i]).startswith("##")  # noqa: E731
        start, end = position, position + 1
        while start > 1 and piece(start):
            start -= 1
        while end < len(ids) and piece(end):
            end += 1
        return start, end


PIPELINES = {"fill-mask": FillMaskPipeline, "classify": ClassifyPipeline, "embed": EmbedPipeline}


def load_pipelines(model: str | Path, tasks: Sequence[str] | None = None, **kwargs) -> dict[str, Pipeline]:
    """All the pipelines a model can serve (or just `tasks`), sharing one loaded model: {task: pipeline}."""
    path = Path(model)
    batch_size = kwargs.pop("batch_size", 32)
    if path.suffix == ".onnx":
        runner, tokenizer, config, task, max_length = load_runner(path, **kwargs)
        found = {task: PIPELINES[task].from_runner(runner, tokenizer, config, max_length, batch_size)}
    else:
        runner, tokenizer, config, task, _ = load_runner(path, **kwargs)
        net = runner.head.model if task != "embed" else runner.head.encoder
        found = {}
        for t in supported_tasks(config):
            head = runner.head if t == task else build_head(net, t, tokenizer.mask_token_id)
            max_length = input_max_length(path, config, t)
            found[t] = PIPELINES[t].from_runner(TorchRunner(head), tokenizer, config, max_length, batch_size)
    if tasks:
        missing = [t for t in tasks if t not in found]
        if missing:
            raise NanobertError(f"{path} cannot do {', '.join(missing)}; it can do {', '.join(found)}")
        found = {t: found[t] for t in tasks}
    return found


def pipeline(task: str, model: str | Path, **kwargs) -> Pipeline:
    """`pipeline("fill-mask", "runs/mlm")`: the pipeline for `task` on a model directory or .onnx file."""
    if task not in PIPELINES:
        raise NanobertError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return PIPELINES[task](model, **kwargs)
