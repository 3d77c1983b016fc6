"""LoRA: train a low-rank update `B @ A` beside frozen linear weights, saved as PEFT saves it.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        A: (r, in), B: (out, r), B starts at 0

`LoRALinear` keeps the wrapped layer's `weight` and `bias` under the same names, so a base
checkpoint still loads into a model that has adapters; `merge()` folds the update into `weight`
for inference (same outputs, no extra cost). Reading `.weight` gives the *effective* weight
W + (alpha/r) B A, so code that uses a linear's weight directly instead of calling it (a fused
q/k/v GEMM, an exporter) still sees the adapted layer; the stored parameter (state-dict key
`weight`) stays the frozen base. Dropout on the adapter input needs the layer to be called, so
it is off by default (as in PEFT). `apply_lora` swaps the chosen linears of a BERT
(`query`, `value`, ... in chosen layers) and leaves only the adapters and the classifier trainable.

`save_adapter` writes `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names
(`base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight`), so
`peft.PeftModel.from_pretrained(transformers_model, dir)` loads it; `load_adapter` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanobert.config import check_fields
from nanobert.errors import NanobertError
from nanobert.fileio import write_json
from nanobert.model import checkpoint_io
from nanobert.model.checkpoint_io import PEFT_PREFIX  # noqa: F401  (PEFT's key prefix, kept importable from here)

_LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable rank-`r` update scaled by `alpha / r`."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise NanobertError(f"LoRA rank must be >= 1, got {r}")
        self.in_features, self.out_features = base.in_features, base.out_features
        # Same names as nn.Linear, so base checkpoints load unchanged. `weight` is registered directly
        # because the `weight` attribute is the property below (the effective weight).
        self.register_parameter("weight", base.weight)
        self.bias = base.bias
        self.base_weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # nn.Linear modules so that state-dict keys read `lora_A.weight` (r, in) and `lora_B.weight` (out, r), as PEFT's.
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=base.weight.device, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=base.weight.device, dtype=base.weight.dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # nn.Linear's own init
        nn.init.zeros_(self.lora_B.weight)  # the update starts at zero: the model starts as the base model
        self.merged = False

    @property
    def base_weight(self) -> nn.Parameter:
        """The frozen (or, after `merge`, merged) stored weight, (out, in)."""
        try:
            return self._parameters["weight"]
        except KeyError:
            raise AttributeError("weight") from None

    @property
    def weight(self) -> torch.Tensor:
        """The weight this layer multiplies by: W + scaling * B A (or the merged W), (out, in)."""
        w = self.base_weight
        return w if self.merged else w + self.delta_weight()

    def delta_weight(self) -> torch.Tensor:
        """The update the adapter adds to `weight`: (out, in) = scaling * B (out, r) @ A (r, in)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.base_weight, self.bias)
        if self.merged:
            return y
        return y + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into `weight` (then forward costs what the base layer costs)."""
        if not self.merged:
            self.base_weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of `weight` (to train further or save the adapter alone)."""
        if self.merged:
            self.base_weight.sub_(self.delta_weight())
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain `nn.Linear` with the update merged in."""
        w = self.base_weight
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha}, merged={self.merged}"


@dataclass
class LoRAConfig:
    """Which adapters to add and how to train them; the names PEFT's `LoraConfig` uses (r, alpha, ...)."""

    r: int = 0  # rank; 0: no adapters (full fine-tuning). 8 is the common choice; 1 already does well on sentences
    alpha: float = 16.0  # the update is scaled by alpha / r; alpha = 2r is the usual starting point
    dropout: float = 0.0  # on the adapter's input; PEFT's default (a no-op where a model reads .weight instead of calling)
    targets: list[str] = field(default_factory=lambda: ["query", "value"])  # linears to adapt: the LoRA paper's choice
    layers: str | list[int] | None = "all"  # encoder layers to adapt: "all", "last-4", "8,9,10,11" (or indices)
    modules_to_save: list[str] = field(default_factory=lambda: ["classifier"])  # trained in full beside the adapters
    # and saved whole (PEFT's modules_to_save); add "pooler" to train the [CLS] pooler too (+H*H+H parameters)
    plus_ratio: float = 1.0  # LoRA+: lora_B learns this many times faster than lora_A and the rest (1: plain LoRA).
    # B starts at zero and sets the update's size, so a larger step there gets it going sooner; LoRA+ uses 16

    def __post_init__(self):
        check_fields(self, {"r": ">= 0", "alpha": "> 0", "dropout": "[0, 1)", "plus_ratio": "> 0"}, prefix="lora.")

    def lr_scales(self) -> dict[str, float] | None:
        """`make_optimizer`'s lr_scales for LoRA+ ({"lora_B": plus_ratio}), None without it."""
        return {"lora_B": self.plus_ratio} if self.r and self.plus_ratio != 1 else None


