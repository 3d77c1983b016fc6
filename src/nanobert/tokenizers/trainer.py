"""Learning a subword vocabulary: count the words of a corpus, then merge the most frequent pairs.

Both trainers use this: byte-level BPE merges byte characters (`"h" + "e" -> "he"`); WordPiece
merges characters whose non-initial ones carry "##" (`"h" + "##e" -> "he"`, `"##e" + "##s" -> "##es"`),
which is how Hugging Face's WordPiece trainer learns its vocabulary as well.

The merge loop keeps, for every adjacent pair, its count (weighted by word frequency) and the
words it occurs in; a heap finds the most frequent pair. After a merge only the words that held
the pair change, and only their pair counts are updated. Heap entries are not removed when a
count drops: a popped entry whose count is stale is pushed back with its current count.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterator

from tqdm.auto import tqdm

from nanobert.data.textio import open_text
from nanobert.errors import NanobertError

log = logging.getLogger(__name__)


def iter_lines(files_or_texts, progress: bool = False) -> Iterator[str]:
    """Lines of the corpus: each item is a file (a Path, or a str naming an existing file; `.gz` is
    read compressed) or else a text. A single path or text may be passed without a list."""
    if isinstance(files_or_texts, (str, os.PathLike)):
        files_or_texts = [files_or_texts]
    for item in files_or_texts:
        # A str is a file name only if it looks like one (no whitespace) and the file exists.
        is_file = isinstance(item, os.PathLike) or (isinstance(item, str) and len(item) < 4096
                                                   and not any(c.isspace() for c in item) and os.path.isfile(item))
        if not is_file:
            if not isinstance(item, str):
                raise NanobertError(f"training input must be file paths or strings, got {type(item).__name__}")
            yield from item.split("\n")
            continue
        path = Path(item)
        if not path.is_file():
            raise NanobertError(f"training file not found: {path}")
        with open_text(path, "training file") as f:
            yield from tqdm(f, desc=f"reading {path.name}", unit=" lines", disable=not progress)


def count_words(files_or_texts, split: Callable[[str], list[str]], progress: bool = False) -> Counter:
    """How often each word (as cut by `split`) occurs. Example: `["a b a"]`, str.split -> {a: 2, b: 1}."""
    counts: Counter = Counter()
    for line in iter_lines(files_or_texts, progress):
        counts.update(split(line))
    if not counts:
        raise NanobertError("the training corpus is empty: give files with text in them")
    return counts


def learn_merges(word_counts: dict[tuple[str, ...], int], n_merges: int, min_frequency: int = 2,
                 join: Callable[[str, str], str] = str.__add__, progress: bool = False) -> list[tuple[str, str]]:
    """Up to `n_merges` merges, most frequent pair first, while its count >= `min_frequency`.

    Example: `{("a", "b", "c"): 3, ("a", "b"): 2}`, 2 merges -> `[("a", "b"), ("ab", "c")]`.
    """
    # Symbols become ints and a pair (x, y) the int x << 21 | y: cheaper to hash than tuples of str.
    names = sorted({s for w in word_counts for s in w})
    index = {s: i for i, s in enumerate(names)}
    words = [[index[s] for s in w] for w in word_counts]
    freqs = list(word_counts.values())
    pair_counts: dict[int, int] = defaultdict(int)
    where: dict[int, set[int]] = defaultdict(set)
    for i, (w, c) in enumerate(zip(words, freqs)):
        for x, y in zip(w, w[1:]):
            pair_counts[x << 21 | y] += c
            where[x << 21 | y].add(i)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    bar = tqdm(total=n_merges, desc="merges", unit=" merges", disable=not progress)
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale entry: the count fell since it was pushed
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_frequency:
            break
        a, b = pair >> 21, pair & 0x1FFFFF
        merges.append((names[a], names[b]))
        bar.update(1)
        name = join(names[a], names[b])
        new = index.get(name)
        if new is None:  # else the same string was already made from another pair: one symbol
            new = index[name] = len(names)
            names.append(name)
        grown: set[int] = set()
        for wi in where.pop(pair):
            w, c = words[wi], freqs[wi]
            i = 0
            while True:  # each occurrence of a b: x a b y -> x new y; pairs (x, a), (b, y) lose c, the new ones gain c
                try:
                    i = w.index(a, i)
                except ValueError:
                    break
                if i + 1 == len(w):
                    break
                if w[i + 1] != b:
                    i += 1
                    continue
                if i > 0:
                    x = w[i - 1]  # may be `new` from the previous occurrence: the changes then cancel out
                    pair_counts[x << 21 | a] -= c
                    p = x << 21 | new
                    pair_counts[p] += c
                    where[p].add(wi)
                    grown.add(p)
                w[i:i + 2] = [new]
                if i + 1 < len(w):
                    y = w[i + 1]
                    pair_counts[b << 21 | y] -= c
                    p = new << 21 | y
                    pair_counts[p] += c
                    where[p].add(wi)
                    grown.add(p)
                i += 1
        del pair_counts[pair]
        for p in grown:
            heapq.heappush(heap, (-pair_counts[p], p))
    bar.close()
    log.info("learned %d merges", len(merges))
    return merges


def top_symbols(word_counts: dict[tuple[str, ...], int], limit: int | None) -> set[str]:
    """The `limit` most frequent symbols (all when None). Example: `{("a", "b"): 2, ("a",): 1}`, 1 -> {"a"}."""
    counts: Counter = Counter()
    for w, c in word_counts.items():
        for s in w:
            counts[s] += c
    return {s for s, _ in counts.most_common(limit)}


def filter_words(word_counts: dict[tuple[str, ...], int], keep: set[str]) -> dict[tuple[str, ...], int]:
    """Only the words made entirely of symbols in `keep`."""
    return {w: c for w, c in word_counts.items() if all(s in keep for s in w)}
