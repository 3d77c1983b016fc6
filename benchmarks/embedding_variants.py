"""Where a pretrained BERT's fine-tuning deficit sits: its word embeddings, or the encoder above them.

Saves a copy of the model with its word embeddings changed, then fine-tunes it on SST-2 with the settings of
`pretrain_gain.py` (6,000 sentences, 1 epoch, max length 32, seed 0) and the mean-pooling head:

- `centre`: the mean embedding subtracted from every row (the direction all rows share removed);
- `fresh`: the embeddings drawn anew, N(0, initializer_range), the encoder layers kept.

    python benchmarks/embedding_variants.py runs/mlm-cpu/model centre --lr 1e-3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_gain import DATA, run_finetune  # noqa: E402

from nanobert.model.bert import BertForMaskedLM  # noqa: E402
from nanobert.tokenizers import load_tokenizer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("variant", choices=("centre", "fresh"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-examples", type=int, default=6000)
    args = p.parse_args()
    model = BertForMaskedLM.from_pretrained(args.model)
    torch.manual_seed(0)
    with torch.no_grad():
        words = model.bert.embeddings.word_embeddings.weight  # (V, H)
        if args.variant == "centre":
            words -= words.mean(0, keepdim=True)
        else:
            words.normal_(0.0, model.config.initializer_range)
    ft = argparse.Namespace(epochs=1, max_length=32, train_examples=args.train_examples, seed=0, data=DATA)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, tokenizer=load_tokenizer(args.model))
        acc = run_finetune(Path(tmp), ft, args.lr, "mean")
    print(f"{args.variant}: SST-2 dev accuracy {100 * acc:.2f}% (mean pooling, lr {args.lr:g})")


if __name__ == "__main__":
    main()
