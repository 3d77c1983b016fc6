"""The masked-prediction report: whole-word masking, right/wrong by hand-built models, the HTML page."""

from __future__ import annotations

import numpy as np
import pytest

from nanobert.cli import main
from nanobert.errors import NanobertError
from nanobert.infer.pipelines import FillMaskPipeline
from nanobert.infer.report import Example, MaskedWord, group_words, mask_and_predict, render_html, write_report


class _AlwaysPredicts:
    """A stand-in model whose best guess at every [MASK] is `token_id`."""

    name = "fixed"

    def __init__(self, token_id: int, vocab_size: int):
        self.logits = np.zeros(vocab_size, dtype=np.float32)
        self.logits[token_id] = 10.0

    def __call__(self, input_ids, attention_mask, token_type_ids):
        m = int(((input_ids == 103) & (attention_mask == 1)).sum())
        return np.tile(self.logits, (m, 1))  # (M, V)


def _pipe(tok, word: str) -> FillMaskPipeline:
    runner = _AlwaysPredicts(tok.token_to_id(word), tok.vocab_size)
    return FillMaskPipeline.from_runner(runner, tok, {"vocab_size": tok.vocab_size}, max_length=512)


def test_group_words(vocab_tokenizer):
    tok = vocab_tokenizer
    ids = tok.encode("the unaffable dog.", add_special_tokens=False)
    words = group_words(tok, ids)
    assert [tok.decode(w) for w in words] == ["the", "unaffable", "dog", "."]
    assert len(words[1]) > 1  # "unaffable" is several pieces, all in one word


def test_right_and_wrong_predictions(vocab_tokenizer):
    tok = vocab_tokenizer
    # a model that always says "the": every masked "the" is right, every other word wrong
    examples = mask_and_predict(_pipe(tok, "the"), ["the the the the", "cat sat on a mat"], mask_prob=0.5, seed=1)
    assert len(examples[0].masked) == 2 and examples[0].accuracy == 1.0
    assert len(examples[1].masked) == 2 and examples[1].accuracy == 0.0  # round(0.5 * 5) = 2 words masked
    assert all(m.predicted == "the" for e in examples for m in e.masked.values())
    assert all(m.original in "cat sat on a mat".split() for m in examples[1].masked.values())
    # punctuation is never masked; at least one word per text is
    only_one = mask_and_predict(_pipe(tok, "the"), ["hello , ."], mask_prob=0.01)
    assert list(only_one[0].masked) == [0]


def test_multi_piece_word_is_masked_whole(vocab_tokenizer):
    tok = vocab_tokenizer
    (e,) = mask_and_predict(_pipe(tok, "the"), ["unaffable"], mask_prob=1.0)
    pieces = len(tok.encode("unaffable", add_special_tokens=False))
    assert e.masked[0].original == "unaffable" and e.masked[0].predicted == " ".join(["the"] * pieces)
    with pytest.raises(NanobertError, match="mask_prob"):
        mask_and_predict(_pipe(tok, "the"), ["x"], mask_prob=0)
    with pytest.raises(NanobertError, match="no text"):
        mask_and_predict(_pipe(tok, "the"), ["...", ""])


def test_html_page(tmp_path):
    examples = [
        Example(["the", "<b>cat</b>", "sat", "."], {1: MaskedWord("<b>cat</b>", "dog", [("dog", 0.5), ("cat", 0.2)])}),
        Example(["a", "fine", "day"], {0: MaskedWord("a", "a", [("a", 0.9)]), 2: MaskedWord("day", "day", [("day", 0.7)])}),
    ]
    page = render_html(examples, title="tiny & test")
    assert "Accuracy <b>66.7%</b> (2 of 3 masked words, 2 texts)" in page
    assert page.count('class="m ok"') == 2 + 1 and page.count('class="m bad"') == 1 + 1  # + the legend
    assert "&lt;b&gt;cat&lt;/b&gt;" in page and "<b>cat</b>" not in page  # text is escaped
    assert 'title="top: dog 50%, cat 20%"' in page and "tiny &amp; test" in page
    assert "sat." in page  # no space before punctuation
    path = tmp_path / "r.html"
    assert write_report(path, examples) == pytest.approx(2 / 3)
    assert path.read_text(encoding="utf-8") == render_html(examples)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_cli_report_on_real_text(tiny_mlm_dir, shared_data, tmp_path, capsys):
    out = tmp_path / "report.html"
    src = shared_data / "janeausten" / sorted(p.name for p in (shared_data / "janeausten").glob("*.txt"))[0]
    assert main(["report", "--model", str(tiny_mlm_dir), "--input", str(src), "--limit", "5", "--out", str(out)]) == 0
    assert "masked words in 5 texts" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('class="example"') == 5
