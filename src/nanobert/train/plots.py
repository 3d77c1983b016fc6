"""Learning-curve PNGs from a run's `metrics.csv`: loss and accuracy, train and val, against the step."""

from __future__ import annotations

import csv
from pathlib import Path

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
