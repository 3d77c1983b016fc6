"""A masked-prediction report: hide random words, let the model fill them in, show the result as HTML.

    examples = mask_and_predict(FillMaskPipeline("runs/mlm"), texts, mask_prob=0.15)
    write_report("report.html", examples, title="runs/mlm")

Whole words are masked (every WordPiece of a chosen word becomes [MASK]); the prediction for a
word is the model's best piece at each of its masks, joined. In the page each masked word shows
the prediction in green when it equals the original word, and in red with the original beside it
when not; hovering shows the top candidates. The header gives the accuracy over all masked words.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from nanobert.errors import NanobertError
from nanobert.fileio import write_text
from nanobert.infer.pipelines import FillMaskPipeline


@dataclass
class MaskedWord:
    original: str
    predicted: str
    candidates: list[tuple[str, float]]  # the first mask's top-k (piece, probability)

    @property
    def correct(self) -> bool:
        return self.predicted == self.original


@dataclass
class Example:
    words: list[str]  # the text as whole words
    masked: dict[int, MaskedWord] = field(default_factory=dict)  # word index -> prediction

    @property
    def accuracy(self) -> float:
        return sum(m.correct for m in self.masked.values()) / max(len(self.masked), 1)


def group_words(tokenizer, ids: list[int]) -> list[list[int]]:
    """Split token ids (no [CLS]/[SEP]) into words: a token and the "##" pieces after it.

    Example: pieces [the, jump, ##ed, .] -> [[the], [jump, ##ed], [.]].
    """
    words: list[list[int]] = []
    for i in ids:
        if words and tokenizer.id_to_token(i).startswith("##"):
            words[-1].append(i)
        else:
            words.append([i])
    return words


def mask_and_predict(
    pipe: FillMaskPipeline, texts: Sequence[str], mask_prob: float = 0.15, seed: int = 0, top_k: int = 3
) -> list[Example]:
    """Mask about `mask_prob` of the words of each text (at least one, letters or digits only) and predict them."""
    if not 0 < mask_prob <= 1:
        raise NanobertError(f"mask_prob must be in (0, 1], got {mask_prob}")
    tok, rng = pipe.tokenizer, random.Random(seed)
    examples, inputs, where = [], [], []
    for text in texts:
        words = group_words(tok, tok.encode(text, add_special_tokens=False))
        while sum(map(len, words)) > pipe.max_length - 2:  # cut long texts at a word boundary
            words.pop()
        candidates = [i for i, w in enumerate(words) if any(c.isalnum() for c in tok.decode(w))]
        if not candidates:
            continue
        chosen = sorted(rng.sample(candidates, max(1, round(mask_prob * len(candidates)))))
        ids = [tok.cls_token_id]
        for i, w in enumerate(words):
            ids += [tok.mask_token_id] * len(w) if i in chosen else w
        inputs.append(ids + [tok.sep_token_id])
        where.append([(i, len(words[i])) for i in chosen])
        examples.append(Example([tok.decode(w) for w in words]))
    if not examples:
        raise NanobertError("no text with a word to mask: give texts with letters or digits")
    for example, chosen, per_mask in zip(examples, where, pipe.predict_ids(inputs, top_k)):
        k = 0
        for i, pieces in chosen:  # the word's masks are consecutive in per_mask
            best = [per_mask[k + j][0]["token_id"] for j in range(pieces)]
            candidates = [(c["token"], c["score"]) for c in per_mask[k]]
            example.masked[i] = MaskedWord(example.words[i], tok.decode(best), candidates)
            k += pieces
    return examples


_NO_SPACE_BEFORE = set(".,;:!?)]}%'\"")
_NO_SPACE_AFTER = set("([{$")

_STYLE = """
body { font: 16px/1.7 Georgia, serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font: 600 1.4rem system-ui, sans-serif; margin-bottom: .2rem; }
.summary { font: 1rem system-ui, sans-serif; color: #444; margin-bottom: 1.5rem; }
.summary b { font-size: 1.3rem; color: #111; }
.legend span { margin-right: 1rem; }
.example { border-top: 1px solid #ddd; padding: .8rem 0; }
.meta { font: .8rem system-ui, sans-serif; color: #888; }
.m { border-radius: 4px; padding: 0 .25rem; font-weight: 600; cursor: help; }
.ok { background: #d9f2dc; color: #145a1f; border: 1px solid #7cc68a; }
.bad { background: #fbe0e0; color: #8a1414; border: 1px solid #e08a8a; }
.orig { font-weight: 400; color: #555; font-size: .8em; margin-left: .25rem; }
.orig::before { content: "was "; font-style: italic; }
"""


def _join(parts: list[tuple[str, str]]) -> str:
    """Join (plain word, html) pairs with spaces where English puts them."""
    out = []
    for k, (word, markup) in enumerate(parts):
        glue = k == 0 or word[:1] in _NO_SPACE_BEFORE or parts[k - 1][0][-1:] in _NO_SPACE_AFTER
        out.append(markup if glue else " " + markup)
    return "".join(out)


def render_html(examples: Sequence[Example], title: str = "masked predictions") -> str:
    """The report page: header with the accuracy, then each text with its masked words coloured."""
    total = sum(len(e.masked) for e in examples)
    right = sum(m.correct for e in examples for m in e.masked.values())
    blocks = []
    for n, e in enumerate(examples, 1):
        parts = []
        for i, word in enumerate(e.words):
            m = e.masked.get(i)
            if m is None:
                parts.append((word, html.escape(word)))
                continue
            tip = html.escape(", ".join(f"{t} {p:.0%}" for t, p in m.candidates), quote=True)
            cls = "ok" if m.correct else "bad"
            orig = "" if m.correct else f'<span class="orig">{html.escape(m.original)}</span>'
            parts.append((word, f'<span class="m {cls}" title="top: {tip}">{html.escape(m.predicted)}{orig}</span>'))
        meta = f"text {n} · {sum(m.correct for m in e.masked.values())}/{len(e.masked)} right"
        blocks.append(f'<div class="example"><div class="meta">{meta}</div>{_join(parts)}</div>')
    accuracy = right / max(total, 1)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>Masked-word predictions: {html.escape(title)}</h1>\n"
        f'<div class="summary">Accuracy <b>{accuracy:.1%}</b> ({right} of {total} masked words, {len(examples)} texts)'
        f'<div class="legend"><span class="m ok">right</span><span class="m bad">wrong<span class="orig">original</span></span>'
        f"hover a word for the model's top candidates</div></div>\n" + "\n".join(blocks) + "\n</body></html>\n"
    )


def write_report(path: str | Path, examples: Sequence[Example], title: str = "masked predictions") -> float:
    """Write the HTML report to `path` (atomically); returns the accuracy."""
    write_text(path, render_html(examples, title))
    total = sum(len(e.masked) for e in examples)
    return sum(m.correct for e in examples for m in e.masked.values()) / max(total, 1)
