"""Opening a model directory for inference: its config, task, tokenizer, weights and input length.

    model, config, task = load_torch_model("runs/sst2")          # task from config.json's "architectures"
    tokenizer = load_tokenizer_dir(Path("runs/sst2"))
    input_max_length(Path("runs/sst2"), config, task)             # 512, or sentence-transformers' max_seq_length

Every read is checked: a missing, malformed, binary or non-object config.json, an absurd one
(refused before anything is built, see `checkpoint_io.check_weights_fit`) and a task the
checkpoint was not made for each give one NanobertError.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from nanobert.errors import NanobertError
from nanobert.model import bert
from nanobert.model.config import model_max_length, read_config_json
from nanobert.tokenizers import wordpiece

TASKS = ("fill-mask", "classify", "embed")


def _architectures(config: dict) -> list[str]:
    archs = config.get("architectures") or []
    return [archs] if isinstance(archs, str) else [str(a) for a in archs]


def default_task(config: dict) -> str:
    """The task a checkpoint was made for, from config.json's "architectures"."""
    arch = " ".join(_architectures(config))
    if "MaskedLM" in arch or "PreTraining" in arch:
        return "fill-mask"
    if "SequenceClassification" in arch:
        return "classify"
    return "embed"


def supported_tasks(config: dict) -> tuple[str, ...]:
    """Tasks a PyTorch checkpoint can serve: its own, plus sentence embeddings from its encoder."""
    task = default_task(config)
    return (task,) if task == "embed" else (task, "embed")


def load_tokenizer_dir(model_dir: Path):
    """The tokenizer saved beside a checkpoint (vocab.txt [+ tokenizer_config.json])."""
    if not (model_dir / "vocab.txt").is_file():
        raise NanobertError(f"{model_dir} has no vocab.txt: save the model with its tokenizer (save_pretrained(dir, tokenizer=tok))")
    return wordpiece.WordPieceTokenizer.load(model_dir)


def load_torch_model(model_dir: str | Path, task: str | None = None) -> tuple[nn.Module, dict, str]:
    """Load a checkpoint directory for `task` (default: the one in config.json) -> (model in eval mode, config dict, task)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory (no config.json); pass a saved checkpoint or an .onnx file")
    config = read_config_json(model_dir)
    task = task or default_task(config)
    if task not in supported_tasks(config):
        raise NanobertError(
            f"{model_dir} is a {default_task(config)} model ({', '.join(_architectures(config) or ['BertModel'])}); "
            f"it cannot do {task}. Tasks it can do: {', '.join(supported_tasks(config))}"
        )
    return bert.load_model(model_dir).eval(), config, task  # the class config.json's "architectures" names


def sentence_max_length(model_dir: Path, config: dict) -> int:
    """Longest input in tokens: sentence-transformers' max_seq_length when the checkpoint has one, else the positions."""
    st = model_dir / "sentence_bert_config.json"
    if st.is_file():
        value = read_config_json(st).get("max_seq_length", 512)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NanobertError(f"{st}: max_seq_length must be a positive integer, got {value!r}")
        return value
    return model_max_length(config)


def input_max_length(model_dir: Path, config: dict, task: str) -> int:
    """Longest input in tokens for `task`: `sentence_max_length` for embeddings, else the model's positions."""
    return sentence_max_length(model_dir, config) if task == "embed" else model_max_length(config)
