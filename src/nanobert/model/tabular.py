"""Text + tabular classification: the pooled [CLS] vector joined with standardized numeric features.

    features (B, F) --standardize--> Linear(F, T) + GELU --> (B, T) ┐
    text --BERT--> pooled (B, H) --dropout------------------> (B, H) ┴ concat (B, H+T) --> classifier --> (B, K)

The numbers are standardized with the training set's mean and standard deviation (empty cells
become the mean, i.e. 0 after standardizing); those statistics live in `tabular.json` beside the
model so prediction applies exactly the same transform. Saved like any nanobert model:
config.json (architectures = ["BertForTabularClassification"]) + model.safetensors + tabular.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanobert.config import check_fields
from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.model import checkpoint_io
from nanobert.model.bert import BertModel, PreTrained, check_vocab_file, mean_pool
from nanobert.model.config import BertConfig

TABULAR_FILE = "tabular.json"


@dataclass
class TabularStats:
    """Column names and the training set's per-column mean and standard deviation."""

    columns: list[str]
    mean: list[float]
    std: list[float]
    hidden: int = 32  # width of the feature projection; a few dozen is plenty for a handful of columns

    def __post_init__(self):
        check_fields(self, {"hidden": ">= 1"}, prefix="tabular.")
        if not len(self.columns) == len(self.mean) == len(self.std) or min(self.std, default=1.0) <= 0:
            raise NanobertError(f"tabular statistics: need one mean and one std > 0 per column; got "
                                f"{len(self.columns)} columns, {len(self.mean)} means, {len(self.std)} stds")

    @classmethod
    def fit(cls, x: np.ndarray, columns: list[str], hidden: int = 32) -> "TabularStats":
        """Statistics of `x` (N, F), ignoring NaN. A constant column gets std 1 (it standardizes to 0)."""
        if np.isnan(x).all(axis=0).any():
            bad = columns[int(np.isnan(x).all(axis=0).argmax())]
            raise NanobertError(f"tabular column {bad!r} has no numbers in the training file")
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(list(columns), mean.tolist(), std.tolist(), hidden)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, F) raw -> (N, F) standardized float32; NaN -> 0. Example: mean [1], std [2]: [[3], [nan]] -> [[1], [0]]."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def save(self, directory: str | Path) -> None:
        write_json(Path(directory) / TABULAR_FILE, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> "TabularStats":
        path = Path(directory) / TABULAR_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as e:
            raise NanobertError(f"cannot read the tabular statistics {path}: {e}") from None


class BertForTabularClassification(PreTrained):
    """BERT + numeric features: forward(input_ids, attention_mask, token_type_ids, tabular (B, F), labels)
    -> (logits (B, num_labels), cross-entropy loss | None)."""

    new_head_keys = ("classifier.*", "tabular.*", "bert.pooler.*")

    def __init__(self, config: BertConfig, stats: TabularStats):
        super().__init__()
        self.config, self.stats = config, stats
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=config.classifier_pooling == "cls")
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.tabular = nn.Linear(len(stats.columns), stats.hidden)
        self.classifier = nn.Linear(config.hidden_size + stats.hidden, config.num_labels)
        self.apply(self._init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, tabular=None, labels=None):
        if tabular is None:
            raise NanobertError(f"this model needs the tabular columns {', '.join(self.stats.columns)}")
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids)  # (B, T, H), (B, H) | None
        if pooled is None:  # classifier_pooling "mean"
            pooled = mean_pool(hidden, attention_mask)  # (B, H)
        features = F.gelu(self.tabular(tabular.to(pooled.dtype)))  # (B, T)
        logits = self.classifier(torch.cat([self.dropout(pooled), features], dim=-1))  # (B, H+T) -> (B, K)
        loss = None if labels is None else F.cross_entropy(logits.float(), labels.reshape(-1).long())
        return logits, loss

    @classmethod
    def from_pretrained(cls, path: str | Path, expected_missing=(), stats: TabularStats | None = None,
                        **config_overrides) -> "BertForTabularClassification":
        """Load a saved tabular classifier (its tabular.json), or start one from any BERT checkpoint with `stats`."""
        path = Path(path)
        if not path.is_dir():
            raise NanobertError(f"model directory not found: {path}")
        config = BertConfig.from_pretrained(path, **config_overrides)
        if stats is None:
            stats = TabularStats.load(path)
        model = cls(config, stats)
        state_dict = checkpoint_io.read_state_dict(path)
        model.load_report = checkpoint_io.load_state_dict(model, state_dict, expected_missing, source=str(path))
        check_vocab_file(path, config)
        return model.eval()

    def save_pretrained(self, path: str | Path, tokenizer=None, require_hf: bool = False) -> None:
        """config.json + model.safetensors (+ tokenizer files) + tabular.json."""
        super().save_pretrained(path, tokenizer=tokenizer, require_hf=require_hf)
        self.stats.save(path)
