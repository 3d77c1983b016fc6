"""What a training run records: a log file, a CSV of metrics and (if installed) TensorBoard events.

One `MetricsLogger` per run, on the main process only. Every row is `(step, split, name=value...)`;
the CSV (`metrics.csv`) has the columns step, split, loss, accuracy, perplexity, lr, tokens_per_s
and feeds `plots.plot_learning_curves`. On resume the rows written after the checkpoint are dropped
so a killed-and-resumed run has the same history as an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import torch

from nanobert.fileio import write_text

COLUMNS = ["step", "split", "loss", "accuracy", "perplexity", "lr", "tokens_per_s"]


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

    def close(self) -> None:
        logging.getLogger("nanobert").removeHandler(self._file_handler)
        self._file_handler.close()
        if self._tb is not None:
            self._tb.close()
