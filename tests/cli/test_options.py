"""Options generated from config dataclasses: read from source without importing, same defaults as the class."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from nanobert.cli import build_parser
from nanobert.cli.options import dataclass_fields, given_values
from nanobert.config import load_config
from nanobert.infer.generate import GenerationConfig
from nanobert.model.lora import LoRAConfig
from nanobert.tasks.demo import DemoConfig
from nanobert.tasks.finetune import FinetuneConfig


@pytest.mark.parametrize("cls", [FinetuneConfig, LoRAConfig, GenerationConfig, DemoConfig])
def test_source_reading_matches_the_dataclass(cls):
    fields = dataclass_fields(f"{cls.__module__}:{cls.__name__}")
    real = dataclasses.fields(cls)
    assert list(fields) == [f.name for f in real]
    instance = cls()
    for f in real:
        if not dataclasses.is_dataclass(getattr(instance, f.name)):
            assert fields[f.name].default == getattr(instance, f.name), f.name


def test_help_nested_fields_and_continued_comments():
    fields = dataclass_fields("nanobert.tasks.finetune:FinetuneConfig")
    assert fields["epochs"].help == "passes over the training data (a validation pass after each)"
    assert fields["init"].help.endswith("re-initialised (the control for what pretraining buys)")
    assert fields["lora"].nested == "nanobert.model.lora:LoRAConfig"
    assert fields["keep"].help.startswith("which epoch's weights")  # the "# --- LoRA" line below is not help


def test_generate_switches_and_values():
    from nanobert.cli.generate import GENERATION_FLAGS

    args = build_parser().parse_args(["generate", "--model", "m", "--greedy", "--no-cache", "--top-k", "5"])
    assert given_values(args, GENERATION_FLAGS) == {"greedy": "true", "use_cache": "false", "top_k": "5"}
    cfg = load_config(GenerationConfig, values=given_values(args, GENERATION_FLAGS))
    assert (cfg.greedy, cfg.use_cache, cfg.top_k, cfg.temperature) == (True, False, 5, 1.0)
    plain = build_parser().parse_args(["generate", "--model", "m"])
    assert load_config(GenerationConfig, values=given_values(plain, GENERATION_FLAGS)) == GenerationConfig()


def test_demo_flags_keep_their_names():
    from nanobert.cli.demo import FLAGS

    args = build_parser().parse_args(["demo", "--quick", "--out", "x", "--no-progress", "--no-minilm", "--minutes",
                                      "3", "--seed", "2"])
    cfg = load_config(DemoConfig, values=given_values(args, FLAGS))
    assert cfg == DemoConfig(out_dir="x", minutes=3.0, quick=True, minilm=False, seed=2, progress=False)
    assert load_config(DemoConfig, values=given_values(build_parser().parse_args(["demo"]), FLAGS)) == DemoConfig()


def test_building_the_parser_imports_no_torch():
    code = "import sys; from nanobert.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "False"
