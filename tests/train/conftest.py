"""Prepared MLM data and a tiny BERT recipe for the end-to-end resume and DDP tests."""

from __future__ import annotations

import pytest

TINY_RECIPE = """
seed = 0
samples = []
[data]
dir = "{data}"
batch_size = 8
eval_batches = 2
whole_word = true
[model]
preset = "mini"
hidden_size = 32
num_hidden_layers = 1
num_attention_heads = 2
intermediate_size = 64
max_position_embeddings = 32
dropout = {dropout}
[train]
max_steps = 16
lr = 2e-3
min_lr = 1e-4
warmup_steps = 4
eval_every = 8
checkpoint_every = 8
max_checkpoints = 2
log_every = 4
progress = false
tensorboard = false
plots = false
precision = "fp32"  # the exact comparisons (resume, DDP) are made in fp32
"""


@pytest.fixture(scope="session")
def mlm_data(shared_data, minilm_dir, tmp_path_factory):
    """~500 sequences of <= 32 tokens from Persuasion, BERT's WordPiece vocabulary."""
    from nanobert.data.prepare import PrepareConfig, prepare
    from nanobert.tokenizers import load_tokenizer

    root = tmp_path_factory.mktemp("mlm")
    lines = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8").splitlines()[:600]
    (root / "text.txt").write_text("\n".join(lines), encoding="utf-8")
    prepare(PrepareConfig(inputs=[str(root / "text.txt")], out_dir=str(root / "data"), seq_len=32,
                          val_fraction=0.1, test_fraction=0.0, num_workers=1), tokenizer=load_tokenizer(minilm_dir),
            progress=False)
    return root / "data"


@pytest.fixture
def tiny_recipe(mlm_data, tmp_path):
    """Write the tiny recipe for `mlm_data`; call with the dropout to use; returns the TOML path."""
    def write(dropout: float = 0.1):
        path = tmp_path / f"tiny-{dropout}.toml"
        path.write_text(TINY_RECIPE.format(data=mlm_data.as_posix(), dropout=dropout), encoding="utf-8")
        return path
    return write
