"""Cleaner pretraining text: quality filters, exact and near-duplicate removal over a stream of documents.

    filt = DocumentFilter(DedupConfig(dedup="near", threshold=0.8))
    for doc in filt(read_documents(files)):      # documents that pass, in order
        ...
    meta["filters"] = filt.report()              # what each filter removed

A document (paragraphs separated by newlines, as `data.sources` yields them) goes through, in order:

1. quality filters (each may be switched off): `too_short` (fewer than `min_words` words),
   `non_letters` (letters are less than `min_letter_fraction` of its non-space characters: tables,
   numbers, markup), `repeated_lines` (more than `max_repeated_line_fraction` of its lines are copies
   of another of its lines: menus, lists of the same boilerplate);
2. `dedup="exact"` or `"near"`: `exact_duplicate` when its normalised text (lower case, letters and
   digits only, single spaces) hashes like an earlier document's; and lines of at least
   `min_line_chars` normalised characters already seen in an earlier document are cut from it
   (`duplicate_lines`: boilerplate shared across documents); a document left with no text is dropped
   (`all_lines_copied`);
3. `dedup="near"`: `near_duplicate` when its estimated Jaccard similarity with an earlier kept document,
   over sets of `shingle`-word shingles, is at least `threshold` (MinHash with `num_perm` hash functions,
   found through LSH bands, then checked on the signatures).

Memory: one 8-byte hash per kept document and per distinct long line, plus `num_perm` x 4 bytes per
kept document in "near" mode (128: ~0.5 KB; 100,000 documents ~ 50 MB).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import numpy as np

from nanobert.errors import NanobertError

_NON_WORD = re.compile(r"[^\w]+|_")
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)


@dataclass
class DedupConfig:
    dedup: str = "none"  # none | exact (hashes of normalised documents and lines) | near (exact + MinHash LSH)
    threshold: float = 0.8  # near: estimated Jaccard similarity of shingle sets at which a document is a copy
    shingle: int = 5  # near: words per shingle (5-grams: a reworded sentence changes few of them)
    num_perm: int = 128  # near: MinHash functions (error of the Jaccard estimate ~ 1/sqrt(num_perm) ~ 0.09)
    seed: int = 1  # near: draws the hash functions
    min_line_chars: int = 40  # exact/near: shorter lines ("References.", "Early life.") are never cut as copies
    min_words: int = 5  # too_short below this many words; 0 switches the filter off
    min_letter_fraction: float = 0.6  # non_letters below this share of letters among non-space characters; 0: off
    max_repeated_line_fraction: float = 0.3  # repeated_lines above this share of duplicated lines; 1: off


def normalize(text: str) -> str:
    """Text as compared for exact duplicates: NFKC, lower case, only letters and digits, single spaces.

    Example: "  The Cat -- sat!\\n" -> "the cat sat".
    """
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())


def text_hash(text: str) -> bytes:
    """8-byte BLAKE2 digest (a collision between two different texts is ~1 in 10^19)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def shingles(words: list[str], n: int) -> set[str]:
    """The distinct runs of `n` consecutive words (the whole text when it has fewer).

    Example: shingles(["a", "b", "c", "d"], 3) -> {"a b c", "b c d"}.
    """
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm that best separate pairs above / below `threshold`.

    A pair of Jaccard similarity s shares a band with probability 1 - (1 - s^rows)^bands; this picks the
    split minimising the (equally weighted) areas of false positives below the threshold and false
    negatives above it, as datasketch's MinHashLSH does. Example: lsh_bands(0.8, 128) -> (9, 13).
    """
    s = np.linspace(0.0, 1.0, 201)
    best, best_cost = (1, num_perm), np.inf
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        p = 1 - (1 - s ** rows) ** bands
        cost = np.trapezoid(np.where(s < threshold, p, 0.0), s) + np.trapezoid(np.where(s >= threshold, 1 - p, 0.0), s)
        if cost < best_cost:
            best, best_cost = (bands, rows), cost
    return best


class MinHasher:
    """MinHash signatures: (num_perm,) uint32, the minimum of each of num_perm universal hashes over a set."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, int(_MERSENNE), num_perm, dtype=np.uint64)[:, None]  # (P, 1)
        self.b = rng.integers(0, int(_MERSENNE), num_perm, dtype=np.uint64)[:, None]  # (P, 1)

    def signature(self, items: Iterable[str]) -> np.ndarray:
        h = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in items), dtype=np.uint64)  # (N,)
        if h.size == 0:
            return np.full(self.a.shape[0], np.iinfo(np.uint32).max, dtype=np.uint32)
        with np.errstate(over="ignore"):  # the products wrap at 2^64 on purpose, as in datasketch
            phv = ((self.a * h[None, :] + self.b) % _MERSENNE) & _MAX_HASH  # (P, N)
        return phv.min(axis=1).astype(np.uint32)  # (P,)


