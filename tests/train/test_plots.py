"""Learning curves and the confusion matrix are written as PNG files."""

from __future__ import annotations

from nanobert.train.plots import plot_confusion_matrix, plot_learning_curves, read_metrics

PNG = b"\x89PNG"


def test_learning_curves_from_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,split,loss,accuracy,perplexity,lr,tokens_per_s\n1,train,2.0,0.1,,,\n2,train,1.5,0.2,,,\n"
                   "2,val,1.7,0.15,,,\n")
    assert read_metrics(csv) == {"train": {"loss": [(1, 2.0), (2, 1.5)], "accuracy": [(1, 0.1), (2, 0.2)]},
                                 "val": {"loss": [(2, 1.7)], "accuracy": [(2, 0.15)]}}
    paths = plot_learning_curves(csv, tmp_path)
    assert sorted(p.name for p in paths) == ["accuracy.png", "loss.png"]
    assert all(p.read_bytes()[:4] == PNG for p in paths)


def test_confusion_matrix_png(tmp_path):
    plot_confusion_matrix([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == PNG
