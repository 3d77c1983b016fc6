"""WordPiece: ids, offsets and model inputs identical to Hugging Face's BERT tokenizers; decoding; files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nanobert.errors import NanobertError
from nanobert.tokenizers import WordPieceTokenizer, load_tokenizer
from nanobert.tokenizers.encoding import truncate_lengths

tokenizers = pytest.importorskip("tokenizers")

EDGE_CASES = [
    "", " ", "\t\n\r", "Hello, world!", "  \tHeLLo!how  \n Are yoU?  ", "H\u00e9llo h\u00c9LLO na\u00efve caf\u00e9",
    "e\u0301 a\u0300\u0300\u0300", "\u535a\u63a8zz", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u4e2d\u6587\uff0c\u6807\u70b9\u3002", "a\u00adb soft\u00adhyphen",
    "zero\u200bwidth bom\ufeffhere nul\x00char rep\ufffdlacement bell\x07x del\x7fx \x1c\x1d\x1e\x1f",
    "nbsp\u00a0here ideographic\u3000space line\u2028sep em\u2003space a\x0bb a\x0cb a\x85b",
    "$5 `q` ^a| ~b < c > d = e + f _g_ @h #i %j &k *l (m) [n] {o} \\p /q 'r' \"s\" ;t :u ?v !w ,x .y -z",
    "\u00bfQu\u00e9? \u00a1S\u00ed! \u00abguillemets\u00bb \u201equotes\u201c \u2014 dash \u2013 en \u2026 \u00a7 \u00b6",
    "[UNK]", "[unk]", "[UNK]x[MASK]y", "[CLS] [SEP] [PAD] [MASK]", "[[MASK]]", "[MASK", "x[SEP]",
    "x" * 100, "x" * 101, "\u00e9" * 101, "a" + "\u0301" * 150, "unwanted running", "unwantedX running",
    "\u039f\u0394\u039f\u03a3 \u03a3 \u03c2", "\u0130stanbul \u01c5 \u00df \ufb01ne \u212b \u2126", "\U0001f642 emoji \U0001f44d\U0001f3fd",
    "\U0001d518\U0001d52b\U0001d526", "\u216b \u00bd \u00b2 \u2460", "mixed\u4e2d\u6587english", "12,345.67 1e-5 3/4",
    "don't won't it's y'all", "U.S.A. e.g. i.e.", "http://example.com/a?b=c&d=e#f", "C++ C# .NET",
    "\u0e01\u0e34\u0e19\u0e02\u0e49\u0e32\u0e27", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\U0001f1fa\U0001f1f8 \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "private\ue000use unassigned\u0378x tag\U000e0001x", "\uf900\U00020000\U0002b820\U0002b920", "a\tb\nc\rd",
    "\u2028\u2029\u202f\u205f\u1680", "x\u0300" * 60, "The quick brown fox jumps over the lazy dog. " * 20,
]


@pytest.mark.parametrize("lowercase,strip_accents", [(True, None), (False, None), (True, False), (False, True)])
def test_edge_cases_match_hugging_face(bert_vocab, lowercase, strip_accents):
    ours = WordPieceTokenizer.from_vocab_file(bert_vocab, lowercase=lowercase, strip_accents=strip_accents)
    theirs = tokenizers.BertWordPieceTokenizer(str(bert_vocab), lowercase=lowercase, strip_accents=strip_accents)
    for text in EDGE_CASES:
        expected = theirs.encode(text)
        assert ours.encode(text) == expected.ids, text
        assert ours.encode_with_offsets(text) == (expected.ids[1:-1], expected.offsets[1:-1]), text


def test_hand_worked_example(wp):
    ids = wp.encode("Hello, tokenizers!")
    assert [wp.id_to_token(i) for i in ids] == ["[CLS]", "hello", ",", "token", "##izer", "##s", "!", "[SEP]"]
    assert wp.encode("[UNK]") == [101, 100, 102]  # never split into [ unk ]
    assert wp.encode("x" * 101, add_special_tokens=False) == [wp.unk_token_id]  # longer than 100 characters
    assert wp.encode("", add_special_tokens=False) == []
    assert (wp.cls_token_id, wp.sep_token_id, wp.pad_token_id, wp.mask_token_id, wp.unk_token_id) == (
        101, 102, 0, 103, 100)
    assert wp.special_ids == {0, 100, 101, 102, 103} and wp.vocab_size == 30522


def test_real_text_ids_and_offsets_match_hugging_face(wp, hf_bert, real_lines):
    theirs = hf_bert(real_lines, return_offsets_mapping=True)
    assert wp.encode_batch(real_lines) == theirs["input_ids"]
    ours = wp(real_lines, return_offsets_mapping=True)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["offset_mapping"] == [[tuple(o) for o in row] for row in theirs["offset_mapping"]]


def test_random_unicode_matches_hugging_face(wp, bert_vocab):
    rng = random.Random(0)
    pool = [*range(32, 127)] * 3 + [9, 10, 32, 32, 0xA0, 0x3000, 0x85, 0x0B, 0x200B, 0xAD, 0x130, 0x3A3, 0x301]

    def char():
        cp = rng.choice(pool) if rng.random() < 0.5 else rng.randrange(0x80, 0x110000)
        return chr(cp if not 0xD800 <= cp < 0xE000 else 0x41)

    texts = ["".join(char() for _ in range(rng.randrange(40))) for _ in range(3000)]
    theirs = tokenizers.BertWordPieceTokenizer(str(bert_vocab), lowercase=True)
    assert wp.encode_batch(texts) == [e.ids for e in theirs.encode_batch(texts)]


def test_pairs_truncation_padding_match_hugging_face(wp, hf_bert, real_lines):
    a, b = real_lines[3000:3040], real_lines[5:45]
    for max_length in (8, 17, 32, 64):
        kwargs = dict(truncation=True, max_length=max_length, return_special_tokens_mask=True,
                      return_offsets_mapping=True)
        theirs, ours = hf_bert(a, b, **kwargs), wp(a, b, **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
            assert ours[key] == theirs[key], (key, max_length)
        assert ours["offset_mapping"] == [[tuple(o) for o in r] for r in theirs["offset_mapping"]]
    for padding in ("longest", "max_length"):
        theirs = hf_bert(a[:5], padding=padding, truncation=True, max_length=40)
        ours = wp(a[:5], padding=padding, truncation=True, max_length=40)
        assert ours == {k: theirs[k] for k in ours}
    single = wp("Hello world", "second one")
    assert single == {k: v for k, v in hf_bert("Hello world", "second one").items()}


def test_truncate_lengths_hand_worked():
    assert truncate_lengths(10, 3, 9) == (6, 3)
    assert truncate_lengths(3, 10, 9) == (3, 6)
    assert truncate_lengths(10, 10, 9) == (4, 5)
    assert truncate_lengths(7, 20, 12) == (6, 6)
    assert truncate_lengths(20, 7, 13) == (7, 6)
    assert truncate_lengths(5, None, 3) == (3, None)


def test_tensors_and_masks(wp, hf_bert):
    texts = ["a short one", "a somewhat longer sentence [MASK] here"]
    pt = wp(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    hf = hf_bert(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    assert set(pt) == set(hf)
    for k in pt:
        assert pt[k].dtype == torch.long and torch.equal(pt[k], hf[k]), k
    np_out = wp("one text", return_tensors="np")
    assert np_out["input_ids"].shape == (1, 4) and np_out["input_ids"].dtype == np.int64
    with pytest.raises(NanobertError, match="padding"):
        wp(texts, return_tensors="pt")


def test_decode(wp):
    ids = wp.encode("Hello, world! It's a co-op (3.5% of $100), isn't it?")
    assert wp.decode(ids) == "hello, world! it's a co-op (3.5% of $100), isn't it?"
    assert wp.decode(ids, skip_special_tokens=False).startswith("[CLS] hello")
    assert wp.decode(wp.encode("tokenizers unaffable")) == "tokenizers unaffable"  # ## pieces joined
    assert wp.decode([]) == ""


def test_offsets_restore_the_original_text(wp, real_lines):
    for text in real_lines[:4000]:
        ids, offsets = wp.encode_with_offsets(text)
        if not ids:
            continue
        covered = wp.restore(text, offsets)
        assert covered == text[offsets[0][0]:offsets[-1][1]]
        assert text.strip().startswith(covered[:1]) and covered == covered.strip()
        for i, (s, e) in zip(ids, offsets):  # each token is its own span of the original, normalized
            tok = wp.id_to_token(i)
            if tok != "[UNK]" and text[s:e].isascii():
                assert wp.normalizer.normalize(text[s:e]) == tok.removeprefix("##"), (text, tok)


def test_save_load_and_hugging_face_reads_our_files(wp, tmp_path, real_lines):
    transformers = pytest.importorskip("transformers")
    cased = WordPieceTokenizer(wp.vocab, lowercase=False)
    cased.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, WordPieceTokenizer) and again.normalizer == cased.normalizer
    assert again.encode("Hello World") == cased.encode("Hello World") != wp.encode("Hello World")
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert hf(real_lines[:500])["input_ids"] == cased.encode_batch(real_lines[:500])


def test_workers_give_the_same_ids(wp, real_lines):
    assert wp.encode_batch(real_lines[:3000], num_workers=2, chunk_size=500) == wp.encode_batch(real_lines[:3000])


def test_bad_vocab_files(tmp_path):
    with pytest.raises(NanobertError, match="not found"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
    cases = {
        "empty.txt": b"", "nospecial.txt": b"a\nb\nc\n", "dup.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\na\n",
        "blank.txt": b"[PAD]\n\n[UNK]\n", "latin1.txt": "[PAD]\ncaf\u00e9\n".encode("latin-1"),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(NanobertError) as err:
            WordPieceTokenizer.from_vocab_file(tmp_path / name)
        assert "\n" not in str(err.value), name
    with pytest.raises(NanobertError, match="no tokenizer"):
        load_tokenizer(tmp_path)
