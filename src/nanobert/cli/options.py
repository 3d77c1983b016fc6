"""Command-line options generated from a config dataclass: each field's default and help are written once.

    add_dataclass_args(parser, FinetuneConfig, ["epochs", "lr", "lora.r"])   # --epochs, --lr, --lora-r
    cfg = load_config(FinetuneConfig, args.config, args.overrides, values=given_values(args, FinetuneConfig))

The help text of a field is the comment after it in the class body (and the comment lines right
below it), so the dataclass stays the one place that says what a setting does and what its default
is. A flag's value is read the way a TOML value or a `--key value` override is (`config._coerce`):
the same checks and the same messages. Flags left out keep the default (or the TOML file's value).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from functools import lru_cache

_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")
_COMMENT = re.compile(r"^\s+#\s*(.*)$")


@lru_cache(maxsize=None)
def field_help(cls) -> dict[str, str]:
    """{field name: its comment} from the source of dataclass `cls`. Example: a line
    `epochs: int = 3  # passes over the data` gives {"epochs": "passes over the data"}."""
    out: dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) in {f.name for f in dataclasses.fields(cls)}:
            last = m.group(1)
            out[last] = (m.group(2) or "").strip()
            continue
        c = _COMMENT.match(line)
        if c and last is not None and out.get(last) and not c.group(1).startswith("---"):
            out[last] += " " + c.group(1).strip()
        else:
            last = None
    return out


def _resolve(cls, path: str):
    """(the dataclass that holds the field, the field) for a dotted path such as "lora.r"."""
    *parents, name = path.split(".")
    for p in parents:
        cls = typing.get_type_hints(cls)[p]
    return cls, {f.name: f for f in dataclasses.fields(cls)}[name]


def flag_name(path: str) -> str:
    """"lora.modules_to_save" -> "--lora-modules-to-save"."""
    return "--" + path.replace(".", "-").replace("_", "-")


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def add_dataclass_args(parser, cls, paths, help_overrides: dict[str, str] | None = None) -> None:
    """Add one option per dotted field path of `cls`, named by `flag_name`, its help and default from the class."""
    for path in paths:
        owner, f = _resolve(cls, path)
        text = (help_overrides or {}).get(path) or field_help(owner).get(f.name, "")
        default = _default(f)
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        parser.add_argument(flag_name(path), dest=path.replace(".", "__"), metavar=f.name.upper().split(".")[-1],
                            help=f"{text} (default: {shown})" if text else f"default: {shown}")


def given_values(args, cls, paths) -> dict:
    """The options the user gave, as a nested dict for `load_config(values=...)`: {"lora": {"r": "8"}, ...}."""
    out: dict = {}
    for path in paths:
        value = getattr(args, path.replace(".", "__"), None)
        if value is None:
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
