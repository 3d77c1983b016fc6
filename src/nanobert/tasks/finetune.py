"""Fine-tune a BERT for classification: in full, with LoRA, or with numeric (tabular) features.

    cfg = FinetuneConfig(epochs=2)                               # or lora=LoRAConfig(r=8): lr 1e-3 by default
    report = finetune("minilm/", "train.tsv", "dev.tsv", "out/", cfg)
    report["accuracy"]

A client of the one training loop (`nanobert.train.loop.train`): length-bucketed batches (similar
lengths together, padded only to the longest in the batch), AdamW with linear warmup and linear
decay, gradient clipping, a validation pass after each epoch; the `keep` rule (a loop callback)
keeps the weights of the chosen epoch. From the loop come gradient accumulation, bf16, DDP
(`torchrun`), metrics.csv/TensorBoard/plots and checkpoints that `resume=True` continues exactly.
The output directory is a complete model that `from_pretrained` (ours or transformers') loads; see
`finetune` for its files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nanobert.config import check_fields, from_dict, to_dict
from nanobert.data.labelled import BucketedBatches, Encoded, collate_labelled, encode_labelled, sorted_batches
from nanobert.data.tables import LabelMap, LabelledData, read_labelled
from nanobert.errors import NanobertError
from nanobert.fileio import remove_dead_temporaries, write_json, write_text
from nanobert.infer.pipelines import ClassifyPipeline
from nanobert.model.bert import BertForSequenceClassification
from nanobert.model.config import BertConfig
from nanobert.model.lora import LoRAConfig, apply_lora, count_parameters, merge_lora, save_adapter
from nanobert.model.tabular import TABULAR_FILE, BertForTabularClassification, TabularStats
from nanobert.tokenizers import load_tokenizer
from nanobert.train import distributed
from nanobert.train.callbacks import KEEP_RULES, KeepBest
from nanobert.train.loop import LoopConfig, train
from nanobert.train.metrics import classification_metrics, format_report
from nanobert.train.optim import layer_decay_scales, make_optimizer
from nanobert.train.plots import plot_confusion_matrix
from nanobert.train.precision import PRECISIONS

log = logging.getLogger(__name__)

SETTINGS_FILE = "finetune.json"  # the FinetuneConfig a model was trained with: columns for evaluate/classify
RUN_DIR = "checkpoints"  # under the output directory: the loop's checkpoints, metrics.csv, train.log, plots
FULL_LR, LORA_LR = 5e-5, 1e-3  # the default peak rates: BERT-on-GLUE for every weight; docs/finetune.md's LoRA recipe

@dataclass
class FinetuneConfig:
    """How to fine-tune. Defaults are the usual BERT-on-GLUE recipe, sized for a CPU."""

    # --- data
    text_column: str | None = None  # column with the text; None: "text" or "sentence", whichever the file has
    text_pair_column: str | None = None  # a second text (NLI, QA pairs): encoded as [CLS] a [SEP] b [SEP]
    label_column: str = "label"  # column with the labels, strings or integers
    tabular_columns: list[str] = field(default_factory=list)  # numeric columns to use beside the text
    max_length: int = 128  # truncate inputs to this many tokens; SST-2's longest sentence is ~70
    max_train_examples: int | None = None  # train on a random subset (fixed by seed) of this size
    # --- optimisation
    epochs: int = 3  # passes over the training data (a validation pass after each)
    batch_size: int = 32  # examples per optimizer step, split over processes and grad_accum micro-batches
    lr: float | None = None  # peak learning rate; None: 5e-5 for full fine-tuning, 1e-3 with LoRA
    weight_decay: float = 0.01  # on matrices only (see train.optim)
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.06  # of all optimizer steps
    max_grad_norm: float = 1.0  # clip the global gradient norm; 0: no clipping
    layer_lr_decay: float = 1.0  # each encoder layer learns this times as fast as the one above it, the
    # embeddings slowest (ELECTRA's fine-tuning uses 0.8 for 12 layers); 1: one rate for every weight
    max_steps: int | None = None  # stop (and end the schedule) after this many steps in all
    max_minutes: float | None = None  # stop training after this much wall time; the schedule is unchanged
    grad_accum: int = 1  # micro-batches per optimizer step (same steps, less memory)
    precision: str = "auto"  # auto (bf16 on GPUs that support it, and on CPUs with bf16 instructions when a timed
    # step is faster: train.precision; else fp32) | fp32 | bf16
    init: str = "pretrained"  # pretrained | random: same architecture and tokenizer, weights re-initialised
    # (the control for what pretraining buys)
    classifier_dropout: float | None = None  # None: the checkpoint's hidden_dropout_prob (0.1 for BERT)
    dropout: float | None = None  # the encoder's hidden and attention dropout while fine-tuning; None: the
    # checkpoint's (0.1 for BERT; 0 for this project's CPU pretraining recipes, which drop it because short runs
    # underfit)
    pooling: str | None = None  # cls | mean: the classifier reads [CLS] through the pooler, or the mean over real
    # tokens (better for an MLM-only checkpoint, whose [CLS] is never trained; transformers cannot run it);
    # None: the checkpoint's classifier_pooling ("cls" for Hugging Face checkpoints)
    keep: str = "loss"  # which epoch's weights to keep: lowest validation loss, highest accuracy, or the last
    # --- LoRA (lora.r = 0: full fine-tuning)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # --- text + tabular
    tabular_hidden: int = 32  # width of the tabular features' projection
    # --- loop
    eval_batch_size: int = 128
    bucket_batches: int = 50  # batches per pool sorted by length: big enough to pad little, small enough to stay random
    checkpoint_every: int | None = None  # steps between checkpoints; None: at the end of each epoch
    seed: int = 0  # data order, subset, new head and LoRA initialisation
    threads: int | None = None  # torch CPU threads; None: torch's default
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    progress: bool = True  # tqdm bars (stderr)

    def __post_init__(self):
        check_fields(self, {
            "max_length": ">= 2", "max_train_examples": ">= 1", "epochs": ">= 1", "batch_size": ">= 1", "lr": "> 0",
            "weight_decay": ">= 0", "adam_eps": "> 0", "warmup_ratio": "[0, 1)", "max_grad_norm": ">= 0",
            "layer_lr_decay": "(0, 1]",
            "max_steps": ">= 1", "max_minutes": "> 0", "grad_accum": ">= 1", "classifier_dropout": "[0, 1)",
            "dropout": "[0, 1)",
            "tabular_hidden": ">= 1", "eval_batch_size": ">= 1", "bucket_batches": ">= 1", "checkpoint_every": ">= 1",
            "threads": ">= 1"}, {"keep": list(KEEP_RULES), "precision": list(PRECISIONS),
                                 "init": ["pretrained", "random"]})
        if self.pooling not in (None, "cls", "mean"):
            raise NanobertError(f"pooling must be cls or mean, got {self.pooling!r}")
        if isinstance(self.lora, dict):  # dataclasses.replace / from_dict hand over a LoRAConfig; a plain dict too
            self.lora = LoRAConfig(**self.lora)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NanobertError(f"device {self.device!r} asked for, but torch sees no CUDA device; use cpu or auto")

    @property
    def learning_rate(self) -> float:
        """The peak rate used: `lr`, or the default of the method (5e-5 full, 1e-3 LoRA)."""
        return self.lr if self.lr is not None else LORA_LR if self.lora.r else FULL_LR


def read_split(path, cfg: FinetuneConfig, require_labels: bool = True) -> LabelledData:
    return read_labelled(path, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                         label_column=cfg.label_column, tabular_columns=cfg.tabular_columns,
                         require_labels=require_labels)


@torch.no_grad()
def predict_logits(model, data: Encoded, pad_id: int, batch_size: int = 128) -> torch.Tensor:
    """(N, K) logits of an in-memory classifier in the order of `data` (batches sorted by length: little padding)."""
    was_training = model.training
    model.eval()
    order = np.argsort(data.lengths, kind="stable")
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(order), batch_size):
        batch = collate_labelled(data, order[start:start + batch_size], pad_id)
        batch.pop("labels", None)
        chunks.append(model(**{k: v.to(device) for k, v in batch.items()})[0].float().cpu())
    out = torch.cat(chunks)
    logits = torch.empty_like(out)
    logits[torch.from_numpy(order)] = out
    model.train(was_training)
    return logits


def evaluate_logits(logits: torch.Tensor, labels: np.ndarray, names: list[str]) -> dict:
    """Metrics + mean cross-entropy loss of (N, K) logits against (N,) class ids."""
    y = torch.from_numpy(np.asarray(labels))
    metrics = classification_metrics(labels, logits.argmax(-1).numpy(), names)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, y))
    return metrics


# --- model ----------------------------------------------------------------------------------------------------------

def build_classifier(model_dir, labels: LabelMap, cfg: FinetuneConfig, stats: TabularStats | None):
    """The classifier to train, its encoder loaded from `model_dir` (a new head when the checkpoint has none);
    `cfg.init == "random"` re-initialises every weight (same architecture and tokenizer)."""
    model_dir = Path(model_dir)
    overrides = dict(num_labels=len(labels), id2label=labels.id2label, label2id=labels.label2id)
    if cfg.classifier_dropout is not None:
        overrides["classifier_dropout"] = cfg.classifier_dropout
    if cfg.pooling is not None:
        overrides["classifier_pooling"] = cfg.pooling
    if cfg.dropout is not None:
        overrides.update(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    old = BertConfig.from_pretrained(model_dir)
    same_head = old.num_labels == len(labels) and old.id2label is not None and \
        {str(v) for v in old.id2label.values()} == set(labels.names)
    if stats is not None:
        expected = BertForTabularClassification.new_head_keys
        model = BertForTabularClassification.from_pretrained(model_dir, expected, stats=stats, **overrides)
    else:
        expected = () if same_head else BertForSequenceClassification.new_head_keys
        model = BertForSequenceClassification.from_pretrained(model_dir, expected, **overrides)
    missing = getattr(getattr(model, "load_report", None), "missing", [])
    if missing:
        log.info("new head, initialised: %s", ", ".join(missing))
    if cfg.init == "random":
        model.apply(model._init_weights)  # what a fresh model of this config starts from
        log.info("init random: every weight re-initialised")
    if cfg.lora.r:
        extra = ["tabular"] if stats is not None else []
        apply_lora(model, cfg.lora, modules_to_save=[*cfg.lora.modules_to_save, *extra])
    return model


# --- the loop -------------------------------------------------------------------------------------------------------

def train_classifier(model, train_data: Encoded, val: Encoded, pad_id: int, cfg: FinetuneConfig, run_dir=None,
                     resume: bool = False, info: distributed.DistInfo | None = None) -> dict:
    """Train `model` in place through the loop; at the end it holds the weights of the epoch `cfg.keep` chooses.

    Returns {"history": [per epoch: train_loss, val_loss, val_accuracy, seconds, steps], "best_epoch",
    "train_time_s", "steps"}.
    """
    info = info or distributed.DistInfo(device=distributed.pick_device(cfg.device))
    torch.manual_seed(cfg.seed + info.rank)  # dropout: the same draws every run, different per process
    batches = BucketedBatches(train_data, cfg.batch_size, cfg.seed, pad_id, cfg.bucket_batches, info.rank,
                              info.world_size, cfg.grad_accum)
    per_epoch = batches.steps_per_epoch
    if per_epoch == 0:
        raise NanobertError(f"{len(train_data)} training examples cannot fill one batch for "
                            f"{info.world_size * cfg.grad_accum} micro-batches; lower grad_accum or add data")
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)
    warmup = int(cfg.warmup_ratio * total)
    loop = LoopConfig(max_steps=total, time_limit_min=cfg.max_minutes or 0.0, lr=cfg.learning_rate, min_lr=0.0,
                      warmup_steps=warmup, decay_steps=total - warmup, schedule="linear",
                      weight_decay=cfg.weight_decay, eps=cfg.adam_eps, grad_accum=cfg.grad_accum,
                      grad_clip=cfg.max_grad_norm, eval_every=per_epoch, eval_first=False,
                      checkpoint_every=cfg.checkpoint_every or per_epoch, max_checkpoints=2,
                      log_every=min(10, per_epoch), precision=cfg.precision, device=str(info.device),
                      progress=cfg.progress)
    lr_scales = dict(cfg.lora.lr_scales() or {})
    if cfg.layer_lr_decay < 1:
        lr_scales.update(layer_decay_scales(model.config.num_hidden_layers, cfg.layer_lr_decay))
    optimizer = make_optimizer(model, lr=loop.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps,
                               lr_scales=lr_scales)
    val_batches = sorted_batches(val, cfg.eval_batch_size, pad_id, info.rank, info.world_size)
    keeper = KeepBest(cfg.keep, per_epoch)
    state = train(model, batches, loop, run_dir, eval_data=lambda: val_batches, optimizer=optimizer,
                  resume=resume, callbacks=[keeper], info=info, run_config=to_dict(cfg))
    model.eval()
    return {"history": keeper.history, "best_epoch": keeper.best_epoch, "steps": state.step,
            "train_time_s": sum(h["seconds"] for h in keeper.history)}


# --- the whole task --------------------------------------------------------------------------------------------------

def finetune(model_dir, train_file, validation_file, out_dir, cfg: FinetuneConfig | None = None,
             test_file=None, resume: bool = False) -> dict:
    """Fine-tune the BERT in `model_dir` on `train_file`, keep the best epoch on `validation_file`, write `out_dir`:

        out_dir/config.json, model.safetensors    the classifier (LoRA merged in), with id2label/label2id
        out_dir/vocab.txt, tokenizer_config.json  the tokenizer
        out_dir/tabular.json                      column names, mean, std (text + tabular models only)
        out_dir/adapter/adapter_config.json, adapter_model.safetensors   the LoRA adapter alone, as PEFT saves it
        out_dir/finetune.json                     the FinetuneConfig used (columns, hyperparameters)
        out_dir/metrics.json                      metrics of the kept epoch (and on test_file), history, params, time
        out_dir/classification_report.txt, confusion_matrix.png   on test_file if given, else validation
        out_dir/metrics.csv, loss.png, accuracy.png               the loop's learning curves
        out_dir/checkpoints/                      the loop's run: step-* checkpoints, metrics.csv, train.log, tb/

    `resume=True` continues from the newest checkpoint in out_dir/checkpoints (after a kill: the same final
    weights as an uninterrupted run). Under `torchrun` every process trains its share; rank 0 writes.
    Returns the dict written to metrics.json.
    """
    cfg = cfg or FinetuneConfig()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with distributed.process_group(cfg.device) as info:
            return _finetune(Path(model_dir), train_file, validation_file, Path(out_dir), cfg, test_file, resume,
                             info)
    finally:
        torch.set_num_threads(threads)


def _read_data(model_dir: Path, train_file, validation_file, test_file, cfg: FinetuneConfig):
    """Tokenizer, label map, tabular statistics and the encoded train / validation / test splits."""
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory: it has no config.json "
                            "(give a directory written by save_pretrained or a Hugging Face BERT)")
    tokenizer = load_tokenizer(model_dir)
    train_data = read_split(train_file, cfg)
    val_data = read_split(validation_file, cfg)
    test_data = read_split(test_file, cfg) if test_file is not None else None
    if cfg.max_train_examples is not None and cfg.max_train_examples < len(train_data):
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(train_data))[:cfg.max_train_examples])
        train_data = LabelledData([train_data.texts[i] for i in keep], [train_data.labels[i] for i in keep],
                                  [train_data.text_pairs[i] for i in keep] if train_data.text_pairs else None,
                                  train_data.tabular[keep] if train_data.tabular is not None else None,
                                  train_data.tabular_columns, train_data.source)
    labels = LabelMap.from_labels(train_data.labels)
    if len(labels) < 2:
        raise NanobertError(f"{train_file}: every row has the label {labels.names[0]!r}; a classifier needs two or more")
    stats = TabularStats.fit(train_data.tabular, cfg.tabular_columns, cfg.tabular_hidden) if cfg.tabular_columns else None
    splits = [encode_labelled(d, tokenizer, cfg.max_length, labels, stats) if d is not None else None
              for d in (train_data, val_data, test_data)]
    log.info("train %d, validation %d%s examples; labels %s", len(splits[0]), len(splits[1]),
             f", test {len(splits[2])}" if splits[2] else "", labels.names)
    return tokenizer, labels, stats, splits


def _finetune(model_dir: Path, train_file, validation_file, out_dir: Path, cfg: FinetuneConfig, test_file,
              resume: bool, info: distributed.DistInfo) -> dict:
    tokenizer, labels, stats, (train_enc, val, test) = _read_data(model_dir, train_file, validation_file, test_file,
                                                                  cfg)
    torch.manual_seed(cfg.seed)  # the new head and the LoRA matrices: torch's own start seed differs every run
    model = build_classifier(model_dir, labels, cfg, stats)
    trainable, total = count_parameters(model)
    log.info("parameters: %s trainable of %s (%.3f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    run_dir = out_dir / RUN_DIR
    run = train_classifier(model, train_enc, val, tokenizer.pad_token_id, cfg, run_dir, resume, info)
    if not info.is_main:
        return {}
    val_metrics = evaluate_logits(predict_logits(model, val, tokenizer.pad_token_id, cfg.eval_batch_size),
                                  val.labels, labels.names)
    final, split = val_metrics, "validation"
    if test is not None:
        final, split = evaluate_logits(predict_logits(model, test, tokenizer.pad_token_id, cfg.eval_batch_size),
                                       test.labels, labels.names), "test"
    report = {"split": split, **final, "trainable_params": trainable, "total_params": total,
              "trainable_fraction": trainable / total, "train_time_s": run["train_time_s"],
              "best_epoch": run["best_epoch"], "steps": run["steps"], "history": run["history"],
              "train_examples": len(train_enc), "mode": ("lora" if cfg.lora.r else "full") + ("+tabular" if stats else "")}
    if test is not None:
        report["validation"] = val_metrics
    _write_outputs(model, tokenizer, model_dir, out_dir, cfg, report, final, split, labels)
    return report


def _write_outputs(model, tokenizer, model_dir: Path, out_dir: Path, cfg: FinetuneConfig, report: dict,
                   final: dict, split: str, labels: LabelMap) -> None:
    """The model files, written into a temporary directory inside `out_dir`, then renamed into it one by one.

    The loop's run directory (`out_dir/checkpoints`) stays where it is, so a kill at any moment leaves the
    checkpoints that `resume=True` continues from; a killed write leaves only a dead temporary.
    """
    run_dir = out_dir / RUN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(out_dir / ".final")
    tmp = Path(tempfile.mkdtemp(prefix=f".final.pid{os.getpid()}-", suffix=".tmp", dir=out_dir))
    try:
        if cfg.lora.r:
            save_adapter(model, tmp / "adapter", base_model_name_or_path=str(model_dir.resolve()))
            model = merge_lora(model)
        model.save_pretrained(tmp, tokenizer=tokenizer)
        write_json(tmp / SETTINGS_FILE, {"base_model": str(model_dir), **to_dict(cfg)})
        write_text(tmp / "classification_report.txt", format_report(final))
        plot_confusion_matrix(final["confusion_matrix"], labels.names, tmp / "confusion_matrix.png",
                              title=f"{split} ({final['accuracy']:.1%} accurate)")
        for name in ("metrics.csv", "loss.png", "accuracy.png"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
        write_json(tmp / "metrics.json", report)
        for entry in sorted(tmp.iterdir(), key=lambda e: e.name == "metrics.json"):  # metrics.json last: done
            if entry.is_dir() and (out_dir / entry.name).is_dir():
                shutil.rmtree(out_dir / entry.name)
            os.replace(entry, out_dir / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_classifier(model_dir):
    """A fine-tuned classifier (plain or text + tabular), its tokenizer and its FinetuneConfig from `model_dir`."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory: it has no config.json")
    if (model_dir / TABULAR_FILE).is_file():
        model = BertForTabularClassification.from_pretrained(model_dir)
    else:
        model = BertForSequenceClassification.from_pretrained(model_dir)
    return model, load_tokenizer(model_dir), read_settings(model_dir)


