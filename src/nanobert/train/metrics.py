"""What a training run records (a log file, a CSV of metrics, TensorBoard events) and how a classifier scores.

    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], names=["neg", "pos"])
    m["accuracy"]                      # 0.75
    m["per_class"]["pos"]["recall"]    # 0.5
    print(format_report(m))            # the layout of sklearn.metrics.classification_report

Precision, recall or F1 with a zero denominator count as 0.0 (as scikit-learn's default does).

One `MetricsLogger` per run, on the main process only. Every row is `(step, split, name=value...)`;
the CSV (`metrics.csv`) has the columns step, split, loss, accuracy, perplexity, lr, tokens_per_s,
mfu (model FLOPs utilisation, a fraction of the devices' peak; see train.flops); every train row also
goes to train.log. The CSV feeds `plots.plot_learning_curves`. On resume the rows written after the checkpoint are dropped
so a killed-and-resumed run has the same history as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nanobert.fileio import write_text

COLUMNS = ["step", "split", "loss", "accuracy", "perplexity", "lr", "tokens_per_s", "mfu"]


def count_correct(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> tuple[int, int]:
    """(correct argmax predictions, number of targets) over positions where `labels != ignore_index`.

    Works for dense logits (..., V) whose leading shape equals `labels.shape`, and for sparse
    logits (M, V) that hold only the M target positions in row-major order.
    Example: logits argmax [[3, 1]], labels [[3, -100]] -> (1, 1).
    """
    keep = labels != ignore_index
    targets = labels[keep]  # (M,)
    if logits.shape[:-1] == labels.shape:
        preds = logits.argmax(-1)[keep]  # (M,)
    elif logits.dim() == 2 and logits.shape[0] == targets.numel():
        preds = logits.argmax(-1)  # (M,)
    else:
        raise ValueError(f"logits {tuple(logits.shape)} match neither labels {tuple(labels.shape)} "
                         f"nor their {targets.numel()} targets")
    return int((preds == targets).sum()), int(targets.numel())


def perplexity(loss: float) -> float:
    """exp(loss), capped to avoid overflow for diverged runs."""
    return math.exp(min(loss, 50.0))


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted. Example: ([0,1,1],[0,1,0],2) -> [[1,0],[1,1]]."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict:
    """Accuracy, macro and weighted precision/recall/F1, and per-class precision/recall/F1/support."""
    k = len(names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)  # true count per class
    predicted = cm.sum(axis=0).astype(np.float64)
    precision, recall = _div(tp, predicted), _div(tp, support)
    f1 = _div(2 * precision * recall, precision + recall)
    n = support.sum()
    weights = support / n if n else support
    per_class = {str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(names)}
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted": {"precision": float((precision * weights).sum()), "recall": float((recall * weights).sum()),
                     "f1": float((f1 * weights).sum())},
        "per_class": per_class,
        "support": int(n),
        "confusion_matrix": cm.tolist(),
    }


def format_report(metrics: dict, digits: int = 2) -> str:
    """The text table of `sklearn.metrics.classification_report` (same columns, widths and rows)."""
    names = list(metrics["per_class"])
    headers = ["precision", "recall", "f1-score", "support"]
    width = max(len("weighted avg"), *(len(n) for n in names), digits)
    head = f"{'':>{width}s} " + "".join(f" {h:>9}" for h in headers)
    lines = [head, ""]
    for name in names:
        c = metrics["per_class"][name]
        lines.append(f"{name:>{width}s} " + "".join(f" {v:>9.{digits}f}" for v in (c["precision"], c["recall"], c["f1"]))
                     + f" {c['support']:>9}")
    lines.append("")
    n = metrics["support"]
    lines.append(f"{'accuracy':>{width}s} " + f" {'':>9}" * 2 + f" {metrics['accuracy']:>9.{digits}f}" + f" {n:>9}")
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        a = metrics[key]
        lines.append(f"{label:>{width}s} " + "".join(f" {a[m]:>9.{digits}f}" for m in ("precision", "recall", "f1"))
                     + f" {n:>9}")
    return "\n".join(lines) + "\n"


class MetricsLogger:
    """Append metrics to `out_dir/metrics.csv`, `out_dir/train.log` and TensorBoard events under `out_dir/tb`."""

    def __init__(self, out_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / "metrics.csv"
        if resume_step is None or not self.csv_path.exists():
            write_text(self.csv_path, ",".join(COLUMNS) + "\n")
        else:  # keep the history up to the checkpoint, drop what a killed run wrote after it
            with open(self.csv_path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            lines = [",".join(COLUMNS)] + [",".join(r.get(c, "") or "" for c in COLUMNS) for r in rows]
            write_text(self.csv_path, "\n".join(lines) + "\n")
        self._file_handler = logging.FileHandler(self.out_dir / "train.log", encoding="utf-8")
        self._file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("nanobert").addHandler(self._file_handler)
        logging.getLogger("nanobert").setLevel(min(logging.getLogger("nanobert").getEffectiveLevel(), logging.INFO))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=resume_step)
            except ImportError:  # tensorboard is an optional extra
                self._tb = None

    def log(self, step: int, split: str, **values: float) -> None:
        """Record one row, e.g. `log(100, "val", loss=2.3, accuracy=0.41, perplexity=9.9)`."""
        row = {"step": str(step), "split": split}
        for k, v in values.items():
            row[k] = f"{v:.6g}" if isinstance(v, float) else str(v)
            if self._tb is not None:
                self._tb.add_scalar(f"{split}/{k}", v, step)
        with open(self.csv_path, "a", encoding="utf-8") as f:
            f.write(",".join(row.get(c, "") for c in COLUMNS) + "\n")
        if split != "train":  # the loop logs validation passes itself
            return
        text = " ".join(f"{k} {row[k]}" for k in COLUMNS[2:] if k in row)
        self._file_handler.handle(logging.makeLogRecord(  # train.log only: the console has the progress bar
            {"name": __name__, "levelno": logging.INFO, "levelname": "INFO", "msg": f"step {step} {split} {text}"}))

    def close(self) -> None:
        logging.getLogger("nanobert").removeHandler(self._file_handler)
        self._file_handler.close()
        if self._tb is not None:
            self._tb.close()
