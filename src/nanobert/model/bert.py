"""BERT: embeddings → N encoder layers → (pooler), and the masked-LM and classification heads.

Parameter names are Hugging Face's, so `BertForMaskedLM.from_pretrained(dir)` reads a checkpoint
saved by `transformers` and `save_pretrained(dir)` writes one that `transformers` reads back
(see checkpoint_io.py for the file side).

    model = BertForMaskedLM(BertConfig.from_preset("mini", vocab_size=8000))
    logits, loss = model(input_ids, attention_mask, labels=labels)   # logits (M, V) at the M masked tokens
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_dir
from nanobert.model import checkpoint_io
from nanobert.model.config import OWN_MODEL_TYPE, PRESETS, BertConfig, read_config_json  # noqa: F401  (re-exported: nanobert.model.bert.PRESETS)
from nanobert.model.layers import (ACTIVATIONS, TransformerLayer, additive_mask, make_norm, packed_mask,
                                   sinusoidal_positions, tracing)

log = logging.getLogger(__name__)


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then a norm and dropout: (B, T) ids -> (B, T, H)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        H = cfg.hidden_size
        self.word_embeddings = nn.Embedding(cfg.vocab_size, H, padding_idx=cfg.pad_token_id)
        if cfg.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, H)
        else:  # a fixed table, not saved: it is recomputed from the config
            self.register_buffer("position_table", sinusoidal_positions(cfg.max_position_embeddings, H), False)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, H)
        self.LayerNorm = make_norm(cfg.norm_type, H, cfg.layer_norm_eps, cfg.use_bias)  # HF's name
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.max_positions = cfg.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """position_ids (B, T): each token's position in its own sequence (packed rows); None: 0 .. T-1."""
        T = input_ids.shape[1]
        if not tracing() and T > self.max_positions:
            raise NanobertError(
                f"sequence of {T} tokens is longer than max_position_embeddings={self.max_positions}; truncate it"
            )
        pos = self.position_embeddings.weight if hasattr(self, "position_embeddings") else self.position_table
        x = self.word_embeddings(input_ids)  # (B, T, H)
        if token_type_ids is None:  # every token in segment 0: add that one row, no lookup
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        x = x + (pos[:T] if position_ids is None else pos[position_ids])  # (T, H) broadcast, or (B, T, H)
        return self.dropout(self.LayerNorm(x))


class Encoder(nn.Module):
    """The stack of layers (HF's `encoder.layer.{i}`), plus a final norm in the pre-LN variant."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        if cfg.pre_layer_norm:  # pre-LN leaves the residual stream un-normalised: normalise it once at the end
            self.final_layer_norm = make_norm(cfg.norm_type, cfg.hidden_size, cfg.layer_norm_eps, cfg.use_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cls_only: bool = False) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); cls_only: the last layer runs for position 0 alone -> (B, 1, H)."""
        for i, layer in enumerate(self.layer):
            x = layer(x, mask, first_only=cls_only and i == len(self.layer) - 1)
        return self.final_layer_norm(x) if hasattr(self, "final_layer_norm") else x


