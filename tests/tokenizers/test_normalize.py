"""BERT normalization and word split: hand-worked cases, and Hugging Face's on a ninth of all code
points plus every one where Unicode versions disagree."""

from __future__ import annotations

import sys

import pytest

from nanobert.tokenizers import unicode_compat as compat
from nanobert.tokenizers.normalize import BertNormalizer, is_control, is_punctuation, lower_char

hf_normalizers = pytest.importorskip("tokenizers.normalizers")
hf_pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")


def _spaced(codepoints) -> str:
    """Each code point after an "a" (a starter: NFD's reordering never moves a mark across it).
    Surrogates are left out: they cannot be passed to Hugging Face's tokenizers."""
    return "".join("a" + chr(cp) for cp in codepoints if not 0xD800 <= cp < 0xE000)


# (benchmarks/tokenizer_parity.py --codepoints checks every code point; here every 9th, plus every
# one that Hugging Face and unicodedata classify differently.)
SAMPLE = _spaced(sorted(set(range(0, sys.maxunicode + 1, 9)) | compat.KEPT_FORMAT | compat.EXTRA_PUNCTUATION
                        | compat.NOT_PUNCTUATION | compat.EXTRA_NONSPACING | compat.NOT_NONSPACING
                        | compat.NOT_DECOMPOSED | set(compat.EXTRA_LOWER) | set(range(0x2B800, 0x2B940))))


def _check(ours: str, theirs: str):
    if ours != theirs:
        i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        pytest.fail(f"differs at {i}: ours {ours[i - 2:i + 3]!r}, theirs {theirs[i - 2:i + 3]!r}")


@pytest.mark.parametrize("clean,cjk,strip,lower", [
    (True, True, None, True),      # BERT uncased
    (True, False, False, False),   # cleaning alone
    (False, True, False, False),   # CJK padding alone
    (False, False, True, False),   # accent stripping alone
    (False, False, False, True),   # lowercasing alone
    (True, True, False, True),     # lowercase, keep accents
    (True, True, True, False),     # cased, strip accents
])
def test_each_normalization_step_matches_hugging_face(clean, cjk, strip, lower):
    theirs = hf_normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=cjk, strip_accents=strip,
                                           lowercase=lower)
    ours = BertNormalizer(lowercase=lower, strip_accents=strip, clean_text=clean, handle_chinese_chars=cjk)
    _check(ours.normalize(SAMPLE), theirs.normalize_str(SAMPLE))


def test_word_split_matches_hugging_face():
    theirs = [w for w, _ in hf_pre_tokenizers.BertPreTokenizer().pre_tokenize_str(SAMPLE)]
    ours = BertNormalizer(lowercase=False, strip_accents=False, clean_text=False, handle_chinese_chars=False)
    assert ours.words(SAMPLE) == theirs


def test_hand_worked_examples():
    n = BertNormalizer()
    assert n.words("Héllo, WORLD!") == ["hello", ",", "world", "!"]
    assert n.words("  \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert BertNormalizer(lowercase=False).words("HeLLo!how Are") == ["HeLLo", "!", "how", "Are"]
    assert BertNormalizer(strip_accents=False).words("HäLLo") == ["hällo"]
    assert BertNormalizer(lowercase=False, strip_accents=True).words("HäLLo") == ["HaLLo"]
    assert n.words("\u535a\u63a8zz") == ["\u535a", "\u63a8", "zz"]  # one word per ideograph
    assert BertNormalizer(strip_accents=False).words("ひらがな한국어") == ["ひらがな한국어"]  # not split
    assert n.words("soft\u00adhyphen zero\u200bwidth nul\x00l bell\x07l \ufffd") == [
        "softhyphen", "zerowidth", "null", "belll"]
    assert n.words("$5 `a` 1+1=2 a_b ~x^") == ["$", "5", "`", "a", "`", "1", "+", "1", "=", "2", "a", "_", "b",
                                               "~", "x", "^"]
    assert n.words("ΟΔΟΣ") == ["οδοσ"]  # per-character lowercasing: no final sigma
    assert n.words("a\x0bb a\u00a0b") == ["ab", "a", "b"]  # \x0b is a control (dropped), NBSP a space
    assert n.words("") == [] and n.words(" \t\n") == []


def test_character_classes():
    assert is_control("\u00ad") and is_control("\x07") and is_control("\ufeff")
    assert not is_control("\t") and not is_control("a") and not is_control("\u0378")  # unassigned: kept
    assert is_punctuation("$") and is_punctuation("¿") and is_punctuation("—") and not is_punctuation("€")
    assert lower_char("Σ") == "σ" and lower_char("İ") == "i\u0307"


def test_offsets_split_the_same_words(real_lines):
    n = BertNormalizer()
    for line in real_lines[:3000]:
        assert [w for w, _ in n.words_with_offsets(line)] == n.words(line)
