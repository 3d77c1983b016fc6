"""Heads: small modules that turn a padded batch into exactly the numbers an inference task needs.

Every head takes (input_ids, attention_mask, token_type_ids), each (B, T) int64, and is what both
runtimes compute: `TorchRunner` calls it, `export_onnx` traces it, so PyTorch and ONNX Runtime
give the same function.

- `MaskedLMHead`: vocabulary logits only at the [MASK] positions, (M, V) in row-major order of the
  masks, so a batch of 32 long texts never materialises (32, 128, 30522) logits;
- `ClassifierHead`: (B, num_labels) logits; with [CLS] pooling the last layer runs for [CLS] only
  (the one position the classifier reads), with mean pooling for every token;
- `EmbeddingHead`: mean of the last hidden states over real tokens, L2-normalised, (B, H), which
  is what sentence-transformers computes for all-MiniLM-L6-v2.
"""

from __future__ import annotations

import torch
from torch import nn

from nanobert.model.bert import mean_pool  # noqa: F401  (re-exported: nanobert.infer.heads.mean_pool)


class EmbeddingHead(nn.Module):
    """Sentence embeddings: mean pooling over real tokens, then L2 normalisation. Output (B, H)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder  # a BertModel

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]  # (B, T, H)
        return nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)


class ClassifierHead(nn.Module):
    """Classification logits (B, num_labels); probabilities are a softmax away.

    The classifier reads only the pooled [CLS] vector, so the last layer runs for [CLS] alone
    (`BertModel.forward(..., cls_only=True)`, the layer's `first_only` option): the same logits
    for about a seventh less work on a 6-layer model. A mean-pooling classifier
    (`classifier_pooling: "mean"`) reads every token, so it runs the whole model.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # a BertForSequenceClassification
        self.cls_only = getattr(model.config, "classifier_pooling", "cls") == "cls" and model.bert.pooler is not None

    def forward(self, input_ids, attention_mask, token_type_ids):
        if not self.cls_only:
            return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        _, pooled = self.model.bert(input_ids, attention_mask, token_type_ids, cls_only=True)  # (B, H)
        return self.model.classifier(self.model.dropout(pooled))  # (B, num_labels)


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


def build_head(model: nn.Module, task: str, mask_token_id: int) -> nn.Module:
    """The head module for `task` ("fill-mask", "classify" or "embed") around a loaded model, in eval mode."""
    if task == "fill-mask":
        return MaskedLMHead(model, mask_token_id).eval()
    if task == "classify":
        return ClassifierHead(model).eval()
    return EmbeddingHead(getattr(model, "bert", model)).eval()
