"""The rows a student learns from: labelled and unlabelled text, each with the teacher's logits.

    rows = join(labelled, unlabelled)                       # Encoded; unlabelled rows have label -100
    batches = distill_batches(rows, teacher_logits, batch_size=32, pad_id=0, seed=0)
    batch = next(batches)    # input_ids, attention_mask, token_type_ids (B, T), labels (B,), teacher_logits (B, K)

The teacher's logits are computed once, before training (`teacher_logits`), in eval mode: the same
numbers in every epoch and after a resume. Batches are fine-tuning's `BucketedBatches` (length-bucketed,
resumable exactly from (epoch, batch)); the logits ride along as a per-row `extra` array.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nanobert.data.labelled import BucketedBatches, Encoded
from nanobert.data.textio import open_text
from nanobert.data.tables import read_labelled
from nanobert.distill.losses import IGNORE
from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.tasks.finetune import predict_logits

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".txt.gz")


def read_texts(path, text_column: str | None = None, limit: int | None = None) -> list[str]:
    """Unlabelled text: one per non-empty line of a .txt(.gz) file, or the text column of a table (labels ignored)."""
    path = Path(path)
    if not path.is_file():
        raise NanobertError(f"unlabelled file not found: {path}")
    if path.name.endswith(TEXT_SUFFIXES):
        with open_text(path, "unlabelled file") as f:  # read no further than `limit` texts
            texts = list(itertools.islice((t for t in (line.strip() for line in f) if t), limit))
    else:
        texts = read_labelled(path, text_column=text_column, require_labels=False).texts
    if not texts:
        raise NanobertError(f"{path} holds no text")
    return texts[:limit] if limit is not None else texts


def encode_texts(texts: list[str], tokenizer, max_length: int) -> Encoded:
    """Unlabelled rows (label -100 each), tokenized without padding."""
    enc = tokenizer(texts, None, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    return Encoded(ids, types, np.full(len(ids), IGNORE, dtype=np.int64), None)


def join(*parts: Encoded) -> Encoded:
    """The rows of `parts`, in order, as one Encoded (text only)."""
    return Encoded([x for p in parts for x in p.input_ids], [x for p in parts for x in p.token_type_ids],
                   np.concatenate([p.labels for p in parts]), None)


def teacher_logits(teacher, rows: Encoded, pad_id: int, batch_size: int = 128, bf16: bool = False) -> torch.Tensor:
    """(N, K) float32 logits of the teacher on `rows`, in their order; under bf16 autocast when `bf16`.

    bf16 matters on CPUs with AMX: the teacher's forward over hundreds of thousands of rows runs ~3x faster.
    """
    device = next(teacher.parameters()).device
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        return predict_logits(teacher, rows, pad_id, batch_size).float()


def distill_batches(rows: Encoded, logits: torch.Tensor, batch_size: int, pad_id: int, seed: int = 0,
                    pool: int = 50) -> BucketedBatches:
    """Fine-tuning's resumable length-bucketed batches of `rows`, each also holding the teacher's (B, K) logits."""
    if len(rows) != len(logits):
        raise ValueError(f"{len(rows)} rows but {len(logits)} teacher logits")
    with_logits = dataclasses.replace(rows, extra={**rows.extra, "teacher_logits": logits.float().numpy()})
    return BucketedBatches(with_logits, batch_size, seed, pad_id, pool)


def logits_key(teacher_dir, rows: Encoded, bf16: bool) -> str:
    """A fingerprint of what the teacher's logits depend on: its weights file (path, size, time), the rows, bf16."""
    names = ("model.safetensors", "pytorch_model.bin", "config.json")  # the first that exists
    weights = next((Path(teacher_dir) / n for n in names if (Path(teacher_dir) / n).is_file()), Path(teacher_dir))
    st = weights.stat()
    h = hashlib.sha256(f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}|{bf16}|{len(rows)}".encode())
    for ids, types in zip(rows.input_ids, rows.token_type_ids):
        h.update(np.asarray(ids, np.int64).tobytes() + b"|" + np.asarray(types, np.int64).tobytes() + b";")
    return h.hexdigest()


def cached_logits(cache, key: str, compute) -> tuple[torch.Tensor, bool]:
    """(`compute()`, False), saved to the safetensors file `cache`; or (the saved logits, True) when its key matches.

    The teacher's pass over hundreds of thousands of rows is most of a small student's run; a cache lets
    students tried one after another on the same rows and teacher share it.
    """
    if cache is not None and Path(cache).is_file():
        with safe_open(str(cache), "pt") as f:
            if (f.metadata() or {}).get("key") == key:
                log.info("teacher logits read from %s", cache)
                return f.get_tensor("logits"), True
        log.info("%s holds logits of other rows or another teacher: labelling again", cache)
    logits = compute()
    if cache is not None:
        with atomic_path(cache) as tmp:
            save_file({"logits": logits.contiguous()}, str(tmp), metadata={"key": key})
    return logits, False
