"""The character tokenizer, and the contract every tokenizer shares (the same edge strings for all)."""

from __future__ import annotations

import pytest

from nanobert.errors import NanobertError
from nanobert.tokenizers import CharTokenizer, load_tokenizer
from nanobert.tokenizers.base import Tokenizer

EDGE = ["", "?", "hello world", "\U0001f600 emoji", "tab\tand\nnewline", "\u00e9\u0301"]


def test_hand_worked_example():
    tok = CharTokenizer.train("hello")
    assert [tok.id_to_token(i) for i in range(tok.vocab_size)] == ["e", "h", "l", "o"]
    assert tok.encode("hole") == [1, 3, 2, 0]
    assert tok.decode([1, 0, 2, 2, 3]) == "hello"
    with pytest.raises(NanobertError, match="'z' is not in the vocabulary"):
        tok.encode("hz")


def test_round_trip_save_load(tmp_path):
    tok = CharTokenizer.train(EDGE)
    for text in EDGE:
        assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.vocab == tok.vocab
    assert again.encode_batch(EDGE) == [tok.encode(t) for t in EDGE]


def test_every_tokenizer_keeps_the_contract(wp, gpt2, tmp_path):
    for tok in (wp, gpt2, CharTokenizer.train(EDGE)):
        assert isinstance(tok, Tokenizer)
        for text in EDGE:
            ids = tok.encode(text, add_special_tokens=False)
            assert all(0 <= i < tok.vocab_size for i in ids)
            assert tok.token_to_id(tok.id_to_token(ids[0])) == ids[0] if ids else True
        assert tok.encode_batch(EDGE, add_special_tokens=False) == [tok.encode(t, add_special_tokens=False)
                                                                      for t in EDGE]
        with pytest.raises(NanobertError):
            tok.id_to_token(tok.vocab_size)
        tok.save(tmp_path / tok.kind)
        assert type(load_tokenizer(tmp_path / tok.kind)) is type(tok)


def test_empty_text_is_an_error():
    with pytest.raises(NanobertError, match="empty"):
        CharTokenizer.train("")
