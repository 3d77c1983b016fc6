"""nanobert: BERT- and GPT-style language models from scratch, from tokenizer to server."""

__version__ = "0.1.0"
