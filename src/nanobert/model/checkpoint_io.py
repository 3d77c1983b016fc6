"""Read and write BERT weights in Hugging Face's file layout, strictly.

Files: `model.safetensors` (what we write), a sharded `model.safetensors.index.json`, or a
legacy `pytorch_model.bin` (read with `torch.load(weights_only=True)`, never unpickling code).

Keys in files come in several dialects; every rename lives in `RENAMES` and every key we drop
on purpose lives in `DROPPED`, both below. After renaming, a file's keys are compared with the
model's: missing keys, unexpected keys and shape mismatches are listed, and loading fails
unless the caller named the missing ones as expected (a new classifier head).

    sd = read_state_dict("minilm/")                 # {name: tensor}, as stored
    report = load_state_dict(model, sd, expected_missing=["classifier.*"])
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"

# Every rename from a file's key to ours, applied in order. (regex, replacement, why)
RENAMES: list[tuple[str, str, str]] = [
    (r"\.gamma$", ".weight", "TF-era LayerNorm scale"),
    (r"\.beta$", ".bias", "TF-era LayerNorm shift"),
    (r"^(embeddings|encoder|pooler)\.", r"bert.\1.", "BertModel files have no 'bert.' prefix"),
    (r"^cls\.predictions\.decoder\.bias$", "cls.predictions.bias", "the decoder bias is cls.predictions.bias"),
]

# Keys a file may hold that no nanobert model needs. (regex, why)
DROPPED: list[tuple[str, str]] = [
    (r"(^|\.)position_ids$", "a constant buffer older transformers saved"),
    (r"^cls\.seq_relationship\.", "BertForPreTraining's next-sentence head"),
    (r"^cls\.predictions\.decoder\.weight$", "tied to bert.embeddings.word_embeddings.weight"),
]

# Anything outside the encoder (cls.*, classifier.*, any other head) and the pooler belongs to a
# task: when the model has no such module it is dropped and logged, e.g. a masked-LM checkpoint
# loaded for fine-tuning, or any task checkpoint loaded into BertModel. Inside the encoder an
# unknown key is an error: it means the config does not describe these weights.
OTHER_HEADS = (r"^(?!bert\.)", r"^bert\.pooler\.")


def _fail_read(path: Path, e: Exception):
    raise NanobertError(f"cannot read weights from {path} (corrupted or truncated?): {str(e).splitlines()[0]}") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        _fail_read(path, e)


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        files = [path]
    elif (path / WEIGHTS_NAME).is_file():
        files = [path / WEIGHTS_NAME]
    elif (path / SHARD_INDEX_NAME).is_file():
        try:
            index = json.loads((path / SHARD_INDEX_NAME).read_text(encoding="utf-8"))
            files = [path / f for f in sorted(set(index["weight_map"].values()))]
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise NanobertError(f"{path / SHARD_INDEX_NAME} is not a valid shard index: {e}") from None
    elif (path / LEGACY_WEIGHTS_NAME).is_file():
        files = [path / LEGACY_WEIGHTS_NAME]
    else:
        raise NanobertError(f"no {WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME} in {path}")
    return files


def stored_keys(path: str | Path) -> list[str]:
    """The tensor names in a model directory, read without loading safetensors data."""
    keys: list[str] = []
    for f in _weight_files(Path(path)):
        if f.suffix != ".safetensors":
            return list(read_state_dict(path))
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(f), "pt") as handle:
                keys += list(handle.keys())
        except (SafetensorError, OSError) as e:
            _fail_read(f, e)
    return keys


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a model directory (or a single weights file), keys as stored."""
    sd: dict[str, torch.Tensor] = {}
    for f in _weight_files(Path(path)):
        if f.suffix == ".safetensors":
            sd.update(_read_safetensors(f))
            continue
        try:
            obj = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and EOF errors all mean the same thing here
            _fail_read(f, e)
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise NanobertError(f"{f} does not hold a state dict of tensors")
        sd.update(obj)
    return sd


