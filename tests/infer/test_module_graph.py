"""Library modules import each other without cycles, every import of a nanobert module at the top of its module.

The command-line modules (nanobert.cli.*) and the LAZY set import inside functions on purpose, so that
`nanobert --help` does not import torch; they are left out of the in-function check (not of the cycle check).
"""

from __future__ import annotations

import ast
from pathlib import Path

import nanobert

SRC = Path(nanobert.__file__).resolve().parent.parent
LAZY = {"nanobert.infer.serve"}  # imports its pipelines when the app is made, so `nanobert serve --help` needs no torch


def _lazy_allowed(name: str) -> bool:
    return name == "nanobert.cli" or name.startswith("nanobert.cli.") or name in LAZY


def _modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "nanobert").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = f
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported nanobert module, at module level?) for every import statement in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(n, id(node) in top) for n in names if n in modules]
    return found


def test_no_import_cycles_and_no_imports_inside_functions():
    modules = _modules()
    graph = {}
    inner = {}
    for name, path in modules.items():
        edges = _imports(path, modules)
        if not _lazy_allowed(name):
            found = sorted({target for target, at_top in edges if not at_top})
            if found:
                inner[name] = found
        graph[name] = {target for target, at_top in edges if at_top and target != name}
    assert not inner, f"imports inside a function or block: {inner}"

    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_the_pipelines_module_keeps_its_public_names():
    from nanobert.infer import pipelines

    for name in ("FillMaskPipeline", "ClassifyPipeline", "EmbedPipeline", "pipeline", "load_pipelines", "load_runner",
                 "load_torch_model", "load_tokenizer_dir", "build_head", "TorchRunner", "ClassifierHead",
                 "sentence_max_length", "supported_tasks", "default_task", "mean_pool", "softmax", "TASKS",
                 "MAX_MASKS_PER_TEXT", "MAX_TOP_K"):
        assert hasattr(pipelines, name), name
