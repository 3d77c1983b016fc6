import numpy as np
import pytest
import torch

from nanobert.data.loaders import BatchStream, TokenShards, collate, pack
from nanobert.data.prepare import FORMAT
from nanobert.errors import NanobertError


def _fake_prepared(path, shard_sizes=(10, 6)):
    """Shards whose sequence i of shard s is [s * 100 + i] * (1 + i % 3): easy to recognise."""
    import json
    shards = []
    for s, n in enumerate(shard_sizes):
        seqs = [[s * 100 + i] * (1 + i % 3) for i in range(n)]
        np.save(path / f"train-{s:05d}.tokens.npy", np.array([t for q in seqs for t in q], dtype=np.uint16))
        np.save(path / f"train-{s:05d}.offsets.npy", np.cumsum([0] + [len(q) for q in seqs]).astype(np.int64))
        shards.append({"name": f"train-{s:05d}", "sequences": n, "tokens": sum(map(len, seqs))})
    meta = {"format": FORMAT, "seq_len": 8, "dtype": "uint16", "splits": {"train": {"sequences": sum(shard_sizes), "shards": shards}}}
    (path / "meta.json").write_text(json.dumps(meta))
    return TokenShards(path, "train")


def test_collate_worked_example():
    b = collate([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pack_worked_example():
    b = pack([np.array([1, 1, 1]), np.array([2, 2]), np.array([3, 3, 3, 3])], seq_len=5, pad_id=0)
    assert b["input_ids"].tolist() == [[3, 3, 3, 3, 0], [1, 1, 1, 2, 2]]  # first fit, longest first
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_a_packed_stream_holds_the_same_tokens_in_fewer_rows_and_resumes(tmp_path):
    data = _fake_prepared(tmp_path)
    plain, packed = BatchStream(data, batch_size=4, seed=3), BatchStream(data, batch_size=4, seed=3, packed=True)
    for _ in range(6):
        a, b = next(plain), next(packed)
        assert a["position"] == b["position"]
        real = lambda x: sorted(x["input_ids"][x["attention_mask"].bool()].tolist())  # noqa: E731
        assert real(a) == real(b)  # the same tokens ...
        assert b["input_ids"].shape[0] <= a["input_ids"].shape[0] and b["input_ids"].shape[1] <= data.seq_len
        assert int(b["attention_mask"].sum()) == int(a["attention_mask"].sum())
    state = packed.state_dict()
    expected = next(packed)
    again = BatchStream(data, batch_size=4, seed=3, packed=True)
    again.load_state_dict(state)
    assert torch.equal(next(again)["input_ids"], expected["input_ids"])


def test_round_robin_over_shards_and_epochs(tmp_path):
    data = _fake_prepared(tmp_path)
    stream = BatchStream(data, batch_size=2, seed=0)
    assert len(stream) == 5 + 3  # 10 // 2 + 6 // 2 per epoch
    shards = [int(next(stream)["input_ids"][0, 0]) // 100 for _ in range(8)]
    assert shards == [0, 1, 0, 1, 0, 1, 0, 0]  # turns while both have batches, then what is left
    firsts = [next(stream)["input_ids"][:, 0].tolist() for _ in range(8)]
    seen = sorted(v for b in firsts for v in b)
    assert seen == sorted(list(range(10)) + [100 + i for i in range(6)])  # epoch 2: every sequence once


def test_ranks_split_each_global_batch(tmp_path):
    data = _fake_prepared(tmp_path)
    whole = BatchStream(data, batch_size=4, seed=3)
    r0 = BatchStream(data, batch_size=2, seed=3, rank=0, world_size=2)
    r1 = BatchStream(data, batch_size=2, seed=3, rank=1, world_size=2)
    for _ in range(6):
        w, a, b = next(whole), next(r0), next(r1)
        assert w["input_ids"][:, 0].tolist() == a["input_ids"][:, 0].tolist() + b["input_ids"][:, 0].tolist()


def test_resume_position_replays_nothing(tmp_path):
    data = _fake_prepared(tmp_path)
    a = BatchStream(data, batch_size=2, seed=7)
    for _ in range(11):  # into the second epoch
        next(a)
    state = a.state_dict()
    expected = [next(a)["input_ids"] for _ in range(6)]
    b = BatchStream(data, batch_size=2, seed=7)
    b.load_state_dict(state)
    assert all(torch.equal(x, next(b)["input_ids"]) for x in expected)


def test_batch_larger_than_any_shard_is_an_error(tmp_path):
    with pytest.raises(NanobertError, match="does not fit"):
        BatchStream(_fake_prepared(tmp_path), batch_size=11)
    with pytest.raises(NanobertError, match="not a prepared data directory"):
        TokenShards(tmp_path / "nothing")
