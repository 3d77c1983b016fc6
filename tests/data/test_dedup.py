"""Quality filters and duplicate removal: hand-made copies found, near copies above the threshold found, below not."""

import gzip

import numpy as np
import pytest

from nanobert.data.dedup import (DedupConfig, DocumentFilter, MinHasher, lsh_bands, normalize, quality_problem,
                                 shingles)
from nanobert.data.sources import read_text_documents
from nanobert.errors import NanobertError

WORDS = ("the river runs past the old mill where the miller kept his grain and his horses through the long cold "
         "winter while the village children played along the frozen banks and the church bell rang at noon every "
         "day of the week except on market days when the square filled with carts of apples cheese and wool").split()


def _doc(seed: int, n: int = 120) -> str:
    """A random text of `n` words drawn from WORDS, two paragraphs."""
    rng = np.random.default_rng(seed)
    words = [WORDS[i] for i in rng.integers(len(WORDS), size=n)]
    return " ".join(words[:n // 2]) + ".\n" + " ".join(words[n // 2:]) + "."


def _edit(doc: str, share: float, seed: int) -> str:
    """`doc` with a `share` of its words replaced by words not in WORDS."""
    rng = np.random.default_rng(seed)
    words = doc.replace("\n", " \n ").split(" ")
    for i in rng.choice(len(words), size=int(share * len(words)), replace=False):
        if words[i] != "\n":
            words[i] = f"zz{i}"
    return " ".join(words).replace(" \n ", "\n")


def _jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingles(normalize(a).split(), n), shingles(normalize(b).split(), n)
    return len(sa & sb) / len(sa | sb)


def test_normalize_and_shingles_worked_examples():
    assert normalize("  The Cat -- sat!\n") == "the cat sat"
    assert normalize("Ｃａｆé_au lait") == "café au lait"  # NFKC folds full-width letters
    assert shingles(["a", "b", "c", "d"], 3) == {"a b c", "b c d"}
    assert shingles(["a", "b"], 3) == {"a b"}
    assert lsh_bands(0.8, 128)[0] * lsh_bands(0.8, 128)[1] <= 128


def test_exact_duplicates_differing_in_case_space_and_punctuation_are_removed():
    a, b = _doc(1), _doc(2)
    copy = "  " + a.upper().replace(".", "!").replace(" ", "  ") + "\n"
    filt = DocumentFilter(DedupConfig(dedup="exact"))
    kept = list(filt([a, b, copy, a]))
    assert kept == [a, b]
    assert filt.report()["removed"]["exact_duplicate"] == 2
    assert filt.report()["documents_in"] == 4 and filt.report()["documents_out"] == 2
    # without dedup every copy stays
    assert len(list(DocumentFilter(DedupConfig(dedup="none"))([a, b, copy, a]))) == 4


def test_lines_seen_in_an_earlier_document_are_cut():
    boiler = "This article is a stub and you can help the encyclopedia by expanding it."
    a, b = _doc(1) + "\n" + boiler, _doc(2) + "\n" + boiler
    filt = DocumentFilter(DedupConfig(dedup="exact"))
    kept = list(filt([a, b, boiler]))
    assert kept == [a, _doc(2)]
    assert filt.duplicate_lines == 2 and filt.report()["removed"]["all_lines_copied"] == 1


def test_near_duplicates_above_the_threshold_are_found_and_below_are_not():
    base = _doc(7, 300)
    close, far = _edit(base, 0.01, 1), _edit(base, 0.25, 2)
    assert _jaccard(base, close) > 0.85 and _jaccard(base, far) < 0.4  # the inputs are what the test says
    filt = DocumentFilter(DedupConfig(dedup="near", threshold=0.7))
    kept = list(filt([base, close, far, _doc(8, 300)]))
    assert kept == [base, far, _doc(8, 300)]
    assert filt.report()["removed"]["near_duplicate"] == 1
    # exact mode does not see a near copy
    assert len(list(DocumentFilter(DedupConfig(dedup="exact"))([base, close]))) == 2


def test_minhash_estimates_jaccard():
    hasher = MinHasher(256, seed=0)
    base = _doc(3, 400)
    for share in (0.03, 0.1, 0.2):
        other = _edit(base, share, 5)
        words_a, words_b = normalize(base).split(), normalize(other).split()
        sa, sb = hasher.signature(shingles(words_a, 5)), hasher.signature(shingles(words_b, 5))
        assert float((sa == sb).mean()) == pytest.approx(_jaccard(base, other), abs=0.1)


def test_many_injected_copies_are_all_found(shared_data, tmp_path):
    with gzip.open(shared_data / "enwiki" / "enwiki_clean.txt.gz", "rt", encoding="utf-8") as f:
        text = f.read(400_000)
    path = tmp_path / "wiki.txt"
    path.write_text(text[:text.rfind("\n = ")], encoding="utf-8")
    docs = list(read_text_documents(path))
    assert len(docs) > 100
    clean = list(DocumentFilter(DedupConfig(dedup="near"))(docs))
    rng = np.random.default_rng(0)
    copies = [_edit(clean[i], 0.01, i) for i in rng.choice(len(clean), size=len(clean) * 3 // 10, replace=False)]
    filt = DocumentFilter(DedupConfig(dedup="near"))
    kept = list(filt(clean + copies))
    long_copies = sum(len(c.split()) >= 60 for c in copies)  # 1% edits leave short texts' 5-gram sets too changed
    assert long_copies > len(copies) // 2
    assert filt.report()["removed"]["near_duplicate"] + filt.report()["removed"]["exact_duplicate"] >= long_copies
    assert len(kept) <= len(clean) + (len(copies) - long_copies)
    assert kept[:len(clean)] == clean  # no original document was taken for a copy of another


def test_quality_filters():
    cfg = DedupConfig()
    assert quality_problem("Too short.", cfg) == "too_short"
    assert quality_problem("| 1990 | 2,345 | 67.8% | 12 | 45 | 3,210 | 9.9 |", cfg) == "non_letters"
    menu = "\n".join(["Home page of the site", "Contact us here"] * 4 + ["A real line of text that is here."])
    assert quality_problem(menu, cfg) == "repeated_lines"
    assert quality_problem(_doc(1), cfg) is None
    off = DedupConfig(min_words=0, min_letter_fraction=0, max_repeated_line_fraction=1)
    assert quality_problem("Too short.", off) is None and quality_problem(menu, off) is None
    filt = DocumentFilter(cfg)
    assert list(filt(["Too short.", menu, _doc(1)])) == [_doc(1)]
    assert filt.report()["removed"] == {"too_short": 1, "non_letters": 0, "repeated_lines": 1, "exact_duplicate": 0,
                                        "near_duplicate": 0, "all_lines_copied": 0}


@pytest.mark.parametrize("cfg, message", [(DedupConfig(dedup="fuzzy"), "unknown dedup mode"),
                                         (DedupConfig(dedup="near", threshold=0), "threshold")])
def test_bad_settings_are_clear_errors(cfg, message):
    with pytest.raises(NanobertError, match=message):
        DocumentFilter(cfg)
