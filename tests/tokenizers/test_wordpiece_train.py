"""Vocabulary training: the merge loop against a brute-force reference, and a trained WordPiece
vocabulary that Hugging Face's BertTokenizerFast reads to the same ids."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import pytest

from nanobert.errors import NanobertError
from nanobert.tokenizers import WordPieceTokenizer
from nanobert.tokenizers.trainer import count_words, learn_merges
from nanobert.tokenizers.wordpiece_train import join_pieces, spell


def brute_force_merges(word_counts, n_merges, min_frequency):
    """Recount every pair after every merge; the most frequent wins, ties to the pair of smaller
    symbol numbers (initial symbols numbered in sorted order, new ones as they appear)."""
    number = {s: i for i, s in enumerate(sorted({s for w in word_counts for s in w}))}
    words = dict(word_counts)
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], number[p[0]], number[p[1]]))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        number.setdefault(best[0] + best[1], len(number))
        new_words = Counter()
        for w, c in words.items():
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and (w[k], w[k + 1]) == best:
                    out.append(w[k] + w[k + 1])
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            new_words[tuple(out)] += c
        words = new_words
    return merges


def test_learn_merges_hand_worked():
    assert learn_merges({("a", "b", "c"): 3, ("a", "b"): 2}, 2) == [("a", "b"), ("ab", "c")]
    assert learn_merges({("a", "a", "a", "a"): 1}, 3, min_frequency=1) == [("a", "a"), ("aa", "aa")]
    assert spell("cat") == ("c", "##a", "##t") and join_pieces("##a", "##t") == "##at"


def test_learn_merges_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        words = {}
        for _ in range(rng.randrange(1, 40)):
            words[tuple(rng.choice("abcab") for _ in range(rng.randrange(1, 9)))] = rng.randrange(1, 6)
        for min_frequency in (1, 3):
            assert learn_merges(words, 15, min_frequency) == brute_force_merges(words, 15, min_frequency)


def test_trained_vocab_is_read_by_hugging_face_to_the_same_ids(tmp_path, shared_data):
    transformers = pytest.importorskip("transformers")
    train = (shared_data / "janeausten" / "emma.txt").read_text(encoding="utf-8").split("\n")[:6000]
    tok = WordPieceTokenizer.train(train, vocab_size=2000)
    assert tok.vocab_size == 2000
    assert [tok.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").count("\n") == 2000
    held_out = (shared_data / "janeausten" / "persuasion.txt").read_text(encoding="utf-8").split("\n")[:3000]
    held_out += [r.split("\t")[0] for r in (shared_data / "sst2" / "dev.tsv").read_text().split("\n")[1:300]]
    hf = transformers.BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    assert hf(held_out)["input_ids"] == tok.encode_batch(held_out)
    ids = tok.encode("Emma Woodhouse, handsome, clever, and rich", add_special_tokens=False)
    assert len(ids) < 15 and tok.unk_token_id not in ids


def test_training_from_strings_and_gzip(tmp_path):
    text = "the cat sat on the mat\nthe cat ate the rat\n" * 50
    gz = tmp_path / "c.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(text)
    a = WordPieceTokenizer.train([text], vocab_size=80, min_frequency=2)
    b = WordPieceTokenizer.train(gz, vocab_size=80, min_frequency=2)
    assert a.vocab == b.vocab
    assert a.encode("the cat", add_special_tokens=False) == [a.vocab["the"], a.vocab["cat"]]
    assert count_words(["a b a"], str.split) == {"a": 2, "b": 1}


def test_bad_corpora(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(NanobertError, match="empty"):
        WordPieceTokenizer.train([tmp_path / "empty.txt"], vocab_size=100)
    with pytest.raises(NanobertError, match=r"latin1.txt is not UTF-8 text .* at byte 3, line 1"):
        WordPieceTokenizer.train([tmp_path / "latin1.txt"], vocab_size=100)
    with pytest.raises(NanobertError, match="not found"):
        WordPieceTokenizer.train([Path(tmp_path / "missing.txt")], vocab_size=100)
    with pytest.raises(NanobertError, match="too small"):
        WordPieceTokenizer.train(["some text here"], vocab_size=10)