def canonical_key(key: str) -> str:
    """A file's key in nanobert's task-model naming.

    Example: "encoder.layer.0.output.LayerNorm.gamma" -> "bert.encoder.layer.0.output.LayerNorm.weight".
    """
    for pattern, repl, _ in RENAMES:
        key = re.sub(pattern, repl, key)
    return key


@dataclass
class LoadReport:
    """What happened to each key when a state dict was loaded."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file (left as initialised)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, model shape)
    dropped: list[str] = field(default_factory=list)  # in the file, deliberately not used


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], expected_missing=(), source: str = "checkpoint"
) -> LoadReport:
    """Copy `state_dict` into `model` after renaming; fail on any key or shape that does not fit.

    `expected_missing`: glob patterns in the model's own key names (e.g. "classifier.*") that may
    be absent from the file or have another shape there; those keep their fresh initialisation.
    """
    if isinstance(expected_missing, str):
        expected_missing = [expected_missing]
    # Compare in task-model naming ("bert.encoder..."); a bare BertModel's keys get the prefix.
    prefix = "" if hasattr(model, "bert") else "bert."
    own = {prefix + k: v for k, v in model.state_dict().items()}
    report = LoadReport()
    source_sd: dict[str, torch.Tensor] = {}
    decoder = None
    for key, tensor in state_dict.items():
        new = canonical_key(key)
        why = next((w for p, w in DROPPED if re.search(p, new)), None)
        if why is not None:
            log.debug("%s: %s dropped (%s)", source, key, why)
            report.dropped.append(key)
            decoder = tensor if new == "cls.predictions.decoder.weight" else decoder
            continue
        if new in source_sd and new == "cls.predictions.bias":
            continue  # both decoder.bias and predictions.bias present: the same tensor twice
        source_sd[new] = tensor
    words = source_sd.get("bert.embeddings.word_embeddings.weight")
    if decoder is not None and words is not None and not torch.equal(decoder, words):
        log.warning("%s: its MLM decoder is not tied to the word embeddings; nanobert ties them (uses the embeddings)",
                    source)

    strip = len(prefix)
    for key, tensor in source_sd.items():
        if key not in own:
            if any(re.search(p, key) for p in OTHER_HEADS):
                report.dropped.append(key)
            else:
                report.unexpected.append(key)
        elif tuple(tensor.shape) != tuple(own[key].shape):
            if _matches(key[strip:], expected_missing):
                report.missing.append(key[strip:])
            else:
                report.mismatched.append((key[strip:], tuple(tensor.shape), tuple(own[key].shape)))
        else:
            report.loaded.append(key)
    report.missing += [k[strip:] for k in own if k not in source_sd]
    unexplained = [k for k in report.missing if not _matches(k, expected_missing)]

    problems = []
    if unexplained:
        problems.append(f"missing {len(unexplained)} keys ({_listing(unexplained)})")
    if report.unexpected:
        problems.append(f"unexpected {len(report.unexpected)} keys ({_listing(report.unexpected)})")
    if report.mismatched:
        shapes = [f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in report.mismatched]
        problems.append(f"{len(shapes)} shape mismatches ({_listing(shapes, 3)})")
    if problems:
        hint = (
            "check that config.json matches the weights"
            if report.mismatched or report.unexpected
            else "pass expected_missing=[...] for keys a new head should initialise"
        )
        raise NanobertError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}; {hint}")

    with torch.no_grad():
        params = model.state_dict()
        for key in report.loaded:
            params[key[strip:]].copy_(source_sd[key])
    worth_saying = [k for k in report.dropped if not k.endswith("position_ids")]
    if worth_saying:
        log.info("%s: not used by %s: %s", source, type(model).__name__, _listing(worth_saying))
    if report.missing:
        log.info("%s: newly initialised in %s: %s", source, type(model).__name__, _listing(report.missing))
    return report


def file_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under the names transformers expects, contiguous and unshared (safetensors needs both)."""
    out = {}
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        t = t.detach()
        ptr = t.untyped_storage().data_ptr()
        t = t.clone() if ptr in seen else t.contiguous()
        seen.add(ptr)
        out[key] = t
    return out


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write `state_dict` to `path` atomically, with the {"format": "pt"} metadata transformers checks."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(state_dict, str(tmp), metadata={"format": "pt"})
