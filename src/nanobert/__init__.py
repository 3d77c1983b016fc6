"""nanobert: BERT- and GPT-style language models from scratch, from tokenizer to server.

The public API, in pipeline order: tokenizers → data → models → training → fine-tuning → inference.
"""

__version__ = "0.1.0"

from nanobert.tokenizers import ByteLevelBPETokenizer, CharTokenizer, Tokenizer, WordPieceTokenizer, load_tokenizer
from nanobert.data.prepare import PrepareConfig, prepare
from nanobert.data.masking import mask_tokens
from nanobert.data.loaders import BatchStream, TokenShards
from nanobert.model.bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, load_model
from nanobert.model.lora import LoRALinear, apply_lora, load_adapter, merge_lora, save_adapter
from nanobert.model.tabular import BertForTabularClassification
from nanobert.model.gpt import GPT, BigramLanguageModel, GPTConfig
from nanobert.train.loop import LoopConfig  # the function is nanobert.train.loop.train (`train` is the subpackage)
from nanobert.train.optim import make_optimizer
from nanobert.tasks.pretrain import PretrainConfig, fill_mask, pretrain
from nanobert.tasks.causal_lm import CausalLMConfig, train_causal_lm
from nanobert.tasks.finetune import FinetuneConfig, evaluate_classifier, finetune
from nanobert.infer.pipelines import ClassifyPipeline, EmbedPipeline, FillMaskPipeline, pipeline
from nanobert.infer.generate import GenerationConfig, generate, generate_text
from nanobert.infer.onnx import export_onnx
from nanobert.tasks.demo import DemoConfig, run_demo

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
