"""`BertConfig`: the model's sizes and switches, read from and written to Hugging Face's config.json.

Field names are exactly those of `transformers.BertConfig`, so a config.json from the Hub loads
as is and ours opens in `transformers`. The architecture variants are extra switches whose
defaults are BERT's; a config that changes any of them is saved with `model_type` "nanobert_bert"
because `transformers` cannot run it.

    cfg = BertConfig.from_preset("mini", vocab_size=8000)      # L2 / H128 / A2
    cfg.save_pretrained("out/")                               # out/config.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nanobert.errors import NanobertError
from nanobert.fileio import write_json

log = logging.getLogger(__name__)

HF_MODEL_TYPE = "bert"
OWN_MODEL_TYPE = "nanobert_bert"  # variants that transformers' BertModel cannot run

# Sizes by name, with intermediate_size = 4 * hidden_size and BERT's vocabulary (30522).
# Parameter counts of BertModel with its pooler (`nanobert model presets` prints them for every head).
# The google-* names are Google's "small BERTs" (Turc et al., 2019); the short names are nanobert's
# own ladder, starting one rung lower so that "mini" trains on a laptop CPU.
PRESETS: dict[str, dict] = {
    "mini": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2),  # 4.39M
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4),  # 11.17M
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8),  # 41.37M
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12),  # 109.48M
    "google-tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2),  # 4.39M
    "google-mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4),  # 11.17M
    "google-small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8),  # 28.76M
    "google-medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8),  # 41.37M
    "google-base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12),  # 109.48M
}


@dataclass
class BertConfig:
    """Hyperparameters of a BERT encoder; the defaults are bert-base-uncased."""

    vocab_size: int = 30522  # WordPiece vocabulary of bert-base-uncased
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072  # 4 * hidden_size, as in BERT
    hidden_act: str = "gelu"  # exact (erf) GELU; "gelu_new" is the tanh approximation
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # segment A / segment B
    initializer_range: float = 0.02  # std of the normal init of every weight matrix
    layer_norm_eps: float = 1e-12  # BERT's; 1e-5 or 1e-6 is more forgiving in half precision
    pad_token_id: int = 0  # [PAD] in BERT's vocabulary
    # Sequence classification head.
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    label2id: dict[str, int] | None = None
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob
    problem_type: str | None = None  # None: regression if num_labels == 1, else from the label dtype
    # "cls": pooler on [CLS] (BERT); "mean": masked mean of the last layer over real tokens, no pooler (ModernBERT's
    # key); transformers' BertForSequenceClassification only computes "cls"
    classifier_pooling: str = "cls"
    # Architecture variants; the defaults are BERT (and the only ones transformers can load).
    position_embedding_type: str = "absolute"  # "absolute": learned table; "sinusoidal": fixed sin/cos
    pre_layer_norm: bool = False  # False: norm after each residual (BERT); True: before (stabler when deep)
    norm_type: str = "layernorm"  # "layernorm" (BERT) or "rmsnorm" (no centring, no bias; a bit faster)
    use_bias: bool = True  # False: no bias in Linears and norms

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise NanobertError(
                f"hidden_size {self.hidden_size} must be divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.position_embedding_type not in ("absolute", "sinusoidal"):
            raise NanobertError(
                f"position_embedding_type {self.position_embedding_type!r} is not supported; "
                "use 'absolute' (learned, BERT) or 'sinusoidal'"
            )
        if self.classifier_pooling not in ("cls", "mean"):
            raise NanobertError(f"classifier_pooling {self.classifier_pooling!r} is not supported; use 'cls' or 'mean'")
        if self.norm_type not in ("layernorm", "rmsnorm"):
            raise NanobertError(f"norm_type {self.norm_type!r} is not supported; use 'layernorm' or 'rmsnorm'")
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
        if self.label2id is not None:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
        elif self.id2label is not None:
            self.label2id = {name: i for i, name in self.id2label.items()}
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if int(getattr(self, name)) <= 0:
                raise NanobertError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def hf_compatible(self) -> bool:
        """True when transformers' BERT computes exactly this architecture (encoder and, for a classifier, its head).

        Mean pooling makes it False: transformers' BertForSequenceClassification would read [CLS] through a
        pooler that such a checkpoint does not have, and give other predictions without an error.
        """
        return (
            self.position_embedding_type == "absolute"
            and not self.pre_layer_norm
            and self.norm_type == "layernorm"
            and self.use_bias
            and self.classifier_pooling == "cls"
        )

    @property
    def labels(self) -> list[str]:
        """Class names in id order (LABEL_i when none were given)."""
        if self.id2label:
            return [self.id2label[i] for i in range(self.num_labels)]
        return [f"LABEL_{i}" for i in range(self.num_labels)]

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BertConfig":
        """A preset's sizes (see PRESETS) with intermediate_size = 4 * hidden_size, then `overrides`."""
        if name not in PRESETS:
            raise NanobertError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        sizes = dict(PRESETS[name])
        sizes["intermediate_size"] = 4 * sizes["hidden_size"]
        return cls.from_dict({**sizes, **overrides})

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> "BertConfig":
        """Build from config.json-style keys. strict=False ignores keys BERT does not use (as a Hub config has)."""
        d = dict(d)
        model_type = d.pop("model_type", None)
        if model_type not in (None, HF_MODEL_TYPE, OWN_MODEL_TYPE):
            raise NanobertError(f"config model_type is {model_type!r}; nanobert loads 'bert' models only")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names)
        if unknown and strict:
            raise NanobertError(f"unknown BertConfig keys: {', '.join(unknown)}; known keys: {', '.join(sorted(names))}")
        if unknown:
            log.debug("config keys not used by nanobert: %s", ", ".join(unknown))
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("id2label"):
            kwargs["num_labels"] = len(kwargs["id2label"])
            default = {str(i): f"LABEL_{i}" for i in range(kwargs["num_labels"])}
            if {str(k): v for k, v in kwargs["id2label"].items()} == default:  # no names given: keep None
                kwargs["id2label"] = kwargs["label2id"] = None
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise NanobertError(f"invalid BertConfig: {e}") from None

    def to_dict(self, architectures: list[str] | None = None) -> dict:
        """config.json content: HF's keys (+ "architectures", "model_type") and nanobert's variant switches."""
        d = {}
        if architectures:
            d["architectures"] = list(architectures)
        d["model_type"] = HF_MODEL_TYPE if self.hf_compatible else OWN_MODEL_TYPE
        for f in dataclasses.fields(self):
            d[f.name] = getattr(self, f.name)
        d["id2label"] = {str(i): name for i, name in enumerate(self.labels)}
        d["label2id"] = self.label2id or {name: i for i, name in enumerate(self.labels)}
        d["tie_word_embeddings"] = True  # the MLM decoder is the word embedding matrix
        return d

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides) -> "BertConfig":
        """Read `path/config.json` (or a config.json file), then apply `overrides` (unknown keys fail)."""
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise NanobertError(f"no config.json in {path}; save the model with save_pretrained first")
        cfg = cls.from_dict(read_config_json(file), strict=False)
        if overrides:
            merged = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
            names = set(merged)
            unknown = sorted(k for k in overrides if k not in names)
            if unknown:
                raise NanobertError(f"unknown BertConfig keys: {', '.join(unknown)}")
            if "num_labels" in overrides and "id2label" not in overrides:
                merged["id2label"] = merged["label2id"] = None
            merged.update(overrides)
            cfg = cls(**merged)
        return cfg

    def save_pretrained(self, path: str | Path, architectures: list[str] | None = None) -> None:
        """Write `path/config.json` atomically."""
        write_json(Path(path) / "config.json", self.to_dict(architectures))


