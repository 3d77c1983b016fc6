"""nanobert: BERT- and GPT-style language models from scratch, from tokenizer to server."""

__version__ = "0.1.0"
from nanobert.model.bert import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    load_model,
)
from nanobert.model.lora import LoRALinear, apply_lora, load_adapter, merge_lora, save_adapter  # noqa: E402
from nanobert.model.tabular import BertForTabularClassification  # noqa: E402
from nanobert.tasks.finetune import FinetuneConfig, evaluate, finetune  # noqa: E402
from nanobert.infer.onnx import export_onnx  # noqa: E402
from nanobert.infer.pipelines import ClassifyPipeline, EmbedPipeline, FillMaskPipeline, pipeline  # noqa: E402
from nanobert.model.gpt import GPT, BigramLanguageModel, GPTConfig  # noqa: E402
from nanobert.infer.generate import GenerationConfig, generate, generate_text  # noqa: E402
from nanobert.tasks.causal_lm import CausalLMConfig, train_causal_lm  # noqa: E402
from nanobert.tokenizers import ByteLevelBPETokenizer, CharTokenizer, Tokenizer, WordPieceTokenizer, load_tokenizer  # noqa: E402
from nanobert.data.prepare import PrepareConfig, prepare  # noqa: E402
from nanobert.data.masking import mask_tokens  # noqa: E402
from nanobert.data.loaders import BatchStream, TokenShards  # noqa: E402
from nanobert.train.loop import LoopConfig  # noqa: E402  (not `train`: that name is the subpackage)
from nanobert.train.optim import make_optimizer  # noqa: E402
from nanobert.tasks.pretrain import PretrainConfig, fill_mask, pretrain  # noqa: E402
