"""Learning-curve PNGs from a run's `metrics.csv` (loss and accuracy, train and val, against the step) and a
classifier's confusion matrix."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from nanobert.fileio import atomic_path


def read_metrics(csv_path: str | Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{split: {metric: [(step, value), ...]}} from a metrics.csv (empty cells skipped)."""
    out: dict = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("step", "split") or not value:
                    continue
                out.setdefault(row["split"], {}).setdefault(key, []).append((int(row["step"]), float(value)))
    return out


def plot_learning_curves(csv_path: str | Path, out_dir: str | Path,
                         metrics: tuple[str, ...] = ("loss", "accuracy")) -> list[Path]:
    """Write `out_dir/<metric>.png` for each metric present, one line per split; return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    data, written = read_metrics(csv_path), []
    for metric in metrics:
        series = {split: vals[metric] for split, vals in data.items() if metric in vals}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for split, points in sorted(series.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, label=split, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(out_dir) / f"{metric}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(path)
    return written


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
