import random

import numpy as np
import pytest
import torch

from nanobert.train import checkpoints
from nanobert.train.optim import make_optimizer

from loop_stubs import TinyMLM


def _save(tmp_path, step, model, opt, keep=2):
    return checkpoints.save_checkpoint(tmp_path, step, model, opt, {"data": {"k": step}},
                                       [checkpoints.capture_rng()], keep=keep)


def test_round_trip_weights_optimizer_rng_and_retention(tmp_path):
    model = TinyMLM()
    opt = make_optimizer(model, 1e-3)
    model(torch.ones(2, 4, dtype=torch.long), labels=torch.ones(2, 4, dtype=torch.long))[1].backward()
    opt.step()
    for step in (1, 2, 3):
        _save(tmp_path, step, model, opt)
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    expected = (torch.rand(3), np.random.rand(), random.random())  # what follows the saved RNG state
    other = TinyMLM()
    other_opt = make_optimizer(other, 1e-3)
    state = checkpoints.load_checkpoint(checkpoints.latest_checkpoint(tmp_path), other, other_opt)
    assert state["step"] == 3 and state["data"] == {"k": 3}
    assert torch.equal(torch.rand(3), expected[0]) and np.random.rand() == expected[1]
    assert random.random() == expected[2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    sa, sb = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)


def test_a_failed_save_leaves_the_previous_checkpoint_alone(tmp_path, monkeypatch):
    model = TinyMLM()
    opt = make_optimizer(model, 1e-3)
    _save(tmp_path, 1, model, opt)

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        _save(tmp_path, 2, model, opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001"]
