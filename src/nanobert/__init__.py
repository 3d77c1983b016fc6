"""nanobert: BERT- and GPT-style language models from scratch, from tokenizer to server.

The public API, in pipeline order: tokenizers → data → models → training → fine-tuning → inference.
"""

__version__ = "0.1.0"

# Each public name and the module it lives in; imported on first use (PEP 562), so that `import nanobert`
# (and so the `nanobert` command and its --help) does not import torch until something needs it.
_EXPORTS = {
    "nanobert.tokenizers": ["ByteLevelBPETokenizer", "CharTokenizer", "Tokenizer", "WordPieceTokenizer",
                            "load_tokenizer"],
    "nanobert.data.prepare": ["PrepareConfig", "prepare"],
    "nanobert.data.masking": ["mask_tokens"],
    "nanobert.data.loaders": ["BatchStream", "TokenShards"],
    "nanobert.model.bert": ["BertConfig", "BertForMaskedLM", "BertForSequenceClassification", "BertModel",
                            "load_model"],
    "nanobert.model.lora": ["LoRALinear", "apply_lora", "load_adapter", "merge_lora", "save_adapter"],
    "nanobert.model.tabular": ["BertForTabularClassification"],
    "nanobert.model.gpt": ["GPT", "BigramLanguageModel", "GPTConfig"],
    "nanobert.train.loop": ["LoopConfig"],  # the function is nanobert.train.loop.train (`train`: the subpackage)
    "nanobert.train.optim": ["make_optimizer"],
    "nanobert.tasks.pretrain": ["PretrainConfig", "fill_mask", "pretrain"],
    "nanobert.tasks.causal_lm": ["CausalLMConfig", "train_causal_lm"],
    "nanobert.tasks.finetune": ["FinetuneConfig", "evaluate_classifier", "finetune"],
    "nanobert.infer.pipelines": ["ClassifyPipeline", "EmbedPipeline", "FillMaskPipeline", "pipeline"],
    "nanobert.infer.generate": ["GenerationConfig", "generate", "generate_text"],
    "nanobert.infer.onnx": ["export_onnx"],
    "nanobert.tasks.demo": ["DemoConfig", "run_demo"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'nanobert' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = [
    "Tokenizer", "WordPieceTokenizer", "ByteLevelBPETokenizer", "CharTokenizer", "load_tokenizer",
    "PrepareConfig", "prepare", "mask_tokens", "BatchStream", "TokenShards",
    "BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification", "BertForTabularClassification",
    "load_model", "LoRALinear", "apply_lora", "merge_lora", "save_adapter", "load_adapter",
    "GPTConfig", "GPT", "BigramLanguageModel",
    "LoopConfig", "make_optimizer", "PretrainConfig", "pretrain", "fill_mask", "CausalLMConfig", "train_causal_lm",
    "FinetuneConfig", "finetune", "evaluate_classifier",
    "FillMaskPipeline", "ClassifyPipeline", "EmbedPipeline", "pipeline",
    "GenerationConfig", "generate", "generate_text", "export_onnx", "DemoConfig", "run_demo",
]
