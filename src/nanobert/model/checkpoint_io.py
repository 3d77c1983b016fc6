"""Read and write checkpoints in Hugging Face's file layouts, strictly: the one key map of nanobert.

Files: `model.safetensors` (what we write), a sharded `model.safetensors.index.json`, or a
legacy `pytorch_model.bin` (read with `torch.load(weights_only=True)`, never unpickling code).

Keys in files come in several dialects; each family has one `KeyMap` below holding every rename,
every key dropped on purpose, tied and transposed weights: `BERT_KEYS` (HF BERT, TF-era names,
BertForPreTraining, unprefixed BertModel), `GPT2_KEYS` (GPT-2's Conv1D weights stored transposed)
and `PEFT_KEYS` (LoRA adapters under PEFT's "base_model.model." prefix). After renaming, a file's
keys are compared with the model's by the one strict loader, `load_state_dict`: missing keys,
unexpected keys and shape mismatches are listed in one `LoadReport`, and loading fails unless
the caller named the missing ones as expected (a new classifier head). `check_weights_fit`
refuses, from the config and the files' headers alone, a config that cannot match the weights
before anything is built.

    sd = read_state_dict("minilm/")                 # {name: tensor}, as stored
    report = load_state_dict(model, sd, expected_missing=["classifier.*"])
    load_state_dict(gpt, read_state_dict("gpt2/"), keys=GPT2_KEYS)
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nanobert.errors import NanobertError
from nanobert.fileio import atomic_path
from nanobert.model.config import check_fits_in_memory

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"



@dataclass(frozen=True)
class KeyMap:
    """How one family of checkpoint files names its tensors, and how to turn those names into ours.

    renames: (regex, replacement, why), applied in order to every file key.
    dropped: (regex, why) for renamed keys no nanobert model needs.
    tied: {renamed file key: the model key it must equal}; never loaded itself, and left out when saving.
    other_heads: regexes of renamed keys that belong to a head this model may lack (dropped, logged).
    transposed: regex of keys stored transposed in files (GPT-2's Conv1D weights), flipped on load and save.
    bare_prefix: (prefix, attribute) -- a model without `attribute` (a bare BertModel) compares as if its
        keys had `prefix` ("bert."), so one rename table serves the encoder and every task model.
    save_prefix: prepended to every key when writing (PEFT's "base_model.model.").
    tie_mismatch: "warn" (use the model key's tensor) or "error" when a tied key differs from its partner.
    layer_key: regex whose group 1 is the layer index of a renamed key (to count a file's layers).
    """

    name: str
    renames: tuple[tuple[str, str, str], ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()
    tied: dict = field(default_factory=dict)
    other_heads: tuple[str, ...] = ()
    transposed: str | None = None
    bare_prefix: tuple[str, str] | None = None
    save_prefix: str = ""
    tie_mismatch: str = "warn"
    layer_key: str | None = None

    def canonical(self, key: str) -> str:
        """A file's key in our naming (renames applied in order)."""
        for pattern, repl, _ in self.renames:
            key = re.sub(pattern, repl, key)
        return key

    def model_prefix(self, model: nn.Module) -> str:
        if self.bare_prefix is None:
            return ""
        prefix, attribute = self.bare_prefix
        return "" if hasattr(model, attribute) else prefix


BERT_KEYS = KeyMap(
    "BERT",
    renames=(
        (r"\.gamma$", ".weight", "TF-era LayerNorm scale"),
        (r"\.beta$", ".bias", "TF-era LayerNorm shift"),
        (r"^(embeddings|encoder|pooler)\.", r"bert.\1.", "BertModel files have no 'bert.' prefix"),
        (r"^cls\.predictions\.decoder\.bias$", "cls.predictions.bias", "the decoder bias is cls.predictions.bias"),
    ),
    dropped=(
        (r"(^|\.)position_ids$", "a constant buffer older transformers saved"),
        (r"^cls\.seq_relationship\.", "BertForPreTraining's next-sentence head"),
    ),
    # nanobert ties the MLM decoder to the word embeddings (uses the embeddings if a file's differ)
    tied={"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"},
    # Anything outside the encoder (cls.*, classifier.*, any other head) and the pooler belongs to a
    # task: when the model has no such module it is dropped and logged, e.g. a masked-LM checkpoint
    # loaded for fine-tuning, or any task checkpoint loaded into BertModel. Inside the encoder an
    # unknown key is an error: it means the config does not describe these weights.
    other_heads=(r"^(?!bert\.)", r"^bert\.pooler\."),
    bare_prefix=("bert.", "bert"),
    layer_key=r"^bert\.encoder\.layer\.(\d+)\.",
)

GPT2_KEYS = KeyMap(
    "GPT-2",
    renames=((r"^(?!transformer\.|lm_head\.)", "transformer.", "files saved from GPT2Model have no 'transformer.' prefix"),),
    # Old GPT-2 checkpoints also store the causal mask as buffers; they carry no learned values.
    dropped=((r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)$", "the causal mask, a constant"),),
    tied={"lm_head.weight": "transformer.wte.weight"},
    # GPT-2 keeps these four projections as Conv1D, weight (in_features, out_features); we use nn.Linear (out, in).
    transposed=r"^transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$",
    tie_mismatch="error",
    layer_key=r"^transformer\.h\.(\d+)\.",
)

PEFT_PREFIX = "base_model.model."  # PEFT stores every adapter key under the wrapped model's name
PEFT_KEYS = KeyMap(
    "PEFT adapter",
    renames=((r"^base_model\.model\.", "", "PEFT's wrapper prefix"),),
    save_prefix=PEFT_PREFIX,
)


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
    """The tensor names in a model directory, read from the safetensors headers (no tensor data)."""
    keys: list[str] = []
    for f in _weight_files(Path(path)):
        if f.suffix != ".safetensors":
            return list(read_state_dict(path))
        keys += list(_safetensors_header(f))
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


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (8-byte little-endian length, then JSON): no tensor is read."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= min(100 * 2**20, path.stat().st_size - 8):
                raise ValueError(f"header length {n} does not fit the file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        return {k: v for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        _fail_read(path, e)


def stored_shapes(path: str | Path) -> tuple[dict[str, tuple[int, ...]], int]:
    """({key: shape} of the safetensors tensors, an upper bound on the element count of all weight files).

    Read from the files' headers (legacy .bin files: their size in bytes bounds the element count).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    bound = 0
    for f in _weight_files(Path(path)):
        if f.suffix != ".safetensors":
            bound += f.stat().st_size
            continue
        for key, info in _safetensors_header(f).items():
            shape = tuple(int(d) for d in info.get("shape", ())) if isinstance(info, dict) else ()
            shapes[key] = shape
            bound += math.prod(shape)
    return shapes, bound


def check_weights_fit(path: str | Path, config, keys: KeyMap = BERT_KEYS, source: str | None = None) -> None:
    """Refuse, before any tensor is allocated, a config the memory or the weight files at `path` cannot back.

    Three cheap checks, from config.json and the files' headers: the float32 parameters must fit in
    the memory available; the config must not have more layers than the files hold; and the
    encoder's parameter count (closed form, `estimate_encoder_parameters`) must not exceed twice the
    elements stored plus 16M (small disagreements are left to the strict loader, which names every
    key and shape).
    """
    source = source or str(path)
    n = check_fits_in_memory(config, f"{source}/config.json")
    shapes, stored = stored_shapes(path)
    if keys.layer_key and shapes:
        indices = [int(m.group(1)) for k in shapes if (m := re.search(keys.layer_key, keys.canonical(k)))]
        layers = max(indices) + 1 if indices else 0
        wanted = config.get("num_hidden_layers", config.get("n_layer")) if isinstance(config, dict) else getattr(
            config, "num_hidden_layers", getattr(config, "n_layer", None))
        if wanted is not None and int(wanted) > layers:
            raise NanobertError(f"{source}: config.json says {int(wanted):,} layers but the weights hold {layers}; "
                                "config.json does not belong to these weights")
    if n > 2 * stored + 2**24:
        raise NanobertError(f"{source}: config.json describes {n:,} encoder parameters but the weights hold at most "
                            f"{stored:,} values; config.json does not belong to these weights")


def canonical_key(key: str, keys: KeyMap = BERT_KEYS) -> str:
    """A file's key in nanobert's naming.

    Example: "encoder.layer.0.output.LayerNorm.gamma" -> "bert.encoder.layer.0.output.LayerNorm.weight".
    """
    return keys.canonical(key)


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


def _renamed(state_dict: dict[str, torch.Tensor], keys: KeyMap, report: LoadReport, source: str) -> dict[str, torch.Tensor]:
    """The file's tensors under our names and layouts; dropped and tied keys go to `report.dropped`."""
    out: dict[str, torch.Tensor] = {}
    tied: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        new = keys.canonical(key)
        why = next((w for p, w in keys.dropped if re.search(p, new)), None)
        if why is not None or new in keys.tied:
            log.debug("%s: %s dropped (%s)", source, key, why or f"tied to {keys.tied.get(new)}")
            report.dropped.append(key)
            tied[new] = tensor
            continue
        if new in out:
            continue  # two names for one tensor (HF writes cls.predictions.bias and its decoder.bias alias)
        out[new] = tensor.t() if keys.transposed and re.search(keys.transposed, new) else tensor
    for key, partner in keys.tied.items():
        if key in tied and partner in out and not torch.equal(tied[key], out[partner]):
            if keys.tie_mismatch == "error":
                raise NanobertError(f"{source}: {key} differs from {partner}; only tied weights are supported")
            log.warning("%s: %s is not tied to %s; nanobert ties them (uses %s)", source, key, partner, partner)
    return out


def load_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    expected_missing=(),
    source: str = "checkpoint",
    keys: KeyMap = BERT_KEYS,
    only=None,
) -> LoadReport:
    """Copy `state_dict` into `model` after renaming with `keys`; fail on any key or shape that does not fit.

    `expected_missing`: glob patterns in the model's own key names (e.g. "classifier.*") that may
    be absent from the file or have another shape there; those keep their fresh initialisation.
    `only`: the model keys the file provides (an adapter file holds the adapters alone); default all.
    """
    if isinstance(expected_missing, str):
        expected_missing = [expected_missing]
    # Compare in task-model naming ("bert.encoder..."); a bare BertModel's keys get the prefix.
    prefix = keys.model_prefix(model)
    params = model.state_dict()
    wanted = params if only is None else {k: params[k] for k in only}
    own = {prefix + k: v for k, v in wanted.items() if prefix + k not in keys.tied}  # tied keys follow their partner
    report = LoadReport()
    source_sd = _renamed(state_dict, keys, report, source)

    strip = len(prefix)
    for key, tensor in source_sd.items():
        if key not in own:
            if any(re.search(p, key) for p in keys.other_heads):
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
    _raise_on_problems(model, report, expected_missing, source, partial=only is not None)

    with torch.no_grad():
        for key in report.loaded:
            params[key[strip:]].copy_(source_sd[key])
    worth_saying = [k for k in report.dropped if not k.endswith("position_ids")]
    if worth_saying:
        log.info("%s: not used by %s: %s", source, type(model).__name__, _listing(worth_saying))
    if report.missing:
        log.info("%s: newly initialised in %s: %s", source, type(model).__name__, _listing(report.missing))
    return report


def _raise_on_problems(model: nn.Module, report: LoadReport, expected_missing, source: str, partial: bool) -> None:
    unexplained = [k for k in report.missing if not _matches(k, expected_missing)]
    problems = []
    for what, keys in (("missing", unexplained), ("unexpected", report.unexpected)):
        if keys:
            problems.append(f"{what}: {_listing(keys)} ({len(keys)} key{'s' if len(keys) > 1 else ''})")
    if report.mismatched:
        shapes = [f"{k}: file {list(a)} vs model {list(b)}" for k, a, b in report.mismatched]
        problems.append(f"shape mismatches: {_listing(shapes, 3)} ({len(shapes)})")
    if problems:
        if partial:  # an adapter file
            hint = "it was saved for another model or another adapter configuration"
        elif report.mismatched or report.unexpected:
            hint = "check that config.json matches the weights"
        else:
            hint = "pass expected_missing=[...] for keys a new head should initialise"
        raise NanobertError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}; {hint}")


def file_state_dict(model: nn.Module, keys: KeyMap = BERT_KEYS, only=None) -> dict[str, torch.Tensor]:
    """The model's tensors under the names its file family expects, contiguous and unshared (safetensors needs both).

    Tied keys are left out (the loader re-ties them), `keys.transposed` ones are flipped and
    `keys.save_prefix` is prepended; `only` limits the keys written (an adapter's).
    """
    out = {}
    seen: set[int] = set()
    for key, t in model.state_dict().items():
        if key in keys.tied or (only is not None and key not in only):
            continue
        t = t.detach()
        if keys.transposed and re.search(keys.transposed, key):
            t = t.t()
        ptr = t.untyped_storage().data_ptr()
        t = t.clone() if ptr in seen else t.contiguous()
        seen.add(ptr)
        out[keys.save_prefix + key] = t
    return out


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write `state_dict` to `path` atomically, with the {"format": "pt"} metadata transformers checks.

    safetensors creates its file private (0600); it gets the mode any new file gets (0644 under umask 022).
    """
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(state_dict, str(tmp), metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
