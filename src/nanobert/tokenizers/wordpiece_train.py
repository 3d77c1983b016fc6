"""Training a WordPiece vocabulary from scratch.

1. split the corpus into words exactly as encoding will (`BertNormalizer.words`) and count them;
2. spell each word as characters, non-initial ones with "##": "hello" -> h ##e ##l ##l ##o;
3. keep the `limit_alphabet` most frequent characters (a word with any other character is left
   out: it will encode as [UNK]); every kept character enters the vocabulary both as "c" and "##c",
   so that every word made of known characters can be spelled;
4. merge the most frequent adjacent pair until the vocabulary is full (`trainer.learn_merges`).

`WordPieceTokenizer.train` (wordpiece.py) calls `learn_wordpiece_vocab`; this module does not import it.

The vocabulary is [PAD] [UNK] [CLS] [SEP] [MASK], the alphabet, then merged pieces in merge
order. `save(dir)` writes `vocab.txt` + `tokenizer_config.json`, which Hugging Face's
`BertTokenizerFast(vocab=dir/"vocab.txt")` reads to the same ids.
"""

from __future__ import annotations

import logging

from nanobert.errors import NanobertError
from nanobert.tokenizers.normalize import BertNormalizer
from nanobert.tokenizers.trainer import count_words, filter_words, learn_merges, top_symbols

log = logging.getLogger(__name__)


def spell(word: str) -> tuple[str, ...]:
    """Example: `spell("cat")` -> `("c", "##a", "##t")`."""
    return (word[0], *("##" + c for c in word[1:]))


def join_pieces(a: str, b: str) -> str:
    """Example: `join_pieces("c", "##at")` -> `"cat"`; `join_pieces("##a", "##t")` -> `"##at"`."""
    return a + b[2:]


def learn_wordpiece_vocab(files_or_texts, vocab_size: int, normalizer: BertNormalizer, specials: list[str],
                          min_frequency: int = 2, limit_alphabet: int = 1000, max_input_chars_per_word: int = 100,
                          progress: bool = False) -> list[str]:
    """The tokens of a vocabulary of up to `vocab_size` learned from files or strings, in id order.

    `files_or_texts`: paths (`.gz` read compressed) and/or strings; see `trainer.iter_lines`.
    `WordPieceTokenizer.train` turns them into a tokenizer.
    """
    counts = count_words(files_or_texts, normalizer.words, progress=progress)
    counts = {w: c for w, c in counts.items() if len(w) <= max_input_chars_per_word}
    chars = top_symbols({tuple(w): c for w, c in counts.items()}, limit_alphabet)
    alphabet = sorted(chars) + sorted("##" + c for c in chars)
    words = filter_words({spell(w): c for w, c in counts.items()}, set(alphabet))
    n_merges = vocab_size - len(specials) - len(alphabet)
    if n_merges < 0:
        raise NanobertError(f"vocab_size={vocab_size} is too small for the {len(specials)} special tokens and "
                            f"{len(alphabet)} alphabet pieces: raise it or lower limit_alphabet")
    log.info("%d distinct words, alphabet of %d characters, learning up to %d merges", len(words), len(chars),
             n_merges)
    tokens = specials + alphabet
    seen = set(tokens)
    # A merge can recreate a piece that exists already ("##a" + "##b" and "##ab" reached two ways): skip it.
    for a, b in learn_merges(words, n_merges, min_frequency, join=join_pieces, progress=progress):
        piece = join_pieces(a, b)
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    if len(tokens) < vocab_size:
        log.info("the corpus supports only %d tokens (of %d asked): no pair occurs %d times more", len(tokens),
                 vocab_size, min_frequency)
    return tokens