def read_settings(model_dir) -> FinetuneConfig:
    """The FinetuneConfig saved beside a fine-tuned model (finetune.json), the defaults without one.
    Keys this version does not know (older files) are left out."""
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        return FinetuneConfig()
    saved = json.loads(path.read_text(encoding="utf-8"))
    known = to_dict(FinetuneConfig())
    return from_dict(FinetuneConfig, {k: v for k, v in saved.items() if k in known and k != "lora"})


def evaluate_classifier(model_dir, data_file, batch_size: int = 128, text_column: str | None = None,
                        text_pair_column: str | None = None, label_column: str | None = None) -> dict:
    """Metrics (accuracy, P/R/F1, per class, loss, confusion matrix) of the classifier in `model_dir` on a labelled file.

    Columns default to the ones the model was trained with (finetune.json). Single texts are scored by
    `ClassifyPipeline`, the path `nanobert classify` takes (inputs cut at the model's position limit);
    text pairs and text + tabular models, which the pipeline does not read, by the model itself with the
    same limit.
    """
    if batch_size < 1:
        raise NanobertError(f"batch_size must be >= 1, got {batch_size}")
    cfg = read_settings(model_dir)
    given = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    for key, value in given.items():
        if value is not None:
            setattr(cfg, key, value)
    data = read_split(data_file, cfg)
    if data.text_pairs is None and not (Path(model_dir) / TABULAR_FILE).is_file():
        pipe = ClassifyPipeline(model_dir, batch_size=batch_size)
        labels = LabelMap(pipe.labels)
        logits = torch.from_numpy(np.stack(pipe.run_ids(pipe.encode(data.texts))).astype(np.float32))  # (N, K)
    else:
        model, tokenizer, _ = load_classifier(model_dir)
        labels = LabelMap.from_config(model.config.id2label or {})
        stats = getattr(model, "stats", None)
        enc = encode_labelled(data, tokenizer, model.config.max_position_embeddings, labels, stats)
        logits = predict_logits(model, enc, tokenizer.pad_token_id, batch_size)
    y = np.asarray(labels.encode(data.labels, source=data.source), dtype=np.int64)
    return evaluate_logits(logits, y, labels.names)