def resolve_layers(spec: str | Sequence[int] | None, num_layers: int) -> list[int] | None:
    """Turn a layer spec into indices. Examples (num_layers=6): "all" -> None; "last-4" -> [2, 3, 4, 5];
    "0,5" -> [0, 5]; [-1] -> [5]."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        m = re.fullmatch(r"last-?(\d+)", text)
        if m:
            n = int(m.group(1))
            if not 1 <= n <= num_layers:
                raise NanobertError(f"--lora-layers {spec}: the model has {num_layers} layers")
            return list(range(num_layers - n, num_layers))
        try:
            spec = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise NanobertError(f"--lora-layers {spec!r}: use 'all', 'last-N' or indices like '8,9,10,11'") from None
    layers = sorted({i % num_layers if -num_layers <= i < num_layers else i for i in spec})
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise NanobertError(f"--lora-layers: layer {bad[0]} does not exist; the model has {num_layers} layers")
    return layers


def _layer_of(name: str) -> int | None:
    m = _LAYER_RE.search(f".{name}.")
    return int(m.group(1)) if m else None


def apply_lora(model: nn.Module, cfg: LoRAConfig | None = None, **overrides) -> LoRAConfig:
    """Freeze `model`, wrap each `nn.Linear` whose last name is in `cfg.targets` (and whose encoder layer is in
    `cfg.layers`) in a `LoRALinear`, and unfreeze the modules named in `cfg.modules_to_save`.

    `overrides` replace fields of `cfg` (`apply_lora(model, r=8)`). Returns the config actually applied (layers
    as indices, only the modules found to save), also stored as `model.lora_config`. Example: on MiniLM-L6 with
    r=8 on query,value, 6 layers x 2 x 8 x (384 + 384) = 73,728 adapter parameters.
    """
    cfg = dataclasses.replace(cfg or LoRAConfig(), **overrides)
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if num_layers:
        layers = resolve_layers(cfg.layers, num_layers)
    else:  # a model without a BERT config: only explicit indices (or all) mean something
        layers = None if cfg.layers in (None, "all") else [int(i) for i in cfg.layers]
    targets = list(cfg.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    found = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name.rsplit(".", 1)[-1] not in targets:
            continue
        if layers is not None and _layer_of(name) not in set(layers):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(module, cfg.r, cfg.alpha, cfg.dropout))
        found.append(name)
    if not found:
        raise NanobertError(f"no linear layer named {', '.join(targets)} found to adapt; "
                            "check --lora-targets (BERT has query, key, value, dense)")
    saved = []
    for name in cfg.modules_to_save:
        matches = [m for n, m in model.named_modules() if n == name or n.endswith("." + name)]
        for m in matches:
            for p in m.parameters():
                p.requires_grad_(True)
        if matches:
            saved.append(name)
    cfg = dataclasses.replace(cfg, targets=targets, layers=list(layers) if layers is not None else None,
                              modules_to_save=saved)
    model.lora_config = cfg
    return cfg


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every `LoRALinear` by a plain `nn.Linear` with the update merged in (for saving/inference)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.to_linear())
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def _adapter_keys(model: nn.Module, cfg: LoRAConfig) -> set[str]:
    """The state-dict keys an adapter file holds: every lora_A/lora_B and the modules_to_save."""
    keys = set()
    for name in model.state_dict():
        in_saved = any(name.startswith(m + ".") or f".{m}." in f".{name}" for m in cfg.modules_to_save)
        if ".lora_A." in name or ".lora_B." in name or in_saved:
            keys.add(name)
    return keys


def _adapter_state(model: nn.Module, cfg: LoRAConfig) -> dict[str, torch.Tensor]:
    """The adapter's tensors under PEFT's names (checkpoint_io.PEFT_KEYS: "base_model.model." + our key)."""
    return checkpoint_io.file_state_dict(model, checkpoint_io.PEFT_KEYS, only=_adapter_keys(model, cfg))


def save_adapter(model: nn.Module, directory: str | Path, base_model_name_or_path: str | None = None) -> None:
    """Write the adapters (+ modules_to_save) of `model` as PEFT does: adapter_config.json, adapter_model.safetensors."""
    cfg: LoRAConfig | None = getattr(model, "lora_config", None)
    if cfg is None:
        raise NanobertError("this model has no LoRA adapters to save; call apply_lora first")
    if any(m.merged for m in lora_layers(model)):
        raise NanobertError("the adapters are merged into the weights; unmerge() them before saving the adapter")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    peft_config = {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base_model_name_or_path,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": list(cfg.targets),
        "layers_to_transform": cfg.layers,
        "layers_pattern": None,
        "modules_to_save": list(cfg.modules_to_save),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": True,
    }
    checkpoint_io.save_safetensors(_adapter_state(model, cfg), directory / "adapter_model.safetensors")
    write_json(directory / "adapter_config.json", peft_config)


def load_adapter(model: nn.Module, directory: str | Path) -> LoRAConfig:
    """Add the adapters saved in `directory` (ours or PEFT's, LoRA on linears) to `model` and load their weights."""
    directory = Path(directory)
    config_path, weights_path = directory / "adapter_config.json", directory / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise NanobertError(f"{directory} is not an adapter directory: it needs adapter_config.json and "
                            "adapter_model.safetensors")
    pc = json.loads(config_path.read_text(encoding="utf-8"))
    if pc.get("peft_type") != "LORA" or pc.get("use_dora") or pc.get("use_rslora") or pc.get("rank_pattern"):
        raise NanobertError(f"{config_path}: only plain LoRA adapters can be loaded (no DoRA, rsLoRA or per-layer ranks)")
    targets = pc["target_modules"]
    if isinstance(targets, str):  # PEFT allows a regex; we accept only a plain name here
        targets = [targets]
    layers = pc.get("layers_to_transform")
    if isinstance(layers, int):
        layers = [layers]
    cfg = apply_lora(model, LoRAConfig(r=int(pc["r"]), alpha=float(pc["lora_alpha"]), targets=targets, layers=layers,
                                       dropout=float(pc.get("lora_dropout", 0.0)),
                                       modules_to_save=pc.get("modules_to_save") or []))
    checkpoint_io.load_state_dict(model, checkpoint_io.read_state_dict(weights_path), source=str(weights_path),
                                  keys=checkpoint_io.PEFT_KEYS, only=_adapter_keys(model, cfg))
    return cfg
