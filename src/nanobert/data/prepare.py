"""Turn a text corpus into memory-mapped token shards that training reads without parsing anything.

    meta = prepare(PrepareConfig(inputs=["corpus.txt.gz"], tokenizer="tok/", out_dir="data/wiki"))

Two ways to cut text into training sequences of at most `seq_len` tokens:

- "segment" (text segmentation): each paragraph is split into sentences and whole sentences are
  packed greedily into a sequence until the next one would not fit; a document ends its last
  sequence. Only a sentence longer than a whole sequence is cut.
- "split" (token splitting): each document's tokens are joined into one stream (documents
  separated by [SEP], or <|endoftext|> for GPT tokenizers) and the stream is cut into blocks.

BERT-style tokenizers (with [CLS]/[SEP]) get `[CLS] ... [SEP]` around every sequence. Each sequence
goes to train, val or test by a seeded random draw, so the same inputs and seed give the same split.

The output directory (written whole, atomically) holds, per split, shards of up to `shard_size`
sequences as two `.npy` files (np.load(..., mmap_mode="r")):

    train-00000.tokens.npy    all token ids of the shard, concatenated; uint16 if the vocab fits, else uint32
    train-00000.offsets.npy   int64, sequence i is tokens[offsets[i]:offsets[i + 1]]

plus `meta.json` (tokenizer, sequence length, counts, split fractions, seed) and the tokenizer itself
in `tokenizer/`. Tokenization runs in `num_workers` processes. With `dedup` "exact" or "near" the
documents first go through `data.dedup.DocumentFilter` (quality filters, duplicate documents and
lines), and meta.json's "filters" says what it removed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from nanobert.data.dedup import DedupConfig, DocumentFilter
from nanobert.data.sources import expand_inputs, read_documents
from nanobert.errors import NanobertError
from nanobert.fileio import output_dir
from nanobert.tokenizers import load_tokenizer

log = logging.getLogger(__name__)
FORMAT = "nanobert-token-shards-1"
SPLITS = ("train", "val", "test")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])")


@dataclass
class PrepareConfig:
    inputs: list[str] = field(default_factory=list)  # files or directories (.txt, .txt.gz, .jsonl, .parquet)
    tokenizer: str = ""  # directory of a saved tokenizer (vocab.txt for WordPiece)
    out_dir: str = "data/prepared"
    seq_len: int = 128  # tokens per sequence, special tokens included
    mode: str = "segment"  # segment: pack whole sentences | split: cut the token stream into blocks
    val_fraction: float = 0.005  # share of sequences for validation (enwiki: ~500 sequences)
    test_fraction: float = 0.005  # share held out for the final test
    seed: int = 0  # decides the split; same inputs + same seed = same split
    shard_size: int = 50_000  # sequences per shard file (enwiki: 3 train shards, read round-robin)
    min_tokens: int = 8  # drop sequences shorter than this (stray headings), special tokens included
    text_column: str = "text"  # field holding the text in JSONL / parquet inputs
    num_workers: int = 0  # tokenizing processes; 0: one per CPU core
    chunk_docs: int = 64  # documents handed to a worker at a time
    dedup: str = "none"  # none | exact | near: drop duplicate documents (and low-quality ones) first (data.dedup)
    near_threshold: float = 0.8  # near: estimated Jaccard similarity at which a document counts as a copy


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph: cut after . ! ? followed by space and a capital, digit or quote.

    Example: "It rained. We stayed in! Did you?" -> ["It rained.", "We stayed in!", "Did you?"].
    """
    return [s for s in _SENTENCE_END.split(paragraph.strip()) if s]


def pack_sentences(sentences: list[list[int]], body_len: int) -> list[list[int]]:
    """Greedily pack whole sentences (token lists) into chunks of at most `body_len` tokens.

    Example: sentences [[1, 2], [3, 4, 5], [6]], body_len 4 -> [[1, 2], [3, 4, 5, 6]];
    a sentence longer than body_len is cut: [[1, 2, 3, 4, 5]], body_len 2 -> [[1, 2], [3, 4], [5]].
    """
    out: list[list[int]] = []
    cur: list[int] = []
    for sent in sentences:
        if not sent:
            continue
        if len(cur) + len(sent) <= body_len:
            cur.extend(sent)
            continue
        if cur:
            out.append(cur)
        # Cut a long sentence by index: slicing off the rest at every cut would copy it again each time.
        start = 0
        while len(sent) - start > body_len:
            out.append(sent[start:start + body_len])
            start += body_len
        cur = sent[start:]
    if cur:
        out.append(cur)
    return out


class _Layout:
    """How a tokenizer's sequences are framed: BERT [CLS] body [SEP], or GPT bare blocks."""

    def __init__(self, tokenizer, seq_len: int):
        cls, sep = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
        self.bert = cls is not None and sep is not None
        self.prefix, self.suffix = ([cls], [sep]) if self.bert else ([], [])
        self.doc_sep = sep if self.bert else getattr(tokenizer, "eot_token_id", None)
        self.body_len = seq_len - len(self.prefix) - len(self.suffix)
        if self.body_len < 1:
            raise NanobertError(f"seq-len {seq_len} leaves no room for text; use at least {len(self.prefix) + 3}")

    def frame(self, body: list[int]) -> list[int]:
        return self.prefix + body + self.suffix


