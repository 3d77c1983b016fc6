import math

import pytest

from nanobert.train.schedule import lr_at


def test_warmup_is_linear_from_zero():
    assert lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=10, decay_steps=10) == pytest.approx(0.1)
    assert lr_at(9, max_lr=1.0, min_lr=0.0, warmup_steps=10, decay_steps=10) == pytest.approx(1.0)


def test_linear_decay_hand_computed():
    kw = dict(max_lr=1.0, min_lr=0.2, warmup_steps=10, decay_steps=10, kind="linear")
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(15, **kw) == pytest.approx(0.6)
    assert lr_at(20, **kw) == pytest.approx(0.2)
    assert lr_at(1000, **kw) == pytest.approx(0.2)


def test_cosine_midpoint_and_floor():
    kw = dict(max_lr=1e-3, min_lr=5e-5, warmup_steps=0, decay_steps=100, kind="cosine")
    assert lr_at(0, **kw) == pytest.approx(1e-3)
    assert lr_at(50, **kw) == pytest.approx(5e-5 + 0.5 * (1e-3 - 5e-5) * (1 + math.cos(math.pi / 2)))
    assert lr_at(100, **kw) == pytest.approx(5e-5)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(0, max_lr=1.0, min_lr=0.0, warmup_steps=0, decay_steps=1, kind="step")