class NearDuplicateIndex:
    """LSH over MinHash signatures: `add_if_new(sig)` is False when a stored signature agrees on >= threshold."""

    def __init__(self, threshold: float, num_perm: int):
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self.buckets: list[dict[bytes, int]] = [{} for _ in range(self.bands)]
        self.signatures: list[np.ndarray] = []

    def add_if_new(self, sig: np.ndarray) -> bool:
        keys = [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]
        for band, key in zip(self.buckets, keys):
            other = band.get(key)
            if other is not None and float((self.signatures[other] == sig).mean()) >= self.threshold:
                return False
        idx = len(self.signatures)
        self.signatures.append(sig)
        for band, key in zip(self.buckets, keys):
            band.setdefault(key, idx)
        return True


def quality_problem(doc: str, cfg: DedupConfig) -> str | None:
    """The first quality filter `doc` fails ("too_short", "non_letters", "repeated_lines"), or None."""
    if cfg.min_words and len(doc.split()) < cfg.min_words:
        return "too_short"
    chars = [c for c in doc if not c.isspace()]
    if cfg.min_letter_fraction and chars and sum(c.isalpha() for c in chars) / len(chars) < cfg.min_letter_fraction:
        return "non_letters"
    lines = [normalize(line) for line in doc.split("\n")]
    lines = [line for line in lines if line]
    if len(lines) > 1 and 1 - len(set(lines)) / len(lines) > cfg.max_repeated_line_fraction:
        return "repeated_lines"
    return None


class DocumentFilter:
    """Call on an iterable of documents to get those that pass (see the module docstring); `report()` counts."""

    FILTERS = ("too_short", "non_letters", "repeated_lines", "exact_duplicate", "near_duplicate", "all_lines_copied")

    def __init__(self, cfg: DedupConfig | None = None):
        self.cfg = cfg = cfg or DedupConfig()
        if cfg.dedup not in ("none", "exact", "near"):
            raise NanobertError(f"unknown dedup mode {cfg.dedup!r}; use none, exact or near")
        if not 0 < cfg.threshold <= 1:
            raise NanobertError(f"the near-duplicate threshold must be in (0, 1], got {cfg.threshold}")
        if cfg.shingle < 1 or cfg.num_perm < 2:
            raise NanobertError("shingle must be >= 1 and num_perm >= 2")
        self.removed = dict.fromkeys(self.FILTERS, 0)
        self.documents_in = self.documents_out = self.duplicate_lines = 0
        self._docs: set[bytes] = set()
        self._lines: set[bytes] = set()
        self._hasher = MinHasher(cfg.num_perm, cfg.seed) if cfg.dedup == "near" else None
        self._index = NearDuplicateIndex(cfg.threshold, cfg.num_perm) if cfg.dedup == "near" else None

    def __call__(self, docs: Iterable[str]) -> Iterator[str]:
        for doc in docs:
            self.documents_in += 1
            kept = self.check(doc)
            if kept is not None:
                self.documents_out += 1
                yield kept

    def check(self, doc: str) -> str | None:
        """`doc` as kept (copied lines cut), or None when a filter removes it (and counts it)."""
        reason = quality_problem(doc, self.cfg)
        if reason is None and self.cfg.dedup != "none":
            norm = normalize(doc)
            digest = text_hash(norm)
            if digest in self._docs:
                reason = "exact_duplicate"
            elif self._index is not None and not self._index.add_if_new(
                    self._hasher.signature(shingles(norm.split(), self.cfg.shingle))):
                reason = "near_duplicate"
            else:
                self._docs.add(digest)
                doc = self._cut_seen_lines(doc)
                reason = None if doc else "all_lines_copied"
        if reason is not None:
            self.removed[reason] += 1
            return None
        return doc

    def _cut_seen_lines(self, doc: str) -> str:
        """Drop long lines an earlier document already had; remember this document's long lines."""
        keep, new = [], set()
        for line in doc.split("\n"):
            norm = normalize(line)
            if len(norm) < self.cfg.min_line_chars:
                keep.append(line)
                continue
            digest = text_hash(norm)
            if digest in self._lines:
                self.duplicate_lines += 1
                continue
            new.add(digest)
            keep.append(line)
        self._lines |= new
        return "\n".join(keep) if any(line.strip() for line in keep) else ""

    def report(self) -> dict:
        """For meta.json: documents in and out, documents each filter removed, copied lines cut, the settings."""
        return {"documents_in": self.documents_in, "documents_out": self.documents_out,
                "removed": dict(self.removed), "duplicate_lines": self.duplicate_lines, "settings": asdict(self.cfg)}
