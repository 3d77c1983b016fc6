"""Fixtures for the tokenizer tests: our tokenizers, Hugging Face's, and samples of the real data."""

from __future__ import annotations

import gzip

import pytest

from nanobert.tokenizers import ByteLevelBPETokenizer, WordPieceTokenizer


@pytest.fixture(scope="session")
def bert_vocab(minilm_dir):
    return minilm_dir / "vocab.txt"


@pytest.fixture(scope="session")
def wp(bert_vocab):
    return WordPieceTokenizer.from_vocab_file(bert_vocab)


@pytest.fixture(scope="session")
def hf_bert(bert_vocab):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast(vocab=str(bert_vocab))


@pytest.fixture(scope="session")
def gpt2_files(shared_data):
    return shared_data / "gpt2" / "vocab.json", shared_data / "gpt2" / "merges.txt"


@pytest.fixture(scope="session")
def gpt2(gpt2_files):
    return ByteLevelBPETokenizer.from_files(*gpt2_files)


@pytest.fixture(scope="session")
def hf_gpt2(gpt2_files):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast(vocab=str(gpt2_files[0]), merges=str(gpt2_files[1]))


def _enwiki(shared_data, n):
    with gzip.open(shared_data / "enwiki" / "enwiki_clean.txt.gz", "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for _, line in zip(range(n), f)]


@pytest.fixture(scope="session")
def real_lines(shared_data) -> list[str]:
    """A mixed sample of real text: 3,000 enwiki paragraphs, 5,000 Austen lines, SST-2 dev."""
    austen = (shared_data / "janeausten" / "emma.txt").read_text(encoding="utf-8").split("\n")[:5000]
    sst2 = [r.split("\t")[0] for r in (shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").split("\n")[1:] if r]
    return _enwiki(shared_data, 3000) + austen + sst2


@pytest.fixture(scope="session")
def enwiki_lines(shared_data):
    return lambda n: _enwiki(shared_data, n)