_worker: dict = {}


def _init_worker(tokenizer, seq_len: int, mode: str) -> None:
    _worker.update(tokenizer=tokenizer, layout=_Layout(tokenizer, seq_len), mode=mode)


def _encode_docs(docs: list[str]) -> tuple[int, list[list[int]]]:
    """Worker: documents -> (count, framed sequences) ("segment") or (count, [token stream]) ("split")."""
    tok, layout = _worker["tokenizer"], _worker["layout"]
    if _worker["mode"] == "segment":
        seqs = []
        for doc in docs:
            sentences = [s for para in doc.split("\n") for s in split_sentences(para)]
            ids = tok.encode_batch(sentences, add_special_tokens=False)
            seqs.extend(layout.frame(body) for body in pack_sentences(ids, layout.body_len))
        return len(docs), seqs
    stream: list[int] = []
    for ids in tok.encode_batch(docs, add_special_tokens=False):
        stream.extend(ids)
        if layout.doc_sep is not None:
            stream.append(layout.doc_sep)
    return len(docs), [stream]


def _chunks(docs: Iterable[str], n: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for d in docs:
        chunk.append(d)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _ShardWriter:
    """Collects one split's sequences and writes a shard every `shard_size` sequences."""

    def __init__(self, out: Path, split: str, dtype, shard_size: int):
        self.out, self.split, self.dtype, self.shard_size = out, split, dtype, shard_size
        self.pending: list[list[int]] = []
        self.shards: list[dict] = []
        self.sequences = self.tokens = 0

    def add(self, seq: list[int]) -> None:
        self.pending.append(seq)
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"{self.split}-{len(self.shards):05d}"
        lengths = np.fromiter((len(s) for s in self.pending), dtype=np.int64, count=len(self.pending))
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.fromiter((t for s in self.pending for t in s), dtype=self.dtype, count=int(offsets[-1]))
        np.save(self.out / f"{name}.tokens.npy", tokens)
        np.save(self.out / f"{name}.offsets.npy", offsets)
        self.shards.append({"name": name, "sequences": len(lengths), "tokens": int(offsets[-1])})
        self.sequences += len(lengths)
        self.tokens += int(offsets[-1])
        self.pending = []


def _check_settings(cfg: PrepareConfig) -> None:
    """Refuse settings prepare cannot honour, before anything is read or written."""
    if cfg.mode not in ("segment", "split"):
        raise NanobertError(f"unknown mode {cfg.mode!r}; use segment or split")
    if not (0 <= cfg.val_fraction < 1 and 0 <= cfg.test_fraction < 1 and cfg.val_fraction + cfg.test_fraction < 1):
        raise NanobertError("val-fraction and test-fraction must be in [0, 1) and sum to less than 1")
    if not 0 < cfg.near_threshold <= 1:
        raise NanobertError(f"near-threshold must be in (0, 1], got {cfg.near_threshold}")


def _meta(cfg: PrepareConfig, tokenizer, dtype, files: list[Path], n_docs: int, filt, writers: dict) -> dict:
    """What meta.json records: the format, tokenizer, split sizes, filters and the settings used."""
    return {
        "format": FORMAT,
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": tokenizer.vocab_size,
                      "source": str(cfg.tokenizer) if cfg.tokenizer else None, "dir": "tokenizer"},
        "special_ids": {k: getattr(tokenizer, f"{k}_token_id", None)
                        for k in ("cls", "sep", "pad", "mask", "unk", "eot")},
        "dtype": np.dtype(dtype).name,
        "seq_len": cfg.seq_len,
        "mode": cfg.mode,
        "seed": cfg.seed,
        "fractions": {"val": cfg.val_fraction, "test": cfg.test_fraction},
        "inputs": [str(f) for f in files],
        "documents": n_docs,
        "filters": filt.report() if filt is not None else None,
        "splits": {s: {"sequences": w.sequences, "tokens": w.tokens, "shards": w.shards}
                   for s, w in writers.items()},
        "config": asdict(cfg),
    }


