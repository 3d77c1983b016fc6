"""Inference pipelines: fill-mask, classify and embed, on a PyTorch model directory or an .onnx file.

A pipeline is three steps: tokenize the texts, run a *head* (a small module that turns a padded
batch into exactly the numbers the task needs), and turn those numbers into readable results.

    fill = FillMaskPipeline("runs/mlm")                 # a model directory (PyTorch) ...
    fill = FillMaskPipeline("runs/mlm.onnx")            # ... or an exported graph (ONNX Runtime)
    fill("The quick brown fox [MASK] over the lazy dog.", top_k=3)

The heads are the same modules that `export_onnx` traces, so both runtimes compute the same
function and the results agree to float precision (int8 graphs: to quantization error):
- `MaskedLMHead`: vocabulary logits only at the [MASK] positions, (M, V) in row-major order of the
  masks, so a batch of 32 long texts never materialises (32, 128, 30522) logits;
- `ClassifierHead`: (B, num_labels) logits, with the last layer run for [CLS] only (the one
  position the classifier reads);
- `EmbeddingHead`: mean of the last hidden states over real tokens, L2-normalised, (B, H), which
  is what sentence-transformers computes for all-MiniLM-L6-v2.

Texts are sorted by length before batching so that a batch pads to similar lengths; results come
back in the input order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from nanobert.errors import NanobertError

log = logging.getLogger(__name__)

TASKS = ("fill-mask", "classify", "embed")


# ---------------------------------------------------------------------------------------------
# Heads: (input_ids, attention_mask, token_type_ids) -> the numbers a task needs
# ---------------------------------------------------------------------------------------------


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average `hidden` (B, T, H) over the positions where `attention_mask` (B, T) is 1 -> (B, H).

    Example: hidden [[[1.], [3.], [100.]]], mask [[1, 1, 0]] -> [[2.]] (the padding is ignored).
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class EmbeddingHead(nn.Module):
    """Sentence embeddings: mean pooling over real tokens, then L2 normalisation. Output (B, H)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder  # a BertModel

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]  # (B, T, H)
        return nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)


def last_layer_at_cls(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A post-LN encoder layer computed for position 0 ([CLS]) only: (B, T, H) -> (B, 1, H).

    Keys and values still come from every token; the query, the attention output and the
    feed-forward block run for one position instead of T. Same numbers as `layer(x)[:, :1]`.
    """
    att, att_out, ff_out = layer.attention.self, layer.attention.output, layer.output
    B, T, H = x.shape
    nh, hs = att.num_heads, att.head_dim
    cls = x[:, :1]  # (B, 1, H)
    q = att.query(cls).view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
    k = att.key(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    v = att.value(x).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, 1, hs)
    h = att_out(y.transpose(1, 2).reshape(B, 1, H), cls, post_norm=True)  # (B, 1, H)
    return ff_out(layer.intermediate(h), h, post_norm=True)  # (B, 1, H)


class ClassifierHead(nn.Module):
    """Classification logits (B, num_labels); probabilities are a softmax away.

    The classifier reads only the last layer's [CLS] vector, so that layer runs for [CLS] alone
    (`last_layer_at_cls`): the same logits for about a seventh less work on a 6-layer model.
    Pre-LN variants run the model as it is.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # a BertForSequenceClassification
        self.cls_only = not getattr(model.config, "pre_layer_norm", False) and model.bert.pooler is not None

    def forward(self, input_ids, attention_mask, token_type_ids):
        from nanobert.model.layers import additive_mask

        if not self.cls_only:
            return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        bert = self.model.bert
        x = bert.embeddings(input_ids, token_type_ids)  # (B, T, H)
        mask = additive_mask(attention_mask, x.dtype)  # (B, 1, 1, T) or None
        for layer in bert.encoder.layer[:-1]:
            x = layer(x, mask)  # (B, T, H)
        x = last_layer_at_cls(bert.encoder.layer[-1], x, mask)  # (B, 1, H)
        return self.model.classifier(self.model.dropout(bert.pooler(x)))  # (B, num_labels)


class MaskedLMHead(nn.Module):
    """Vocabulary logits at the [MASK] positions only: (M, V), masks in row-major (batch, position) order.

    It passes the masked positions as `labels` so that the model's sparse prediction computes the
    vocabulary projection for those M rows alone (the loss that comes with it is dropped).
    """

    def __init__(self, model: nn.Module, mask_token_id: int):
        super().__init__()
        self.model = model  # a BertForMaskedLM
        self.mask_token_id = mask_token_id

    def forward(self, input_ids, attention_mask, token_type_ids):
        labels = torch.where(input_ids == self.mask_token_id, input_ids, torch.full_like(input_ids, -100))
        return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)[0]


# ---------------------------------------------------------------------------------------------
# Loading a model directory or an .onnx file
# ---------------------------------------------------------------------------------------------


