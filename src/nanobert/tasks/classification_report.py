"""Classification metrics, the report scikit-learn prints, and a confusion-matrix picture.

    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], names=["neg", "pos"])
    m["accuracy"]                      # 0.75
    m["per_class"]["pos"]["recall"]    # 0.5
    print(format_report(m))            # the layout of sklearn.metrics.classification_report

Precision, recall or F1 with a zero denominator count as 0.0 (as scikit-learn's default does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.fileio import atomic_path


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


def plot_confusion_matrix(cm: Sequence[Sequence[int]], names: Sequence[str], path: str | Path,
                          title: str = "Confusion matrix") -> None:
    """Save a confusion-matrix heat map with the counts written in each cell (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    size = max(3.5, 0.6 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(names)), labels=list(names), rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_yticks(range(len(names)), labels=list(names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
