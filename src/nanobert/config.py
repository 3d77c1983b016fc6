"""Dataclass configs from TOML files and `--key value` overrides, failing loudly on unknown keys.

A recipe is a dataclass whose defaults say why; a TOML file sets some fields; command-line
overrides set more. Nothing is `exec`-ed and nothing lives in globals.

    cfg = load_config(PretrainConfig, "configs/mlm-cpu.toml", ["--lr", "3e-4", "--model.num_hidden_layers", "2"])
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from nanobert.data.textio import read_text
from nanobert.errors import NanobertError

T = TypeVar("T")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (from TOML or a command-line string) to the annotated type `tp`.

    Example: _coerce("3e-4", float, "lr") -> 0.0003; _coerce("a,b", list[str], "x") -> ["a", "b"].
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [_coerce(v.strip() if isinstance(v, str) else v, inner, key) for v in items if v != ""]
        return items if origin is list else tuple(items)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise NanobertError(f"config key '{key}': cannot read {value!r} as {getattr(tp, '__name__', tp)}") from None
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from a (nested) dict, rejecting keys the dataclass does not have."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in types_:
            known = ", ".join(sorted(types_))
            raise NanobertError(f"unknown config key '{prefix}{key}'; known keys: {known}")
        tp = types_[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise NanobertError(f"config key '{prefix}{key}' must be a table of settings")
            kwargs[name] = from_dict(tp, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + key)
    try:
        return cls(**kwargs)
    except FieldError as e:  # name the field by where it sits in this config ("loop.lr", not the class's "train.lr")
        raise FieldError(e.field, e.detail, prefix) from None


def to_dict(cfg) -> dict:
    """The dataclass as a plain nested dict (what `from_dict` reads back)."""
    return dataclasses.asdict(cfg)


def parse_overrides(args: Sequence[str]) -> dict:
    """Turn `["--lr", "3e-4", "--model.hidden_size=256"]` into `{"lr": "3e-4", "model": {"hidden_size": "256"}}`."""
    out: dict = {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise NanobertError(f"expected an override like --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise NanobertError(f"override {arg} has no value; write {arg} VALUE")
            key, value = arg[2:], args[i + 1]
            i += 2
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                values: dict | None = None) -> T:
    """Defaults of `cls`, then the TOML file at `path`, then `values` (a nested dict, e.g. from named command-line
    options), then `--key value` overrides. The dataclasses check their own ranges (`check_fields`)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise NanobertError(f"config file not found: {path}")
        text = read_text(path, "config file")  # binary or non-UTF-8 bytes: one NanobertError
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise NanobertError(f"config file {path} is not valid TOML: {e}") from None
    data = _merge(_merge(data, values or {}), parse_overrides(overrides))
    return from_dict(cls, data)


_RANGE = re.compile(r"^\s*(?:(>=|>|<=|<)\s*(\S+)|([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])]))\s*$")


def in_range(value: float, rule: str) -> bool:
    """Whether `value` obeys `rule`: ">= 1", "> 0", "[0, 1)" (interval notation). Example: in_range(0, "> 0") -> False."""
    m = _RANGE.match(rule)
    if m is None:
        raise ValueError(f"bad range rule {rule!r}")
    if not math.isfinite(value):
        return False
    op, bound, left, low, high, right = m.groups()
    if op:
        b = float(bound)
        return {">=": value >= b, ">": value > b, "<=": value <= b, "<": value < b}[op]
    lo_ok = value >= float(low) if left == "[" else value > float(low)
    hi_ok = value <= float(high) if right == "]" else value < float(high)
    return lo_ok and hi_ok


class FieldError(NanobertError):
    """A config field outside its range or choices: "{prefix}{field} {detail}"."""

    def __init__(self, field: str, detail: str, prefix: str = ""):
        super().__init__(f"{prefix}{field} {detail}")
        self.field, self.detail = field, detail


def check_fields(cfg, ranges: dict[str, str], choices: dict[str, Sequence[str]] | None = None,
                 prefix: str = "") -> None:
    """Raise `FieldError` naming the first field of `cfg` outside its range or choices (None passes: an
    optional field left unset). Example: check_fields(cfg, {"batch_size": ">= 1"}) with batch_size 0 ->
    "batch_size must be >= 1, got 0". `prefix` names the section for a config built directly; one read by
    `from_dict` is named by its key path instead."""
    for name, rule in ranges.items():
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not in_range(float(value), rule)):
            raise FieldError(name, f"must be {rule}, got {value}", prefix)
    for name, allowed in (choices or {}).items():
        value = getattr(cfg, name)
        if value not in allowed:
            raise FieldError(name, f"must be one of {', '.join(allowed)}, got {value!r}", prefix)
