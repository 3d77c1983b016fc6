"""Fine-tune a BERT for classification: in full, with LoRA, or with numeric (tabular) features.

    cfg = FinetuneConfig(epochs=2, lr=5e-5)                      # or lora_r=8, lr=5e-4
    result = finetune("minilm/", "train.tsv", "dev.tsv", "out/", cfg)
    result["metrics"]["accuracy"]

One straight loop: for each epoch, length-bucketed batches (similar lengths together, padded only
to the longest in the batch), AdamW with linear warmup and linear decay, gradient clipping; after
each epoch a pass over the validation set; the weights of the epoch with the lowest validation
loss are the ones kept and saved. The output directory is a complete model that `from_pretrained`
(ours or transformers') loads; see `finetune` for its files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nanobert.config import to_dict
from nanobert.data.tables import LabelMap, LabelledData, read_labelled
from nanobert.errors import NanobertError
from nanobert.fileio import atomic_dir, write_json, write_text
from nanobert.model.bert import BertForSequenceClassification
from nanobert.model.config import BertConfig
from nanobert.model.lora import apply_lora, count_parameters, merge_lora, resolve_layers, save_adapter
from nanobert.model.tabular import TABULAR_FILE, BertForTabularClassification, TabularStats
from nanobert.tasks.classification_report import classification_metrics, format_report, plot_confusion_matrix
from nanobert.tokenizers import load_tokenizer
from nanobert.train.optim import make_optimizer
from nanobert.train.schedule import lr_at

log = logging.getLogger(__name__)

SETTINGS_FILE = "finetune.json"  # the FinetuneConfig a model was trained with: columns for evaluate/classify


@dataclass
class FinetuneConfig:
    """How to fine-tune. Defaults are the usual BERT-on-GLUE recipe, sized for a CPU."""

    # --- data
    text_column: str | None = None  # None: "text" or "sentence", whichever the file has
    text_pair_column: str | None = None  # a second text (NLI, QA pairs): encoded as [CLS] a [SEP] b [SEP]
    label_column: str = "label"
    tabular_columns: list[str] = field(default_factory=list)  # numeric columns; non-empty = text + tabular model
    max_length: int = 128  # tokens; SST-2's longest sentence is ~70, so nothing there is cut
    max_train_examples: int | None = None  # a random subset (fixed by `seed`) of the training file
    # --- optimisation
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5  # full fine-tuning; LoRA wants ~10x more (5e-4)
    weight_decay: float = 0.01  # on matrices only (see train.optim)
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.06  # of all optimizer steps
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # stop (and end the schedule) after this many steps in all
    max_minutes: float | None = None  # stop training after this much wall time; the schedule is unchanged
    classifier_dropout: float | None = None  # None: the checkpoint's hidden_dropout_prob (0.1 for BERT)
    keep: str = "loss"  # which epoch's weights to keep: lowest validation "loss" (seed 002), highest "accuracy",
    # or the "last" one (no choice made on the validation data)
    # --- LoRA (lora_r = 0: full fine-tuning)
    lora_r: int = 0
    lora_alpha: float = 16.0  # scaling alpha / r
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    lora_layers: str = "all"  # "all", "last-4" or indices "8,9,10,11"
    lora_modules_to_save: list[str] = field(default_factory=lambda: ["classifier"])  # trained in full beside
    # the adapters (PEFT's modules_to_save); add "pooler" to train the [CLS] pooler too (+H*H+H parameters)
    lora_plus_ratio: float = 1.0  # LoRA+: lora_B learns this many times faster than lora_A and the rest (1: plain
    # LoRA). B starts at zero and sets the update's size, so a larger step there gets it going sooner; LoRA+ uses 16
    # --- text + tabular
    tabular_hidden: int = 32
    # --- loop
    eval_batch_size: int = 128
    bucket_batches: int = 50  # batches per pool sorted by length: big enough to pad little, small enough to stay random
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None: torch's default
    progress: bool = True  # tqdm bars (stderr)


# --- data -----------------------------------------------------------------------------------------------------------

@dataclass
class Encoded:
    """A tokenized split: per example token ids and segment ids, class ids, standardized features."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: np.ndarray | None  # (N,) int64
    tabular: np.ndarray | None  # (N, F) float32

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def read_split(path, cfg: FinetuneConfig, require_labels: bool = True) -> LabelledData:
    return read_labelled(path, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                         label_column=cfg.label_column, tabular_columns=cfg.tabular_columns,
                         require_labels=require_labels)


