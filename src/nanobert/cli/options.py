"""Command-line options generated from a config dataclass: each field's default and help are written once.

    add_dataclass_args(parser, "nanobert.tasks.finetune:FinetuneConfig", ["epochs", "lr", "lora.r"])
    cfg = load_config(FinetuneConfig, args.config, args.overrides, values=given_values(args, FLAGS))

The help text of a field is the comment after it in the class body (and the comment lines right
below it), so the dataclass stays the one place that says what a setting does and what its default
is. A flag's value is read the way a TOML value or a `--key value` override is (`config._coerce`,
when `load_config` builds the dataclass): the same checks and the same messages. Flags left out
keep the default (or the TOML file's value). A bool field becomes a switch: `--quick` for a field
that defaults to False, `--no-progress` for one that defaults to True.

The class is named "module:Class" and read from its module's *source* (with `ast`), not imported:
the configs live beside the code that runs them, which imports torch, and `nanobert --help` builds
every command's options, so importing them would cost seconds before anything is printed. The
dataclass is imported only when the chosen command runs.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_COMMENT = re.compile(r"^\s+#\s*(.*)$")


@dataclass(frozen=True)
class FieldInfo:
    annotation: str  # as written, e.g. "int | None"
    default: object  # the literal default; the source text when it is not a literal; None when required
    help: str  # the comment after the field (and the comment lines right below it)
    nested: str | None  # "module:Class" when the field is itself a config dataclass


def _module_source(module: str) -> tuple[str, Path]:
    spec = importlib.util.find_spec(module)  # imports the parent packages only (small __init__ files)
    if spec is None or not spec.origin:
        raise ValueError(f"no module {module}")
    path = Path(spec.origin)
    return path.read_text(encoding="utf-8"), path


def _default(node: ast.expr | None, source: str):
    """The literal a field defaults to. Example: `field(default_factory=lambda: ["q", "v"])` -> ["q", "v"]."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "field":
        for kw in node.keywords:
            if kw.arg == "default":
                return _default(kw.value, source)
            if kw.arg == "default_factory":
                value = kw.value.body if isinstance(kw.value, ast.Lambda) else kw.value
                if isinstance(value, ast.Name) and value.id in ("list", "dict", "tuple"):
                    return {"list": [], "dict": {}, "tuple": ()}[value.id]
                return _default(value, source)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.get_source_segment(source, node)


@lru_cache(maxsize=None)
def dataclass_fields(ref: str) -> dict[str, FieldInfo]:
    """{field name: FieldInfo} of the dataclass `ref` ("module:Class"), read from the module's source. Example:
    a line `epochs: int = 3  # passes over the data` gives {"epochs": FieldInfo("int", 3, "passes over the data",
    None)}."""
    module, name = ref.split(":")
    source, path = _module_source(module)
    tree = ast.parse(source)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise ValueError(f"no class {name} in {path}")
    lines = source.splitlines()
    out: dict[str, FieldInfo] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        rest = lines[node.end_lineno - 1][node.end_col_offset:]
        text = rest.split("#", 1)[1].strip() if "#" in rest else ""
        for below in lines[node.end_lineno:]:  # comment lines right below continue the help
            c = _COMMENT.match(below)
            if not (text and c) or c.group(1).startswith("---"):
                break
            text += " " + c.group(1).strip()
        annotation = ast.get_source_segment(source, node.annotation)
        out[node.target.id] = FieldInfo(annotation, _default(node.value, source), text,
                                        _class_ref(tree, module, annotation))
    return out


def _class_ref(tree: ast.Module, module: str, annotation: str) -> str | None:
    """"module:Class" for an annotation naming a class defined or imported (`from m import Class`) in `module`."""
    if not annotation.isidentifier():
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == annotation:
            return f"{module}:{annotation}"
        if isinstance(node, ast.ImportFrom) and node.module and any(a.name == annotation for a in node.names):
            return f"{node.module}:{annotation}" if node.module.startswith("nanobert") else None
    return None


def _resolve(ref: str, path: str) -> FieldInfo:
    """The FieldInfo of a dotted path such as "lora.r" under the dataclass `ref`."""
    *parents, name = path.split(".")
    for p in parents:
        ref = dataclass_fields(ref)[p].nested
    return dataclass_fields(ref)[name]


def field_help(ref: str) -> dict[str, str]:
    """{field name: its comment} of the dataclass `ref`."""
    return {name: f.help for name, f in dataclass_fields(ref).items()}


def flag_name(path: str) -> str:
    """"lora.modules_to_save" -> "--lora-modules-to-save"."""
    return "--" + path.replace(".", "-").replace("_", "-")


def dest(path: str) -> str:
    """The argparse attribute of a path: "lora.r" -> "lora__r"."""
    return path.replace(".", "__")


def add_dataclass_args(parser, ref: str, paths, help_overrides: dict[str, str] | None = None,
                       names: dict[str, str] | None = None) -> None:
    """Add one option per dotted field path of the dataclass `ref` ("module:Class"), named by `flag_name` (or
    `names[path]`), its help and default from the class. A bool field is a switch (`--x` or `--no-x`)."""
    for path in paths:
        f = _resolve(ref, path)
        text = (help_overrides or {}).get(path) or f.help
        flag = (names or {}).get(path)
        if f.annotation == "bool":  # a switch that sets the opposite of the default
            flag = flag or (flag_name(path) if not f.default else "--no-" + flag_name(path)[2:])
            if f.default:
                text = f"turns off {path} (on by default)" + (f": {text}" if text else "")
            parser.add_argument(flag, dest=dest(path), action="store_const", const=str(not f.default).lower(),
                                help=text or None)
            continue
        shown = ",".join(map(str, f.default)) if isinstance(f.default, (list, tuple)) else f.default
        parser.add_argument(flag or flag_name(path), dest=dest(path), metavar=path.split(".")[-1].upper(),
                            help=f"{text} (default: {shown})" if text else f"default: {shown}")


def given_values(args, paths) -> dict:
    """The options the user gave, as a nested dict for `load_config(values=...)`: {"lora": {"r": "8"}, ...}."""
    out: dict = {}
    for path in paths:
        value = getattr(args, dest(path), None)
        if value is None:
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