class Pooler(nn.Module):
    """tanh(W h_[CLS] + b): (B, T, H) -> (B, H), the sentence vector BERT's classifier reads."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.use_bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class PreTrained(nn.Module):
    """Weight init and from_pretrained / save_pretrained, shared by BertModel and the heads."""

    config: BertConfig
    # Keys a head adds on top of a pretrained encoder: pass as expected_missing when fine-tuning.
    new_head_keys: tuple[str, ...] = ()

    def _init_weights(self, module: nn.Module) -> None:
        if any(p.is_meta for p in module.parameters(recurse=False)):
            return  # a shape-only model (parameter counting): there are no values to initialise
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, path: str | Path, expected_missing=(), **config_overrides):
        """Load config.json + weights from `path`, strictly (see checkpoint_io.load_state_dict); in eval mode.

        `expected_missing`: glob patterns of keys the file may lack, e.g. `cls.new_head_keys` for a new head.
        `config_overrides`: BertConfig fields to change (e.g. num_labels=3, hidden_dropout_prob=0.0).
        """
        path = Path(path)
        if not path.is_dir():
            raise NanobertError(f"model directory not found: {path}")
        config = BertConfig.from_pretrained(path, **config_overrides)
        check_vocab_file(path, config)
        checkpoint_io.check_weights_fit(path, config)  # before building: an absurd config.json is refused here
        state_dict = checkpoint_io.read_state_dict(path)
        model = cls(config)
        model.load_report = checkpoint_io.load_state_dict(model, state_dict, expected_missing, source=str(path))
        return model.eval()

    def save_pretrained(self, path: str | Path, tokenizer=None, require_hf: bool = False) -> None:
        """Write config.json + model.safetensors (+ the tokenizer's files) so transformers can load them.

        A new directory appears whole or not at all; into an existing one each file is replaced atomically.
        `require_hf=True` fails if the architecture is a variant transformers cannot run.
        """
        if require_hf and not self.config.hf_compatible:
            raise NanobertError(
                "this model uses variants transformers' BERT cannot run (pre_layer_norm, rmsnorm, sinusoidal "
                "positions, no bias or classifier_pooling 'mean'); it can only be saved in nanobert's own format "
                "(model_type nanobert_bert)"
            )
        if self.config.classifier_pooling == "mean" and hasattr(self, "classifier"):
            log.warning("classifier_pooling is 'mean': saved as model_type %s, which transformers' "
                        "BertForSequenceClassification cannot run (it reads [CLS] through a pooler); nanobert's "
                        "classify, evaluate, serve and ONNX export read it", OWN_MODEL_TYPE)
        if tokenizer is not None and tokenizer.vocab_size > self.config.vocab_size:
            raise NanobertError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {self.config.vocab_size}"
            )
        path = Path(path)

        def write(d: Path):
            checkpoint_io.save_safetensors(checkpoint_io.file_state_dict(self), d / checkpoint_io.WEIGHTS_NAME)
            self.config.save_pretrained(d, architectures=[type(self).__name__])
            if tokenizer is not None:
                tokenizer.save(d)

        if path.exists():
            write(path)
        else:
            with atomic_dir(path) as tmp:
                write(tmp)


def check_vocab_file(path: Path, config: BertConfig) -> None:
    """Fail if `path/vocab.txt` has more tokens than the embedding table has rows."""
    vocab = path / "vocab.txt"
    if vocab.is_file():
        with open(vocab, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > config.vocab_size:
            raise NanobertError(
                f"{vocab} has {n} tokens but config.json says vocab_size={config.vocab_size}; "
                "the tokenizer does not belong to these weights"
            )


class BertModel(PreTrained):
    """The encoder: forward(input_ids (B, T), attention_mask (B, T), token_type_ids (B, T))
    -> (last_hidden_state (B, T, H), pooled (B, H) or None without a pooler).

    Packed rows (several sequences in one row, no padding between them): pass `position_ids` (B, T), each
    token's position within its own sequence; a 0 starts a new sequence, and attention stays within each
    sequence (`packed_mask`), so every sequence is encoded as if it were alone in its row. This is the
    convention of Hugging Face's flattening collator; transformers' BertModel itself would let a packed row
    attend across its sequences."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooling_layer else None
        self.apply(self._init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, cls_only: bool = False, position_ids=None):
        """cls_only: the last layer computes [CLS] alone (all a pooler needs); last_hidden_state is then (B, 1, H)."""
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, H)
        mask = additive_mask(attention_mask, x.dtype) if position_ids is None else \
            packed_mask(position_ids, attention_mask, x.dtype)
        x = self.encoder(x, mask, cls_only)  # (B, T, H), or (B, 1, H)
        return x, (self.pooler(x) if self.pooler is not None else None)


class PredictionTransform(nn.Module):
    """dense -> activation -> norm, applied before the vocabulary projection (HF's `cls.predictions.transform`)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.use_bias)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.LayerNorm = make_norm(cfg.norm_type, cfg.hidden_size, cfg.layer_norm_eps, cfg.use_bias)  # HF's name

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(h)))


class LMPredictionHead(nn.Module):
    """Hidden states -> vocabulary logits through the word-embedding matrix (tied) plus a bias."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.transform = PredictionTransform(cfg)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if cfg.use_bias else None  # cls.predictions.bias

    def forward(self, h: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(h), word_embeddings, self.bias)  # (..., V)


