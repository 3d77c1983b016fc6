"""Classification metrics against hand computation and scikit-learn; the metrics CSV across a resume."""

from __future__ import annotations

import numpy as np
import pytest

from nanobert.train.metrics import MetricsLogger, classification_metrics, confusion_matrix, count_correct, format_report


def test_metrics_match_hand_computation():
    m = classification_metrics([0, 1, 1, 0, 2], [0, 1, 0, 0, 1], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["a"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert m["per_class"]["b"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert m["weighted"]["recall"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 0]]


def test_report_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    p[p == 3] = 2  # a class never predicted: zero precision
    names = ["negative", "neutral", "positive", "very long class name"]
    for digits in (2, 4):
        ours = format_report(classification_metrics(y, p, names), digits)
        assert ours == sklearn_metrics.classification_report(y, p, target_names=names, digits=digits, zero_division=0)



def test_confusion_matrix_and_count_correct():
    import torch

    assert confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist() == [[1, 0], [1, 1]]
    logits = torch.tensor([[[0.0, 0, 0, 1], [0, 1, 0, 0]]])  # argmax [[3, 1]]
    assert count_correct(logits, torch.tensor([[3, -100]])) == (1, 1)


def test_logger_drops_rows_after_the_resumed_step(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log(step, "train", loss=1.0 / step)
    log.close()
    MetricsLogger(tmp_path, resume_step=2, tensorboard=False).close()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
