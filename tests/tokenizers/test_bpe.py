"""Byte-level BPE: GPT-2 ids identical to Hugging Face's, exact round-trips, <|endoftext|>, training."""

from __future__ import annotations

import random

import pytest

from nanobert.errors import NanobertError
from nanobert.tokenizers import ByteLevelBPETokenizer, load_tokenizer
from nanobert.tokenizers.bpe import bytes_to_unicode, pretokenize

tokenizers = pytest.importorskip("tokenizers")

NASTY = ["", "?", " ", "  ", "\n\n", " \t \n", "Hello world", "It's 'S 12345 \u00bdx", "a\u00a0b  c \u3000x",
         "emoji \U0001f600\U0001f44d\U0001f3fd ok \U0001f468\u200d\U0001f469\u200d\U0001f467", "  lead\n\n trail  ",
         "x\x1cy z\x1f \x00\x7f", "\ufeff\u200b\u00ad", "e\u0301\u0301 \u0130 \u03a3", "\u65e5\u672c\u8a9e",
         "don't you'll we'd I'm they're we've", "'s's's", "1 23 456 7890 \u0663\u0664", "$$$ ... !!! ???",
         "\U0010ffff\U000e0001\ue000", "line\r\nbreak\rcr", "x" * 500]


def test_hand_worked_example(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert [gpt2.id_to_token(i) for i in gpt2.encode(" Hello world")] == ["\u0120Hello", "\u0120world"]
    assert bytes_to_unicode()[32] == "\u0120" and bytes_to_unicode()[65] == "A"
    assert pretokenize("It's  fine!") == ["It", "'s", " ", " fine", "!"]


def test_matches_hugging_face_on_real_text_and_nasty_strings(gpt2, hf_gpt2, gpt2_files, real_lines):
    byte_level = tokenizers.ByteLevelBPETokenizer(str(gpt2_files[0]), str(gpt2_files[1]))
    lines = real_lines[:4000] + NASTY
    ours = gpt2.encode_batch(lines)
    assert ours == hf_gpt2(lines)["input_ids"]
    assert ours == [e.ids for e in byte_level.encode_batch(lines)]


def test_random_unicode_matches_hugging_face(gpt2, hf_gpt2):
    rng = random.Random(0)
    pool = [*range(32, 127)] * 3 + [9, 10, 11, 12, 13, 0x1C, 0x85, 0xA0, 0x2028, 0x3000, 0x200B]

    def char():
        cp = rng.choice(pool) if rng.random() < 0.5 else rng.randrange(0x80, 0x110000)
        return chr(cp if not 0xD800 <= cp < 0xE000 else 0x41)

    texts = ["".join(char() for _ in range(rng.randrange(40))) for _ in range(3000)]
    assert gpt2.encode_batch(texts) == hf_gpt2(texts)["input_ids"]


def test_exact_round_trip_of_any_string(gpt2, real_lines):
    rng = random.Random(1)
    texts = NASTY + real_lines[:2000] + ["\ud800 lone \udfff surrogates \udbff"]
    texts += ["".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(30))) for _ in range(2000)]
    for text in texts:
        assert gpt2.decode(gpt2.encode(text)) == text
    assert gpt2.decode(gpt2.encode("\U0001f600")[:1]) == "\ufffd"  # a cut character decodes to U+FFFD


def test_end_of_text(gpt2, hf_gpt2):
    assert gpt2.eot_token_id == 50256
    text = "first document<|endoftext|>second one"
    assert gpt2.encode(text) == hf_gpt2(text)["input_ids"] == [11085, 3188, 50256, 12227, 530]
    assert gpt2.decode(gpt2.encode(text), skip_special_tokens=False) == text
    assert gpt2.decode(gpt2.encode(text)) == "first documentsecond one"


def test_train_save_load(tmp_path, shared_data):
    text = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8")[:200_000]
    tok = ByteLevelBPETokenizer.train([text], vocab_size=600)
    assert tok.vocab_size == 600 and tok.eot_token_id == 599
    assert len(tok.encode(text[:5000])) < len(text[:5000].encode("utf-8")) / 2  # merges compress
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, ByteLevelBPETokenizer) and again.encode(text[:3000]) == tok.encode(text[:3000])
    hf = tokenizers.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    lines = text.split("\n")[:500]
    assert [e.ids for e in hf.encode_batch(lines)] == tok.encode_batch(lines)


def test_bad_files(tmp_path, gpt2_files):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(NanobertError, match="not valid JSON"):
        ByteLevelBPETokenizer.from_files(tmp_path / "bad.json", gpt2_files[1])
    (tmp_path / "merges.txt").write_text("#version: 0.2\nzzz qqq\n", encoding="utf-8")
    with pytest.raises(NanobertError, match="line 2"):
        ByteLevelBPETokenizer.from_files(gpt2_files[0], tmp_path / "merges.txt")
    with pytest.raises(NanobertError, match="256 byte tokens"):
        ByteLevelBPETokenizer({"a": 0}, [])
    with pytest.raises(NanobertError, match="not found"):
        ByteLevelBPETokenizer.from_files(gpt2_files[0], tmp_path / "missing.txt")