def read_config_json(path: str | Path) -> dict:
    """The JSON object in a config.json file (or `path/config.json`); one clear error for anything else.

    A missing file, bytes that are not UTF-8, text that is not JSON and JSON that is not an object
    (a list, a number) each give a NanobertError naming the file.
    """
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise NanobertError(f"no config.json in {path}; save the model with save_pretrained first")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise NanobertError(f"{file} is not UTF-8 text (a binary file?); it must hold a JSON object") from None
    except json.JSONDecodeError as e:
        raise NanobertError(f"{file} is not valid JSON ({e}); it must hold a JSON object") from None
    except OSError as e:
        raise NanobertError(f"cannot read {file}: {e}") from None
    if not isinstance(d, dict):
        raise NanobertError(f"{file} holds a JSON {type(d).__name__}, not an object; it must hold a JSON object")
    return d


def _field(config, name: str, default):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def model_max_length(config) -> int:
    """The longest input in tokens a model takes: its position count.

    `config` is a BertConfig, a GPTConfig or a config.json dict; a dict without the key means BERT's 512.
    Examples: {"max_position_embeddings": 128} -> 128; {} -> 512; GPTConfig(n_positions=256) -> 256.
    """
    if isinstance(config, dict):
        value = config.get("max_position_embeddings", config.get("n_positions", 512))
    else:
        value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NanobertError(f"max_position_embeddings must be an integer, got {value!r}") from None


