"""MLM pretraining throughput: nanobert's training step against transformers.BertForMaskedLM, in one run.

Both train the same architecture (BERT config, sdpa attention, dropout 0.1) on the same batches:
real enwiki text, WordPiece-tokenized (bert-base-uncased vocabulary, 30,522), packed into 128-token
sequences and masked once with nanobert's 15% / 80-10-10 masking. One step = forward + backward
+ AdamW step (decay on >= 2-D weights) + zero grads. Steps of the variants alternate so that load
on a shared machine hits all of them alike; the figure is the median step time.

  ours        BertForMaskedLM: logits only at the masked positions ("sparse prediction") + fused AdamW
  ours-dense  the same model scoring every position, as transformers does (isolates sparse prediction)
  ours-loop   ours with torch's default (for-loop) AdamW instead of the fused kernel (isolates fused AdamW)
  hf          transformers.BertForMaskedLM(attn_implementation="sdpa") + torch.optim.AdamW defaults

    python benchmarks/pretrain.py                          # mini (L2/H128) and small (L4/H256), 32 x 128
    python benchmarks/pretrain.py --sizes mini --steps 10 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F


from nanobert.data.masking import mask_tokens, special_table  # noqa: E402
from nanobert.data.prepare import pack_sentences, split_sentences  # noqa: E402
from nanobert.data.sources import read_documents  # noqa: E402
from nanobert.model.bert import BertConfig, BertForMaskedLM  # noqa: E402
from nanobert.resources import find_minilm  # noqa: E402
from nanobert.train.precision import cpu_name  # noqa: E402
from nanobert.tokenizers import load_tokenizer  # noqa: E402
from nanobert.train.optim import make_optimizer, param_groups  # noqa: E402

SIZES = {"mini": (2, 128, 2), "small": (4, 256, 4)}  # layers, hidden, heads
ENWIKI = Path(__file__).resolve().parents[2] / "shared" / "data" / "enwiki" / "enwiki_clean.txt.gz"


def make_batches(n: int, batch: int, seq: int, seed: int = 0) -> list[dict]:
    """`n` masked batches (input_ids, attention_mask, labels) of `batch` x <= `seq` tokens from enwiki."""
    tok = load_tokenizer(find_minilm())
    seqs: list[list[int]] = []
    for doc in read_documents([ENWIKI]):
        sentences = [s for para in doc.split("\n") for s in split_sentences(para)]
        bodies = pack_sentences(tok.encode_batch(sentences, add_special_tokens=False), seq - 2)
        seqs.extend([tok.cls_token_id, *b, tok.sep_token_id] for b in bodies if len(b) >= 8)
        if len(seqs) >= n * batch:
            break
    special = special_table(tok.special_ids, tok.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(n):
        rows = seqs[i * batch:(i + 1) * batch]
        T = max(map(len, rows))
        ids = torch.full((batch, T), tok.pad_token_id, dtype=torch.long)  # (B, T)
        for r, s in enumerate(rows):
            ids[r, :len(s)] = torch.tensor(s)
        attn = (ids != tok.pad_token_id).long()
        masked, labels = mask_tokens(ids, mask_id=tok.mask_token_id, special=special, attention_mask=attn,
                                     generator=gen)
        batches.append({"input_ids": masked, "attention_mask": attn, "labels": labels})
    return batches


def build(kind: str, layers: int, hidden: int, heads: int):
    """(step function taking a batch, model) for one variant."""
    torch.manual_seed(0)
    if kind == "hf":
        import transformers
        cfg = transformers.BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=4 * hidden,
                                      attn_implementation="sdpa")
        model = transformers.BertForMaskedLM(cfg).train()
        opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, eps=1e-6)

        def forward(b):
            return model(**b).loss
    else:
        cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=4 * hidden)
        model = BertForMaskedLM(cfg).train()
        opt = make_optimizer(model, lr=1e-4, weight_decay=0.01, fused=kind != "ours-loop")
        if kind == "ours-dense":
            def forward(b):
                logits, _ = model(b["input_ids"], b["attention_mask"])  # (B, T, V): every position
                return F.cross_entropy(logits.view(-1, logits.shape[-1]), b["labels"].view(-1))
        else:
            def forward(b):
                return model(**b)[1]  # logits only at the masked positions

    def step(batch):
        loss = forward(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="mini,small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8, help="measured steps per variant")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--variants", default="ours,hf,ours-dense,ours-loop")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    batches = make_batches(args.warmup + args.steps, args.batch, args.seq)
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x <= {args.seq}, "
          f"{sum(tokens[args.warmup:]) / args.steps:.0f} real tokens and "
          f"{sum(int((b['labels'] != -100).sum()) for b in batches) / len(batches):.0f} masked per batch")
    for size in args.sizes.split(","):
        steps = {v: build(v, *SIZES[size]) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i, batch in enumerate(batches):
            for v in variants:  # alternate: load on the machine hits every variant alike
                t0 = time.perf_counter()
                steps[v](batch)
                if i >= args.warmup:
                    times[v].append(time.perf_counter() - t0)
        per_step = sum(tokens[args.warmup:]) / args.steps
        rate = {v: per_step / statistics.median(times[v]) for v in variants}
        print(f"\n{size} (L{SIZES[size][0]}/H{SIZES[size][1]}): tokens/s, median of {args.steps} steps")
        for v in variants:
            ratio = f"  ours / this = {rate['ours'] / rate[v]:.2f}x" if "ours" in rate and v != "ours" else ""
            print(f"  {v:<11} {rate[v]:>10,.0f}{ratio}")
        if "hf" in rate and "ours" in rate:
            print(f"  => ours is {rate['ours'] / rate['hf']:.2f}x transformers")


if __name__ == "__main__":
    main()