def encode_split(data: LabelledData, tokenizer, max_length: int, labels: LabelMap | None = None,
                 stats: TabularStats | None = None) -> Encoded:
    """Tokenize (no padding: batches pad themselves) and map labels to ids."""
    enc = tokenizer(data.texts, data.text_pairs, truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    types = enc.get("token_type_ids") or [[0] * len(x) for x in ids]
    y = None
    if labels is not None and data.labels is not None:
        y = np.asarray(labels.encode(data.labels, source=data.source), dtype=np.int64)
    x = stats.transform(data.tabular) if stats is not None and data.tabular is not None else None
    return Encoded(ids, types, y, x)


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort by length inside pools of `pool` batches, cut, shuffle the batches.

    Example: lengths [5, 1, 5, 1], batch_size 2, one pool -> batches {1, 3} and {0, 2} in random order.
    """
    order = rng.permutation(len(lengths))
    batches = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(data: Encoded, idx, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples `idx` to their longest: input_ids, attention_mask, token_type_ids (B, T), labels (B,), tabular (B, F)."""
    T = max(len(data.input_ids[i]) for i in idx)
    B = len(idx)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(data.input_ids[i])
        ids[row, :n] = torch.tensor(data.input_ids[i])
        types[row, :n] = torch.tensor(data.token_type_ids[i])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if data.labels is not None:
        batch["labels"] = torch.from_numpy(data.labels[np.asarray(idx)])
    if data.tabular is not None:
        batch["tabular"] = torch.from_numpy(data.tabular[np.asarray(idx)])
    return batch


@torch.no_grad()
def predict_logits(model, data: Encoded, pad_id: int, batch_size: int = 128, progress: bool = False,
                   desc: str = "eval") -> torch.Tensor:
    """(N, K) logits in the order of `data` (batches sorted by length, so little padding)."""
    was_training = model.training
    model.eval()
    order = np.argsort(data.lengths, kind="stable")
    out = torch.empty(0)
    chunks = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        batch = collate(data, idx, pad_id)
        batch.pop("labels", None)
        chunks.append(model(**batch)[0].float())
    out = torch.cat(chunks)
    logits = torch.empty_like(out)
    logits[torch.from_numpy(order)] = out
    model.train(was_training)
    return logits


def evaluate_logits(logits: torch.Tensor, labels: np.ndarray, names: list[str]) -> dict:
    """Metrics + mean cross-entropy loss of (N, K) logits against (N,) class ids."""
    y = torch.from_numpy(labels)
    metrics = classification_metrics(labels, logits.argmax(-1).numpy(), names)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, y))
    return metrics


# --- model ----------------------------------------------------------------------------------------------------------

