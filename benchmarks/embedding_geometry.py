"""Word-embedding geometry of a pretrained BERT beside the same network from random weights.

Mean pairwise cosine of the input embeddings of SST-2's commonest tokens (a shared direction shows as a
value above 0), and the mean norm of the pretraining corpus's 500 commonest and 2,000 rarest tokens.

    python benchmarks/embedding_geometry.py runs/mlm-cpu/model data/enwiki-8k-32
"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_gain import DATA, random_copy  # noqa: E402

from nanobert.data.loaders import TokenShards  # noqa: E402
from nanobert.model.bert import BertModel  # noqa: E402
from nanobert.tasks.finetune import FinetuneConfig, read_split  # noqa: E402
from nanobert.tokenizers import load_tokenizer  # noqa: E402


def mean_pair_cosine(x: torch.Tensor) -> float:
    x = torch.nn.functional.normalize(x, dim=-1)
    k = x.shape[0]
    return float(((x @ x.T).sum() - k) / (k * (k - 1)))


def stats(model_dir: Path, sst_ids: dict, corpus_rank: torch.Tensor) -> dict:
    words = BertModel.from_pretrained(model_dir, expected_missing=("pooler.*",)).embeddings.word_embeddings.weight
    words = words.detach()  # (V, H)
    out = {name: round(mean_pair_cosine(words[ids]), 4) for name, ids in sst_ids.items()}
    out["norm, 500 commonest"] = round(float(words[corpus_rank[:500]].norm(dim=-1).mean()), 3)
    out["norm, 2,000 rarest"] = round(float(words[corpus_rank[-2000:]].norm(dim=-1).mean()), 3)
    return out


def main() -> None:
    model_dir, data_dir = Path(sys.argv[1]), sys.argv[2]
    tok = load_tokenizer(model_dir)
    rows = read_split(DATA / "train.tsv", FinetuneConfig())
    sst = collections.Counter(i for t in rows.texts[:20000] for i in tok.encode(t, add_special_tokens=False))
    ranked = [i for i, _ in sst.most_common()]
    tokens = TokenShards(data_dir, "train").shards[0][0][:3_000_000]
    counts = np.bincount(np.asarray(tokens), minlength=tok.vocab_size)
    corpus_rank = torch.from_numpy(np.argsort(-counts)[:tok.vocab_size - 10].copy())  # the last 10: specials
    sst_ids = {"cosine, SST-2's 1,000 commonest": torch.tensor(ranked[:1000]),
               "cosine, SST-2 ranks 1,000-3,000": torch.tensor(ranked[1000:3000])}
    with tempfile.TemporaryDirectory() as tmp:
        rand = random_copy(model_dir, Path(tmp) / "random", 0)
        for name, path in (("pretrained", model_dir), ("random", rand)):
            print(name, stats(path, sst_ids, corpus_rank), flush=True)


if __name__ == "__main__":
    main()