def default_task(config: dict) -> str:
    """The task a checkpoint was made for, from config.json's "architectures"."""
    arch = " ".join(config.get("architectures") or [])
    if "MaskedLM" in arch or "PreTraining" in arch:
        return "fill-mask"
    if "SequenceClassification" in arch:
        return "classify"
    return "embed"


def supported_tasks(config: dict) -> tuple[str, ...]:
    """Tasks a PyTorch checkpoint can serve: its own, plus sentence embeddings from its encoder."""
    task = default_task(config)
    return (task,) if task == "embed" else (task, "embed")


def load_tokenizer_dir(model_dir: Path):
    """The tokenizer saved beside a checkpoint (vocab.txt [+ tokenizer_config.json])."""
    from nanobert.tokenizers import wordpiece

    if not (model_dir / "vocab.txt").is_file():
        raise NanobertError(f"{model_dir} has no vocab.txt: save the model with its tokenizer (save_pretrained(dir, tokenizer=tok))")
    return wordpiece.WordPieceTokenizer.load(model_dir)


def load_torch_model(model_dir: str | Path, task: str | None = None) -> tuple[nn.Module, dict, str]:
    """Load a checkpoint directory for `task` (default: the one in config.json) -> (model, config dict, task)."""
    from nanobert.model import bert

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory (no config.json); pass a saved checkpoint or an .onnx file")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    task = task or default_task(config)
    if task not in supported_tasks(config):
        raise NanobertError(
            f"{model_dir} is a {default_task(config)} model ({', '.join(config.get('architectures') or ['BertModel'])}); "
            f"it cannot do {task}. Tasks it can do: {', '.join(supported_tasks(config))}"
        )
    return bert.load_model(model_dir).eval(), config, task  # the class config.json's "architectures" names


def build_head(model: nn.Module, task: str, mask_token_id: int) -> nn.Module:
    """The head module for `task` around a loaded model (see the module docstring)."""
    if task == "fill-mask":
        return MaskedLMHead(model, mask_token_id).eval()
    if task == "classify":
        return ClassifierHead(model).eval()
    return EmbeddingHead(getattr(model, "bert", model)).eval()


class TorchRunner:
    """Runs a head in PyTorch: numpy int64 arrays in, a float32 numpy array out."""

    def __init__(self, head: nn.Module):
        self.head = head
        self.name = "pytorch"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.head(torch.from_numpy(input_ids), torch.from_numpy(attention_mask), torch.from_numpy(token_type_ids))
        return out.float().numpy()


def sentence_max_length(model_dir: Path, config: dict) -> int:
    """Longest input in tokens: sentence-transformers' max_seq_length when the checkpoint has one, else the positions."""
    st = model_dir / "sentence_bert_config.json"
    if st.is_file():
        return int(json.loads(st.read_text(encoding="utf-8")).get("max_seq_length", 512))
    return int(config.get("max_position_embeddings", 512))


def load_runner(model: str | Path, task: str | None = None, *, providers: Sequence[str] | None = None, threads: int | None = None):
    """Open a model directory (PyTorch) or an .onnx file (ONNX Runtime) -> (runner, tokenizer, config, task, max_length)."""
    path = Path(model)
    if path.suffix == ".onnx":
        from nanobert.infer.onnx import OrtRunner

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
    max_length = sentence_max_length(path, config) if task == "embed" else int(config.get("max_position_embeddings", 512))
    return TorchRunner(build_head(net, task, tokenizer.mask_token_id)), tokenizer, config, task, max_length


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


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
        self.max_length = min(max_length, int(config.get("max_position_embeddings", 512)))

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


class FillMaskPipeline(Pipeline):
    """Top-k predictions for every [MASK] of every text, with whole-word display.

    Each text gives a list with one entry per [MASK] (left to right); each entry is a list of the k
    best candidates `{"token_id", "token", "word", "score", "sequence"}`: `token` is the WordPiece
    ("##s"), `word` the whole word it completes ("jump" + "##s" -> "jumps"), `sequence` the text
    with this candidate in this mask and the best candidate in every other mask.
    """

    task = "fill-mask"

    def check(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize and check that every text has a [MASK] and fits the model; returns the ids."""
        ids = self.encode(list(texts), truncate=False)
        for i, seq in enumerate(ids):
            if self.tokenizer.mask_token_id not in seq:
                raise NanobertError(f"text {i} has no [MASK] token: write [MASK] where the model should fill in a word")
        return ids

    def __call__(self, inputs: str | Sequence[str], top_k: int = 5):
        texts, single = _as_list(inputs)
        if top_k < 1:
            raise NanobertError(f"top_k must be at least 1, got {top_k}")
        results = self.predict_ids(self.check(texts), top_k)
        return results[0] if single else results

    def predict_ids(self, ids: list[list[int]], top_k: int = 5) -> list[list[list[dict]]]:
        """Fill-mask on token ids (each with [CLS]/[SEP] and at least one [MASK]); see the class docstring."""
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
            max_length = sentence_max_length(path, config) if t == "embed" else int(config.get("max_position_embeddings", 512))
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