class MLMHead(nn.Module):
    """Holds `predictions` so keys read `cls.predictions.*`, as in HF."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.predictions = LMPredictionHead(cfg)


class BertForMaskedLM(PreTrained):
    """BERT with the masked-LM head; forward(input_ids, attention_mask, token_type_ids, labels) -> (logits, loss).

    With labels (-100 = not predicted), logits are computed only at the M predicted positions:
    (M, V) in row-major order of those positions ("sparse prediction"), and loss is their mean
    cross-entropy. Without labels: logits (B, T, V) and loss None.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)  # HF's MLM has no pooler either
        self.cls = MLMHead(config)
        self.cls.apply(self._init_weights)  # the encoder initialised itself

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, position_ids=None):
        hidden, _ = self.bert(input_ids, attention_mask, token_type_ids, position_ids=position_ids)  # (B, T, H)
        words = self.bert.embeddings.word_embeddings.weight  # (V, H), the tied decoder
        if labels is None:
            return self.cls.predictions(hidden, words), None  # (B, T, V)
        flat = labels.reshape(-1)  # (B*T,)
        idx = (flat != -100).nonzero().squeeze(1)  # (M,) positions to predict
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, idx)  # (M, H)
        logits = self.cls.predictions(picked, words)  # (M, V)
        if idx.numel() == 0:  # nothing masked in this batch: a zero loss that still backpropagates
            return logits, hidden.sum() * 0.0
        return logits, F.cross_entropy(logits.float(), flat.index_select(0, idx))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average `hidden` (B, T, H) over the positions where `attention_mask` (B, T) is 1 -> (B, H); None: all.

    Example: hidden [[[1.], [3.], [100.]]], mask [[1, 1, 0]] -> [[2.]] (the padding is ignored).
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class BertForSequenceClassification(PreTrained):
    """BERT + dropout + linear on a sequence vector: forward(...) -> (logits (B, num_labels), loss | None).

    The vector is `config.classifier_pooling`'s: "cls", the pooler (dense + tanh) on [CLS], as BERT and
    transformers; "mean", the mean of the last hidden layer over real tokens, with no pooler (an
    MLM-pretrained encoder never trains [CLS], so its mean carries more than its [CLS]).

    Loss as in transformers: MSE when num_labels == 1 (regression), cross-entropy for integer
    labels, binary cross-entropy for float multi-hot labels; or as `config.problem_type` says.
    """

    new_head_keys = ("classifier.*", "bert.pooler.*")

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=config.classifier_pooling == "cls")
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels, bias=config.use_bias)
        self.classifier.apply(self._init_weights)  # the encoder initialised itself

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids)  # (B, T, H), (B, H) | None
        if pooled is None:  # classifier_pooling "mean"
            pooled = mean_pool(hidden, attention_mask)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if labels is None:
            return logits, None
        kind = self.config.problem_type
        if kind is None:
            if self.num_labels == 1:
                kind = "regression"
            elif labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
                kind = "single_label_classification"
            else:
                kind = "multi_label_classification"
        if kind == "regression":
            loss = F.mse_loss(logits.squeeze(-1).float(), labels.float().reshape(logits.shape[0]))
        elif kind == "single_label_classification":
            loss = F.cross_entropy(logits.float(), labels.reshape(-1).long())
        elif kind == "multi_label_classification":
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        else:
            raise NanobertError(f"unknown problem_type {kind!r}")
        return logits, loss


ARCHITECTURES = {
    "BertModel": BertModel,
    "BertForMaskedLM": BertForMaskedLM,
    "BertForPreTraining": BertForMaskedLM,  # the NSP head is dropped on load
    "BertForSequenceClassification": BertForSequenceClassification,
}


def load_model(path: str | Path, **kwargs) -> PreTrained:
    """Load the model config.json's "architectures" names; without one, guess from the stored heads.

    A file with `cls.predictions.*` gives BertForMaskedLM, one with `classifier.*` a
    BertForSequenceClassification, anything else a BertModel.
    """
    if not Path(path).is_dir():
        raise NanobertError(f"model directory not found: {path}")
    archs = read_config_json(path).get("architectures")
    if archs:
        name = archs[0] if isinstance(archs, list) else archs
    else:
        keys = checkpoint_io.stored_keys(path)
        name = "BertModel"
        if any(k.startswith("classifier.") for k in keys):
            name = "BertForSequenceClassification"
        elif any(k.startswith("cls.predictions.") for k in keys):
            name = "BertForMaskedLM"
    cls = ARCHITECTURES.get(name)
    if cls is None:
        raise NanobertError(f"{path}: architecture {name!r} is not one of {', '.join(ARCHITECTURES)}")
    return cls.from_pretrained(path, **kwargs)


def preset_table(vocab_size: int = 30522) -> list[tuple[str, str, int, int, int]]:
    """(preset, sizes, BertModel params, BertForMaskedLM params, BertForSequenceClassification params) per preset.

    Built on the meta device: no memory is allocated, so even "base" counts instantly.
    """
    rows = []
    for name, sizes in PRESETS.items():
        cfg = BertConfig.from_preset(name, vocab_size=vocab_size)
        with torch.device("meta"):
            models = (BertModel(cfg), BertForMaskedLM(cfg), BertForSequenceClassification(cfg))
            counts = [m.num_parameters() for m in models]
        desc = f"L{sizes['num_hidden_layers']}/H{sizes['hidden_size']}/A{sizes['num_attention_heads']}"
        rows.append((name, desc, *counts))
    return rows