def build_model(model_dir, labels: LabelMap, cfg: FinetuneConfig, stats: TabularStats | None):
    """The classifier to train, its encoder loaded from `model_dir` (a new head when the checkpoint has none)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory: it has no config.json "
                            "(give a directory written by save_pretrained or a Hugging Face BERT)")
    overrides = dict(num_labels=len(labels), id2label=labels.id2label, label2id=labels.label2id)
    if cfg.classifier_dropout is not None:
        overrides["classifier_dropout"] = cfg.classifier_dropout
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
    if cfg.lora_r:
        layers = resolve_layers(cfg.lora_layers, model.config.num_hidden_layers)
        save = list(cfg.lora_modules_to_save) + (["tabular"] if stats is not None else [])
        apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, targets=cfg.lora_targets, layers=layers,
                   dropout=cfg.lora_dropout, modules_to_save=save)
    return model


def _trainable_state(model) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


# --- the loop -------------------------------------------------------------------------------------------------------

# FinetuneConfig.keep -> the score of an epoch (its validation metrics, its number); the lowest score is kept
KEEP_RULES = {"loss": lambda m, epoch: m["loss"], "accuracy": lambda m, epoch: -m["accuracy"],
              "last": lambda m, epoch: -epoch}

def train_classifier(model, train: Encoded, val: Encoded, names: list[str], pad_id: int, cfg: FinetuneConfig) -> dict:
    """Train `model` in place; at the end it holds the weights of the epoch `cfg.keep` chooses (lowest validation loss).

    Returns {"history": [per epoch: train_loss, val_loss, val_accuracy, seconds, steps], "best_epoch",
    "train_time_s", "val_metrics" (of the best epoch)}.
    """
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    warmup = int(cfg.warmup_ratio * total_steps)
    scales = {"lora_B": cfg.lora_plus_ratio} if cfg.lora_r and cfg.lora_plus_ratio != 1 else None
    optimizer = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps, lr_scales=scales)
    lengths = train.lengths
    if cfg.keep not in KEEP_RULES:
        raise NanobertError(f"keep must be one of {', '.join(KEEP_RULES)}, got {cfg.keep!r}")
    history, best, best_state, best_metrics, best_epoch = [], math.inf, None, None, 0
    step, train_time, stop = 0, 0.0, False
    deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        batches = bucketed_batches(lengths, cfg.batch_size, rng, cfg.bucket_batches)
        loss_sum, seen = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not cfg.progress, leave=False)
        for idx in bar:
            lr = lr_at(step, max_lr=cfg.lr, min_lr=0.0, warmup_steps=warmup, decay_steps=total_steps - warmup,
                       kind="linear")
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = collate(train, idx, pad_id)
            _, loss = model(**batch)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.2e}")
            if step >= total_steps or (deadline is not None and train_time + time.perf_counter() - t0 >= deadline):
                stop = True
                break
        seconds = time.perf_counter() - t0
        train_time += seconds
        metrics = evaluate_logits(predict_logits(model, val, pad_id, cfg.eval_batch_size, cfg.progress), val.labels, names)
        history.append({"epoch": epoch, "steps": step, "train_loss": loss_sum / max(seen, 1), "val_loss": metrics["loss"],
                        "val_accuracy": metrics["accuracy"], "seconds": seconds})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val accuracy %.4f, %.1f s", epoch,
                 history[-1]["train_loss"], metrics["loss"], metrics["accuracy"], seconds)
        score = KEEP_RULES[cfg.keep](metrics, epoch)
        if score < best or best_state is None:
            best, best_state, best_metrics = score, _trainable_state(model), metrics
            best_epoch = epoch
        if stop:
            break
    model.load_state_dict(best_state, strict=False)
    model.eval()
    return {"history": history, "best_epoch": best_epoch, "train_time_s": train_time, "steps": step,
            "val_metrics": best_metrics}


# --- the whole task --------------------------------------------------------------------------------------------------

def finetune(model_dir, train_file, validation_file, out_dir, cfg: FinetuneConfig | None = None,
             test_file=None) -> dict:
    """Fine-tune the BERT in `model_dir` on `train_file`, keep the best epoch on `validation_file`, write `out_dir`:

        out_dir/config.json, model.safetensors    the classifier (LoRA merged in), with id2label/label2id
        out_dir/vocab.txt, tokenizer_config.json  the tokenizer
        out_dir/tabular.json                      column names, mean, std (text + tabular models only)
        out_dir/adapter/adapter_config.json, adapter_model.safetensors   the LoRA adapter alone, as PEFT saves it
        out_dir/finetune.json                     the FinetuneConfig used (columns, hyperparameters)
        out_dir/metrics.json                      metrics of the kept epoch (and on test_file), history, params, time
        out_dir/classification_report.txt, confusion_matrix.png   on test_file if given, else validation

    Returns the dict written to metrics.json.
    """
    cfg = cfg or FinetuneConfig()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _finetune(Path(model_dir), train_file, validation_file, out_dir, cfg, test_file)
    finally:
        torch.set_num_threads(threads)


def _finetune(model_dir: Path, train_file, validation_file, out_dir, cfg: FinetuneConfig, test_file) -> dict:
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
    pad_id = tokenizer.pad_token_id
    train = encode_split(train_data, tokenizer, cfg.max_length, labels, stats)
    val = encode_split(val_data, tokenizer, cfg.max_length, labels, stats)
    test = encode_split(test_data, tokenizer, cfg.max_length, labels, stats) if test_data is not None else None
    log.info("train %d, validation %d%s examples; labels %s", len(train), len(val),
             f", test {len(test)}" if test else "", labels.names)

    torch.manual_seed(cfg.seed)  # the new head and the LoRA matrices: torch's own start seed differs every run
    model = build_model(model_dir, labels, cfg, stats)
    trainable, total = count_parameters(model)
    log.info("parameters: %s trainable of %s (%.3f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    run = train_classifier(model, train, val, labels.names, pad_id, cfg)

    final, split = run["val_metrics"], "validation"
    if test is not None:
        final, split = evaluate_logits(predict_logits(model, test, pad_id, cfg.eval_batch_size), test.labels,
                                       labels.names), "test"
    report = {"split": split, **final, "trainable_params": trainable, "total_params": total,
              "trainable_fraction": trainable / total, "train_time_s": run["train_time_s"],
              "best_epoch": run["best_epoch"], "steps": run["steps"], "history": run["history"],
              "train_examples": len(train), "mode": ("lora" if cfg.lora_r else "full") + ("+tabular" if stats else "")}
    if test is not None:
        report["validation"] = run["val_metrics"]

    with atomic_dir(out_dir) as tmp:
        if cfg.lora_r:
            save_adapter(model, tmp / "adapter", base_model_name_or_path=str(model_dir.resolve()))
            model = merge_lora(model)
        model.save_pretrained(tmp, tokenizer=tokenizer)
        write_json(tmp / SETTINGS_FILE, {"base_model": str(model_dir), **to_dict(cfg)})
        write_json(tmp / "metrics.json", report)
        write_text(tmp / "classification_report.txt", format_report(final))
        plot_confusion_matrix(final["confusion_matrix"], labels.names, tmp / "confusion_matrix.png",
                              title=f"{split} ({final['accuracy']:.1%} accurate)")
    return report


def load_classifier(model_dir):
    """A fine-tuned classifier (plain or text + tabular), its tokenizer and its FinetuneConfig from `model_dir`."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NanobertError(f"{model_dir} is not a model directory: it has no config.json")
    if (model_dir / TABULAR_FILE).is_file():
        model = BertForTabularClassification.from_pretrained(model_dir)
    else:
        model = BertForSequenceClassification.from_pretrained(model_dir)
    cfg = FinetuneConfig()
    settings = model_dir / SETTINGS_FILE
    if settings.is_file():
        saved = json.loads(settings.read_text(encoding="utf-8"))
        saved.pop("base_model", None)
        known = set(to_dict(cfg))
        cfg = FinetuneConfig(**{k: v for k, v in saved.items() if k in known})
    return model, load_tokenizer(model_dir), cfg


def evaluate(model_dir, data_file, batch_size: int = 128, text_column: str | None = None,
             text_pair_column: str | None = None, label_column: str | None = None, progress: bool = False) -> dict:
    """Metrics (accuracy, P/R/F1, per class, loss, confusion matrix) of the classifier in `model_dir` on a labelled file.

    Columns default to the ones the model was trained with (finetune.json).
    """
    model, tokenizer, cfg = load_classifier(model_dir)
    given = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if model.config.id2label is None:
        raise NanobertError(f"{model_dir}/config.json has no id2label; it is not a fine-tuned classifier")
    labels = LabelMap.from_config(model.config.id2label)
    stats = getattr(model, "stats", None)
    data = encode_split(read_split(data_file, cfg), tokenizer, cfg.max_length, labels, stats)
    logits = predict_logits(model, data, tokenizer.pad_token_id, batch_size, progress)
    return evaluate_logits(logits, data.labels, labels.names)