def _int_fields(config, fields: dict[str, int]) -> dict[str, int]:
    out = {}
    for name, default in fields.items():
        value = _field(config, name, default)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
            raise NanobertError(f"config {name} must be a non-negative integer, got {value!r}")
        out[name] = int(value)
    return out


def estimate_encoder_parameters(config) -> int:
    """Parameters of the encoder a config describes, counted in closed form without building anything.

    BERT (a BertConfig or its config.json dict): embeddings + layers + final norm, without a pooler or
    task head (those a checkpoint may lack); GPT (n_embd/n_layer keys): the whole model, tied head once.
    Python ints, so an absurd config gives an absurd number rather than an allocation.
    Example: BertConfig.from_preset("mini", vocab_size=30522) -> 4,369,408 (4.39M with the 16,512-parameter pooler).
    """
    if _field(config, "n_embd", None) is not None:
        g = _int_fields(config, {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12})
        C, inner = g["n_embd"], _field(config, "n_inner", None) or 4 * g["n_embd"]
        block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (C * inner + inner) + (inner * C + C)  # 2 LN, attn, MLP
        return (g["vocab_size"] + g["n_positions"]) * C + g["n_layer"] * block + 2 * C
    b = _int_fields(config, {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                             "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2})
    H, inter = b["hidden_size"], b["intermediate_size"]
    bias = 1 if _field(config, "use_bias", True) else 0
    norm = H * (1 + bias) if _field(config, "norm_type", "layernorm") == "layernorm" else H
    positions = b["max_position_embeddings"] if _field(config, "position_embedding_type", "absolute") == "absolute" else 0
    embeddings = (b["vocab_size"] + positions + b["type_vocab_size"]) * H + norm
    layer = 4 * (H * H + bias * H) + (H * inter + bias * inter) + (inter * H + bias * H) + 2 * norm
    final = norm if _field(config, "pre_layer_norm", False) else 0
    return embeddings + b["num_hidden_layers"] * layer + final


def available_memory_bytes() -> int | None:
    """Memory this process could still allocate (MemAvailable on Linux, else physical memory), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(config, source: str = "config.json", bytes_per_parameter: int = 4) -> int:
    """Refuse a config whose float32 parameters alone would not fit in the memory available; returns the count."""
    n = estimate_encoder_parameters(config)
    need = n * bytes_per_parameter
    free = available_memory_bytes()
    if free is not None and need > free:
        raise NanobertError(
            f"{source} describes a model of {n:,} parameters ({need / 2**30:,.1f} GiB in float32), more than the "
            f"{free / 2**30:,.1f} GiB of memory available; check its sizes (num_hidden_layers, hidden_size, vocab_size, ...)"
        )
    return n