def prepare(cfg: PrepareConfig, tokenizer=None, progress: bool = True, overwrite: bool = False) -> dict:
    """Tokenize `cfg.inputs` into shards under `cfg.out_dir`; return the metadata written to meta.json.

    `tokenizer` defaults to `nanobert.tokenizers.load_tokenizer(cfg.tokenizer)`. An existing `out_dir`
    is replaced only when it is a previous output of prepare and `overwrite` is set (`fileio.output_dir`).
    """
    _check_settings(cfg)
    filt = DocumentFilter(DedupConfig(dedup=cfg.dedup, threshold=cfg.near_threshold)) if cfg.dedup != "none" else None
    files = expand_inputs(cfg.inputs)
    if tokenizer is None:
        if not cfg.tokenizer:
            raise NanobertError("no tokenizer given; pass --tokenizer DIR (a directory with vocab.txt)")
        tokenizer = load_tokenizer(cfg.tokenizer)
    layout = _Layout(tokenizer, cfg.seq_len)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    workers = cfg.num_workers or os.cpu_count() or 1
    rng = np.random.default_rng(cfg.seed)
    bounds = np.cumsum([cfg.val_fraction, cfg.test_fraction])  # u < val -> val; < val+test -> test; else train
    out_path = Path(cfg.out_dir)
    docs = read_documents(files, cfg.text_column)
    if filt is not None:
        docs = filt(docs)
    n_docs = 0
    inputs = files + ([Path(cfg.tokenizer)] if cfg.tokenizer else [])
    with output_dir(out_path, "prepare", inputs, overwrite) as tmp:
        writers = {s: _ShardWriter(tmp, s, dtype, cfg.shard_size) for s in SPLITS}
        stream: list[int] = []  # "split" mode: tokens not yet cut into a block

        def emit(seq: list[int]) -> None:
            if len(seq) < cfg.min_tokens:
                return
            u = rng.random()
            writers["val" if u < bounds[0] else "test" if u < bounds[1] else "train"].add(seq)

        if workers > 1:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
            pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer, cfg.seq_len, cfg.mode))
            results = pool.imap(_encode_docs, _chunks(docs, cfg.chunk_docs))
        else:
            pool = None
            _init_worker(tokenizer, cfg.seq_len, cfg.mode)
            results = map(_encode_docs, _chunks(docs, cfg.chunk_docs))
        bar = tqdm(desc="tokenizing", unit=" docs", disable=not progress, dynamic_ncols=True)
        try:
            for count, seqs in results:
                n_docs += count
                if cfg.mode == "segment":
                    for seq in seqs:
                        emit(seq)
                else:
                    stream.extend(seqs[0])
                    cut = len(stream) // layout.body_len * layout.body_len
                    for i in range(0, cut, layout.body_len):
                        emit(layout.frame(stream[i:i + layout.body_len]))
                    stream = stream[cut:]
                bar.update(count)
                bar.set_postfix(sequences=sum(w.sequences + len(w.pending) for w in writers.values()))
            if stream:
                emit(layout.frame(stream))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
        for w in writers.values():
            w.flush()
        if writers["train"].sequences == 0:
            raise NanobertError(f"no text found in {', '.join(map(str, files))}: the corpus is empty "
                                f"(or every sequence is shorter than min-tokens {cfg.min_tokens})")
        tokenizer.save(tmp / "tokenizer")
        meta = _meta(cfg, tokenizer, dtype, files, n_docs, filt, writers)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s: %s", out_path, ", ".join(f"{s} {m['sequences']:,} sequences / {m['tokens']:,} tokens"
                                                 for s, m in meta["splits"].items()))
    return meta


def read_meta(data_dir: str | os.PathLike) -> dict:
    """meta.json of a prepared directory, checked: a missing, damaged or foreign one is one NanobertError."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise NanobertError(f"{data_dir} is not a prepared data directory (no meta.json); run 'nanobert prepare'")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NanobertError(f"{path} is damaged ({e}); prepare the data again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise NanobertError(f"{path} has format {found!r}, expected {FORMAT!r}; prepare the data again")
    try:
        int(meta["seq_len"]), np.dtype(meta["dtype"])
        for split in meta["splits"].values():
            for shard in split["shards"]:
                str(shard["name"]), int(shard["sequences"]), int(shard["tokens"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NanobertError(f"{path} is damaged (bad or missing entry {e}); prepare the data again") from None
    return meta


def load_shard(data_dir: str | os.PathLike, meta: dict, shard: dict) -> tuple[np.ndarray, np.ndarray]:
    """`(tokens, offsets)` of one shard listed in `meta`, tokens memory-mapped; checked against meta.json.

    A truncated or otherwise damaged shard is one NanobertError naming the file.
    """
    base = Path(data_dir) / shard["name"]
    try:
        tokens = np.load(f"{base}.tokens.npy", mmap_mode="r")
        offsets = np.load(f"{base}.offsets.npy")
    except FileNotFoundError as e:
        raise NanobertError(f"{e.filename} is missing; prepare the data again") from None
    except (OSError, ValueError, EOFError) as e:
        raise NanobertError(f"shard {base} is damaged or truncated ({e}); prepare the data again") from None
    n, count = int(shard["sequences"]), int(shard["tokens"])
    good = (tokens.ndim == 1 and tokens.dtype == np.dtype(meta["dtype"]) and len(tokens) == count
            and offsets.ndim == 1 and offsets.dtype == np.int64 and len(offsets) == n + 1
            and offsets[0] == 0 and offsets[-1] == count and bool(np.all(np.diff(offsets) >= 0)))
    if not good:
        raise NanobertError(f"shard {base} does not match meta.json ({len(tokens)} tokens, {len(offsets) - 1} "
                            f"sequences; expected {count} and {n}); prepare the data again")
    return tokens, offsets
