"""Masked-language-model pretraining: prepared shards -> dynamic masking -> BertForMaskedLM -> the loop.

    cfg = load_config(PretrainConfig, "configs/mlm-cpu.toml", ["--train.max_steps", "500"])
    state = pretrain(cfg)                 # or pretrain(cfg, resume=True) after a kill

Writes to `cfg.out_dir`: checkpoints `step-*/`, metrics.csv, train.log, TensorBoard events, loss.png
and accuracy.png, and the final model in Hugging Face format under `model/` (config.json,
model.safetensors, vocab.txt) — `transformers.BertForMaskedLM.from_pretrained(out_dir + "/model")` loads it.
Under `torchrun` every process reads its own rows of each global batch; only rank 0 writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nanobert.config import check_fields, to_dict
from nanobert.data.loaders import BatchStream, TokenShards, read_meta
from nanobert.data.masking import MaskedBatches
from nanobert.data.ppmi import ppmi_vectors
from nanobert.errors import NanobertError
from nanobert.model.bert import BertConfig, BertForMaskedLM
from nanobert.model.electra import ElectraForPretraining
from nanobert.model.layers import sinusoidal_positions
from nanobert.tokenizers import load_tokenizer
from nanobert.train import distributed
from nanobert.train.loop import LoopConfig, LoopState, train

log = logging.getLogger(__name__)


@dataclass
class DataSettings:
    dir: str = "data/enwiki"  # output of `nanobert prepare`
    batch_size: int = 32  # sequences per micro-batch per process (global batch = x processes x grad_accum)
    mask_rate: float = 0.15  # share of (non-special) tokens chosen for prediction, as in BERT
    whole_word: bool = False  # choose whole words: "##" pieces follow their word's first piece
    packed: bool = False  # training batches pack several sequences to a row, attention kept within each one:
    # no FLOP spent on padding (validation batches stay one sequence a row, comparable with unpacked runs)
    eval_batches: int = 20  # validation batches per evaluation (fixed batches, fixed masks: comparable losses)

    def __post_init__(self):
        check_fields(self, {"batch_size": ">= 1", "mask_rate": "(0, 1)", "eval_batches": ">= 0"}, prefix="data.")


@dataclass
class ModelSettings:
    preset: str = "mini"  # nanobert.model.bert.PRESETS: mini (L2/H128), small (L4/H256), medium, base, ...
    hidden_size: int | None = None  # None: the preset's
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    intermediate_size: int | None = None  # None: 4 x hidden_size
    dropout: float = 0.1  # hidden and attention dropout; short CPU runs learn faster with 0
    max_position_embeddings: int = 512  # must cover the prepared sequence length
    vocab_size: int | None = None  # None: the tokenizer's; anything else must equal it
    init_from: str | None = None  # a saved BertForMaskedLM directory to continue pretraining from
    unigram_bias: bool = True  # a fresh model's output bias starts at the log-frequency of each token in the
    # training data, so it predicts the unigram distribution from step 0: Adam moves a bias by about lr a step,
    # and a zero bias takes thousands of steps to get there, which is most of a short CPU run
    embedding_init: str = "normal"  # a fresh model's word embeddings: "normal", N(0, initializer_range); or
    # "ppmi", word vectors from the training data's co-occurrence counts (nanobert.data.ppmi: seconds of
    # counting and one SVD), at the same row norm, so words that share contexts start alike
    sinusoidal_init: bool = True  # a fresh model's (learned) position embeddings start as the sine/cosine table,
    # scaled to the token embeddings' size: attention can tell near from far from step 0 instead of learning
    # positions from random vectors first; the model stays a plain BERT (loads in transformers)

    def __post_init__(self):
        if self.embedding_init not in ("normal", "ppmi"):
            raise NanobertError(f"model.embedding_init must be normal or ppmi, got {self.embedding_init!r}")
        check_fields(self, {"hidden_size": ">= 1", "num_hidden_layers": ">= 1", "num_attention_heads": ">= 1",
                            "intermediate_size": ">= 1", "dropout": "[0, 1)", "max_position_embeddings": ">= 1",
                            "vocab_size": ">= 1"}, prefix="model.")


@dataclass
class RTDSettings:
    """Replaced-token detection (objective = "rtd"; nanobert.model.electra)."""

    generator_layers: int = 1  # the generator: the model's width, this many layers (a weak generator
    # makes replacements the discriminator can learn from; ELECTRA's best were 1/4-1/2 of the discriminator)
    disc_weight: float = 50.0  # ELECTRA's weight of the discriminator's loss beside the generator's

    def __post_init__(self):
        check_fields(self, {"generator_layers": ">= 1", "disc_weight": "> 0"}, prefix="rtd.")


OBJECTIVES = ("mlm", "rtd")


@dataclass
class PretrainConfig:
    out_dir: str = "runs/mlm"  # checkpoints, logs, plots and the final model
    seed: int = 0  # model init, data order and masks
    objective: str = "mlm"  # "mlm": BERT's masked LM; "rtd": ELECTRA's replaced-token detection, whose
    # discriminator (saved as model/, a plain BERT encoder; the generator in model/generator/) learns from
    # every token rather than the masked ones only. At the demo's budget it lost to masked LM by 15-24 points
    # downstream (its discriminator collapsed before the generator got good: docs/pretraining.md)
    samples: list[str] = field(default_factory=lambda: [
        "The capital of France is [MASK].",
        "He played [MASK] for the national team.",
        "The river flows into the [MASK] sea.",
    ])  # fill-mask sentences logged at the end to eyeball what the model learned
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: LoopConfig = field(default_factory=lambda: LoopConfig(max_steps=1000, lr=1e-3))
    rtd: RTDSettings = field(default_factory=RTDSettings)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise NanobertError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")


def build_mlm_model(settings: ModelSettings, tokenizer, seq_len: int, objective: str = "mlm",
                    rtd: RTDSettings | None = None):
    """A BertForMaskedLM (objective "mlm") or ElectraForPretraining ("rtd") for `tokenizer`, checked against
    the data: vocab size and sequence length."""
    rtd = rtd or RTDSettings()
    if settings.init_from:
        dropout = dict(hidden_dropout_prob=settings.dropout, attention_probs_dropout_prob=settings.dropout)
        if objective == "rtd":
            if not (Path(settings.init_from) / "generator").is_dir():
                raise NanobertError(f"objective rtd continues from a directory an rtd run wrote (with a generator/ "
                                    f"inside); {settings.init_from} has none")
            model = ElectraForPretraining.from_saved(settings.init_from, rtd.disc_weight, **dropout).train()
        else:
            model = BertForMaskedLM.from_pretrained(settings.init_from, **dropout).train()
    else:
        sizes = {k: getattr(settings, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                   "intermediate_size") if getattr(settings, k) is not None}
        if "hidden_size" in sizes and "intermediate_size" not in sizes:
            sizes["intermediate_size"] = 4 * sizes["hidden_size"]
        config = BertConfig.from_preset(
            settings.preset, **sizes, vocab_size=settings.vocab_size or tokenizer.vocab_size,
            max_position_embeddings=settings.max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
            hidden_dropout_prob=settings.dropout, attention_probs_dropout_prob=settings.dropout)
        model = BertForMaskedLM(config) if objective == "mlm" else \
            ElectraForPretraining(config, rtd.generator_layers, rtd.disc_weight)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise NanobertError(f"the model's vocab_size is {model.config.vocab_size} but the data's tokenizer has "
                            f"{tokenizer.vocab_size} tokens; set model.vocab_size to {tokenizer.vocab_size} "
                            f"or prepare the data with the model's tokenizer")
    if seq_len > model.config.max_position_embeddings:
        raise NanobertError(f"the data's sequences have {seq_len} tokens but the model has only "
                            f"{model.config.max_position_embeddings} positions; raise model.max_position_embeddings "
                            f"or prepare with a shorter seq-len")
    return model


def unigram_log_probs(data: TokenShards, vocab_size: int, special_ids, max_tokens: int = 8_000_000) -> torch.Tensor:
    """(V,) log-probability of each token among the first `max_tokens` tokens of `data` (add-one smoothed).

    Special tokens are never prediction targets, so they keep the smallest value.
    """
    counts = data.token_counts(vocab_size, max_tokens)
    counts[list(special_ids)] = 0
    return torch.from_numpy(np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)).float()


@torch.no_grad()
def init_fresh_model(model, settings: ModelSettings, train_data: TokenShards, tokenizer) -> None:
    """A newly built model's starting point for a short run: the unigram output bias and sine/cosine positions."""
    bias = model.cls.predictions.bias
    if settings.unigram_bias and bias is not None:
        bias.copy_(unigram_log_probs(train_data, bias.numel(), tokenizer.special_ids | {tokenizer.pad_token_id}))
    if settings.embedding_init == "ppmi":
        words = model.bert.embeddings.word_embeddings.weight  # (V, H)
        vectors, has = ppmi_vectors(train_data, words.shape[0], words.shape[1],
                                    skip_ids=tokenizer.special_ids | {tokenizer.pad_token_id})
        words[has] = vectors[has] * model.config.initializer_range * words.shape[1] ** 0.5  # a N(0, std) row's norm
    positions = getattr(model.bert.embeddings, "position_embeddings", None)
    if settings.sinusoidal_init and positions is not None:  # rows of norm sqrt(H/2) -> a N(0, initializer_range) row's
        table = sinusoidal_positions(*positions.weight.shape)  # (P, H)
        positions.weight.copy_(table * model.config.initializer_range * 2 ** 0.5)


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (token, probability) for each [MASK] in `text`.

    Example: fill_mask(model, tok, "Paris is the capital of [MASK].") -> [[("france", 0.41), ...]].
    """
    was_training = model.training
    model.eval()
    ids = torch.tensor([tokenizer.encode(text)], device=next(model.parameters()).device)  # (1, T)
    logits, _ = model(ids)  # (1, T, V)
    model.train(was_training)
    out = []
    for pos in (ids[0] == tokenizer.mask_token_id).nonzero().flatten().tolist():
        probs = logits[0, pos].float().softmax(-1)  # (V,)
        top = probs.topk(top_k)
        out.append([(tokenizer.id_to_token(i), float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())])
    return out


class _LogRTD:
    """Every `every` steps under objective "rtd": the two losses the total is made of, and how often the
    discriminator is right (the share of replaced tokens is what "always say original" would score wrong)."""

    def __init__(self, every: int):
        self.every = max(1, every)

    def on_step_end(self, state: LoopState) -> None:
        parts = getattr(distributed.unwrap(state.model), "last_losses", None)
        if parts and state.step % self.every == 0:
            log.info("step %d rtd: generator loss %.4f, discriminator loss %.4f, discriminator accuracy %.4f "
                     "(%.1f%% of tokens replaced)", state.step, float(parts["generator_loss"]),
                     float(parts["discriminator_loss"]), float(parts["discriminator_accuracy"]),
                     100 * float(parts["replaced"]))


class _SaveFinalModel:
    """At the end of training: save the model in Hugging Face format and log fill-mask samples (rank 0; every
    process gathers the weights of a sharded model first)."""

    def __init__(self, path: Path, tokenizer, samples: list[str]):
        self.path, self.tokenizer, self.samples = path, tokenizer, samples

    def on_train_end(self, state: LoopState) -> None:
        model = state.model
        if distributed.is_sharded(model):
            weights, _ = distributed.full_state(model)  # a collective: every process
            if not state.info.is_main:
                return
            model = ElectraForPretraining(model.config, model.generator_config.num_hidden_layers, model.disc_weight) \
                if isinstance(model, ElectraForPretraining) else BertForMaskedLM(model.config)
            model.load_state_dict(weights)
        if not state.info.is_main:
            return
        model.save_pretrained(self.path, tokenizer=self.tokenizer)
        for text in self.samples:
            if self.tokenizer.id_to_token(self.tokenizer.mask_token_id) in text:
                preds = fill_mask(model, self.tokenizer, text)
                log.info("fill-mask %r -> %s", text, " | ".join(
                    ", ".join(f"{t} {p:.2f}" for t, p in top) for top in preds))


def pretrain(cfg: PretrainConfig, resume: bool = False, callbacks=()) -> LoopState:
    """Run MLM pretraining as `cfg` says (see the module docstring); returns the loop's final state."""
    meta = read_meta(cfg.data.dir)
    tokenizer = load_tokenizer(Path(cfg.data.dir) / meta["tokenizer"]["dir"])
    if getattr(tokenizer, "mask_token_id", None) is None:
        raise NanobertError(f"the tokenizer in {cfg.data.dir} has no [MASK] token; MLM needs a WordPiece tokenizer")
    with distributed.process_group(cfg.train.device) as info:
        torch.manual_seed(cfg.seed)  # the same initial weights on every process
        model = build_mlm_model(cfg.model, tokenizer, int(meta["seq_len"]), cfg.objective, cfg.rtd)
        torch.manual_seed(cfg.seed + 1 + info.rank)  # dropout differs between processes
        train_data = TokenShards(cfg.data.dir, "train")
        if not cfg.model.init_from:
            init_fresh_model(model, cfg.model, train_data, tokenizer)
        stream = BatchStream(train_data, cfg.data.batch_size, seed=cfg.seed, pad_id=tokenizer.pad_token_id,
                             rank=info.rank, world_size=info.world_size, packed=cfg.data.packed)
        batches = MaskedBatches(stream, tokenizer, cfg.data.mask_rate, cfg.seed, cfg.data.whole_word)
        eval_data = None
        val = TokenShards(cfg.data.dir, "val")
        val_batch = min(cfg.data.batch_size, len(val) // info.world_size)  # a small val split: smaller batches
        if cfg.data.eval_batches > 0 and val_batch >= 1:
            val_stream = MaskedBatches(BatchStream(val, val_batch, seed=cfg.seed,
                                                   pad_id=tokenizer.pad_token_id, rank=info.rank,
                                                   world_size=info.world_size, shuffle=False),
                                       tokenizer, cfg.data.mask_rate, cfg.seed + 1, cfg.data.whole_word)
            n = min(cfg.data.eval_batches, len(val_stream.stream))
            val_batches = [next(val_stream) for _ in range(n)]
            eval_data = lambda: val_batches  # noqa: E731  the same masked batches at every evaluation
        elif cfg.data.eval_batches > 0:
            log.warning("no validation: the val split has %d sequences (need %d, one per process)", len(val),
                        info.world_size)
        log.info("model: %s parameters; data: %s train sequences of <= %d tokens", f"{model.num_parameters():,}",
                 f"{len(train_data):,}", train_data.seq_len)
        final = _SaveFinalModel(Path(cfg.out_dir) / "model", tokenizer, cfg.samples)
        state = train(model, batches, cfg.train, cfg.out_dir, eval_data=eval_data, resume=resume,
                      callbacks=[*callbacks, *([_LogRTD(cfg.train.log_every)] if cfg.objective == "rtd" else []),
                                 final], info=info, run_config=to_dict(cfg))
        return state
