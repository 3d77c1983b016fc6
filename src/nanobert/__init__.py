"""nanobert: BERT- and GPT-style language models from scratch, from tokenizer to server."""

__version__ = "0.1.0"
from nanobert.model.bert import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    load_model,
)
